// The weights benchmark's 8 engines: each a worker thread with its own NATS connection, as each engine is a
// pod of its own in a job (its parsing, hashing and disk writes do not queue behind the other engines' on
// one event loop). The loopback baseline's 8 readers run in the same threads, the same way.
import { createWriteStream } from 'node:fs';
import { get } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { WorkerBus, connectBus, type JobKey, type PolicyRecord } from '../bus/index.js';

type Request =
  | { op: 'open'; job: JobKey }
  | { op: 'bus'; record: PolicyRecord; dest: string }
  | { op: 'http'; url: string; dest: string }
  | { op: 'close' };
type Reply = { ok: true } | { ok: false; error: string };

export interface Engine {
  /** Untimed: opens the job's WorkerBus on this engine's connection. */
  open(job: JobKey): Promise<void>;
  /** The policy through the bus into `dest` (streamed, digest-checked). */
  fetchFromBus(record: PolicyRecord, dest: string): Promise<void>;
  /** The same bytes by a plain HTTP GET into `dest`. */
  fetchOverHttp(url: string, dest: string): Promise<void>;
  close(): Promise<void>;
}

/** An engine in a worker thread (this module), connected to `natsUrl`. */
export async function startEngine(natsUrl: string, name: string): Promise<Engine> {
  // The thread loads this TypeScript module through tsx, as the main thread does.
  const bootstrap = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))})
    .then((tsx) => { tsx.register(); return import(${JSON.stringify(import.meta.url)}); })`;
  const worker = new Worker(bootstrap, { eval: true, workerData: { benchEngine: { natsUrl, name } } });
  let pending: { resolve: (reply: Reply) => void; reject: (err: unknown) => void } | undefined;
  const settle = (outcome: Reply | Error) => {
    const waiting = pending;
    pending = undefined;
    if (outcome instanceof Error) waiting?.reject(outcome);
    else waiting?.resolve(outcome);
  };
  worker.on('message', (reply: Reply) => settle(reply));
  worker.on('error', (err) => settle(err));
  worker.on('exit', (code) => settle(new Error(`engine thread ${name} exited (${code})`)));
  const call = async (request: Request | undefined): Promise<void> => {
    const reply = await new Promise<Reply>((resolve, reject) => {
      pending = { resolve, reject };
      if (request) worker.postMessage(request);
    });
    if (!reply.ok) throw new Error(`engine thread ${name}: ${reply.error}`);
  };
  await call(undefined); // connected
  return {
    open: (job) => call({ op: 'open', job }),
    fetchFromBus: (record, dest) => call({ op: 'bus', record, dest }),
    fetchOverHttp: (url, dest) => call({ op: 'http', url, dest }),
    close: async () => {
      await call({ op: 'close' });
      await worker.terminate();
    },
  };
}

if (!isMainThread && (workerData as { benchEngine?: unknown } | null)?.benchEngine) {
  const { natsUrl, name } = (workerData as { benchEngine: { natsUrl: string; name: string } }).benchEngine;
  const port = parentPort!;
  const reply = (r: Reply) => port.postMessage(r);
  const fail = (err: unknown) => reply({ ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  const nc = await connectBus({ servers: natsUrl, name });
  let bus: WorkerBus | undefined;
  const httpGet = (url: string, dest: string) => new Promise<void>((resolve, reject) => {
    get(url, (res) => pipeline(res, createWriteStream(dest)).then(resolve, reject)).on('error', reject);
  });
  port.on('message', (request: Request) => {
    const done = request.op === 'open' ? WorkerBus.open(nc, request.job, { workerId: name, pool: 'bench' }).then((b) => void (bus = b))
      : request.op === 'bus' ? bus!.weightsToFile(request.record, request.dest)
      : request.op === 'http' ? httpGet(request.url, request.dest)
      : nc.close();
    done.then(() => reply({ ok: true }), fail);
  });
  reply({ ok: true });
}
