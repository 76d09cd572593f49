// Exactly one learner drives a job (bus/lease.ts) against a real nats-server: a second learner stands by
// while the first renews its lease, takes over when it dies, and a learner that lost the lease can write
// nothing more — the server refuses it.
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  BusError,
  ControlStore,
  LearnerBus,
  LearnerLease,
  WorkerBus,
  connectBus,
  emptyLearnerState,
  jobNames,
  provisionJob,
  type JobKey,
  type LearnerProgress,
} from '../../bus/index.js';
import { runSyntheticWorker, waitFor } from '../harness/groups.js';
import { startNats, type NatsServer } from '../harness/nats.js';

let server: NatsServer;
let nc: NatsConnection;
let jobs = 0;
const BATCH = 4;
const TTL_MS = 3000;

beforeAll(async () => {
  server = await startNats();
  nc = await connectBus({ servers: server.url });
});
afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

async function newJob(): Promise<JobKey> {
  const job = { namespace: 'test', name: `lease${++jobs}` };
  await provisionJob(nc, job, { taskAckWaitMs: 2000, groupAckWaitMs: 3000 });
  return job;
}

const progress = (step: number, message: string): LearnerProgress => ({
  v: 1, step, maxSteps: 8, state: 'Running', policyVersion: step, reward: null,
  groups: { accepted: 0, stale: 0, rejected: 0, published: 0 }, rejectedByReason: {}, updatedAt: new Date().toISOString(), message,
});

/** What the trainer's checkpoint holds (shared storage): the steps done, and who trained each on which groups. */
interface Trainer {
  step: number;
  trained: Array<{ step: number; by: string; taskIds: string[] }>;
}

/**
 * A learner agent without its trainer process: takes the lease (standing by while another holds it), fences
 * its records with it, resumes from the checkpoint, and trains step after step up to `maxSteps`.
 */
async function learner(id: string, conn: NatsConnection, job: JobKey, trainer: Trainer, maxSteps: number, afterStep?: (step: number) => Promise<void>) {
  const lease = await LearnerLease.acquire(conn, job, { holder: id, ttlMs: TTL_MS });
  const bus = await LearnerBus.open(conn, job, {
    mode: 'SequentialPull', batchSize: BATCH, maxStaleness: 0, taskWindow: 2 * BATCH, vocabSize: 64, maxGroupBytes: 1 << 20,
    taskPayload: (seq) => ({ prompt: `p${seq}` }), stallMs: 3000,
  });
  bus.control.fence(lease);
  lease.lost.addEventListener('abort', () => bus.close(), { once: true });
  await bus.resume(trainer.step);
  if ((await bus.control.policy())?.version !== trainer.step) await bus.publishPolicy(trainer.step, { bytes: new Uint8Array([trainer.step]) });
  while (trainer.step < maxSteps) {
    const step = trainer.step + 1;
    const batch = await bus.nextBatch(step, trainer.step, () => ({ ok: true }));
    lease.assertHeld(); // only the holder trains
    trainer.step = step;
    trainer.trained.push({ step, by: id, taskIds: batch.groups.map((g) => g.taskId) });
    await bus.publishPolicy(step, { bytes: new Uint8Array([step]) });
    await bus.commit(batch);
    await bus.control.putProgress(progress(step, id));
    await afterStep?.(step);
  }
  const published = await bus.drain();
  await lease.release();
  return { counts: bus.counts, published };
}

test('only the lease holder trains; when it dies the standby takes over, no step or group twice, counts add up', async () => {
  const job = await newJob();
  const stopWorkers = new AbortController();
  const workerBuses = await Promise.all([0, 1].map((i) => WorkerBus.open(nc, job, { workerId: `w${i}`, pool: 'test' })));
  const workers = workerBuses.map((bus) => runSyntheticWorker(bus, jobNames(job).key, stopWorkers.signal));
  const trainer: Trainer = { step: 0, trained: [] };
  const renewals = await countRenewals(job);

  const connA = await connectBus({ servers: server.url });
  const connB = await connectBus({ servers: server.url });
  let b: ReturnType<typeof learner> | undefined;
  const a = learner('learner-a', connA, job, trainer, 8, async (step) => {
    if (step === 1) {
      b = learner('learner-b', connB, job, trainer, 8);
      // A holds on while B stands by for longer than the ttl (five renewals, every ttl/4): a standby that
      // did not see the renewals would take over now, while A is alive, and train a step itself.
      const from = renewals.count();
      await waitFor('five renewals by learner-a', () => renewals.count() >= from + 5 || undefined);
    }
    if (step === 4) void connA.close(); // A dies (its process and connection gone) after its fourth step
  });

  await expect(a).rejects.toBeInstanceOf(Error); // its connection closed under it
  const result = await b!;
  stopWorkers.abort();
  await renewals.stop();
  await Promise.all(workers);

  expect(trainer.trained.map((t) => t.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  expect(trainer.trained.map((t) => t.by)).toEqual([...Array(4).fill('learner-a'), ...Array(4).fill('learner-b')]);
  const taskIds = trainer.trained.flatMap((t) => t.taskIds);
  expect(new Set(taskIds).size).toBe(8 * BATCH);
  expect(result.counts.accepted).toBe(8 * BATCH);
  expect(result.counts.accepted + result.counts.stale + result.counts.rejected + result.counts.leftOver).toBe(result.published);
  const control = await ControlStore.open(nc, job);
  expect((await control.progress())?.message).toBe('learner-b');
  await connB.close();
});

test('a restarted pod of the same name takes over at once, and the learner it replaced can write nothing more', async () => {
  const job = await newJob();
  const first = await connectBus({ servers: server.url });
  const second = await connectBus({ servers: server.url });
  // A ttl far longer than the test: had the new pod waited as a standby, acquire would not return in time.
  const ttlMs = 10 * 60_000;
  const old = await LearnerLease.acquire(first, job, { holder: 'learner-0', ttlMs });
  const oldControl = await ControlStore.open(first, job);
  oldControl.fence(old);
  await oldControl.putProgress(progress(1, 'old'));

  const restarted = await LearnerLease.acquire(second, job, { holder: 'learner-0', ttlMs, signal: AbortSignal.timeout(30_000) });
  expect(restarted.revision).toBeGreaterThan(old.revision);
  const newControl = await ControlStore.open(second, job);
  newControl.fence(restarted);
  await newControl.putProgress(progress(2, 'restarted'));

  // The old one has not noticed yet (its lease looks valid to it): the server refuses its write anyway.
  const refused = await oldControl.putProgress(progress(3, 'old again')).then(() => undefined, (err: unknown) => err);
  expect(refused).toBeInstanceOf(BusError);
  expect(refused).toMatchObject({ reason: 'LeaseLost' });
  expect(old.lost.aborted).toBe(true);
  await expect(oldControl.putLearnerState(emptyLearnerState())).rejects.toMatchObject({ reason: 'LeaseLost' });
  expect((await newControl.progress())?.message).toBe('restarted');
  expect(await newControl.learnerState()).toBeUndefined();

  // A different learner stands by while the lease is held (its ttl outlasts the test), and takes it at once
  // when the holder releases it on a clean stop.
  const standby = LearnerLease.acquire(first, job, { holder: 'learner-1', ttlMs, signal: AbortSignal.timeout(30_000) });
  await restarted.release();
  const next = await standby;
  expect(next.holder).toBe('learner-1');
  await next.release();
  await first.close();
  await second.close();
});

/** Counts the writes of the lease's renewal key (a KV watch). */
async function countRenewals(job: JobKey) {
  const kv = await new Kvm(nc).open(jobNames(job).controlBucket);
  const watch = await kv.watch({ key: 'learner.lease.renewal' });
  let count = 0;
  const done = (async () => {
    for await (const entry of watch) if (entry.operation === 'PUT') count++;
  })();
  return { count: () => count, stop: async () => { watch.stop(); await done; } };
}
