// The bus on a real 3-node JetStream cluster: every stream, bucket and store is replicated (R3), and losing a
// node — the trajectories stream's leader, SIGKILLed mid-run — costs a leader election, not data.
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { LearnerBus, WorkerBus, connectBus, jobNames, provisionJob, type Batch, type JobKey } from '../../bus/index.js';
import { runSyntheticWorker, waitFor } from '../harness/groups.js';
import { startNatsCluster, type NatsCluster } from '../harness/nats.js';

let cluster: NatsCluster;
let nc: NatsConnection;

beforeAll(async () => {
  cluster = await startNatsCluster(3);
  nc = await connectBus({ servers: cluster.urls });
});
afterAll(async () => {
  await nc?.close();
  await cluster?.stop();
});

const accept = () => ({ ok: true as const });

describe('on a 3-node JetStream cluster', () => {
  it('replicates every stream, bucket and store three times, and a SIGKILLed stream leader loses nothing', async () => {
    const job: JobKey = { namespace: 'test', name: 'replicated' };
    const names = jobNames(job);
    await provisionJob(nc, job, { taskAckWaitMs: 2000, groupAckWaitMs: 3000 });
    const jsm = await jetstreamManager(nc);
    for (const stream of [names.tasksStream, names.trajStream, names.deadStream, names.controlStream, names.weightsStream]) {
      expect({ stream, replicas: (await jsm.streams.info(stream)).config.num_replicas }).toEqual({ stream, replicas: 3 });
    }

    const learner = await LearnerBus.open(nc, job, { mode: 'AsyncPushPull', batchSize: 6, maxStaleness: 1, taskWindow: 12, vocabSize: 64, maxGroupBytes: 1 << 20, taskPayload: (seq) => ({ prompt: `p${seq}` }), stallMs: 3000 });
    const controller = new AbortController();
    // Each worker on its own connection, so some are connected to the node that dies and must fail over.
    const workerConnections = await Promise.all([0, 1, 2].map(() => connectBus({ servers: cluster.urls })));
    const workers = await Promise.all(workerConnections.map((c, i) => WorkerBus.open(c, job, { workerId: `w${i}`, pool: 'test' })));
    const running = workers.map((w) => runSyntheticWorker(w, names.key, controller.signal, { delayMs: 30 }));

    const batches: Batch[] = [];
    const step = async (n: number) => {
      const batch = await learner.nextBatch(n, n - 1, accept);
      batches.push(batch);
      await learner.commit(batch);
      await learner.publishPolicy(n, { bytes: new Uint8Array([n]) });
    };
    await learner.publishPolicy(0, { bytes: new Uint8Array([0]) });
    for (let n = 1; n <= 3; n++) await step(n);

    // The trajectories stream's leader goes, mid-run: the two others elect a new one and carry on.
    const leader = (await jsm.streams.info(names.trajStream)).cluster?.leader;
    const victim = cluster.nodes.find((node) => `rlkube-${node.port}` === leader);
    expect(victim).toBeDefined();
    await victim!.kill();
    for (let n = 4; n <= 6; n++) await step(n);
    // It comes back (same store) and catches up; the run goes on across it.
    await victim!.restart();
    await waitFor('the restarted node to be current on the trajectories stream', async () => {
      const info = await jsm.streams.info(names.trajStream).catch(() => undefined);
      const replicas = info?.cluster?.replicas ?? [];
      return replicas.length === 2 && replicas.every((r) => r.current) || undefined;
    }, 60_000);
    for (let n = 7; n <= 9; n++) await step(n);

    controller.abort();
    await Promise.all(running);
    await Promise.all(workerConnections.map((c) => c.close()));
    expect(batches.map((b) => b.groups.length)).toEqual(Array(9).fill(6));
    const ids = batches.flatMap((b) => b.groups.map((g) => g.taskId));
    expect(new Set(ids).size).toBe(ids.length);
    const published = await learner.drain();
    expect(learner.counts.accepted).toBe(54);
    expect(learner.counts.accepted + learner.counts.stale + learner.counts.rejected + learner.counts.leftOver).toBe(published);
    expect(learner.ledger.totals.accepted).toBe(learner.counts.accepted);
    expect((await learner.control.policy())?.version).toBe(9);
    learner.close();
  });
});
