// A real nats-server with JetStream as a local child process: the CLI's embedded bus and the tests' bus.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'net';
import { freePort } from './ports.js';
import { toolBinary } from './toolchain.js';

export interface NatsServerOptions {
  /** JetStream store directory; a fresh temporary one (removed on stop) when absent. */
  storeDir?: string;
  port?: number;
  /** Max payload in bytes (nats-server default is 1 MiB). */
  maxPayload?: number;
  /** A member of a JetStream cluster (see NatsClusterMember). */
  cluster?: NatsClusterMember;
}

/** Where a cluster member listens for its peers' routes, and the peers' route ports (its own may be listed). */
export interface NatsClusterMember {
  name: string;
  port: number;
  routes: number[];
}

export interface NatsServer {
  readonly url: string;
  readonly port: number;
  readonly storeDir: string;
  /** Stops gracefully (SIGTERM); keeps a caller-given store directory. */
  stop(): Promise<void>;
  /** SIGKILL: the crash case. */
  kill(): Promise<void>;
  /** Starts again on the same port and store directory (after stop or kill). */
  restart(): Promise<void>;
  /** SIGSTOP / SIGCONT: a stalled server keeps its connections open but answers nothing (a GC pause, a frozen VM). */
  pause(): void;
  resume(): void;
}

/** How to run a nats-server (binary, arguments, where it listens), for a launcher or a supervisor. */
export interface NatsServerProcess {
  command: string;
  args: string[];
  port: number;
  url: string;
  storeDir: string;
}

/** Picks the port and writes the config file; starts nothing. */
export async function natsServerProcess(options: {
  storeDir: string;
  port?: number;
  maxPayload?: number;
  /**
   * Write every stored message to its file before acknowledging it. Otherwise JetStream batches writes for
   * a few milliseconds, and a single server killed with SIGKILL loses the newest messages it had already
   * acknowledged and delivered (a replicated cluster covers that; one embedded server cannot).
   */
  syncAlways?: boolean;
  cluster?: NatsClusterMember;
}): Promise<NatsServerProcess> {
  const port = options.port ?? (await freePort());
  // max_payload and sync_interval have no command-line flags: a config file carries them.
  mkdirSync(options.storeDir, { recursive: true });
  const configFile = join(options.storeDir, 'nats-server.conf');
  const jetstream = options.syncAlways ? 'jetstream {\n  sync_interval: always\n}\n' : '';
  const cluster = options.cluster
    ? `cluster {\n  name: ${options.cluster.name}\n  listen: 127.0.0.1:${options.cluster.port}\n` +
      `  routes: [${options.cluster.routes.map((p) => `nats-route://127.0.0.1:${p}`).join(', ')}]\n}\n`
    : '';
  writeFileSync(configFile, `max_payload: ${options.maxPayload ?? 1024 * 1024}\n${jetstream}${cluster}`);
  return {
    command: toolBinary('nats-server'),
    args: ['-c', configFile, '-js', '-a', '127.0.0.1', '-p', String(port), '-sd', options.storeDir, '--server_name', `rlkube-${port}`],
    port,
    url: `nats://127.0.0.1:${port}`,
    storeDir: options.storeDir,
  };
}

export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  const ownsStore = options.storeDir === undefined;
  const storeDir = options.storeDir ?? mkdtempSync(join(tmpdir(), 'rlkube-nats-'));
  const { command, args, port, url } = await natsServerProcess({ ...options, storeDir });

  let child: ChildProcess | undefined;
  let output = '';
  const launch = async (): Promise<void> => {
    output = '';
    child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-4000)));
    child.stderr?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-4000)));
    await waitForNatsReady(port, 15_000, () => output);
  };
  const halt = async (signal: NodeJS.Signals): Promise<void> => {
    const running = child;
    child = undefined;
    if (!running || running.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      running.once('exit', () => resolve());
      running.kill(signal);
    });
  };
  await launch();
  return {
    url,
    port,
    storeDir,
    stop: async () => {
      await halt('SIGTERM');
      if (ownsStore) rmSync(storeDir, { recursive: true, force: true });
    },
    kill: () => halt('SIGKILL'),
    restart: async () => {
      await halt('SIGTERM');
      await launch();
    },
    pause: () => void child?.kill('SIGSTOP'),
    resume: () => void child?.kill('SIGCONT'),
  };
}

/** Resolves once the server accepts connections and has said it is ready (JetStream included) in its output. */
export async function waitForNatsReady(port: number, timeoutMs: number, log: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => { socket.destroy(); resolve(true); });
      socket.once('error', () => resolve(false));
    });
    if (open && log().includes('Server is ready')) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nats-server did not become ready on port ${port} within ${timeoutMs} ms; its output:\n${log()}`);
}
