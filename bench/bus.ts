// The bus benchmark: trajectory-group throughput against raw JetStream (same client, server and payload,
// same run), and the step rate of the two sync modes with synthetic generation and training times.
import { AckPolicy, DiscardPolicy, RetentionPolicy, StorageType, jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  LearnerBus,
  WorkerBus,
  connectBus,
  jobNames,
  provisionJob,
  teardownJob,
  type JobKey,
  type PolicyRecord,
  type SyncMode,
} from '../bus/index.js';
import { startNatsServer } from '../local/nats-server.js';
import { runSyntheticWorker } from '../test/harness/groups.js';
import { inlinePublishers, threadPublishers, type Publishers } from './bus-publishers.js';

const PUBLISHERS = 16; // concurrent publishers (see bus-publishers.ts), in both the raw and the bus runs
const FETCH = 64; // messages per pull, in both runs
const GROUP_SIZE = 8;

let jobs = 0;
const newJob = (): JobKey => ({ namespace: 'bench', name: `j${++jobs}` });

/** Called around the timed part of a run (to read CPU counters). */
interface Meter {
  start(): void;
  stop(): void;
}

/** Starts the publishers on their own; the consumer loop checks `failed()` so a publisher error ends the run. */
function startPublishing(publishers: Publishers): { done: Promise<number>; failed: () => unknown } {
  let failure: unknown;
  const done = publishers.go();
  done.catch((err: unknown) => (failure = err ?? new Error('publishers failed')));
  return { done, failed: () => failure };
}

/** Raw JetStream: N messages of `bytes` published by PUBLISHERS loops, pulled and acked by one consumer. */
async function rawRate(nc: NatsConnection, publishers: Publishers, bytes: number, count: number, meter?: Meter): Promise<number> {
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  const stream = `raw${++jobs}`;
  await jsm.streams.add({
    name: stream, subjects: [`${stream}.>`], retention: RetentionPolicy.Workqueue, storage: StorageType.File,
    discard: DiscardPolicy.New, max_msgs: 4096, max_msg_size: 8 << 20,
  });
  await jsm.consumers.add(stream, { durable_name: 'c', ack_policy: AckPolicy.Explicit });
  const consumer = await js.consumers.get(stream, 'c');
  await publishers.prepare({ kind: 'raw', subject: `${stream}.x`, bytes, count });
  meter?.start();
  const started = performance.now();
  const publishing = startPublishing(publishers);
  let consumed = 0;
  while (consumed < count) {
    if (publishing.failed()) throw publishing.failed();
    const messages = await consumer.fetch({ max_messages: Math.min(FETCH, count - consumed), expires: 2000 });
    for await (const msg of messages) {
      if (msg.data.byteLength !== bytes) throw new Error('raw payload corrupted');
      msg.ack();
      consumed++;
    }
  }
  await nc.flush();
  await publishing.done;
  const seconds = (performance.now() - started) / 1000;
  meter?.stop();
  await jsm.streams.delete(stream);
  return count / seconds;
}

/** The bus: the same count of groups of the same size, published by WorkerBus, judged and acked by LearnerBus. */
async function busRate(nc: NatsConnection, publishers: Publishers, bytes: number, count: number, meter?: Meter): Promise<number> {
  if (count % FETCH !== 0) throw new Error(`count ${count} is not a whole number of batches of ${FETCH}`);
  const job = newJob();
  await provisionJob(nc, job, { maxPendingTasks: count + 1, maxPendingGroups: 4096 });
  const learner = await LearnerBus.open(nc, job, {
    mode: 'AsyncPushPull', batchSize: FETCH, maxStaleness: 0, taskWindow: count, vocabSize: 64,
    maxGroupBytes: 8 << 20, taskPayload: (seq) => ({ seq }),
  });
  // Tasks exist before the clock starts: this measures the group path. Issued a few hundred at a time, so the
  // set-up does not leave thousands of settled requests in the old generation for the timed run's GC to sweep.
  for (let issued = 0; issued < count; issued += 256) await learner.issueTasks(Math.min(256, count - issued), 0);
  await publishers.prepare({ kind: 'bus', job, jobKey: jobNames(job).key, bytes, count, groupSize: GROUP_SIZE });
  meter?.start();
  const started = performance.now();
  const publishing = startPublishing(publishers);
  let step = 0;
  while ((step + 1) * FETCH <= count) {
    if (publishing.failed()) throw publishing.failed();
    const batch = await learner.nextBatch(++step, 0, () => ({ ok: true }));
    await learner.commit(batch);
  }
  await publishing.done;
  const seconds = (performance.now() - started) / 1000;
  meter?.stop();
  learner.close();
  await teardownJob(nc, job); // as the raw run deletes its stream: no run leaves work for the next
  return (step * FETCH) / seconds;
}

/** Steps per second of a mode with G ms of generation and T ms of training per step. */
async function stepRate(nc: NatsConnection, mode: SyncMode, generateMs: number, trainMs: number, steps: number) {
  const batchSize = 16;
  const workerCount = 4;
  const perGroupMs = (generateMs * workerCount) / batchSize;
  const job = newJob();
  await provisionJob(nc, job);
  const learner = await LearnerBus.open(nc, job, {
    mode, batchSize, maxStaleness: 1, taskWindow: 2 * batchSize, vocabSize: 64, maxGroupBytes: 8 << 20,
    taskPayload: (seq) => ({ seq }),
  });
  const controller = new AbortController();
  const workers: Array<Promise<number>> = [];
  for (let i = 0; i < workerCount; i++) {
    const bus = await WorkerBus.open(nc, job, { workerId: `w${i}`, pool: 'bench' });
    let loaded = 0;
    await bus.watchPolicy((record: PolicyRecord) => (loaded = Math.max(loaded, record.version)));
    // SequentialPull: generate with the task's version; AsyncPushPull: with the newest loaded policy.
    workers.push(
      runSyntheticWorker(bus, jobNames(job).key, controller.signal, {
        delayMs: perGroupMs,
        versionOf: (task) => (mode === 'SequentialPull' ? task.policyVersion : loaded),
      }),
    );
  }
  await learner.publishPolicy(0, { bytes: new Uint8Array([0]) });
  // One warm-up step, then the timed ones.
  const runStep = async (step: number) => {
    const batch = await learner.nextBatch(step, step - 1, () => ({ ok: true }));
    await new Promise((r) => setTimeout(r, trainMs));
    await learner.commit(batch);
    await learner.publishPolicy(step, { bytes: new Uint8Array([step % 256]) });
  };
  await runStep(1);
  console.log(`${mode}: warm-up step done, timing ${steps} steps`);
  const started = performance.now();
  for (let step = 2; step <= steps + 1; step++) await runStep(step);
  const seconds = (performance.now() - started) / 1000;
  controller.abort();
  await Promise.all(workers);
  learner.close();
  return { stepsPerSecond: steps / seconds, stepMs: (1000 * seconds) / steps, stale: learner.counts.stale };
}

export async function run(): Promise<Record<string, number>> {
  const server = await startNatsServer({ maxPayload: 8 << 20 });
  const nc = await connectBus({ servers: server.url, name: 'bench' });
  // Publishers in a worker thread on their own connection (as rollout workers are other processes), unless
  // BENCH_INLINE_PUBLISHERS=1 puts them on this thread's event loop and connection.
  const publishers = process.env.BENCH_INLINE_PUBLISHERS === '1'
    ? inlinePublishers(nc, PUBLISHERS)
    : await threadPublishers(server.url, PUBLISHERS);
  try {
    const figures: Record<string, number> = {};
    // Counts are whole batches (the learner takes FETCH groups per step), so both runs move the same messages.
    for (const [label, bytes, count] of [['16k', 16 * 1024, 94 * FETCH], ['256k', 256 * 1024, 19 * FETCH]] as const) {
      if (process.env.BENCH_SKIP_THROUGHPUT) break;
      // Interleave baseline and bus runs, alternating which goes first, so drift on a noisy machine hits both
      // alike; keep the best of each. One short untimed run of each first (JIT, server file store).
      await rawRate(nc, publishers, bytes, FETCH * Math.ceil(count / FETCH / 4));
      await busRate(nc, publishers, bytes, FETCH * Math.ceil(count / FETCH / 4));
      let raw = 0;
      let bus = 0;
      const cpu = { raw: Infinity, bus: Infinity }; // this process's CPU (all threads) per message, best run
      const measure = async (kind: 'raw' | 'bus') => {
        let cpuAtStart = process.cpuUsage();
        const meter = {
          start: () => void (cpuAtStart = process.cpuUsage()),
          stop: () => {
            const used = process.cpuUsage(cpuAtStart);
            cpu[kind] = Math.min(cpu[kind], (used.user + used.system) / count);
          },
        };
        const rate = await (kind === 'raw' ? rawRate : busRate)(nc, publishers, bytes, count, meter);
        if (kind === 'raw') raw = Math.max(raw, rate);
        else bus = Math.max(bus, rate);
      };
      for (let round = 0; round < Number(process.env.BENCH_ROUNDS ?? 5); round++) {
        for (const kind of round % 2 === 0 ? (['raw', 'bus'] as const) : (['bus', 'raw'] as const)) await measure(kind);
      }
      console.log(
        `payload ${label}: raw JetStream ${raw.toFixed(0)} msg/s, bus ${bus.toFixed(0)} groups/s, ratio ${(bus / raw).toFixed(3)}` +
          ` (client CPU per message: raw ${cpu.raw.toFixed(0)} µs, bus ${cpu.bus.toFixed(0)} µs)`,
      );
      figures[`raw_${label}_per_s`] = Math.round(raw);
      figures[`bus_${label}_per_s`] = Math.round(bus);
      figures[`ratio_${label}`] = Number((bus / raw).toFixed(3));
    }

    if (process.env.BENCH_SKIP_MODES) return figures;
    const generateMs = 400;
    const trainMs = 400;
    const steps = 10;
    const seq = await stepRate(nc, 'SequentialPull', generateMs, trainMs, steps);
    console.log(`SequentialPull: ${seq.stepMs.toFixed(0)} ms/step (G+T = ${generateMs + trainMs} ms)`);
    const asyncRun = await stepRate(nc, 'AsyncPushPull', generateMs, trainMs, steps);
    console.log(`AsyncPushPull: ${asyncRun.stepMs.toFixed(0)} ms/step (max(G,T) = ${Math.max(generateMs, trainMs)} ms), stale groups ${asyncRun.stale}`);
    const speedup = asyncRun.stepsPerSecond / seq.stepsPerSecond;
    const ideal = (generateMs + trainMs) / Math.max(generateMs, trainMs);
    Object.assign(figures, {
      generate_ms: generateMs,
      train_ms: trainMs,
      seq_step_ms: Math.round(seq.stepMs),
      async_step_ms: Math.round(asyncRun.stepMs),
      async_speedup: Number(speedup.toFixed(3)),
      async_speedup_of_theory: Number((speedup / ideal).toFixed(3)),
      seq_overhead: Number((seq.stepMs / (generateMs + trainMs) - 1).toFixed(3)),
    });
    return figures;
  } finally {
    await publishers.close();
    await nc.close();
    await server.stop();
  }
}
