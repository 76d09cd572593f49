// A real node for the test cluster: containerd (CRI, runc), a CNI bridge, kubelet, kube-proxy and CoreDNS run as
// local processes beside kwok's simulated nodes, so pods scheduled onto it really start. Everything it adds to the
// machine (processes, mounts, the bridge, iptables chains, sysctls, cgroups, its state folder) is listed here and
// removed by stop(), also when start-up failed half-way; a process exit hook does the same for a crashed test.
//
// One real node per machine at a time: kube-proxy (iptables mode) owns the host's KUBE-* chains, and a second
// kube-proxy would rewrite them; a lock file says who holds the node.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { toolchainBinDir } from '../../local/toolchain.js';
import { pollUntil, type KubectlResult } from './kube.js';

/** Addresses of the real node's networks (fixed: one real node per machine). */
export const NODE_NET = {
  bridge: 'rlkube0',
  podSubnet: '10.244.0.0/24',
  /** The bridge's address: pods' gateway, and where CoreDNS answers (the pods' nameserver). */
  gateway: '10.244.0.1',
  serviceCidr: '10.96.0.0/16',
  /** ClusterIP of the `kubernetes` Service, in the API server's certificate. */
  apiServiceIp: '10.96.0.1',
  clusterDomain: 'cluster.local',
} as const;

export const REAL_NODE_BINARIES = ['kubelet', 'kube-proxy', 'containerd', 'containerd-shim-runc-v2', 'ctr', 'coredns'] as const;
const HOST_PROGRAMS = ['runc', 'iptables', 'ip', 'mount', 'umount'] as const;
export const CNI_BIN_DIR = '/usr/lib/cni';
const LOCK = '/run/rlkube-realnode.lock';
const CGROUP_ROOT = '/sys/fs/cgroup';
const CGROUP_NAME = 'rlkube-node';
/** Image containerd uses for pod sandboxes (built by test/harness/images.ts from toolchain/kube/pause). */
export const PAUSE_IMAGE = 'localhost/rlkube-test/pause:1';
/** Sysctls the node needs; stop() puts back what was there. */
const SYSCTLS: Record<string, string> = {
  'net/ipv4/ip_forward': '1',
  // Pod-to-Service traffic between two pods on the same bridge must pass kube-proxy's iptables DNAT.
  'net/bridge/bridge-nf-call-iptables': '1',
};

export interface RealNodeOptions {
  /** Node name (also its hostname label). */
  name: string;
  /** Admin kubeconfig of the cluster (kubelet, kube-proxy and CoreDNS use it). */
  kubeconfig: string;
  /** Address of this machine that pods reach the API server at (its advertise address). */
  hostIp: string;
  /** Extra node labels and taints (registered by kubelet). */
  labels?: Record<string, string>;
  /** OCI archives to import into the node's containerd before it registers (the pause image is among them). */
  imageArchives: string[];
  /** Parent of the node's state folder. */
  workdir: string;
  kubectl(args: string[], input?: string): Promise<KubectlResult>;
  readyMs?: number;
}

export interface RealNode {
  name: string;
  /** The node's state folder (containerd, kubelet, CNI, logs). */
  dir: string;
  /** Runs `ctr` against the node's containerd (namespace k8s.io). */
  ctr(args: string[]): KubectlResult;
  /** Imports an OCI archive into the node's containerd. */
  importImage(archive: string): void;
  /** The tail of each component's log, for failure messages. */
  logsTail(lines?: number): string;
  /**
   * Static hostPath PersistentVolumes `<prefix>-0..` in folders of the node's state folder (world-writable: a
   * hostPath volume takes no fsGroup, and pods run as non-root), as a `kubectl apply` List.
   */
  persistentVolumes(prefix: string, count: number, storageClassName?: string, size?: string): string;
  /** Deletes the node's pods, stops its processes and removes everything it added to the machine. Idempotent. */
  stop(): Promise<void>;
}

/** Absolute paths of the real node's binaries; throws naming what is missing and how to get it. */
export function findNodeBinaries(): Record<(typeof REAL_NODE_BINARIES)[number], string> {
  const dir = toolchainBinDir();
  const found: Record<string, string> = {};
  const missing: string[] = [];
  for (const name of REAL_NODE_BINARIES) {
    const p = path.join(dir, name);
    if (existsSync(p)) found[name] = p;
    else missing.push(p);
  }
  for (const prog of HOST_PROGRAMS) {
    if (spawnSync('sh', ['-c', `command -v ${prog}`]).status !== 0) missing.push(`${prog} (apt)`);
  }
  if (!existsSync(path.join(CNI_BIN_DIR, 'bridge'))) missing.push(`${CNI_BIN_DIR}/bridge (apt containernetworking-plugins)`);
  if (missing.length > 0) {
    throw new Error(`real node: missing ${missing.join(', ')}; run \`npm run setup\` (as root) to install them`);
  }
  return found as Record<(typeof REAL_NODE_BINARIES)[number], string>;
}

/** Why this machine cannot run a real node, or undefined when it can (root, Linux, cgroups mounted). */
export function realNodeUnsupported(): string | undefined {
  if (process.platform !== 'linux') return `a real node needs Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'a real node needs root (kubelet, containerd, iptables, mounts)';
  if (!existsSync(path.join(CGROUP_ROOT, 'memory')) && !existsSync(path.join(CGROUP_ROOT, 'cgroup.controllers'))) {
    return `no cgroup hierarchy under ${CGROUP_ROOT}`;
  }
  return undefined;
}

async function freePort(host: string): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, host, () => resolve());
  });
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

function sh(cmd: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv } = {}): KubectlResult {
  const r = spawnSync(cmd, args, { input: opts.input, env: opts.env, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status ?? 1, stdout: r.stdout ?? '', stderr: (r.stderr ?? '') + (r.error ? String(r.error) : '') };
}

function must(cmd: string, args: string[], what: string): string {
  const r = sh(cmd, args);
  if (r.code !== 0) throw new Error(`real node: ${what} failed (${cmd} ${args.join(' ')}, exit ${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Pids whose command line names `needle` (the shims of our containerd carry its socket path). */
function pidsWithArg(needle: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(needle)) out.push(Number(d));
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}

/** cgroup v1 hierarchies (one folder per controller set) or the v2 root. */
function cgroupHierarchies(): string[] {
  if (existsSync(path.join(CGROUP_ROOT, 'cgroup.controllers'))) return [CGROUP_ROOT];
  return readdirSync(CGROUP_ROOT)
    .map((d) => path.join(CGROUP_ROOT, d))
    .filter((d) => existsSync(path.join(d, 'cgroup.procs')));
}

/** Every cgroup under ours, deepest first. */
function ourCgroups(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    let entries: string[];
    try {
      entries = readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => path.join(dir, e.name));
    } catch {
      return;
    }
    for (const e of entries) walk(e);
    out.push(dir);
  };
  for (const h of cgroupHierarchies()) {
    const root = path.join(h, CGROUP_NAME);
    if (existsSync(root)) walk(root);
  }
  return out;
}

/** Mount points under `dir`, deepest first (read from /proc/self/mountinfo). */
function mountsUnder(dir: string): string[] {
  const text = readFileSync('/proc/self/mountinfo', 'utf8');
  const points = text
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(' ')[4]!.replace(/\\040/g, ' '))
    .filter((p) => p === dir || p.startsWith(`${dir}/`));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

function readSysctl(key: string): string | undefined {
  try {
    return readFileSync(`/proc/sys/${key}`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** The node's processes (each started by us, ended by pid). */
interface Procs {
  [name: string]: ChildProcess | undefined;
}

/** What was changed on the machine, so cleanup undoes exactly that. */
interface Added {
  dir: string;
  containerdSock: string;
  procs: Procs;
  sysctls: Record<string, string>;
  bridge: boolean;
  cgroups: boolean;
  kubeProxy?: { bin: string; config: string };
  /** KUBE-* chains (per iptables program and table) that were there before the node: left alone. */
  chainsBefore?: Set<string>;
  /** containerd makes /run/containerd/s for its shims' sockets wherever its state is: removed when it made it. */
  runDirMade?: boolean;
  lockFd?: number;
}

const IPTABLES = ['iptables', 'ip6tables'] as const;
const TABLES = ['filter', 'nat', 'mangle'] as const;

/** The KUBE-* chains kube-proxy and kubelet make, as "program table chain". */
function kubeChains(): Set<string> {
  const out = new Set<string>();
  for (const prog of IPTABLES) {
    for (const table of TABLES) {
      const r = sh(prog, ['-w', '-t', table, '-S']);
      for (const line of r.stdout.split('\n')) {
        const m = /^-N (KUBE-\S+)/.exec(line);
        if (m) out.add(`${prog} ${table} ${m[1]}`);
      }
    }
  }
  return out;
}

/**
 * Undoes everything in `added` that is still there, synchronously (also used by the exit hook). Errors are
 * collected, not thrown half-way: every step runs.
 */
function cleanupSync(added: Added): string[] {
  const problems: string[] = [];
  const step = (what: string, fn: () => void) => {
    try {
      fn();
    } catch (err) {
      problems.push(`${what}: ${err instanceof Error ? err.message : String(err)}`);
    }
  };
  // 1. processes: ours, then containerd's shims (they outlive containerd by design), then whatever is left in
  //    the pods' cgroups (containers whose shim is gone).
  for (const [name, p] of Object.entries(added.procs)) {
    if (p?.pid && alive(p.pid)) step(`kill ${name}`, () => process.kill(p.pid!, 'SIGKILL'));
  }
  for (const pid of pidsWithArg(added.containerdSock)) step(`kill shim ${pid}`, () => process.kill(pid, 'SIGKILL'));
  const cgroups = added.cgroups ? ourCgroups() : [];
  for (const cg of cgroups) {
    let pids: number[] = [];
    try {
      pids = readFileSync(path.join(cg, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
    } catch {
      /* gone */
    }
    for (const pid of pids) step(`kill ${pid} in ${cg}`, () => process.kill(pid, 'SIGKILL'));
  }
  // Killed processes leave their cgroups only once the kernel reaped them: rmdir is retried briefly.
  for (const cg of cgroups) {
    step(`rmdir ${cg}`, () => {
      const until = Date.now() + 10_000;
      for (;;) {
        try {
          rmdirSync(cg);
          return;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
          if (Date.now() > until) throw err;
          spawnSync('sleep', ['0.05']); // the kernel's reaping has no event to wait on here
        }
      }
    });
  }
  // 2. firewall: kube-proxy removes its own chains (KUBE-*) when run with --cleanup.
  if (added.kubeProxy) {
    step('kube-proxy --cleanup', () => {
      const r = sh(added.kubeProxy!.bin, ['--config', added.kubeProxy!.config, '--cleanup']);
      if (r.code !== 0) throw new Error(r.stderr.trim().split('\n').slice(-3).join(' '));
    });
  }
  // ... and the chains kube-proxy's cleanup does not own (kubelet's canaries), or that a killed kube-proxy left.
  if (added.chainsBefore) {
    const left = [...kubeChains()].filter((c) => !added.chainsBefore!.has(c));
    for (const c of left) {
      const [prog, table, chain] = c.split(' ') as [string, string, string];
      // rules elsewhere that jump to the chain go first (by number, last first), then the chain's own rules
      const parents = new Set<string>();
      for (const line of sh(prog, ['-w', '-t', table, '-S']).stdout.split('\n')) {
        const m = /^-A (\S+) .*-j (\S+)/.exec(line);
        if (m && m[2] === chain) parents.add(m[1]!);
      }
      for (const parent of parents) {
        const numbers = sh(prog, ['-w', '-t', table, '-L', parent, '-n', '--line-numbers']).stdout.split('\n')
          .map((l) => l.trim().split(/\s+/)).filter((f) => f[1] === chain).map((f) => Number(f[0])).sort((a, b) => b - a);
        for (const n of numbers) sh(prog, ['-w', '-t', table, '-D', parent, String(n)]);
      }
      sh(prog, ['-w', '-t', table, '-F', chain]);
    }
    for (const c of left) {
      const [prog, table, chain] = c.split(' ') as [string, string, string];
      step(`${prog} -t ${table} -X ${chain}`, () => must(prog, ['-w', '-t', table, '-X', chain], `deleting chain ${chain}`));
    }
  }
  // 3. mounts under the state folder (container root filesystems, shm, netns, pod volumes), deepest first.
  if (existsSync(added.dir)) {
    for (const m of mountsUnder(added.dir)) {
      step(`umount ${m}`, () => must('umount', ['-l', m], `umount ${m}`));
    }
  }
  // 4. the bridge (the pods' veths went with their network namespaces) and libcni's result cache entries.
  if (added.bridge) {
    step(`delete ${NODE_NET.bridge}`, () => {
      if (sh('ip', ['link', 'show', NODE_NET.bridge]).code === 0) must('ip', ['link', 'delete', NODE_NET.bridge], 'deleting the bridge');
    });
  }
  step('CNI result cache', () => {
    const cache = '/var/lib/cni/results';
    if (!existsSync(cache)) return;
    for (const f of readdirSync(cache)) if (f.startsWith('rlkube-node-')) rmSync(path.join(cache, f), { force: true });
  });
  if (added.runDirMade) {
    step('/run/containerd', () => {
      for (const sub of ['/run/containerd/s', '/run/containerd']) {
        if (existsSync(sub) && readdirSync(sub).length === 0) rmdirSync(sub);
      }
    });
  }
  // 5. sysctls back as they were.
  for (const [key, value] of Object.entries(added.sysctls)) {
    step(`sysctl ${key}`, () => writeFileSync(`/proc/sys/${key}`, value));
  }
  // 6. the state folder, then the lock.
  step(`rm ${added.dir}`, () => rmSync(added.dir, { recursive: true, force: true, maxRetries: 3 }));
  if (added.lockFd !== undefined) {
    step('lock', () => {
      closeSync(added.lockFd!);
      rmSync(LOCK, { force: true });
    });
  }
  return problems;
}

const liveNodes = new Set<Added>();
let exitHook = false;
function installExitHook(): void {
  if (exitHook) return;
  exitHook = true;
  process.once('exit', () => {
    for (const a of liveNodes) cleanupSync(a);
  });
}

/** Takes the machine's real-node lock, or says who holds it. A holder that is gone leaves a stale lock: taken over. */
function takeLock(): number {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(LOCK, 'wx');
      writeFileSync(fd, String(process.pid));
      return fd;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number.parseInt(readFileSync(LOCK, 'utf8').trim(), 10);
      if (holder > 0 && alive(holder)) {
        throw new Error(`real node: process ${holder} holds ${LOCK} (one real node per machine: kube-proxy owns the KUBE-* iptables chains)`, { cause: err });
      }
      rmSync(LOCK, { force: true });
    }
  }
  throw new Error(`real node: could not take ${LOCK}`);
}

function tail(file: string, lines: number): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function spawnLogged(bin: string, args: string[], logFile: string, env?: NodeJS.ProcessEnv): ChildProcess {
  const fd = openSync(logFile, 'a');
  try {
    return spawn(bin, args, { stdio: ['ignore', fd, fd], env: env ?? process.env, detached: false });
  } finally {
    closeSync(fd);
  }
}

/** Starts the real node and waits until it is Ready in the cluster and CoreDNS answers. */
export async function startRealNode(opts: RealNodeOptions): Promise<RealNode> {
  const unsupported = realNodeUnsupported();
  if (unsupported) throw new Error(`real node: ${unsupported}`);
  const bins = findNodeBinaries();
  const dir = path.join(opts.workdir, `node-${opts.name}`);
  const d = (...p: string[]) => path.join(dir, ...p);
  const added: Added = { dir, containerdSock: d('containerd', 'containerd.sock'), procs: {}, sysctls: {}, bridge: false, cgroups: false };
  const logs = { containerd: d('logs', 'containerd.log'), kubelet: d('logs', 'kubelet.log'), 'kube-proxy': d('logs', 'kube-proxy.log'), coredns: d('logs', 'coredns.log') };
  const logsTail = (lines = 20) =>
    Object.entries(logs).map(([n, f]) => `--- ${n} (last ${lines} lines)\n${tail(f, lines)}`).join('\n');
  const ctr = (args: string[]) => sh(bins.ctr, ['--address', added.containerdSock, '--namespace', 'k8s.io', ...args]);
  const importImage = (archive: string) => {
    const r = ctr(['images', 'import', '--no-unpack=false', archive]);
    if (r.code !== 0) throw new Error(`real node: importing ${archive} failed: ${r.stderr.trim()}`);
  };

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      if (added.procs.kubelet?.pid && alive(added.procs.kubelet.pid)) {
        // Let kubelet tear the pods down (CNI DEL, volume unmounts) while it still runs; what it does not finish
        // in time, cleanupSync removes by force.
        // cordoned first, so that the controllers' replacement pods do not come back to it
        await opts.kubectl(['cordon', opts.name]);
        await opts.kubectl(['delete', 'pods', '--all-namespaces', '--field-selector', `spec.nodeName=${opts.name}`, '--grace-period=1', '--wait=false']);
        await pollUntil(async (observe) => {
          const r = ctr(['tasks', 'ls', '-q']);
          const left = r.stdout.split('\n').filter(Boolean);
          observe(`containerd tasks left: ${left.length}`);
          return r.code === 0 && left.length === 0;
        }, { timeoutMs: 30_000, intervalMs: 250, what: `the pods of node ${opts.name} to stop` }).catch(() => undefined);
      }
      for (const p of Object.values(added.procs)) if (p?.pid && alive(p.pid)) p.kill('SIGTERM');
      await pollUntil(async () => Object.values(added.procs).every((p) => !p?.pid || !alive(p.pid)), {
        timeoutMs: 10_000, intervalMs: 50, what: `the processes of node ${opts.name} to exit`,
      }).catch(() => undefined);
      await opts.kubectl(['delete', 'node', opts.name, '--wait=false']).catch(() => undefined);
      const problems = cleanupSync(added);
      liveNodes.delete(added);
      if (problems.length > 0) throw new Error(`real node ${opts.name}: cleanup left: ${problems.join('; ')}`);
    })();
    return stopped;
  };

  try {
    added.lockFd = takeLock();
    liveNodes.add(added);
    installExitHook();
    // containerd's images and containers on a tmpfs: unpacked images are ~10^5 files, which take a minute to
    // write and another to delete on this disk; unmounting a tmpfs drops them at once (cleanup unmounts it).
    mkdirSync(d('containerd'), { recursive: true });
    must('mount', ['-t', 'tmpfs', '-o', 'size=16g,mode=0711', 'rlkube-containerd', d('containerd')], 'mounting a tmpfs for containerd');
    for (const sub of ['containerd/root', 'containerd/state', 'cni/net.d', 'cni/ipam', 'kubelet', 'kubelet-certs', 'pod-logs', 'logs']) {
      mkdirSync(d(sub), { recursive: true });
    }

    // --- machine settings
    added.chainsBefore = kubeChains();
    added.runDirMade = !existsSync('/run/containerd');
    for (const [key, value] of Object.entries(SYSCTLS)) {
      if (key.startsWith('net/bridge/') && !existsSync(`/proc/sys/${key}`)) must('modprobe', ['br_netfilter'], 'loading br_netfilter');
      const before = readSysctl(key);
      if (before === undefined) throw new Error(`real node: sysctl ${key} does not exist on this kernel`);
      if (before !== value) {
        added.sysctls[key] = before;
        writeFileSync(`/proc/sys/${key}`, value);
      }
    }
    // The bridge exists before any pod, so that CoreDNS can listen on its address from the start.
    if (sh('ip', ['link', 'show', NODE_NET.bridge]).code === 0) {
      throw new Error(`real node: interface ${NODE_NET.bridge} already exists (left by a killed test? \`ip link delete ${NODE_NET.bridge}\`)`);
    }
    added.bridge = true;
    must('ip', ['link', 'add', NODE_NET.bridge, 'type', 'bridge'], 'creating the bridge');
    must('ip', ['addr', 'add', `${NODE_NET.gateway}/24`, 'dev', NODE_NET.bridge], 'addressing the bridge');
    must('ip', ['link', 'set', NODE_NET.bridge, 'up'], 'raising the bridge');
    // kubelet's cgroups live under one parent of ours in every hierarchy (cpuset needs its cpus/mems copied in).
    added.cgroups = true;
    for (const h of cgroupHierarchies()) {
      const cg = path.join(h, CGROUP_NAME);
      mkdirSync(cg, { recursive: true });
      for (const f of ['cpuset.cpus', 'cpuset.mems']) {
        if (existsSync(path.join(h, f))) writeFileSync(path.join(cg, f), readFileSync(path.join(h, f), 'utf8'));
      }
    }

    // --- CNI: one bridge network; no masquerading (pods talk to each other and to this machine only).
    writeFileSync(d('cni/net.d/10-rlkube.conflist'), JSON.stringify({
      cniVersion: '1.0.0',
      name: 'rlkube-node',
      plugins: [{
        type: 'bridge', bridge: NODE_NET.bridge, isGateway: true, ipMasq: false, hairpinMode: true,
        ipam: { type: 'host-local', ranges: [[{ subnet: NODE_NET.podSubnet, gateway: NODE_NET.gateway }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: d('cni/ipam') },
      }],
    }, null, 2));

    // --- containerd
    writeFileSync(d('containerd/config.toml'), [
      'version = 3',
      `root = ${JSON.stringify(d('containerd/root'))}`,
      `state = ${JSON.stringify(d('containerd/state'))}`,
      '[grpc]',
      `  address = ${JSON.stringify(added.containerdSock)}`,
      '[ttrpc]',
      `  address = ${JSON.stringify(`${added.containerdSock}.ttrpc`)}`,
      '[debug]',
      `  address = ${JSON.stringify(`${added.containerdSock}.debug`)}`,
      '[metrics]',
      '  address = ""',
      "[plugins.'io.containerd.cri.v1.runtime']",
      // runc cannot lower its own oom_score_adj in this kind of sandbox ("failed to update /proc/self/oom_score_adj:
      // Permission denied") unless containerd keeps containers at or above its own score.
      '  restrict_oom_score_adj = true',
      // Network namespaces under our state folder, so cleanup finds every one of them.
      '  netns_mounts_under_state_dir = true',
      '  enable_selinux = false',
      "  [plugins.'io.containerd.cri.v1.runtime'.containerd]",
      "    default_runtime_name = 'runc'",
      "    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]",
      "      runtime_type = 'io.containerd.runc.v2'",
      "      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]",
      "        BinaryName = 'runc'",
      // runc's container state under ours too (its default is /run/containerd/runc)
      `        Root = ${JSON.stringify(d('runc'))}`,
      '        SystemdCgroup = false',
      "  [plugins.'io.containerd.cri.v1.runtime'.cni]",
      `    bin_dirs = [${JSON.stringify(CNI_BIN_DIR)}]`,
      `    conf_dir = ${JSON.stringify(d('cni/net.d'))}`,
      "[plugins.'io.containerd.cri.v1.images']",
      "  snapshotter = 'overlayfs'",
      "  [plugins.'io.containerd.cri.v1.images'.pinned_images]",
      `    sandbox = ${JSON.stringify(PAUSE_IMAGE)}`,
      '',
    ].join('\n'));
    // The shim and runc are found on PATH.
    const env = { ...process.env, PATH: `${toolchainBinDir()}${path.delimiter}${process.env.PATH ?? ''}` };
    added.procs.containerd = spawnLogged(bins.containerd, ['--config', d('containerd/config.toml')], logs.containerd, env);
    await pollUntil(async (observe) => {
      const r = ctr(['version']);
      observe(r.stderr.trim().slice(0, 200));
      return r.code === 0;
    }, { timeoutMs: 30_000, intervalMs: 100, what: `containerd of node ${opts.name} to answer on ${added.containerdSock}` });
    for (const a of opts.imageArchives) importImage(a);

    // --- CoreDNS on the bridge's address: the pods' nameserver, answering from the API server's Services.
    const [corednsReady, kubeletPort, kubeletHealthz, proxyHealthz, proxyMetrics] = await Promise.all([
      freePort('127.0.0.1'), freePort('0.0.0.0'), freePort('127.0.0.1'), freePort('127.0.0.1'), freePort('127.0.0.1'),
    ]);
    writeFileSync(d('Corefile'), [
      '.:53 {',
      `  bind ${NODE_NET.gateway}`,
      '  errors',
      `  ready 127.0.0.1:${corednsReady}`,
      `  kubernetes ${NODE_NET.clusterDomain} in-addr.arpa ip6.arpa {`,
      `    kubeconfig ${opts.kubeconfig}`,
      '    pods insecure',
      '    fallthrough in-addr.arpa ip6.arpa',
      '  }',
      '  forward . /etc/resolv.conf',
      '  cache 5',
      '}',
      '',
    ].join('\n'));
    added.procs.coredns = spawnLogged(bins.coredns, ['-conf', d('Corefile')], logs.coredns);

    // --- kube-proxy (iptables mode). Conntrack limits and timeouts 0: leave the machine's sysctls as they are.
    const proxyConfig = d('kube-proxy.yaml');
    writeFileSync(proxyConfig, [
      'apiVersion: kubeproxy.config.k8s.io/v1alpha1',
      'kind: KubeProxyConfiguration',
      'clientConnection:',
      `  kubeconfig: ${opts.kubeconfig}`,
      'mode: iptables',
      `clusterCIDR: ${NODE_NET.podSubnet}`,
      `hostnameOverride: ${opts.name}`,
      `healthzBindAddress: 127.0.0.1:${proxyHealthz}`,
      `metricsBindAddress: 127.0.0.1:${proxyMetrics}`,
      // NodePorts on the primary address only: localhost NodePorts would need route_localnet.
      'nodePortAddresses: ["primary"]',
      'conntrack:',
      '  maxPerCore: 0',
      '  min: 0',
      '  tcpEstablishedTimeout: 0s',
      '  tcpCloseWaitTimeout: 0s',
      '',
    ].join('\n'));
    added.kubeProxy = { bin: bins['kube-proxy'], config: proxyConfig };
    added.procs['kube-proxy'] = spawnLogged(bins['kube-proxy'], ['--config', proxyConfig, '--v=1'], logs['kube-proxy']);

    // --- kubelet
    writeFileSync(d('resolv.conf'), `nameserver ${NODE_NET.gateway}\n`);
    writeFileSync(d('kubelet.yaml'), [
      'apiVersion: kubelet.config.k8s.io/v1beta1',
      'kind: KubeletConfiguration',
      // This machine mounts cgroup v1 hierarchies; kubelet 1.35+ refuses them unless told not to.
      'failCgroupV1: false',
      'cgroupDriver: cgroupfs',
      `cgroupRoot: /${CGROUP_NAME}`,
      `containerRuntimeEndpoint: unix://${added.containerdSock}`,
      `address: ${opts.hostIp}`,
      `port: ${kubeletPort}`,
      'readOnlyPort: 0',
      'healthzBindAddress: 127.0.0.1',
      `healthzPort: ${kubeletHealthz}`,
      // The API server reaches kubelet (logs, exec) without a client certificate: test cluster only.
      'authentication: { anonymous: { enabled: true }, webhook: { enabled: false } }',
      'authorization: { mode: AlwaysAllow }',
      `clusterDomain: ${NODE_NET.clusterDomain}`,
      `clusterDNS: [${NODE_NET.gateway}]`,
      `resolvConf: ${d('resolv.conf')}`,
      `podLogsDir: ${d('pod-logs')}`,
      // A shared development disk is often fuller than kubelet's defaults allow; never evict test pods for it.
      'evictionHard: { memory.available: "50Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%" }',
      'imageGCHighThresholdPercent: 100',
      'imageGCLowThresholdPercent: 99',
      'failSwapOn: false',
      'serializeImagePulls: false',
      'staticPodPath: ""',
      'maxPods: 110',
      '',
    ].join('\n'));
    const labels = { type: 'real', ...(opts.labels ?? {}) };
    added.procs.kubelet = spawnLogged(bins.kubelet, [
      '--config', d('kubelet.yaml'), '--kubeconfig', opts.kubeconfig, '--root-dir', d('kubelet'), '--cert-dir', d('kubelet-certs'),
      '--hostname-override', opts.name, '--node-ip', opts.hostIp,
      '--node-labels', Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(','), '--v=1',
    ], logs.kubelet, env);

    const readyMs = opts.readyMs ?? 120_000;
    const exited = () => Object.entries(added.procs).filter(([, p]) => p?.exitCode !== null || p?.signalCode !== null).map(([n]) => n);
    await pollUntil(async (observe) => {
      const gone = exited();
      if (gone.length > 0) throw new Error(`real node: ${gone.join(', ')} exited during start-up`);
      const r = await opts.kubectl(['get', 'node', opts.name, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}']);
      observe(`Ready=${r.stdout.trim() || r.stderr.trim()}`);
      return r.stdout.trim() === 'True';
    }, { timeoutMs: readyMs, intervalMs: 250, what: `real node ${opts.name} to be Ready` });
    await pollUntil(async (observe) => {
      const r = await fetch(`http://127.0.0.1:${corednsReady}/ready`).catch((e: unknown) => e as Error);
      observe(r instanceof Error ? r.message : `HTTP ${r.status}`);
      return !(r instanceof Error) && r.ok;
    }, { timeoutMs: 30_000, intervalMs: 100, what: `CoreDNS of node ${opts.name} to be ready` });

    const persistentVolumes = (prefix: string, count: number, storageClassName = '', size = '10Gi') => JSON.stringify({
      apiVersion: 'v1', kind: 'List',
      items: Array.from({ length: count }, (_, i) => {
        const folder = d('pv', `${prefix}-${i}`);
        mkdirSync(folder, { recursive: true });
        chmodSync(folder, 0o777);
        return {
          apiVersion: 'v1', kind: 'PersistentVolume', metadata: { name: `${prefix}-${i}` },
          spec: { capacity: { storage: size }, accessModes: ['ReadWriteOnce'], storageClassName, hostPath: { path: folder, type: 'Directory' } },
        };
      }),
    });
    return { name: opts.name, dir, ctr, importImage, logsTail, persistentVolumes, stop };
  } catch (err) {
    const detail = logsTail();
    await stop().catch((e: unknown) => {
      if (err instanceof Error) err.message += `\n(cleanup: ${e instanceof Error ? e.message : String(e)})`;
    });
    if (err instanceof Error) err.message += `\n${detail}`;
    throw err;
  }
}

/** This machine's address on its default route: where pods reach the API server. */
export function primaryHostIp(): string {
  const out = execFileSync('ip', ['-4', 'route', 'get', '1.1.1.1'], { encoding: 'utf8' });
  const m = / src (\d+\.\d+\.\d+\.\d+)/.exec(out);
  if (m) return m[1]!;
  for (const addrs of Object.values(os.networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  throw new Error('real node: this machine has no non-loopback IPv4 address for pods to reach the API server at');
}
