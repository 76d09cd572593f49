// Policy weights through the object store against a real nats-server: what a rollout agent writes to its
// disk is byte for byte what the trainer wrote, and nothing else ever reaches a file an engine could load.
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Objm } from '@nats-io/obj';
import type { NatsConnection } from '@nats-io/transport-node';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BusError, LearnerBus, WorkerBus, connectBus, jobNames, provisionJob, type JobKey } from '../../bus/index.js';
import { startNats, type NatsServer } from '../harness/nats.js';

const MiB = 1024 * 1024;
let server: NatsServer;
let nc: NatsConnection;
let dir: string;
let jobs = 0;

beforeAll(async () => {
  // The bus's payload limit (README: max_payload ≥ 9 MiB), so chunks are as large as in production.
  server = await startNats({ maxPayload: 9 * MiB });
  nc = await connectBus({ servers: server.url });
  dir = mkdtempSync(join(tmpdir(), 'rlkube-weights-'));
});
afterAll(async () => {
  await nc?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function setUp() {
  const job: JobKey = { namespace: 'test', name: `weights${++jobs}` };
  await provisionJob(nc, job);
  const learner = await LearnerBus.open(nc, job, {
    mode: 'SequentialPull', batchSize: 1, maxStaleness: 0, taskWindow: 1, vocabSize: 64, maxGroupBytes: MiB, taskPayload: () => ({}),
  });
  const worker = await WorkerBus.open(nc, job, { workerId: 'w0', pool: 'test' });
  const engineDir = mkdtempSync(join(dir, 'engine-'));
  return { job, learner, worker, engineDir };
}

/** A trainer's policy file of `bytes` random bytes, and its digest as the trainer reports it. */
function trainerFile(name: string, bytes: number) {
  const path = join(dir, name);
  const content = randomBytes(bytes);
  writeFileSync(path, content);
  return { path, digest: `sha256:${createHash('sha256').update(content).digest('hex')}` };
}

async function digestOfFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return `sha256:${hash.digest('hex')}`;
}

test('a 24 MiB policy file round-trips through the store into an engine file with the same digest', async () => {
  const { learner, worker, engineDir } = await setUp();
  const policy = trainerFile('policy-v1.safetensors', 24 * MiB + 12345); // not a whole number of chunks
  const record = await learner.publishPolicy(1, policy);
  expect(record.digest).toBe(policy.digest);
  expect(record.location).toMatchObject({ kind: 'object', size: 24 * MiB + 12345 });
  expect(await worker.policy()).toEqual(record);

  const dest = join(engineDir, 'policy-v1.safetensors');
  await worker.weightsToFile(record, dest);
  expect(await digestOfFile(dest)).toBe(policy.digest);
  expect(readdirSync(engineDir)).toEqual(['policy-v1.safetensors']); // no temporary file left beside it
  learner.close();
});

test('a file that does not hash to the trainer\'s digest is never announced', async () => {
  const { job, learner, worker } = await setUp();
  const policy = trainerFile('policy-v2.safetensors', 3 * MiB);
  const wrong = `sha256:${'ab'.repeat(32)}`;
  await expect(learner.publishPolicy(2, { path: policy.path, digest: wrong })).rejects.toMatchObject({ reason: 'DigestMismatch' });
  expect(await worker.policy()).toBeUndefined();
  // Nor is it left in the store, where a worker could find it by name.
  const stored = await (await new Objm(nc).open(jobNames(job).weightsStore)).info('policy-v2');
  expect(stored?.deleted ?? true).toBe(true);
  learner.close();
});

test('a corrupted object is refused with DigestMismatch and leaves no file on the engine\'s disk', async () => {
  const { job, learner, worker, engineDir } = await setUp();
  const policy = trainerFile('policy-v3.safetensors', 10 * MiB);
  const record = await learner.publishPolicy(3, policy);

  // Corrupt the stored object: its last chunk replaced by the same bytes with one flipped (same size, same
  // chunk count, same place in the order), as a damaged store or a forged chunk would look.
  const names = jobNames(job);
  const info = await (await new Objm(nc).open(names.weightsStore)).info('policy-v3');
  const jsm = await jetstreamManager(nc);
  const last = await jsm.streams.getMessage(names.weightsStream, { last_by_subj: names.weightsChunks(info!.nuid) });
  const forged = Uint8Array.from(last!.data);
  forged[forged.length - 1]! ^= 0xff;
  await jsm.streams.deleteMessage(names.weightsStream, last!.seq);
  await jetstream(nc).publish(names.weightsChunks(info!.nuid), forged);

  const dest = join(engineDir, 'policy-v3.safetensors');
  const refused = await worker.weightsToFile(record, dest).then(() => undefined, (err: unknown) => err);
  expect(refused).toBeInstanceOf(BusError);
  expect(refused).toMatchObject({ reason: 'DigestMismatch' });
  expect(readdirSync(engineDir)).toEqual([]);
  learner.close();
});
