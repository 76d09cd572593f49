// scratch experiments (to be removed)
import { AckPolicy, DiscardPolicy, RetentionPolicy, StorageType, jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { execSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { LearnerBus, WorkerBus, connectBus, jobNames, provisionJob, taskIdOf, encodeGroup, type JobRef } from '../bus/index.js';
import { startNatsServer } from '../local/nats-server.js';
import { syntheticGroup, tokensForBytes } from '../test/harness/groups.js';

const PUBLISHERS = 16, FETCH = 64, GROUP_SIZE = 8;
let jobs = 0;
const newJob = (): JobRef => ({ namespace: 'bench', name: `j${++jobs}` });
let serverPid = 0;
let last = { client: 0, user: 0, server: 0, wall: 0 };
const serverCpu = () => { const f = readFileSync(`/proc/${serverPid}/stat`, 'utf8').split(') ')[1]!.split(' '); return (Number(f[11]) + Number(f[12])) * 10; };

async function rawRate(nc: NatsConnection, bytes: number, count: number, opts: { msgId?: boolean; dedup?: boolean; encode?: boolean } = {}) {
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  const stream = `raw${++jobs}`;
  await jsm.streams.add({
    name: stream, subjects: [`${stream}.>`], retention: RetentionPolicy.Workqueue, storage: StorageType.File,
    discard: DiscardPolicy.New, max_msgs: 4096, max_msg_size: 8 << 20, ...(opts.dedup ? { duplicate_window: 600e9 } : {}),
  });
  await jsm.consumers.add(stream, { durable_name: 'c', ack_policy: AckPolicy.Explicit });
  const consumer = await js.consumers.get(stream, 'c');
  const payload = new Uint8Array(bytes).fill(7);
  const template = syntheticGroup({ job: 'x/y', taskSeq: 1, policyVersion: 0, groupSize: GROUP_SIZE, tokensPerCompletion: tokensForBytes(bytes, GROUP_SIZE) });
  const started = performance.now(); const c0 = process.cpuUsage(); const s0 = serverCpu();
  let next = 0;
  const publishers = Array.from({ length: PUBLISHERS }, async () => {
    while (next < count) {
      const seq = ++next;
      const data = opts.encode ? encodeGroup({ ...template, taskId: taskIdOf(seq), taskSeq: seq }) : payload;
      await js.publish(`${stream}.x`, data, opts.msgId ? { msgID: `t${seq}` } : undefined);
    }
  });
  let consumed = 0;
  while (consumed < count) {
    const messages = await consumer.fetch({ max_messages: Math.min(FETCH, count - consumed), expires: 2000 });
    for await (const msg of messages) { msg.ack(); consumed++; }
  }
  await nc.flush();
  await Promise.all(publishers);
  const seconds = (performance.now() - started) / 1000; const cc = process.cpuUsage(c0); last = { client: (cc.user + cc.system) / count, user: cc.user / count, server: (serverCpu() - s0) * 1000 / count, wall: seconds * 1e6 / count };
  await jsm.streams.delete(stream);
  return count / seconds;
}

async function busRate(nc: NatsConnection, bytes: number, count: number) {
  const job = newJob();
  await provisionJob(nc, job, { maxPendingTasks: count + 1, maxPendingGroups: 4096 });
  const learner = await LearnerBus.open(nc, job, { mode: 'AsyncPushPull', batchSize: FETCH, maxStaleness: 0, taskWindow: count, vocabSize: 64, maxGroupBytes: 8 << 20, taskPayload: (seq) => ({ seq }) });
  await learner.issueTasks(count, 0);
  const worker = await WorkerBus.open(nc, job, { workerId: 'bench', pool: 'bench' });
  const key = jobNames(job).key;
  const template = syntheticGroup({ job: key, taskSeq: 1, policyVersion: 0, groupSize: GROUP_SIZE, tokensPerCompletion: tokensForBytes(bytes, GROUP_SIZE) });
  const started = performance.now(); const c0 = process.cpuUsage(); const s0 = serverCpu();
  let next = 0;
  const publishers = Array.from({ length: PUBLISHERS }, async () => {
    while (next < count) { const seq = ++next; await worker.publish({ ...template, taskId: taskIdOf(seq), taskSeq: seq }); }
  });
  let step = 0;
  while ((step + 1) * FETCH <= count) { const batch = await learner.nextBatch(++step, 0, () => ({ ok: true })); await learner.commit(batch); }
  await Promise.all(publishers);
  const seconds = (performance.now() - started) / 1000; const cc = process.cpuUsage(c0); last = { client: (cc.user + cc.system) / count, user: cc.user / count, server: (serverCpu() - s0) * 1000 / count, wall: seconds * 1e6 / count };
  learner.close();
  return (step * FETCH) / seconds;
}

const server = await startNatsServer({ maxPayload: 8 << 20 });
serverPid = Number(execSync(`pgrep -f 'rlkube-${server.port}'`).toString().trim().split('\n')[0]);
const nc = await connectBus({ servers: server.url, name: 'bench' });
const variants: Record<string, (b: number, c: number) => Promise<number>> = {
  raw: (b, c) => rawRate(nc, b, c),
  rawId: (b, c) => rawRate(nc, b, c, { msgId: true, dedup: true }),
  rawEnc: (b, c) => rawRate(nc, b, c, { encode: true }),
  bus: (b, c) => busRate(nc, b, c),
};
const pick = (process.env.V ?? 'raw,rawId,rawEnc,bus').split(',');
for (const [label, bytes, count] of ([['16k', 16384, 6000], ['256k', 262144, 1200]] as const).filter(([l]) => !process.env.S || process.env.S === l)) {
  const best: Record<string, number> = {};
  const cpu: Record<string, string> = {};
  for (let r = 0; r < Number(process.env.R ?? 3); r++) for (const v of pick) {
    const rate = await variants[v]!(bytes, count);
    if (rate > (best[v] ?? 0)) { best[v] = rate; cpu[v] = `client ${last.client.toFixed(0)}µs/msg (u ${last.user.toFixed(0)}) server ${last.server.toFixed(0)}µs/msg wall ${last.wall.toFixed(0)}µs/msg`; }
  }
  for (const v of pick) console.log(label, v, best[v]!.toFixed(0), (best[v]! / best[pick[0]!]!).toFixed(3), cpu[v]);
}
await nc.close(); await server.stop();
process.exit(0);
