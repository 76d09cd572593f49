// The cluster benchmark: the same short reverse job, once `kubectl apply`d to the test cluster's real node (the
// chart's operator pod, NATS as a pod, engine/agent/trainer containers from the images built offline) and once
// through `rlkube run` on the same machine; seconds from submission to the first trained step in each, read the
// same way (the learner's progress on the bus). Needs root (the real node); images are built first, untimed.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { parseRLJobManifest, type RLJob } from '../api/index.js';
import { connectBus, watchLearnerProgress } from '../bus/index.js';
import { runJob } from '../cli/run.js';
import { projectPython } from '../local/python.js';
import { pollUntil } from '../test/harness/kube.js';
import { installRlkube, kube, kubeJson, reverseJob, startRealCluster } from '../test/harness/rlkube-cluster.js';

const STEPS = 6;
const NAME = 'reverse-bench';

async function onCluster(): Promise<{ state: string; steps: number; firstStepS: number }> {
  console.log('cluster: building images and starting the control plane with a real node');
  const cp = await startRealCluster('bench-cluster');
  try {
    await installRlkube(cp);
    const svc = await kubeJson<{ spec: { clusterIP: string } }>(cp, ['get', 'service', 'nats', '-n', 'rlkube-system']);
    const nc = await connectBus({ servers: `nats://${svc.spec.clusterIP}:4222`, name: 'bench-cluster' });
    try {
      let firstStepAt: number | undefined;
      const started = performance.now();
      await kube(cp, ['apply', '-f', '-'], JSON.stringify(reverseJob(NAME, STEPS)));
      // The watch opens once the operator has provisioned the job's bus (it fails before: retried); the moment of
      // the first step is taken in its callback, the poll only waits for it.
      let watching = false;
      await pollUntil(async () => {
        if (!watching) {
          await watchLearnerProgress(nc, { namespace: 'default', name: NAME }, (p) => {
            if (p.step >= 1) firstStepAt ??= performance.now();
          });
          watching = true;
        }
        return firstStepAt !== undefined;
      }, { timeoutMs: 600_000, intervalMs: 200, what: `the first step of ${NAME} on the real node` });
      const firstStepS = Number(((firstStepAt! - started) / 1000).toFixed(2));
      console.log(`cluster: kubectl apply → first trained step ${firstStepS} s`);
      const status = await pollUntil(async (observe) => {
        const st = (await kubeJson<RLJob>(cp, ['get', 'rljob', NAME])).status ?? {};
        observe(JSON.stringify({ step: st.step, summary: st.summary }));
        return (st.summary === 'Succeeded' || st.summary === 'Failed') && st;
      }, { timeoutMs: 600_000, intervalMs: 1_000, what: `${NAME} to finish on the real node` });
      console.log(`cluster: ${status.summary} at step ${status.step} after ${((performance.now() - started) / 1000).toFixed(1)} s`);
      return { state: String(status.summary), steps: Number(status.step), firstStepS };
    } finally {
      await nc.close();
    }
  } finally {
    await cp.stop();
  }
}

async function local(): Promise<number> {
  const job = parseRLJobManifest(JSON.stringify(reverseJob(NAME, STEPS)));
  const outDir = mkdtempSync(join(tmpdir(), 'rlkube-bench-cluster-local-'));
  const summary = await runJob({ job, outDir, python: projectPython(), log: pino({ level: 'warn' }), signal: new AbortController().signal });
  const first = summary.reward.curve[0];
  if (!first) throw new Error(`rlkube run of ${NAME} trained no step (${outDir})`);
  console.log(`local: rlkube run → first trained step ${first.t} s (${outDir})`);
  return first.t;
}

export async function run(): Promise<Record<string, number | string>> {
  const cluster = await onCluster();
  const localFirstStepS = await local();
  const ratio = Number((cluster.firstStepS / localFirstStepS).toFixed(2));
  console.log(`ratio (cluster / local, first trained step): ${ratio}`);
  return { state: cluster.state, steps: cluster.steps, apply_to_first_step_s: cluster.firstStepS, local_first_step_s: localFirstStepS, ratio };
}
