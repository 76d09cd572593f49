// A development cluster on this machine, as the tests make it: control plane, one simulated GPU node and one real
// node (as root), holding the rlkube images built offline from images/*/Dockerfile. Prints the kubeconfig path and
// runs until Ctrl-C, then removes everything it added. README "On a cluster" uses it:
//   npx tsx test/harness/dev-cluster.ts   (as root)
import { CLUSTER_IMAGES } from './images.js';
import { startRealCluster } from './rlkube-cluster.js';

console.log(`building the images (${CLUSTER_IMAGES.join(', ')}) on offline bases and starting the cluster…`);
const cp = await startRealCluster('dev');
// volumes for learners' checkpoints (no provisioner on this cluster)
const pv = await cp.kubectl(['apply', '-f', '-'], cp.realNode!.persistentVolumes('checkpoints', 4));
if (pv.code !== 0) throw new Error(`creating the checkpoint volumes failed: ${pv.stderr}`);
console.log(`ready: export KUBECONFIG=${cp.kubeconfig}   (nodes: real-0 runs pods, gpu-0 is simulated; Ctrl-C stops)`);
await new Promise<void>((resolve) => {
  process.once('SIGINT', resolve);
  process.once('SIGTERM', resolve);
});
console.log('stopping: deleting pods, the node and the control plane…');
await cp.stop();
process.exit(0);
