// The docs say what the code does: the containers docs/operator.md lists for each child are the builders' own, and
// the counts it quotes are the code's (the CRD check is the model: prose that drifts fails here, not in a user's hands).
import { readFileSync } from 'node:fs';
import { parseRLJobManifest, type RLJob } from '../../api/index.js';
import type { BuildConfig } from '../../operator/controllers/builders.js';
import { buildStatefulSet } from '../../operator/controllers/learner.js';
import { buildLearner, buildPools } from '../../operator/controllers/rljob.js';
import { buildDeployment } from '../../operator/controllers/rolloutpool.js';
import { readExample } from '../harness/examples.js';
import { INVALID_CASES } from '../harness/operator-fixtures.js';

const operatorDoc = readFileSync('docs/operator.md', 'utf8');
const config: BuildConfig = { images: { agent: 'agent:1', trainer: 'trainer:1', vllm: 'vllm:1' }, natsUrl: 'nats://nats:4222' };
const job: RLJob = { ...parseRLJobManifest(readExample('reverse-cpu.yaml')), metadata: { name: 'docs', namespace: 'team', uid: 'job-uid', generation: 1 } };
const served = <T extends { metadata: object }>(obj: T): T => ({ ...obj, metadata: { ...obj.metadata, uid: 'child-uid', generation: 1 } });

/** The backticked container names in the controller table's row of `kind` ("… with containers `a`, `b`, `c` …"). */
function documentedContainers(kind: string): string[] {
  const row = operatorDoc.split('\n').find((line) => line.startsWith(`| ${kind} |`));
  const listed = row && /with containers ((?:`[a-z-]+`(?:, )?)+)/.exec(row);
  if (!listed) throw new Error(`docs/operator.md: no "with containers …" in the ${kind} row`);
  return [...listed[1]!.matchAll(/`([a-z-]+)`/g)].map((m) => m[1]!);
}

describe('docs/operator.md', () => {
  test('the RolloutPool row lists the containers of the pool Deployment', () => {
    const deployment = buildDeployment(served(buildPools(job)[0]!), job, config);
    expect(documentedContainers('RolloutPool')).toEqual(deployment.spec!.template.spec!.containers.map((c) => c.name));
  });

  test('the Learner row lists the containers of the learner StatefulSet', () => {
    const statefulSet = buildStatefulSet(served(buildLearner(job)), job, config);
    expect(documentedContainers('Learner')).toEqual(statefulSet.spec!.template.spec!.containers.map((c) => c.name));
  });

  test('the count of refused manifests is the number of INVALID_CASES', () => {
    const quoted = /(\d+) kinds of bad manifest/.exec(operatorDoc);
    expect(Number(quoted?.[1])).toBe(INVALID_CASES.length);
  });
});
