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
}

export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  const binary = toolBinary('nats-server');
  const port = options.port ?? (await freePort());
  const ownsStore = options.storeDir === undefined;
  const storeDir = options.storeDir ?? mkdtempSync(join(tmpdir(), 'rlkube-nats-'));
  // max_payload has no command-line flag: a config file carries it.
  mkdirSync(storeDir, { recursive: true });
  const configFile = join(storeDir, 'nats-server.conf');
  writeFileSync(configFile, `max_payload: ${options.maxPayload ?? 1024 * 1024}\n`);
  const args = ['-c', configFile, '-js', '-a', '127.0.0.1', '-p', String(port), '-sd', storeDir, '--server_name', `rlkube-${port}`];

  let child: ChildProcess | undefined;
  let output = '';
  const launch = async (): Promise<void> => {
    output = '';
    child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-4000)));
    child.stderr?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-4000)));
    await waitForPort(port, 15_000, () => output);
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
    url: `nats://127.0.0.1:${port}`,
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
  };
}

async function waitForPort(port: number, timeoutMs: number, log: () => string): Promise<void> {
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
