// A real Kubernetes control plane for tests: etcd, kube-apiserver, kube-controller-manager and kube-scheduler
// run as local processes (kwokctl's "binary" runtime), and kwok's controller simulates the nodes, so the real
// scheduler places pods on simulated GPU nodes and kwok marks them Running. The binaries are the pinned ones
// toolchain/kube/install.sh builds into $RLKUBE_HOME/bin (default ~/.cache/rlkube/bin); nothing is downloaded.
// Each control plane is isolated: its own kwok workdir and kubeconfig under a fresh temp dir, its own loopback
// ports.
import { spawn } from 'node:child_process';
import { constants as fsConstants, existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { access, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { toolchainBinDir } from '../../local/toolchain.js';
import { NODE_NET, primaryHostIp, startRealNode, type RealNode } from './node.js';

export interface Taint {
  key: string;
  value?: string;
  effect: string;
}

export interface GpuNodeSpec {
  name: string;
  /** nvidia.com/gpu capacity and allocatable. */
  gpus: number;
  labels?: Record<string, string>;
  taints?: Taint[];
}

export interface ControlPlaneOptions {
  /** Cluster name (a DNS label is derived from it); also names the temp dir. */
  name: string;
  gpuNodes?: GpuNodeSpec[];
  /** Plain nodes (no GPUs) named cpu-0, cpu-1, ...; default 1, or 0 with a real node. */
  cpuNodes?: number;
  /**
   * One real node `real-0` (test/harness/node.ts: containerd, kubelet, kube-proxy, CoreDNS) beside the simulated
   * ones, with these OCI archives imported into its containerd (the pause image among them). The simulated GPU
   * nodes are then tainted nvidia.com/gpu:NoSchedule, so that CPU pods land on the real node and GPU pods
   * (which tolerate the taint) on the simulated ones. Needs root; one real node per machine.
   */
  realNode?: { imageArchives: string[]; labels?: Record<string, string> };
  /** An audit policy (YAML) for the API server: events go to ControlPlane.auditLog, one JSON object per line. */
  auditPolicy?: string;
}

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ControlPlane {
  /** Path of an admin kubeconfig whose current context is this cluster. */
  kubeconfig: string;
  /** The API server URL (https://127.0.0.1:<port>). */
  server: string;
  /** Runs the pinned kubectl against this cluster; `input` goes to stdin (e.g. `apply -f -`). */
  kubectl(args: string[], input?: string): Promise<KubectlResult>;
  /** The real node, when asked for. */
  realNode?: RealNode;
  /** The API server's audit log (JSON lines), when an auditPolicy was given. */
  auditLog?: string;
  /** Deletes the cluster (stops every process) and removes its temp dir. Idempotent. */
  stop(): Promise<void>;
}

/** Capacity of every simulated node (GPU nodes add nvidia.com/gpu). */
export const NODE_CAPACITY = { cpu: '32', memory: '256Gi', pods: '110' } as const;

const REQUIRED_BINARIES = [
  'etcd',
  'kube-apiserver',
  'kube-controller-manager',
  'kube-scheduler',
  'kubectl',
  'kwok',
  'kwokctl',
] as const;

/** Absolute paths of the control-plane binaries; throws naming each missing one. */
export async function findKubeBinaries(): Promise<Record<(typeof REQUIRED_BINARIES)[number], string>> {
  const dir = toolchainBinDir();
  const found: Record<string, string> = {};
  const missing: string[] = [];
  for (const name of REQUIRED_BINARIES) {
    const p = path.join(dir, name);
    try {
      await access(p, fsConstants.X_OK);
      found[name] = p;
    } catch {
      missing.push(p);
    }
  }
  if (missing.length > 0) {
    throw new Error(
      `kube test harness: missing toolchain binar${missing.length === 1 ? 'y' : 'ies'} ${missing.join(', ')}; ` +
        'run `npm run setup` (or `bash toolchain/kube/install.sh`) to build them',
    );
  }
  return found as Record<(typeof REQUIRED_BINARIES)[number], string>;
}

export interface PollOptions {
  timeoutMs: number;
  intervalMs?: number;
  /** What is awaited, for the failure message ("pod x to be Running"). */
  what: string;
}

/**
 * Polls `probe` until it returns a value other than undefined/false, or throws after timeoutMs with a message
 * naming what was awaited, the last state the probe reported through `observe`, and the last error it threw.
 */
export async function pollUntil<T>(
  probe: (observe: (state: string) => void) => Promise<T | undefined | false>,
  opts: PollOptions,
): Promise<T> {
  const interval = opts.intervalMs ?? 250;
  const deadline = Date.now() + opts.timeoutMs;
  let last = '';
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await probe((s) => {
        last = s;
      });
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() >= deadline) {
      const detail = [last && `last state: ${last}`, lastErr !== undefined && `last error: ${String(lastErr)}`]
        .filter(Boolean)
        .join('; ');
      throw new Error(`timed out after ${opts.timeoutMs} ms waiting for ${opts.what}${detail ? ` (${detail})` : ''}`);
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

type RunResult = KubectlResult;

function run(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number; cwd?: string } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      env: opts.env ?? process.env,
      cwd: opts.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer =
      opts.timeoutMs !== undefined
        ? setTimeout(() => {
            timedOut = true;
            child.kill('SIGKILL');
          }, opts.timeoutMs)
        : undefined;
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => {
      if (timer) clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      const stderr =
        Buffer.concat(err).toString('utf8') +
        (timedOut ? `\n${path.basename(cmd)} killed after ${opts.timeoutMs} ms` : '');
      resolve({ code: code ?? (signal ? 128 : 1), stdout: Buffer.concat(out).toString('utf8'), stderr });
    });
    child.stdin.on('error', () => {
      /* the process may exit before reading stdin */
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** Distinct free loopback ports from the OS's ephemeral range (disjoint from kwokctl's own 10000–32766 scan). */
async function freePorts(n: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < n; i++) {
      const srv = net.createServer();
      servers.push(srv);
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(0, '127.0.0.1', () => resolve());
      });
      ports.push((srv.address() as net.AddressInfo).port);
    }
    return ports;
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
}

function dnsLabel(name: string): string {
  const s = name
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 40)
    .replace(/-+$/g, '');
  return s || 'rlkube';
}

function nodeManifest(name: string, labels: Record<string, string>, taints: Taint[], gpus: number): object {
  const resources: Record<string, string> = { ...NODE_CAPACITY };
  if (gpus > 0) resources['nvidia.com/gpu'] = String(gpus);
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name,
      // kwok-controller manages exactly the nodes carrying this annotation (and their pods).
      annotations: { 'kwok.x-k8s.io/node': 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
      labels: {
        'kubernetes.io/arch': 'amd64',
        'kubernetes.io/os': 'linux',
        'kubernetes.io/hostname': name,
        'kubernetes.io/role': 'agent',
        'node-role.kubernetes.io/agent': '',
        type: 'kwok',
        ...labels,
      },
    },
    spec: { taints: taints.map((t) => ({ key: t.key, ...(t.value !== undefined ? { value: t.value } : {}), effect: t.effect })) },
    // Nodes may be created with their status; kwok's node stages keep capacity/allocatable as given.
    status: { capacity: resources, allocatable: resources },
  };
}

function readClusterPids(clusterDir: string): number[] {
  const pidDir = path.join(clusterDir, 'pids');
  if (!existsSync(pidDir)) return [];
  const pids: number[] = [];
  for (const f of readdirSync(pidDir)) {
    try {
      const pid = Number.parseInt(readFileSync(path.join(pidDir, f), 'utf8').trim(), 10);
      if (pid > 0) pids.push(pid);
    } catch {
      /* removed meanwhile */
    }
  }
  return pids;
}

/**
 * True while `pid` runs. An exited process not yet reaped by init (a zombie) counts as gone once all its threads
 * are: a Go program's main thread turns zombie before its other threads have exited and closed its sockets.
 */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  if (process.platform !== 'linux') return true;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    if (state !== 'Z') return true;
    return readdirSync(`/proc/${pid}/task`).length > 1;
  } catch {
    return existsSync(`/proc/${pid}`);
  }
}

function killAll(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
}

// Clusters not yet stopped, so that a test process that exits without stop() (a crash between
// startControlPlane and afterAll) does not leave etcd/apiserver processes behind.
const live = new Map<string, string>(); // kwok cluster dir -> temp dir
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const [clusterDir, tmp] of live) {
      killAll(readClusterPids(clusterDir));
      rmSync(tmp, { recursive: true, force: true });
    }
  });
}

async function componentLogsTail(workdir: string, lines = 15): Promise<string> {
  const logDir = path.join(workdir, 'logs');
  let files: string[];
  try {
    files = (await readdir(logDir)).filter((f) => f.endsWith('.log'));
  } catch {
    return '(no component logs)';
  }
  const parts: string[] = [];
  for (const f of files.sort()) {
    const text = await readFile(path.join(logDir, f), 'utf8').catch(() => '');
    const tail = text.trimEnd().split('\n').slice(-lines).join('\n');
    parts.push(`--- ${f} (last ${lines} lines)\n${tail}`);
  }
  return parts.join('\n');
}

export interface StartTimeouts {
  /** kwokctl create cluster (processes started). */
  createMs?: number;
  /** API server ready, default service account, nodes Ready. */
  readyMs?: number;
}

/**
 * kwokctl settings for a cluster with a real node: the API server listens on every address and advertises this
 * machine's (pods reach it through the `kubernetes` Service, whose ClusterIP its certificate names), a Service
 * range the node's kube-proxy routes, and kwok-controller leaves alone the nodes it did not create.
 */
function realNodeConfig(hostIp: string): string[] {
  // override: replace an argument kwokctl passes (it appends nothing when the argument is absent)
  const arg = (key: string, value: string, override = false) =>
    [`  - key: ${key}`, `    value: ${JSON.stringify(value)}`, ...(override ? ['    override: true'] : [])];
  return [
    `  kubeApiserverCertSANs: [${JSON.stringify(NODE_NET.apiServiceIp)}, ${JSON.stringify(hostIp)}]`,
    'componentsPatches:',
    '- name: kube-apiserver',
    '  extraArgs:',
    ...arg('bind-address', '0.0.0.0', true),
    ...arg('advertise-address', hostIp),
    ...arg('service-cluster-ip-range', NODE_NET.serviceCidr),
    // logs/exec reach kubelet at the node's address: its name is not in this machine's DNS
    ...arg('kubelet-preferred-address-types', 'InternalIP,Hostname'),
    '- name: kube-controller-manager',
    '  extraArgs:',
    ...arg('service-cluster-ip-range', NODE_NET.serviceCidr),
    '- name: kwok-controller',
    '  extraArgs:',
    ...arg('manage-all-nodes', 'false', true),
    ...arg('manage-nodes-with-annotation-selector', 'kwok.x-k8s.io/node=fake'),
  ];
}

/** Starts an isolated control plane with simulated nodes; see ControlPlaneOptions. */
export async function startControlPlane(opts: ControlPlaneOptions & { timeouts?: StartTimeouts }): Promise<ControlPlane> {
  const bins = await findKubeBinaries();
  const name = dnsLabel(opts.name);
  const gpuNodes = opts.gpuNodes ?? [];
  const cpuNodes = opts.cpuNodes ?? (opts.realNode ? 0 : 1);
  const names = new Set<string>(Array.from({ length: cpuNodes }, (_, i) => `cpu-${i}`));
  for (const n of gpuNodes) {
    if (names.has(n.name)) throw new Error(`startControlPlane: duplicate node name ${n.name}`);
    if (!Number.isInteger(n.gpus) || n.gpus < 0) throw new Error(`startControlPlane: node ${n.name}: gpus must be a non-negative integer`);
    names.add(n.name);
  }
  const createMs = opts.timeouts?.createMs ?? 120_000;
  const readyMs = opts.timeouts?.readyMs ?? 120_000;

  const tmp = await mkdtemp(path.join(os.tmpdir(), `rlkube-kube-${name}-`));
  const kwokWorkdir = path.join(tmp, 'kwok'); // KWOK_WORKDIR: config, pki, pids, logs, etcd data
  const clusterDir = path.join(kwokWorkdir, 'clusters', name);
  const kubeconfig = path.join(tmp, 'kubeconfig');
  const configPath = path.join(tmp, 'kwokctl.yaml');
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    KWOK_WORKDIR: kwokWorkdir,
    // kwokctl resolves `kubectl` from PATH before its configured binary; make it the pinned one.
    PATH: `${toolchainBinDir()}${path.delimiter}${process.env.PATH ?? ''}`,
    KUBECONFIG: kubeconfig,
  };
  const kwokctl = (args: string[], timeoutMs: number): Promise<RunResult> =>
    run(bins.kwokctl, ['--config', configPath, ...args], { env, timeoutMs, cwd: tmp });

  let realNode: RealNode | undefined;
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      // The node first, while the API server still answers (it deletes its pods through it).
      const nodeStopped = realNode?.stop().then(() => undefined, (e: unknown) => e);
      const nodeErr = await nodeStopped;
      const pids = readClusterPids(clusterDir);
      try {
        if (existsSync(clusterDir)) {
          // Kills every component (SIGKILL, by pid file) and removes the cluster's workdir.
          await kwokctl(['delete', 'cluster', '--name', name, '--kubeconfig', kubeconfig], 60_000);
        }
        killAll(pids.filter(isAlive)); // in case kwokctl failed or was interrupted
        await pollUntil(async (observe) => {
          const alive = pids.filter(isAlive);
          observe(`still running: pids ${alive.join(', ')}`);
          return alive.length === 0;
        }, { timeoutMs: 30_000, intervalMs: 50, what: `the processes of cluster ${name} to exit` });
      } finally {
        live.delete(clusterDir);
        await rm(tmp, { recursive: true, force: true, maxRetries: 3 });
      }
      if (nodeErr) throw nodeErr;
    })();
    return stopped;
  };

  const kubectl = (args: string[], input?: string): Promise<KubectlResult> =>
    // Own discovery cache: ~/.kube/cache is keyed by host:port, and a later cluster may reuse this port.
    run(bins.kubectl, ['--kubeconfig', kubeconfig, '--cache-dir', path.join(tmp, 'kubectl-cache'), ...args], {
      env,
      input,
      timeoutMs: 60_000,
    });

  try {
    const [apiserver, etcd, etcdPeer, kcm, scheduler, kwokController] = await freePorts(6);
    const hostIp = opts.realNode ? primaryHostIp() : undefined;
    const config = [
      'kind: KwokctlConfiguration',
      'apiVersion: config.kwok.x-k8s.io/v1alpha1',
      'options:',
      '  runtime: binary',
      '  bindAddress: 127.0.0.1',
      '  quietPull: true',
      `  kubeApiserverPort: ${apiserver}`,
      `  etcdPort: ${etcd}`,
      `  etcdPeerPort: ${etcdPeer}`,
      `  kubeControllerManagerPort: ${kcm}`,
      `  kubeSchedulerPort: ${scheduler}`,
      `  kwokControllerPort: ${kwokController}`,
      `  etcdBinary: ${JSON.stringify(bins.etcd)}`,
      `  kubeApiserverBinary: ${JSON.stringify(bins['kube-apiserver'])}`,
      `  kubeControllerManagerBinary: ${JSON.stringify(bins['kube-controller-manager'])}`,
      `  kubeSchedulerBinary: ${JSON.stringify(bins['kube-scheduler'])}`,
      `  kwokControllerBinary: ${JSON.stringify(bins.kwok)}`,
      `  kubectlBinary: ${JSON.stringify(bins.kubectl)}`,
      ...(opts.auditPolicy ? [`  kubeAuditPolicy: ${JSON.stringify(path.join(tmp, 'audit-policy.yaml'))}`] : []),
      ...(hostIp ? realNodeConfig(hostIp) : []),
      '',
    ].join('\n');
    await writeFile(configPath, config);
    if (opts.auditPolicy) await writeFile(path.join(tmp, 'audit-policy.yaml'), opts.auditPolicy);

    live.set(clusterDir, tmp);
    installExitHook();
    const created = await kwokctl(['create', 'cluster', '--name', name, '--kubeconfig', kubeconfig], createMs);
    if (created.code !== 0) {
      throw new Error(
        `kwokctl create cluster ${name} failed (exit ${created.code}):\n${created.stderr || created.stdout}\n` +
          (await componentLogsTail(clusterDir)),
      );
    }

    const kc = parseYaml(await readFile(kubeconfig, 'utf8')) as {
      'current-context'?: string;
      contexts?: Array<{ name: string; context: { cluster: string } }>;
      clusters?: Array<{ name: string; cluster: { server: string } }>;
    };
    const ctx = kc.contexts?.find((c) => c.name === kc['current-context']);
    const server = kc.clusters?.find((c) => c.name === ctx?.context.cluster)?.cluster.server;
    if (!server) throw new Error(`kwokctl wrote no server for cluster ${name} into ${kubeconfig}`);

    const deadline = Date.now() + readyMs;
    const left = () => Math.max(1_000, deadline - Date.now());
    await pollUntil(
      async (observe) => {
        const r = await kubectl(['get', '--raw', '/readyz']);
        observe(`${r.stdout.trim()} ${r.stderr.trim()}`.slice(0, 300));
        return r.code === 0 && r.stdout.trim() === 'ok';
      },
      { timeoutMs: left(), what: `kube-apiserver of ${name} at ${server} to be ready` },
    );

    // With a real node, CPU pods must not land on simulated GPU nodes: those carry the GPU taint.
    const gpuTaints = (n: GpuNodeSpec): Taint[] => [
      ...(n.taints ?? []),
      ...(opts.realNode && !(n.taints ?? []).some((t) => t.key === 'nvidia.com/gpu') ? [{ key: 'nvidia.com/gpu', effect: 'NoSchedule' }] : []),
    ];
    const nodes = [
      ...gpuNodes.map((n) => nodeManifest(n.name, n.labels ?? {}, gpuTaints(n), n.gpus)),
      ...Array.from({ length: cpuNodes }, (_, i) => nodeManifest(`cpu-${i}`, {}, [], 0)),
    ];
    if (nodes.length > 0) {
      const applied = await kubectl(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: nodes }));
      if (applied.code !== 0) throw new Error(`creating nodes in ${name} failed: ${applied.stderr}`);
    }
    const nodeNames = nodes.map((n) => (n as { metadata: { name: string } }).metadata.name);

    await pollUntil(
      async (observe) => {
        const r = await kubectl(['get', 'nodes', '-o', 'json']);
        if (r.code !== 0) {
          observe(r.stderr.trim());
          return false;
        }
        const items = (JSON.parse(r.stdout) as { items: Array<{ metadata: { name: string }; status?: { conditions?: Array<{ type: string; status: string }> } }> }).items;
        const ready = new Set(
          items.filter((n) => n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')).map((n) => n.metadata.name),
        );
        const notReady = nodeNames.filter((n) => !ready.has(n));
        observe(`nodes not Ready: ${notReady.join(', ') || 'none'}`);
        return notReady.length === 0;
      },
      { timeoutMs: left(), what: `nodes ${nodeNames.join(', ')} of ${name} to be Ready (kwok-controller)` },
    );

    // Pods are admitted only once the service-account controller (kube-controller-manager) made "default".
    await pollUntil(
      async (observe) => {
        const r = await kubectl(['get', 'serviceaccount', 'default', '-n', 'default', '-o', 'name']);
        observe(r.stderr.trim());
        return r.code === 0;
      },
      { timeoutMs: left(), what: `serviceaccount default/default in ${name} (kube-controller-manager running)` },
    );

    if (opts.realNode && hostIp) {
      realNode = await startRealNode({
        name: 'real-0', kubeconfig, hostIp, labels: opts.realNode.labels, imageArchives: opts.realNode.imageArchives,
        workdir: tmp, kubectl, readyMs: left(),
      });
    }
    // kwokctl writes the API server's audit log beside the components' logs.
    return { kubeconfig, server, kubectl, realNode, stop, ...(opts.auditPolicy ? { auditLog: path.join(clusterDir, 'logs', 'audit.log') } : {}) };
  } catch (err) {
    const logs = await componentLogsTail(clusterDir).catch(() => '');
    await stop().catch(() => undefined);
    if (err instanceof Error && logs && !err.message.includes('--- ')) err.message += `\ncomponent logs:\n${logs}`;
    throw err;
  }
}
