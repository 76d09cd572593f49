// The trajectory bus against a real nats-server: each test names the DESIGN.md §2 invariant it protects.
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { spawn } from 'node:child_process';
import {
  ControlStore,
  LearnerBus,
  WorkerBus,
  controlDecodeFailures,
  WorkerKey,
  connectBus,
  encodeGroup,
  jobNames,
  provisionJob,
  watchLearnerProgress,
  type Batch,
  type BusLimits,
  type JobKey,
  type LearnerBusOptions,
  Settlement,
} from '../../bus/index.js';
import { alignedHeaders } from '../../bus/worker.js';
import { runSyntheticWorker, syntheticGroup, waitFor } from '../harness/groups.js';
import { startNats, type NatsServer } from '../harness/nats.js';


let server: NatsServer;
let nc: NatsConnection;
let jobCounter = 0;

beforeAll(async () => {
  server = await startNats();
  nc = await connectBus({ servers: server.url });
});
afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

const accept = () => ({ ok: true as const });

async function newJob(limits: Partial<BusLimits> = {}): Promise<JobKey> {
  const job = { namespace: 'test', name: `job${++jobCounter}` };
  await provisionJob(nc, job, { taskAckWaitMs: 2000, groupAckWaitMs: 3000, ...limits });
  return job;
}

function learnerOptions(overrides: Partial<LearnerBusOptions>): LearnerBusOptions {
  return {
    mode: 'SequentialPull',
    batchSize: 8,
    maxStaleness: 1,
    taskWindow: 16,
    vocabSize: 64,
    maxGroupBytes: 1 << 20,
    taskPayload: (seq) => ({ prompt: `p${seq}` }),
    stallMs: 3000,
    ...overrides,
  };
}

async function startWorkers(job: JobKey, count: number, options: Parameters<typeof runSyntheticWorker>[3] & { maxDeliveries?: number } = {}) {
  const controller = new AbortController();
  const buses = await Promise.all(
    Array.from({ length: count }, (_, i) => WorkerBus.open(nc, job, { workerId: `w${i}`, pool: 'test', ...(options.maxDeliveries ? { maxDeliveries: options.maxDeliveries } : {}) })),
  );
  const runs = buses.map((bus) => runSyntheticWorker(bus, jobNames(job).key, controller.signal, options));
  return { stop: async () => { controller.abort(); return (await Promise.all(runs)).reduce((a, b) => a + b, 0); } };
}

/** Runs `steps` learner steps (no trainer: the new policy is a few bytes) and returns the batches; `published`
 * hears of each new version once it is announced. */
async function runSteps(learner: LearnerBus, steps: number, firstStep = 1, published?: (version: number) => void): Promise<Batch[]> {
  const batches: Batch[] = [];
  for (let step = firstStep; step < firstStep + steps; step++) {
    const version = step - 1;
    if (step === firstStep) await learner.publishPolicy(version, { bytes: new Uint8Array([version]) });
    const batch = await learner.nextBatch(step, version, accept);
    batches.push(batch);
    await learner.commit(batch);
    await learner.publishPolicy(step, { bytes: new Uint8Array([step]) });
    published?.(step);
  }
  return batches;
}

/** Two steps with a first learner, then step 3 collected (and trained on) and that learner gone, not committed. */
async function learnerGoneAfterStep3() {
  const job = await newJob({ groupAckWaitMs: 1500 });
  const workers = await startWorkers(job, 2);
  const first = await LearnerBus.open(nc, job, learnerOptions({ batchSize: 4 }));
  await runSteps(first, 2);
  const step3 = await first.nextBatch(3, 2, accept);
  first.close();
  return { workers, first, step3, openAgain: () => LearnerBus.open(nc, job, learnerOptions({ batchSize: 4 })) };
}

/** An AsyncPushPull job (batch 6) with two workers taking `delayMs` per group, three steps done. */
async function asyncSteps(delayMs: number) {
  const job = await newJob();
  const learner = await LearnerBus.open(nc, job, learnerOptions({ mode: 'AsyncPushPull', batchSize: 6, taskWindow: 12 }));
  const workers = await startWorkers(job, 2, { delayMs });
  return { job, learner, workers, batches: await runSteps(learner, 3) };
}

/** Six full steps, no group used twice, and every group stored counted exactly once. */
async function expectSixStepsCountedOnce(learner: LearnerBus, batches: Batch[]) {
  expect(batches.map((b) => b.groups.length)).toEqual([6, 6, 6, 6, 6, 6]);
  expectNoGroupUsedTwice(batches);
  await learner.drain();
  expect(learner.counts.accepted).toBe(36);
  expectCountedOnce(learner, await learner.published());
  learner.close();
}

/** Messages stored in a stream of the job, and the learner consumer's groups delivered but not yet acked. */
async function streamMessages(stream: string): Promise<number> {
  return (await (await jetstreamManager(nc)).streams.info(stream)).state.messages;
}
async function groupsHeldByLearner(job: JobKey): Promise<number> {
  return (await (await jetstreamManager(nc)).consumers.info(jobNames(job).trajStream, jobNames(job).learnerConsumer)).num_ack_pending;
}

/** Every group published ends in exactly one count, and the per-worker ledger attributes every accepted one. */
function expectCountedOnce(learner: LearnerBus, published: number) {
  const { accepted, stale, rejected, leftOver } = learner.counts;
  expect({ accepted, stale, rejected, leftOver, sum: accepted + stale + rejected + leftOver }).toEqual({ accepted, stale, rejected, leftOver, sum: published });
  expect(learner.ledger.totals.accepted).toBe(accepted);
}

function expectNoGroupUsedTwice(batches: Batch[]) {
  const ids = batches.flatMap((b) => b.groups.map((g) => g.taskId));
  expect(new Set(ids).size).toBe(ids.length);
}

describe('provisioning', () => {
  it('makes every stream, bucket and store with one replica on a lone server (R3 on a cluster: bus-cluster.test.ts)', async () => {
    const names = jobNames(await newJob());
    const jsm = await jetstreamManager(nc);
    for (const stream of [names.tasksStream, names.trajStream, names.deadStream, names.controlStream, names.weightsStream]) {
      expect({ stream, replicas: (await jsm.streams.info(stream)).config.num_replicas }).toEqual({ stream, replicas: 1 });
    }
  });
});

describe('control records', () => {
  it('a progress record that does not decode is skipped by the watch, counted and told, and the next one delivered', async () => {
    const job = await newJob();
    const skipped = async () => (await controlDecodeFailures.get()).values.find((v) => v.labels.key === 'learner' && v.labels.reason === 'UnsupportedVersion')?.value ?? 0;
    const before = await skipped();
    const told: string[] = [];
    const seen: number[] = [];
    const watch = await watchLearnerProgress(nc, job, (p) => seen.push(p.step), { onUndecodable: (key, err) => told.push(`${key} ${err.reason}`) });
    // A writer one wire version ahead, then a record this one reads.
    await jetstream(nc).publish(jobNames(job).controlSubject('learner'), new TextEncoder().encode(JSON.stringify({ v: 2, step: 1 })));
    await (await ControlStore.open(nc, job)).putProgress({
      v: 1, step: 2, maxSteps: 3, state: 'Running', policyVersion: 2, reward: null, rejectedByReason: {}, updatedAt: '',
      groups: { accepted: 0, stale: 0, rejected: 0, leftOver: 0, published: 0 },
    });
    await waitFor('the valid record', () => seen.includes(2) || undefined);
    await watch.stop();
    expect({ told, seen, skipped: (await skipped()) - before }).toEqual({ told: ['learner UnsupportedVersion'], seen: [2], skipped: 1 });
  });
});

describe('SequentialPull', () => {
  it('uses exactly B groups per step, all generated by policy v at step v+1', async () => {
    const job = await newJob();
    const learner = await LearnerBus.open(nc, job, learnerOptions({ batchSize: 8 }));
    // One honest worker, one that answers the current step's tasks with the previous version's policy.
    const honest = await startWorkers(job, 2);
    const laggard = await WorkerBus.open(nc, job, { workerId: 'laggard', pool: 'test' });
    const controller = new AbortController();
    const lagging = runSyntheticWorker(laggard, jobNames(job).key, controller.signal, {
      versionOf: (task) => Math.max(0, task.policyVersion - 1),
    });
    const batches = await runSteps(learner, 5);
    controller.abort();
    await lagging;
    await honest.stop();

    for (const batch of batches) {
      expect(batch.groups).toHaveLength(8);
      expect(batch.groups.every((g) => g.policyVersion === batch.policyVersion)).toBe(true);
    }
    expectNoGroupUsedTwice(batches);
    expect(learner.counts.accepted).toBe(40);
    expect(learner.counts.stale).toBeGreaterThan(0); // the laggard's groups, counted, not used
    learner.close();
  });
});

describe('AsyncPushPull', () => {
  it('uses only groups within maxStaleness and counts the older ones as stale', async () => {
    const job = await newJob();
    const learner = await LearnerBus.open(nc, job, learnerOptions({ mode: 'AsyncPushPull', batchSize: 8, maxStaleness: 1, taskWindow: 24 }));
    // Workers whose loaded policy trails the learner by 0..3 versions, by task (so lags of 2 and 3, stale at
    // maxStaleness 1, come up at every step from the third on).
    let latest = 0;
    const workers = await startWorkers(job, 3, { versionOf: (task) => Math.max(0, latest - (task.seq % 4)) });
    const batches = await runSteps(learner, 8, 1, (version) => (latest = version));
    await workers.stop();
    for (const batch of batches) {
      expect(batch.groups).toHaveLength(8);
      for (const g of batch.groups) {
        expect(g.policyVersion).toBeGreaterThanOrEqual(batch.policyVersion - 1);
        expect(g.policyVersion).toBeLessThanOrEqual(batch.policyVersion);
      }
    }
    expectNoGroupUsedTwice(batches);
    expect(learner.counts.stale).toBeGreaterThan(0);
    // one version old: accepted, and counted as off-policy (the trainer importance-weights them)
    const oneVersionOld = batches.flatMap((b) => b.groups.filter((g) => g.policyVersion < b.policyVersion)).length;
    expect(oneVersionOld).toBeGreaterThan(0);
    expect(learner.counts.offPolicy).toBe(oneVersionOld);
    await learner.drain();
    expectCountedOnce(learner, await learner.published());
    learner.close();
  });

  it('keeps the streams bounded by the task window however fast workers are', async () => {
    const job = await newJob();
    const learner = await LearnerBus.open(nc, job, learnerOptions({ mode: 'AsyncPushPull', batchSize: 4, taskWindow: 12 }));
    const workers = await startWorkers(job, 4);
    await learner.publishPolicy(0, { bytes: new Uint8Array([0]) });
    const batch = await learner.nextBatch(1, 0, accept);
    // The learner now "trains"; the workers run until no task is left: then all they could make is stored.
    await waitFor('the workers to finish every issued task', async () => (await streamMessages(jobNames(job).tasksStream)) === 0);
    const groups = await streamMessages(jobNames(job).trajStream);
    expect(groups).toBeGreaterThan(batch.groups.length); // they ran ahead of the learner …
    expect(groups).toBeLessThanOrEqual(12); // … by no more than the window
    await learner.commit(batch);
    await workers.stop();
    learner.close();
  });
});

describe('failures cost time, not data', () => {
  it('loses no task when a worker process is killed with SIGKILL mid-task', async () => {
    const job = await newJob({ taskAckWaitMs: 1500 });
    const learner = await LearnerBus.open(nc, job, learnerOptions({ batchSize: 4 }));
    await learner.publishPolicy(0, { bytes: new Uint8Array([0]) });
    const collecting = learner.nextBatch(1, 0, accept);
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/integration/fixtures/claim-and-hang.ts', server.url, job.namespace, job.name], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const claimedTask = await waitFor('the doomed worker to claim a task', () => /claimed (\S+)/.exec(out)?.[1], 30_000);
    let collected = false;
    void collecting.then(() => (collected = true));
    const workers = await startWorkers(job, 1);
    await waitFor('the other worker to answer the 3 other tasks', async () => (await streamMessages(jobNames(job).trajStream)) === 3);
    // Two ack waits pass (the time is what is under test, not a synchronisation): the keep-alive must stop the
    // task from moving while its worker lives.
    await new Promise((r) => setTimeout(r, 3000));
    const consumer = await (await jetstreamManager(nc)).consumers.info(jobNames(job).tasksStream, jobNames(job).workersConsumer);
    expect(consumer.num_redelivered).toBe(0);
    expect(collected).toBe(false); // 3 of 4 tasks done; the 4th is still the doomed worker's
    child.kill('SIGKILL');
    const batch = await collecting;
    await workers.stop();
    expect(batch.groups.map((g) => g.taskId)).toContain(claimedTask);
    expect(batch.groups).toHaveLength(4);
    learner.close();
  });

  it('stores a re-published group once and never uses a redelivered group twice', async () => {
    const job = await newJob();
    const jobKey = jobNames(job).key;
    const key = WorkerKey.create();
    const worker = await WorkerBus.open(nc, job, { workerId: 'w', pool: 'test', key });
    const learner = await LearnerBus.open(nc, job, learnerOptions({ batchSize: 2 }));
    await learner.publishPolicy(0, { bytes: new Uint8Array([0]) });
    const collecting = learner.nextBatch(1, 0, accept);
    const first = await waitFor('a task', () => worker.claim(1000));
    const second = await waitFor('a task', () => worker.claim(1000));
    const group = syntheticGroup({ job: jobKey, taskSeq: first.task.seq, policyVersion: 0, workerId: 'w' });
    const ack1 = await worker.publish(group);
    const ack2 = await worker.publish(group); // a retry after a lost ack
    expect(ack2.duplicate).toBe(true);
    expect(ack2.seq).toBe(ack1.seq);
    await worker.publish(syntheticGroup({ job: jobKey, taskSeq: second.task.seq, policyVersion: 0, workerId: 'w' }));
    first.done();
    second.done();
    const batch = await collecting;
    expect(batch.groups.map((g) => g.taskSeq).sort()).toEqual([first.task.seq, second.task.seq].sort());
    await learner.commit(batch);
    // The same task's group again, signed, past JetStream's dedup (another message id): the learner turns it away.
    const js = jetstream(nc);
    const again = encodeGroup(group);
    await js.publish(jobNames(job).trajSubject(0), again, { headers: alignedHeaders('bypass-dedup', key.sign(again)) });
    await learner.publishPolicy(1, { bytes: new Uint8Array([1]) });
    const workers = await startWorkers(job, 1);
    const next = await learner.nextBatch(2, 1, accept);
    await workers.stop();
    expect(next.groups.map((g) => g.taskId)).not.toContain(group.taskId);
    expect(learner.counts.rejectedByReason.Duplicate).toBe(1);
    learner.close();
  });

  it('a restarted learner resumes without skipping or repeating a step', async () => {
    // Step 3: the trainer stores the step, then the learner dies before acking (no commit).
    const { workers, step3: lost, openAgain } = await learnerGoneAfterStep3();
    const second = await openAgain();
    // The trainer did step 3: the bus hands it back to be counted (with the trainer's exclusions, none here).
    const trained = await second.resume(3);
    expect(trained).toEqual({ stepIndex: 3, policyVersion: 2 });
    await second.commit(trained!);
    await second.publishPolicy(3, { bytes: new Uint8Array([3]) });
    const step4 = await second.nextBatch(4, 3, accept);
    await second.commit(step4);
    await workers.stop();
    const lostIds = new Set(lost.groups.map((g) => g.taskId));
    expect(step4.groups.some((g) => lostIds.has(g.taskId))).toBe(false);
    expect(step4.groups.every((g) => g.policyVersion === 3)).toBe(true);
    await second.drain();
    expect(second.counts.accepted).toBe(16); // steps 1–4, each counted once
    expectCountedOnce(second, await second.published());
    second.close();
  });

  it('a restarted learner counts once the groups whose acks died with the previous one', async () => {
    // Step 3 is trained on and committed, and that is written down, but its acks never reach the server: the
    // state the learner leaves when killed between queueing its acks and flushing them.
    const { workers, first, step3, openAgain } = await learnerGoneAfterStep3();
    const committed = new Settlement((await first.control.learnerState())!, (state) => first.control.putLearnerState(state));
    committed.commit(step3.stepIndex, new Map());
    await committed.save();
    const second = await openAgain();
    expect(await second.resume(3)).toBeUndefined();
    // Step 3's groups come back (ack wait 1.5 s) during the next steps or at the drain: counted once either way.
    const later = await runSteps(second, 2, 4);
    await workers.stop();
    expectNoGroupUsedTwice([step3, ...later]);
    await second.drain();
    expect(second.counts.accepted).toBe(20); // steps 1–5, each counted once
    expect(second.counts.rejectedByReason.Duplicate ?? 0).toBe(0);
    expectCountedOnce(second, await second.published());
    second.close();
  });

  it('a restarted learner counts once the rejected groups whose terms died with the previous one', async () => {
    const job = await newJob({ groupAckWaitMs: 1000 });
    const workers = await startWorkers(job, 2);
    const firstConnection = await connectBus({ servers: server.url });
    const first = await LearnerBus.open(firstConnection, job, learnerOptions({ batchSize: 4 }));
    // The first learner counts and writes down its rejections, then dies as it would term them: no term leaves it,
    // nothing after reaches the server.
    const internals = first as unknown as { settlement: Settlement; settleAll: () => Promise<void> };
    internals.settleAll = async () => {
      await internals.settlement.save();
      await firstConnection.close();
    };
    let rejections = 2;
    const rejectTwo = () => (rejections-- > 0 ? { ok: false as const, reason: 'RewardMismatch' as const, message: 'forged' } : { ok: true as const });
    await first.publishPolicy(0, { bytes: new Uint8Array([0]) });
    await expect(first.nextBatch(1, 0, rejectTwo)).rejects.toThrow();
    first.close();
    const second = await LearnerBus.open(nc, job, learnerOptions({ batchSize: 4 }));
    await second.resume(0);
    // The two rejected groups come back (ack wait 1 s): settled again, not counted again.
    const batches = await runSteps(second, 3);
    await workers.stop();
    expectNoGroupUsedTwice(batches);
    await second.drain();
    expect(second.counts.rejectedByReason.RewardMismatch).toBe(2);
    expect(second.counts.rejectedByReason.Duplicate ?? 0).toBe(0);
    expect(second.counts.accepted).toBe(12);
    expectCountedOnce(second, await second.published());
    second.close();
  });

  it('counts at the end of the run, as left over, the groups a killed learner held (their ack wait not yet over)', async () => {
    const job = await newJob({ groupAckWaitMs: 120_000 });
    const options = learnerOptions({ mode: 'AsyncPushPull', batchSize: 4, taskWindow: 8 });
    const workers = await startWorkers(job, 2);
    const first = await LearnerBus.open(nc, job, options);
    await first.publishPolicy(0, { bytes: new Uint8Array([0]) });
    const lost = await first.nextBatch(1, 0, accept);
    first.close(); // killed before training: its 4 groups stay delivered to it for the whole ack wait
    const second = await LearnerBus.open(nc, job, options);
    expect(await second.resume(0)).toBeUndefined();
    const [batch] = await runSteps(second, 1);
    await workers.stop();
    expectNoGroupUsedTwice([lost, batch!]);
    const published = await second.drain();
    expect(second.counts.accepted).toBe(4);
    expect(second.counts.leftOver).toBeGreaterThanOrEqual(lost.groups.length);
    expectCountedOnce(second, published);
    expect(await streamMessages(jobNames(job).trajStream)).toBe(0);
    second.close();
  });

  it('loses nothing when the nats-server restarts mid-run (file storage)', async () => {
    const { learner, workers, batches } = await asyncSteps(20);
    await server.restart();
    batches.push(...(await runSteps(learner, 3, 4)));
    await workers.stop();
    await expectSixStepsCountedOnce(learner, batches);
  });

  it('counts every group once when a SIGKILLed nats-server delivers groups again', async () => {
    const { job, learner, workers, batches } = await asyncSteps(150);
    const collecting = learner.nextBatch(4, 3, accept); // killed while step 4 is being collected
    await waitFor('the learner to hold a group of step 4', async () => (await groupsHeldByLearner(job)) > 0);
    await server.kill();
    await server.restart();
    const step4 = await collecting;
    await learner.commit(step4);
    batches.push(step4, ...(await runSteps(learner, 2, 5)));
    await workers.stop();
    await expectSixStepsCountedOnce(learner, batches);
  });

  it('counts once, and trains on, a group delivered again while the learner still judges it (past its ack wait)', async () => {
    const job = await newJob({ groupAckWaitMs: 1000 });
    const learner = await LearnerBus.open(nc, job, learnerOptions({ batchSize: 2 }));
    const workers = await startWorkers(job, 1);
    let slow = true;
    const slowFirstVerdict = async () => {
      if (slow) {
        slow = false;
        await new Promise((r) => setTimeout(r, 2500)); // e.g. a group check waiting on a policy digest lookup
      }
      return { ok: true as const };
    };
    await learner.publishPolicy(0, { bytes: new Uint8Array([0]) });
    const step1 = await learner.nextBatch(1, 0, slowFirstVerdict);
    await learner.commit(step1);
    await learner.publishPolicy(1, { bytes: new Uint8Array([1]) });
    const later = await runSteps(learner, 2, 2);
    await workers.stop();
    expect(step1.groups).toHaveLength(2);
    expectNoGroupUsedTwice([step1, ...later]);
    await learner.drain();
    expect(learner.counts.accepted).toBe(6);
    expect(learner.counts.rejectedByReason.Duplicate ?? 0).toBe(0);
    expectCountedOnce(learner, await learner.published());
    learner.close();
  });

  it('a stalled nats-server (SIGSTOP past the pull heartbeats and both ack waits) costs time, not the run', async () => {
    const { job, learner, workers, batches } = await asyncSteps(150);
    const collecting = learner.nextBatch(4, 3, accept);
    await waitFor('the learner to hold a group of step 4', async () => (await groupsHeldByLearner(job)) > 0);
    server.pause();
    // The stall's length is what is under test: longer than two missed pull heartbeats, the task ack wait (2 s)
    // and the group ack wait (3 s), so every client sees time-outs and the server redelivers on waking.
    await new Promise((r) => setTimeout(r, 4500));
    server.resume();
    const step4 = await collecting;
    await learner.commit(step4);
    batches.push(step4, ...(await runSteps(learner, 2, 5)));
    await workers.stop();
    await expectSixStepsCountedOnce(learner, batches);
  });
});

describe('SequentialPull after rejections', () => {
  it('issues one more task per rejected group, so the step still gets B groups of version v', async () => {
    const job = await newJob();
    const learner = await LearnerBus.open(nc, job, learnerOptions({ batchSize: 4 }));
    const workers = await startWorkers(job, 2);
    let rejections = 3;
    const rejectFirstThree = () =>
      rejections-- > 0 ? { ok: false as const, reason: 'RewardMismatch' as const, message: 'forged reward' } : { ok: true as const };
    await learner.publishPolicy(0, { bytes: new Uint8Array([0]) });
    const step1 = await learner.nextBatch(1, 0, rejectFirstThree);
    await learner.commit(step1);
    await learner.publishPolicy(1, { bytes: new Uint8Array([1]) });
    const step2 = await learner.nextBatch(2, 1, accept);
    await learner.commit(step2);
    await workers.stop();
    expect(step1.groups).toHaveLength(4);
    expect(step1.groups.every((g) => g.policyVersion === 0)).toBe(true);
    expect(step2.groups).toHaveLength(4);
    expect(step2.groups.every((g) => g.policyVersion === 1)).toBe(true);
    expectNoGroupUsedTwice([step1, step2]);
    expect(learner.counts.rejectedByReason.RewardMismatch).toBe(3);
    await learner.drain();
    expect(learner.counts.accepted).toBe(8);
    expectCountedOnce(learner, await learner.published());
    learner.close();
  });
});

describe('poison tasks', () => {
  it('a task that fails maxDeliveries deliveries goes to the dead letters, is counted, and the job goes on', async () => {
    const job = await newJob();
    const names = jobNames(job);
    const learner = await LearnerBus.open(nc, job, learnerOptions({ batchSize: 4, stallMs: 1000 }));
    // Every worker gives task 2 back (an engine that fails on it), three deliveries at most.
    const workers = await startWorkers(job, 2, { fails: (task) => task.seq === 2, maxDeliveries: 3 });
    const batches = await runSteps(learner, 3);
    await workers.stop();
    expect(batches.map((b) => b.groups.length)).toEqual([4, 4, 4]);
    expect(batches.flatMap((b) => b.groups.map((g) => g.taskSeq))).not.toContain(2);
    expect(await learner.deadLettered()).toBe(1);
    const dead = await (await jetstreamManager(nc)).streams.getMessage(names.deadStream, { last_by_subj: names.deadSubject });
    expect(dead?.json<{ taskId: string }>().taskId).toBe('t2');
    expect(dead?.header.get('Rlkube-Deliveries')).toBe('3');
    await learner.drain();
    expectCountedOnce(learner, await learner.published());
    learner.close();
  });
});

describe('malformed and forged messages', () => {
  it('rejects and counts 10 000 of them, and the consumer keeps serving', async () => {
    const job = await newJob({ maxPendingGroups: 20_000 });
    const key = jobNames(job).key;
    const js = jetstream(nc);
    const subject = jobNames(job).trajSubject(0);
    const learner = await LearnerBus.open(nc, job, learnerOptions({ batchSize: 1, vocabSize: 64 }));
    await learner.publishPolicy(0, { bytes: new Uint8Array([0]) });
    // Signed by the key registered for the worker they name (tester), so that what is checked after the signature is.
    const signer = WorkerKey.create();
    await WorkerBus.open(nc, job, { workerId: 'tester', pool: 'test', key: signer });
    const unsigned = encodeGroup(syntheticGroup({ job: key, taskSeq: 1, policyVersion: 0, workerId: 'tester' }));
    const kinds = [
      () => Uint8Array.from({ length: 64 }, () => Math.floor(Math.random() * 256)), // noise
      () => new Uint8Array(0), // empty
      () => encodeGroup(syntheticGroup({ job: 'other/job', taskSeq: 1, policyVersion: 0, workerId: 'tester' })), // wrong job
      () => encodeGroup(syntheticGroup({ job: key, taskSeq: 999_999, policyVersion: 0, workerId: 'tester' })), // a task never issued
      () => encodeGroup({ ...syntheticGroup({ job: key, taskSeq: 1, policyVersion: 0, workerId: 'tester' }), promptTokenIds: Int32Array.of(1, 9999) }), // token out of range
      () => encodeGroup(syntheticGroup({ job: key, taskSeq: 1, policyVersion: 7, workerId: 'tester' })), // a future policy
      () => encodeGroup(syntheticGroup({ job: key, taskSeq: 1, policyVersion: 0, workerId: 'tester' })).subarray(0, 40), // truncated
      () => new TextEncoder().encode('{"v":1,"job":"test/x"}'), // JSON, not a group
    ];
    const total = 10_000;
    for (let i = 0; i < total; i += 500) {
      await Promise.all(Array.from({ length: 500 }, (_, j) => {
        if ((i + j) % (kinds.length + 1) === kinds.length) return js.publish(subject, unsigned); // no signature
        const data = kinds[(i + j) % (kinds.length + 1)]!();
        return js.publish(subject, data, { headers: alignedHeaders(`m${i + j}`, signer.sign(data)) });
      }));
    }
    const workers = await startWorkers(job, 1);
    const batch = await learner.nextBatch(1, 0, accept);
    await workers.stop();
    expect(batch.groups).toHaveLength(1);
    expect(learner.counts.rejected).toBe(total);
    expect(Object.keys(learner.counts.rejectedByReason).sort()).toEqual(
      ['BadSignature', 'FutureVersion', 'Malformed', 'TokenOutOfRange', 'UnknownTask', 'WrongJob'].sort(),
    );
    learner.close();
  });
});
