// Per-job NATS identities against a real nats-server in decentralized-auth mode (DESIGN.md §7). Invariants:
// a job's identity runs its own bus; it can read, publish, purge or delete nothing of another job, each
// refused by the server (a permissions violation it reports), not by our code; a revoked identity is cut off
// by the server, and the other jobs' identities are not.
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import { connect, credsAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { pino } from 'pino';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LearnerBus, LearnerLease, WorkerBus, connectBus, jobNames, provisionJob, type JobKey } from '../../bus/index.js';
import { JobIdentities, type IssuedIdentity } from '../../operator/nats-auth.js';
import { runSyntheticWorker, waitFor } from '../harness/groups.js';
import { startAuthNats, type AuthNatsServer } from '../harness/nats-auth.js';

const A: JobKey = { namespace: 'team-a', name: 'job' };
const B: JobKey = { namespace: 'team-b', name: 'job' };
const keyOf = (job: JobKey) => `${job.namespace}/${job.name}`;

let server: AuthNatsServer;
let operator: NatsConnection;
let identities: JobIdentities;
const issued = new Map<string, IssuedIdentity>();
const open: NatsConnection[] = [];

/** A connection as a job's pod makes it: the job's credentials, replies on the job's inbox prefix. */
async function connectAs(job: JobKey): Promise<NatsConnection> {
  const nc = await connect({
    servers: server.url,
    authenticator: credsAuthenticator(Buffer.from(issued.get(keyOf(job))!.creds)),
    inboxPrefix: jobNames(job).inboxPrefix,
    maxReconnectAttempts: 5,
    reconnectTimeWait: 100,
  });
  open.push(nc);
  return nc;
}

/** The server's refusal: the client reports the server's "Permissions Violation for <op> to <subject>". */
async function refused(what: string, operation: () => Promise<unknown>, subject: string): Promise<void> {
  const err = await operation().then(() => undefined, (e: unknown) => e as Error);
  if (err === undefined) throw new Error(`${what}: succeeded, expected the server to refuse it`);
  expect({ what, message: err.message }).toEqual({ what, message: expect.stringContaining(`Permissions Violation for Publish to "${subject}`) });
}

beforeAll(async () => {
  server = await startAuthNats({ maxPayload: 9 * 1024 * 1024 });
  operator = await connectBus({ servers: server.url, credsFile: server.operatorCreds, name: 'test-operator' });
  identities = new JobIdentities([server.url], { creds: server.operatorCreds, systemCreds: server.systemCreds, operatorSigningKey: server.operatorSigningKey }, pino({ level: 'warn' }));
  for (const job of [A, B]) {
    await provisionJob(operator, job, { taskAckWaitMs: 2000, groupAckWaitMs: 3000 });
    const id = identities.issue(job);
    issued.set(keyOf(job), id);
    await identities.grant(keyOf(job), id.signingKey);
  }
});

afterAll(async () => {
  await Promise.all(open.map((nc) => nc.close().catch(() => undefined)));
  await identities?.close();
  await operator?.close();
  await server?.stop();
});

test('a job identity runs its own bus: a learner and a worker over two SequentialPull steps', async () => {
  const [learnerNc, workerNc] = [await connectAs(A), await connectAs(A)];
  const learner = await LearnerBus.open(learnerNc, A, {
    mode: 'SequentialPull', batchSize: 4, maxStaleness: 1, taskWindow: 8, vocabSize: 64, maxGroupBytes: 1 << 20,
    taskPayload: (seq) => ({ prompt: `p${seq}` }), stallMs: 3000,
  });
  const worker = await WorkerBus.open(workerNc, A, { workerId: 'w0', pool: 'p' });
  const stop = new AbortController();
  const run = runSyntheticWorker(worker, jobNames(A).key, stop.signal);
  await learner.publishPolicy(0, { bytes: new Uint8Array([0]) });
  for (let step = 1; step <= 2; step++) {
    const batch = await learner.nextBatch(step, step - 1, () => ({ ok: true as const }));
    expect(batch.groups).toHaveLength(4);
    await learner.commit(batch);
    await learner.publishPolicy(step, { bytes: new Uint8Array([step]) });
  }
  stop.abort();
  const workerPublished = await run;
  expect(workerPublished).toBeGreaterThanOrEqual(8);
  // What a rollout agent does besides: watch the policy record, fetch its weights, heartbeat.
  const seen: number[] = [];
  const watch = await worker.watchPolicy((p) => seen.push(p.version));
  await waitFor('the policy watch to deliver version 2', () => seen.includes(2) || undefined, 10_000);
  await watch.stop();
  expect(Array.from((await worker.weightsOf((await worker.policy())!)) ?? [])).toEqual([2]);
  expect(await worker.heartbeat('Idle', 2, 8)).toBeGreaterThan(0);
  // The learner agent's lease and fenced records, and a policy file streamed in and out of the store.
  const lease = await LearnerLease.acquire(learnerNc, A, { holder: 'learner-0' });
  learner.control.fence(lease);
  const dir = mkdtempSync(join(tmpdir(), 'rlkube-auth-weights-'));
  const bytes = new Uint8Array(3 << 20).map((_, i) => i % 251);
  writeFileSync(join(dir, 'trainer.safetensors'), bytes);
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  const record = await learner.publishPolicy(3, { path: join(dir, 'trainer.safetensors'), digest });
  await worker.weightsToFile(record, join(dir, 'engine.safetensors'));
  expect(Buffer.compare(readFileSync(join(dir, 'engine.safetensors')), Buffer.from(bytes))).toBe(0);
  rmSync(dir, { recursive: true, force: true });
  expect(await learner.deadLettered()).toBe(0);
  // The drain purges the queued tasks and removes the unused groups (the job's own streams it may purge and delete
  // from), counting every group the worker published exactly once.
  expect(await learner.drain()).toBe(workerPublished);
  const { accepted, stale, rejected, leftOver } = learner.counts;
  expect([accepted, accepted + stale + rejected + leftOver]).toEqual([8, workerPublished]);
  await lease.release();
}, 60_000);

test("job A's identity can read, publish, purge or delete nothing of job B's: the server refuses each", async () => {
  const b = jobNames(B);
  // B's state, written by B's own identity: it must come through every attempt unchanged.
  const ncB = await connectAs(B);
  await jetstream(ncB).publish(b.tasksSubject(0), 'task of B');
  await (await new Kvm(ncB).open(b.controlBucket)).put('policy', 'B policy');
  await (await new Objm(ncB).open(b.weightsStore)).putBlob({ name: 'policy-v0' }, new Uint8Array([1, 2, 3]));

  const nc = await connectAs(A);
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  // read
  await refused('get B\'s KV key', async () => (await new Kvm(nc).open(b.controlBucket)).get('policy'), `$JS.API.STREAM.MSG.GET.KV_${b.controlBucket}`);
  await refused('pull B\'s tasks', async () => (await js.consumers.get(b.tasksStream, b.workersConsumer)).next({ expires: 1000 }), `$JS.API.CONSUMER.INFO.${b.tasksStream}.${b.workersConsumer}`);
  await refused('read B\'s weights', async () => (await new Objm(nc).open(b.weightsStore)).get('policy-v0'), `$JS.API.STREAM.INFO.OBJ_${b.weightsStore}`);
  await refused('read B\'s stream info', () => jsm.streams.info(b.trajStream), `$JS.API.STREAM.INFO.${b.trajStream}`);
  await refused('read B\'s dead letters', () => jsm.streams.info(b.deadStream), `$JS.API.STREAM.INFO.${b.deadStream}`);
  for (const subject of [`${b.trajWildcard}`, '_INBOX.>', `${b.inboxPrefix}.>`, '>']) {
    const sub = nc.subscribe(subject);
    const closedWith = await sub.closed;
    expect({ subject, error: (closedWith as Error | undefined)?.message }).toEqual({ subject, error: `Permissions Violation for Subscription to "${subject}"` });
  }
  // publish
  await refused('publish a task to B', () => js.publish(b.tasksSubject(0), 'forged', { timeout: 2000 }), b.tasksSubject(0));
  await refused('publish a group to B', () => js.publish(b.trajSubject(0), 'forged', { timeout: 2000 }), b.trajSubject(0));
  await refused('publish a dead letter to B', () => js.publish(b.deadSubject, 'forged', { timeout: 2000 }), b.deadSubject);
  await refused('put B\'s KV key', () => js.publish(`$KV.${b.controlBucket}.policy`, 'forged', { timeout: 2000 }), `$KV.${b.controlBucket}.policy`);
  // purge and delete
  await refused('purge B\'s tasks', () => jsm.streams.purge(b.tasksStream), `$JS.API.STREAM.PURGE.${b.tasksStream}`);
  await refused('delete B\'s trajectories stream', () => jsm.streams.delete(b.trajStream), `$JS.API.STREAM.DELETE.${b.trajStream}`);
  await refused('delete B\'s KV bucket', () => jsm.streams.delete(`KV_${b.controlBucket}`), `$JS.API.STREAM.DELETE.KV_${b.controlBucket}`);
  await refused('delete B\'s workers consumer', () => jsm.consumers.delete(b.tasksStream, b.workersConsumer), `$JS.API.CONSUMER.DELETE.${b.tasksStream}.${b.workersConsumer}`);
  await refused('delete a message of B', () => jsm.streams.deleteMessage(b.tasksStream, 1), `$JS.API.STREAM.MSG.DELETE.${b.tasksStream}`);

  // B's state, as the operator sees it: untouched.
  const opJsm = await jetstreamManager(operator);
  expect((await opJsm.streams.info(b.tasksStream)).state.messages).toBe(1);
  expect((await (await new Kvm(operator).open(b.controlBucket)).get('policy'))?.string()).toBe('B policy');
  expect(Array.from((await (await (await new Objm(operator).open(b.weightsStore)).getBlob('policy-v0')) ?? []))).toEqual([1, 2, 3]);
}, 60_000);

test('a revoked job identity is cut off by the server; the other job keeps its connection', async () => {
  const ncA = await connectAs(A);
  const ncB = await connectAs(B);
  const kvA = await new Kvm(ncA).open(jobNames(A).controlBucket);
  await kvA.put('alive', '1');
  const authErrors: string[] = [];
  void (async () => { for await (const s of ncA.status()) if (s.type === 'error') authErrors.push(String((s as { error?: Error }).error?.message)); })();

  await identities.revoke(keyOf(A));

  await waitFor('the server to disconnect the revoked identity for good', () => ncA.isClosed() || undefined, 20_000);
  expect(authErrors).toContain('Authorization Violation');
  await expect(kvA.get('alive')).rejects.toThrow(/closed/i);
  await expect(connect({ servers: server.url, authenticator: credsAuthenticator(Buffer.from(issued.get(keyOf(A))!.creds)), timeout: 5000 }))
    .rejects.toThrow('Authorization Violation');
  // B's identity is unaffected.
  expect(ncB.isClosed()).toBe(false);
  await jetstream(ncB).publish(jobNames(B).tasksSubject(0), 'still here');
}, 60_000);
