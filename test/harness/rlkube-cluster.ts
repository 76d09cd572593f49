// rlkube installed on a test cluster with a real node, as the README's "On a cluster" does it: NATS as a pod
// (examples/nats-dev.yaml), the operator from the Helm chart (its pod runs the operator image), and static
// volumes for the learners' checkpoints. Shared by the real-node e2e test and the cluster benchmark.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from '../../images/build.js';
import { CLUSTER_IMAGES, TEST_BASES, imageArchive, testImageArchives } from './images.js';
import { toolchainBinDir } from '../../local/toolchain.js';
import { startControlPlane, type ControlPlane } from './kube.js';
import { firstPool, kube, parseYaml, type JobManifest } from './operator-fixtures.js';

export { kube, kubeJson } from './operator-fixtures.js';

/** A control plane with one GPU node (simulated) and the real node, holding every rlkube image (built offline). */
export async function startRealCluster(name: string): Promise<ControlPlane> {
  const { archives } = testImageArchives(CLUSTER_IMAGES);
  return startControlPlane({
    name,
    gpuNodes: [{ name: 'gpu-0', gpus: 2 }],
    realNode: { imageArchives: [...archives, imageArchive(TEST_BASES.node)] },
  });
}

/** NATS and the operator (one replica: the real node has few cores), both Ready; `checkpoints` volumes for learners. */
export async function installRlkube(cp: ControlPlane, checkpoints = 1): Promise<void> {
  await kube(cp, ['apply', '-f', '-'], readFileSync(path.join(REPO_ROOT, 'examples/nats-dev.yaml'), 'utf8'));
  const helm = spawnSync(path.join(toolchainBinDir(), 'helm'), ['install', 'rlkube', 'charts/rlkube-operator', '--namespace', 'rlkube-system',
    '--kubeconfig', cp.kubeconfig, '--set', 'replicaCount=1'], { cwd: REPO_ROOT, encoding: 'utf8' });
  if (helm.status !== 0) throw new Error(`helm install failed (exit ${helm.status}): ${helm.stderr}`);
  await kube(cp, ['apply', '-f', '-'], cp.realNode!.persistentVolumes('checkpoints', checkpoints));
  await kube(cp, ['rollout', 'status', 'deployment/nats', '-n', 'rlkube-system', '--timeout=180s']);
  await kube(cp, ['rollout', 'status', 'deployment/rlkube-rlkube-operator', '-n', 'rlkube-system', '--timeout=180s']);
}

/** The reverse example, shorter and asking less CPU (the real node has the machine's few cores). */
export function reverseJob(name: string, maxSteps: number): JobManifest {
  const job = parseYaml(readFileSync(path.join(REPO_ROOT, 'examples/reverse-cpu.yaml'), 'utf8'));
  job.metadata.name = name;
  Object.assign(job.spec.algorithm, { maxSteps, batchSize: 16, groupSize: 4 });
  firstPool(job).engine.resources = { requests: { cpu: '100m', memory: '256Mi' } };
  job.spec.learner.resources = { requests: { cpu: '100m', memory: '512Mi' } };
  job.spec.learner.checkpoint = { size: '1Gi', everySteps: 2 };
  return job;
}
