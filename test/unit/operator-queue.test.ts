// The work queue: dedup of queued keys, one reconcile per key at a time, back-off on error, requeueAfter,
// requeueOnLull. On a fake clock; "nothing else ran" is counted after shutdown, once the queue has drained.
import { WorkQueue, type ReconcileResult } from '../../operator/kube/queue.js';
import { FakeClock } from '../harness/clock.js';

/** Reconciles that wait until the test releases them, one by one or all. */
function gates() {
  const open: Array<() => void> = [];
  return {
    wait: () => new Promise<void>((resolve) => open.push(resolve)),
    releaseOne: () => open.shift()?.(),
    releaseAll: () => { for (const r of open.splice(0)) r(); },
  };
}

function harness(reconcile: (key: string) => Promise<ReconcileResult | void>, workers = 4) {
  const clock = new FakeClock();
  const runs: string[] = [];
  let idle = 0;
  const q = new WorkQueue({ workers, baseDelayMs: 10, maxDelayMs: 80 }, async (key) => { runs.push(key); return reconcile(key); }, undefined, clock);
  q.onIdle(() => { idle++; });
  /** Every key queued so far has run and nothing is running (delayed keys aside). */
  const drained = (what: string) => clock.until(what, () => q.idle && idle > 0, 0);
  return { q, runs, clock, drained, idles: () => idle };
}

describe('WorkQueue', () => {
  test('a key queued many times before a worker takes it runs once', async () => {
    const g = gates();
    const { q, runs, clock, drained } = harness(async (key) => { if (key === 'block') await g.wait(); }, 1);
    q.start();
    q.add('block');
    await clock.until('the worker to be busy', () => runs.length === 1, 0);
    for (let i = 0; i < 5; i++) q.add('ns/a');
    expect(q.depth).toBe(1);
    g.releaseAll();
    await drained('ns/a to run');
    await q.shutdown();
    expect(runs).toEqual(['block', 'ns/a']);
  });

  test('one reconcile per key at a time; a change meanwhile runs once more afterwards', async () => {
    const g = gates();
    let inFlight = 0;
    let maxInFlight = 0;
    const { q, runs, clock, drained } = harness(async () => {
      inFlight++; maxInFlight = Math.max(maxInFlight, inFlight);
      await g.wait();
      inFlight--;
    });
    q.start();
    q.add('ns/a');
    await clock.until('first run', () => runs.length === 1, 0);
    q.add('ns/a'); q.add('ns/a'); q.add('ns/a');
    g.releaseOne();
    await clock.until('second run', () => runs.length === 2, 0);
    g.releaseOne();
    await drained('the second run to end');
    await q.shutdown();
    expect(runs).toEqual(['ns/a', 'ns/a']);
    expect(maxInFlight).toBe(1);
  });

  test('different keys run concurrently', async () => {
    const g = gates();
    let inFlight = 0;
    let maxInFlight = 0;
    const { q, clock } = harness(async () => {
      inFlight++; maxInFlight = Math.max(maxInFlight, inFlight);
      await g.wait();
      inFlight--;
    }, 3);
    q.start();
    for (const k of ['a', 'b', 'c']) q.add(k);
    await clock.until('all three to overlap', () => maxInFlight === 3, 0);
    g.releaseAll();
    await q.shutdown();
  });

  test('errors retry with exponential back-off per key, reset by a success', async () => {
    const at: number[] = [];
    let failuresLeft = 3;
    const { q, clock, drained } = harness(async () => {
      at.push(clock.now());
      if (failuresLeft-- > 0) throw new Error('boom');
    });
    q.start();
    q.add('ns/flaky');
    await clock.until('four attempts', () => at.length === 4);
    await drained('the success');
    expect(at.slice(1).map((t, i) => t - at[i]!)).toEqual([10, 20, 40]);
    expect(q.failuresOf('ns/flaky')).toBe(0);
    expect(clock.pending).toBe(0); // no retry left after the success
    await q.shutdown();
    expect(at).toHaveLength(4);
  });

  test.each([[1, 10], [2, 20], [3, 40], [4, 80], [9, 80]])('backoff after %i failures is %i ms (capped)', (failures, ms) => {
    expect(new WorkQueue({ workers: 1, baseDelayMs: 10, maxDelayMs: 80 }, async () => undefined).backoffMs(failures)).toBe(ms);
  });

  test('requeueAfter brings a key back after the delay, not before', async () => {
    const at: number[] = [];
    const { q, clock } = harness(async () => { at.push(clock.now()); return at.length === 1 ? { requeueAfterMs: 40 } : undefined; });
    q.start();
    q.add('ns/deadline');
    await clock.until('the first run', () => at.length === 1, 0);
    await clock.advance(39);
    expect(at).toHaveLength(1);
    await clock.advance(1);
    await q.shutdown();
    expect(at).toEqual([0, 40]);
  });

  test('of two delays for one key the earlier wins: a later one neither postpones nor adds a run', async () => {
    const clock = new FakeClock();
    const q = new WorkQueue({ workers: 1, baseDelayMs: 10, maxDelayMs: 80 }, async () => undefined, undefined, clock);
    q.addAfter('x', 500);
    q.addAfter('x', 10); // earlier: replaces the 500 ms one
    q.addAfter('y', 10);
    q.addAfter('y', 500); // later: ignored
    expect(q.delayedCount).toBe(2);
    await clock.advance(10);
    expect(q.depth).toBe(2); // both due at 10 ms
    expect(q.delayedCount).toBe(0);
    expect(clock.pending).toBe(0); // and nothing left to fire again at 500 ms
  });

  test('requeueOnLull parks a key until wakeParked; onIdle says when the queue has drained', async () => {
    const { q, runs, clock, idles } = harness(async (key) => (key === 'ns/status' && runs.length === 1 ? { requeueAfterMs: 5_000, requeueOnLull: true } : undefined));
    q.start();
    q.add('ns/status');
    await clock.until('the first run and the drain', () => idles() === 1, 0);
    expect(q.idle).toBe(true);
    expect(runs).toEqual(['ns/status']);
    q.wakeParked();
    await clock.until('the parked key to run again', () => runs.length === 2 && idles() === 2, 0);
    q.wakeParked(); // parked once, woken once: nothing is queued by a second wake
    expect(q.depth).toBe(0);
    expect(q.idle).toBe(true);
    await q.shutdown();
    expect(runs).toEqual(['ns/status', 'ns/status']);
  });

  test('shutdown waits for the reconcile in flight and takes nothing new', async () => {
    const g = gates();
    let finished = false;
    const { q, runs, clock } = harness(async () => { await g.wait(); finished = true; });
    q.start();
    q.add('a');
    await clock.until('start', () => runs.length === 1, 0);
    let shutDown = false;
    const stopping = q.shutdown().then(() => { shutDown = true; });
    await clock.advance(0);
    expect(shutDown).toBe(false);
    g.releaseAll();
    await stopping;
    expect(finished).toBe(true);
    q.add('b');
    expect(q.depth).toBe(0);
  });
});
