// The bus benchmark's publishers. By default they run in a worker thread with their own NATS connection:
// in a real job the rollout workers are separate processes (pods) from the learner, so neither side's CPU
// slows the other. The raw JetStream baseline and the bus run both publish from here, the same way; only
// what is published differs (a filled payload with js.publish, or a trajectory group with WorkerBus.publish).
import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { WorkerBus, connectBus, encodeGroup, taskIdOf, type JobKey, type TrajectoryGroup } from '../bus/index.js';
import { syntheticGroup, tokensForBytes } from '../test/harness/groups.js';

export type PublishCommand =
  | { kind: 'raw'; subject: string; bytes: number; count: number }
  | { kind: 'bus'; job: JobKey; jobKey: string; bytes: number; count: number; groupSize: number };

export interface Publishers {
  /** Untimed set-up of the next run (opening the WorkerBus, building the payload). */
  prepare(command: PublishCommand): Promise<void>;
  /** Publishes `count` messages from `concurrency` concurrent loops; resolves when all are acknowledged. */
  go(): Promise<number>;
  close(): Promise<void>;
}

/** Publishers on the caller's event loop and connection. */
export function inlinePublishers(nc: NatsConnection, concurrency: number): Publishers {
  const js = jetstream(nc);
  let publishOne: ((seq: number) => Promise<unknown>) | undefined;
  let count = 0;
  return {
    async prepare(command) {
      count = command.count;
      if (command.kind === 'raw') {
        const payload = new Uint8Array(command.bytes).fill(7);
        publishOne = () => js.publish(command.subject, payload);
        return;
      }
      const worker = await WorkerBus.open(nc, command.job, { workerId: 'bench', pool: 'bench' });
      // Generation is not what is measured: one group's arrays, re-addressed to each task (encoded per publish).
      const template = groupOfSize(command.jobKey, command.groupSize, command.bytes, command.count);
      publishOne = (seq) => worker.publish({ ...template, taskId: taskIdOf(seq), taskSeq: seq });
    },
    async go() {
      const publish = publishOne!;
      let next = 0;
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (next < count) await publish(++next);
        }),
      );
      return next;
    },
    close: async () => undefined,
  };
}

/**
 * A synthetic group whose encoded size is at most `bytes` (header included) and as close to it as whole
 * tokens allow, for task numbers up to `maxSeq`: the bus carries the same payload size as the raw baseline.
 */
export function groupOfSize(jobKey: string, groupSize: number, bytes: number, maxSeq: number): TrajectoryGroup {
  const shape = (tokensPerCompletion: number) =>
    syntheticGroup({ job: jobKey, taskSeq: maxSeq, policyVersion: 0, groupSize, tokensPerCompletion });
  let tokens = tokensForBytes(bytes, groupSize);
  while (tokens > 1 && encodeGroup(shape(tokens)).byteLength > bytes) tokens--;
  return shape(tokens);
}

type Request = { op: 'prepare'; command: PublishCommand } | { op: 'go' } | { op: 'close' };
type Reply = { ok: true; value?: number } | { ok: false; error: string };

/** Publishers in a worker thread (this module), on their own connection to `url`. */
export async function threadPublishers(url: string, concurrency: number): Promise<Publishers> {
  // The thread loads this TypeScript module through tsx, as the main thread does.
  const bootstrap = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))})
    .then((tsx) => { tsx.register(); return import(${JSON.stringify(import.meta.url)}); })`;
  const worker = new Worker(bootstrap, { eval: true, workerData: { benchPublishers: { url, concurrency } } });
  let pending: { resolve: (reply: Reply) => void; reject: (err: unknown) => void } | undefined;
  const settle = (outcome: Reply | Error) => {
    const waiting = pending;
    pending = undefined;
    if (outcome instanceof Error) waiting?.reject(outcome);
    else waiting?.resolve(outcome);
  };
  worker.on('message', (reply: Reply) => settle(reply));
  worker.on('error', (err) => settle(err));
  worker.on('exit', (code) => settle(new Error(`publisher thread exited (${code})`)));
  const call = async (request: Request | undefined): Promise<number | undefined> => {
    const reply = await new Promise<Reply>((resolve, reject) => {
      pending = { resolve, reject };
      if (request) worker.postMessage(request);
    });
    if (!reply.ok) throw new Error(`publisher thread: ${reply.error}`);
    return reply.value;
  };
  await call(undefined); // connected
  return {
    prepare: async (command) => void (await call({ op: 'prepare', command })),
    go: async () => (await call({ op: 'go' })) ?? 0,
    close: async () => {
      await call({ op: 'close' });
      await worker.terminate();
    },
  };
}

if (!isMainThread && (workerData as { benchPublishers?: unknown } | null)?.benchPublishers) {
  const { url, concurrency } = (workerData as { benchPublishers: { url: string; concurrency: number } }).benchPublishers;
  const port = parentPort!;
  const reply = (r: Reply) => port.postMessage(r);
  const fail = (err: unknown) => reply({ ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  const nc = await connectBus({ servers: url, name: 'bench-publishers' });
  const publishers = inlinePublishers(nc, concurrency);
  port.on('message', (request: Request) => {
    if (request.op === 'prepare') publishers.prepare(request.command).then(() => reply({ ok: true }), fail);
    else if (request.op === 'go') publishers.go().then((value) => reply({ ok: true, value }), fail);
    else nc.close().then(() => reply({ ok: true }), fail);
  });
  reply({ ok: true });
}
