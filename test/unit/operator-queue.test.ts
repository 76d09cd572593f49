// The work queue: dedup of queued keys, one reconcile per key at a time, back-off on error, requeueAfter, requeueOnLull.
import { jest } from '@jest/globals';
import { WorkQueue, type ReconcileResult } from '../../operator/kube/queue.js';

const waitFor = async (what: string, ok: () => boolean, timeoutMs = 2000) => {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
};

function harness(reconcile: (key: string) => Promise<ReconcileResult | void>, workers = 4) {
  const runs: string[] = [];
  const q = new WorkQueue({ workers, baseDelayMs: 10, maxDelayMs: 80 }, async (key) => { runs.push(key); return reconcile(key); });
  return { q, runs };
}

describe('WorkQueue', () => {
  test('a key queued many times before a worker takes it runs once', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    const { q, runs } = harness(async (key) => { if (key === 'block') await gate; }, 1);
    q.start();
    q.add('block');
    await waitFor('the worker to be busy', () => runs.length === 1);
    for (let i = 0; i < 5; i++) q.add('ns/a');
    expect(q.depth).toBe(1);
    release();
    await waitFor('ns/a to run', () => runs.includes('ns/a'));
    await new Promise((r) => setTimeout(r, 30));
    expect(runs.filter((k) => k === 'ns/a')).toHaveLength(1);
    await q.shutdown();
  });

  test('one reconcile per key at a time; a change meanwhile runs once more afterwards', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    const { q, runs } = harness(async () => {
      inFlight++; maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise((r) => setTimeout(r, 20));
      inFlight--;
    });
    q.start();
    q.add('ns/a');
    await waitFor('first run', () => runs.length === 1);
    q.add('ns/a'); q.add('ns/a'); q.add('ns/a');
    await waitFor('second run', () => runs.length === 2);
    await new Promise((r) => setTimeout(r, 60));
    expect(runs).toEqual(['ns/a', 'ns/a']);
    expect(maxInFlight).toBe(1);
    await q.shutdown();
  });

  test('different keys run concurrently', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    const { q } = harness(async () => {
      inFlight++; maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise((r) => setTimeout(r, 20));
      inFlight--;
    }, 3);
    q.start();
    for (const k of ['a', 'b', 'c']) q.add(k);
    await waitFor('all three to overlap', () => maxInFlight === 3);
    await q.shutdown();
  });

  test('errors retry with exponential back-off per key, reset by a success', async () => {
    const at: number[] = [];
    let failuresLeft = 3;
    const { q } = harness(async () => {
      at.push(Date.now());
      if (failuresLeft-- > 0) throw new Error('boom');
    });
    q.start();
    q.add('ns/flaky');
    await waitFor('four attempts', () => at.length === 4);
    const gaps = at.slice(1).map((t, i) => t - at[i]!);
    expect(gaps[0]).toBeGreaterThanOrEqual(9);
    expect(gaps[1]).toBeGreaterThanOrEqual(19);
    expect(gaps[2]).toBeGreaterThanOrEqual(39);
    expect(q.failuresOf('ns/flaky')).toBe(0);
    await q.shutdown();
  });

  test.each([[1, 10], [2, 20], [3, 40], [4, 80], [9, 80]])('backoff after %i failures is %i ms (capped)', (failures, ms) => {
    expect(new WorkQueue({ workers: 1, baseDelayMs: 10, maxDelayMs: 80 }, async () => undefined).backoffMs(failures)).toBe(ms);
  });

  test('requeueAfter brings a key back after the delay', async () => {
    const at: number[] = [];
    const t0 = Date.now();
    const { q } = harness(async () => { at.push(Date.now() - t0); return at.length === 1 ? { requeueAfterMs: 40 } : undefined; });
    q.start();
    q.add('ns/deadline');
    await waitFor('the requeue', () => at.length === 2);
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(35);
    await q.shutdown();
  });

  test('of two delays for one key the earlier wins: a later one neither postpones nor adds a run', () => {
    jest.useFakeTimers();
    try {
      const q = new WorkQueue({ workers: 1, baseDelayMs: 10, maxDelayMs: 80 }, async () => undefined);
      q.addAfter('x', 500);
      q.addAfter('x', 10); // earlier: replaces the 500 ms one
      q.addAfter('y', 10);
      q.addAfter('y', 500); // later: ignored
      expect(q.delayedCount).toBe(2);
      jest.advanceTimersByTime(10);
      expect(q.depth).toBe(2); // both due at 10 ms
      expect(q.delayedCount).toBe(0); // and nothing left to fire again at 500 ms
      jest.advanceTimersByTime(1000);
      expect(q.depth).toBe(2);
    } finally {
      jest.useRealTimers();
    }
  });

  test('requeueOnLull parks a key until wakeParked; onIdle says when the queue has drained', async () => {
    const { q, runs } = harness(async (key) => (key === 'ns/status' && runs.length === 1 ? { requeueAfterMs: 5_000, requeueOnLull: true } : undefined));
    let idle = 0;
    q.onIdle(() => { idle++; });
    q.start();
    q.add('ns/status');
    await waitFor('the first run and the drain', () => idle === 1);
    expect(q.idle).toBe(true);
    expect(runs).toEqual(['ns/status']);
    q.wakeParked();
    await waitFor('the parked key to run again', () => runs.length === 2 && idle === 2);
    q.wakeParked(); // parked once, woken once: nothing is queued by a second wake
    expect(q.depth).toBe(0);
    expect(q.idle).toBe(true);
    await q.shutdown();
    expect(runs).toEqual(['ns/status', 'ns/status']);
  });

  test('shutdown waits for the reconcile in flight and takes nothing new', async () => {
    let finished = false;
    const { q, runs } = harness(async () => { await new Promise((r) => setTimeout(r, 30)); finished = true; });
    q.start();
    q.add('a');
    await waitFor('start', () => runs.length === 1);
    await q.shutdown();
    expect(finished).toBe(true);
    q.add('b');
    expect(q.depth).toBe(0);
  });
});
