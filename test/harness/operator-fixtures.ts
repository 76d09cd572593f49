// Manifests shared by the api unit tests and the operator e2e tests (a valid base and a table of invalid
// variants, each naming the field that the refusal must mention), and helpers that run the operator.
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { readFileSync, writeFileSync } from 'node:fs';
import { parse, stringify } from 'yaml';
import type { ControlPlane } from './kube.js';
import { firstPool, type JobManifest } from './manifests.js';
import { OVERRIDE_INVALID_CASES } from './pod-overrides.js';

export { EXAMPLES_DIR, readExample } from './examples.js';
export { firstPool, type Fields, type JobManifest, type PoolManifest } from './manifests.js';

/** A small valid CPU job to mutate. */
export function baseJob(name = 'bad'): JobManifest {
  return {
    apiVersion: 'rlkube.dev/v1alpha1',
    kind: 'RLJob',
    metadata: { name },
    spec: {
      model: { name: 'tiny', maxTokens: 8 },
      environment: { name: 'reverse', args: { minLength: 2, maxLength: 4, alphabet: 'abcd' } },
      algorithm: { groupSize: 4, batchSize: 8, maxSteps: 10 },
      sync: { mode: 'SequentialPull' },
      rollout: { pools: [{ name: 'cpu', replicas: 1, engine: { kind: 'tiny' } }] },
      learner: { nodes: 1, gpusPerNode: 0 },
    },
  };
}

/** A valid job with a Hugging Face model (vLLM pools, GPU learner). */
function hfJob(m: JobManifest): JobManifest {
  m.spec.model = { name: 'Qwen/Qwen2.5-0.5B-Instruct' };
  firstPool(m).engine = { kind: 'vllm', gpus: 1 };
  m.spec.learner.gpusPerNode = 1;
  return m;
}

export interface InvalidCase { name: string; field: string; mutate: (m: JobManifest) => JobManifest }

export const INVALID_CASES: InvalidCase[] = [
  { name: 'group of one', field: 'spec.algorithm.groupSize', mutate: (m) => { m.spec.algorithm.groupSize = 1; return m; } },
  { name: 'zero batch', field: 'spec.algorithm.batchSize', mutate: (m) => { m.spec.algorithm.batchSize = 0; return m; } },
  { name: 'zero learning rate', field: 'spec.algorithm.learningRate', mutate: (m) => { m.spec.algorithm.learningRate = 0; return m; } },
  { name: 'negative replicas', field: 'spec.rollout.pools[0].replicas', mutate: (m) => { firstPool(m).replicas = -1; return m; } },
  { name: 'unknown sync mode', field: 'spec.sync.mode', mutate: (m) => { m.spec.sync.mode = 'Eventually'; return m; } },
  { name: 'negative staleness', field: 'spec.sync.maxStaleness', mutate: (m) => { m.spec.sync.maxStaleness = -1; return m; } },
  { name: 'no task deliveries', field: 'spec.sync.maxTaskDeliveries', mutate: (m) => { m.spec.sync.maxTaskDeliveries = 0; return m; } },
  { name: 'unknown engine kind', field: 'spec.rollout.pools[0].engine.kind', mutate: (m) => { firstPool(m).engine.kind = 'tgi'; return m; } },
  { name: 'unknown environment', field: 'spec.environment.name', mutate: (m) => { m.spec.environment.name = 'chess'; return m; } },
  { name: 'pool name not a DNS label', field: 'spec.rollout.pools[0].name', mutate: (m) => { firstPool(m).name = 'CPU_pool'; return m; } },
  {
    name: 'duplicate pool names', field: 'spec.rollout.pools',
    mutate: (m) => { m.spec.rollout.pools.push({ ...firstPool(m) }); return m; },
  },
  { name: 'no pools', field: 'spec.rollout.pools', mutate: (m) => { m.spec.rollout.pools = []; return m; } },
  {
    name: 'task window below batch size', field: 'spec.sync.taskWindow',
    mutate: (m) => { m.spec.sync = { mode: 'AsyncPushPull', taskWindow: 4 }; return m; },
  },
  {
    name: 'vllm engine without GPUs', field: 'spec.rollout.pools[0].engine.gpus',
    mutate: (m) => { firstPool(hfJob(m)).engine.gpus = 0; return m; },
  },
  {
    name: 'the tiny engine for a Hugging Face model', field: 'spec.rollout.pools',
    mutate: (m) => { firstPool(hfJob(m)).engine = { kind: 'tiny' }; return m; },
  },
  { name: 'LoRA on the tiny model', field: 'spec.model.lora', mutate: (m) => { m.spec.model.lora = { rank: 8 }; return m; } },
  {
    name: 'GPUs asked through resources', field: 'spec.rollout.pools[0].engine.resources',
    mutate: (m) => { firstPool(m).engine.resources = { limits: { 'nvidia.com/gpu': 1 } }; return m; },
  },
  {
    name: 'multi-node CPU learner', field: 'spec.learner.gpusPerNode',
    mutate: (m) => { m.spec.learner.nodes = 2; return m; },
  },
  { name: 'job name too long', field: 'metadata.name', mutate: (m) => { m.metadata.name = 'j'.repeat(41); return m; } },
  { name: 'misspelt field', field: 'spec.algorithm.groupsize', mutate: (m) => { m.spec.algorithm.groupsize = 4; return m; } },
  ...OVERRIDE_INVALID_CASES,
];

export const yamlOf = (m: JobManifest): string => JSON.stringify(m);
export const parseYaml = (text: string): JobManifest => parse(text) as JobManifest;

// ---- operator processes and cluster helpers for the e2e suites ----

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

export function httpGet(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path, timeout: 2000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

export interface OperatorProcess {
  identity: string;
  port: number;
  child: ChildProcess;
  logs(): string;
  exited: Promise<number | null>;
  /** Sends a signal and waits for the exit. */
  stop(signal: NodeJS.Signals): Promise<number | null>;
  /** The value of the rlkube_operator_leader gauge (1 while leading). */
  leading(): Promise<boolean>;
}

/** Where `npx tsc -p operator/tsconfig.build.json` puts the operator's entry point. */
export const COMPILED_OPERATOR = 'dist/operator/operator/main.js';

/**
 * Runs the operator as a child process (as it runs in its pod) and waits for /healthz: operator/main.ts
 * through tsx, or with `compiled`, the JavaScript in COMPILED_OPERATOR (what the image runs).
 */
export async function startOperator(opts: {
  kubeconfig: string; natsUrl: string; identity: string; args?: string[]; logLevel?: string; compiled?: boolean;
  /** Environment beyond this process's (a Deployment's container env, say); the flags above win over it. */
  env?: Record<string, string>;
}): Promise<OperatorProcess> {
  const port = await freePort();
  let output = '';
  const entry = opts.compiled ? [COMPILED_OPERATOR] : ['--import', 'tsx', 'operator/main.ts'];
  const child = spawn(process.execPath, [...entry,
    '--kubeconfig', opts.kubeconfig, '--nats-url', opts.natsUrl, '--metrics-port', String(port), '--identity', opts.identity,
    '--lease-namespace', 'default', '--log-level', opts.logLevel ?? 'info', ...(opts.args ?? [])], {
    cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env, KUBERNETES_SERVICE_HOST: '' },
  });
  const onData = (d: Buffer) => { output = (output + d.toString()).slice(-5_000_000); };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const proc: OperatorProcess = {
    identity: opts.identity, port, child, exited,
    logs: () => output,
    stop: async (signal) => { if (child.exitCode === null && child.signalCode === null) child.kill(signal); return exited; },
    leading: async () => /^rlkube_operator_leader 1$/m.test((await httpGet(port, '/metrics')).body),
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`operator ${opts.identity} exited (${child.exitCode}):\n${output}`);
    try { if ((await httpGet(port, '/healthz')).status === 200) return proc; } catch { /* not listening yet */ }
    if (Date.now() > deadline) throw new Error(`operator ${opts.identity} did not serve /healthz in 30 s:\n${output}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** kubectl that throws with stderr on failure. */
export async function kube(cp: ControlPlane, args: string[], input?: string): Promise<string> {
  const r = await cp.kubectl(args, input);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

/** A live object as kubectl returns it: its metadata and spec are there (the client's types leave them optional). */
export type Live<T extends { metadata?: object; spec?: object }> = T & Required<Pick<T, 'metadata' | 'spec'>>;

export async function kubeJson<T>(cp: ControlPlane, args: string[]): Promise<T> {
  return JSON.parse(await kube(cp, [...args, '-o', 'json'])) as T;
}

/** Static PersistentVolumes for the learners' checkpoint claims (no provisioner in a kwok cluster). */
export function persistentVolumes(count: number, storageClassName: string, prefix: string): string {
  return JSON.stringify({
    apiVersion: 'v1', kind: 'List',
    items: Array.from({ length: count }, (_, i) => ({
      apiVersion: 'v1', kind: 'PersistentVolume',
      metadata: { name: `${prefix}-${i}` },
      spec: { capacity: { storage: '100Gi' }, accessModes: ['ReadWriteOnce'], hostPath: { path: `/tmp/${prefix}-${i}` }, storageClassName },
    })),
  });
}

/** A small valid CPU job (one pool of `replicas`, one learner). */
export function cpuJob(name: string, replicas = 1, extra: Record<string, unknown> = {}): JobManifest {
  const m = baseJob(name);
  firstPool(m).replicas = replicas;
  Object.assign(m.spec, extra);
  return m;
}

/** Writes a kubeconfig that authenticates to `cp` as a ServiceAccount (a token, as its pods would get). */
export async function writeServiceAccountKubeconfig(cp: ControlPlane, namespace: string, serviceAccount: string, file: string): Promise<void> {
  const token = (await kube(cp, ['create', 'token', serviceAccount, '-n', namespace, '--duration=1h'])).trim();
  const admin = parse(readFileSync(cp.kubeconfig, 'utf8'));
  writeFileSync(file, stringify({
    apiVersion: 'v1', kind: 'Config', clusters: admin.clusters, 'current-context': 'sa',
    contexts: [{ name: 'sa', context: { cluster: admin.clusters[0].name, user: 'sa' } }],
    users: [{ name: 'sa', user: { token } }],
  }));
}
