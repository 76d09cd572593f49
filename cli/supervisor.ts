// Local processes of `rlkube run` (engines, trainer, agents): started, restarted when they die unexpectedly
// (what a Deployment or StatefulSet would do), and stopped together.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { realClock } from '../util/clock.js';
import { backoffDelay, type Backoff } from '../util/retry.js';

export interface ProcessSpec {
  name: string;
  command: string;
  args: string[];
  env?: Record<string, string>;
}

interface Supervised {
  spec: ProcessSpec;
  child?: ChildProcess;
  restarts: number;
  log: WriteStream;
  /** Cancels the restart that is waiting out its back-off. */
  cancelRestart?: () => void;
}

/** Restart back-off: 250 ms doubling to 5 s (jittered), so a process that dies at once is not respawned in a hot loop. */
const RESTART_BACKOFF: Backoff = { initialMs: 250, maxMs: 5000 };

export class Supervisor {
  private readonly processes = new Map<string, Supervised>();
  private readonly restartCounts: Record<string, number> = {};
  private stopping = false;

  constructor(private readonly logDir: string, private readonly log: Logger, private readonly onChange?: () => void) {}

  start(spec: ProcessSpec): void {
    const entry: Supervised = { spec, restarts: 0, log: createWriteStream(join(this.logDir, `${spec.name}.log`), { flags: 'a' }) };
    this.processes.set(spec.name, entry);
    this.restartCounts[spec.name] = 0;
    this.launch(entry);
  }

  names(): string[] {
    return [...this.processes.keys()];
  }

  /** name → pid of every running process (tests kill them by name). */
  pids(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [name, entry] of this.processes) if (entry.child?.pid) out[name] = entry.child.pid;
    return out;
  }

  /** name → how many times it was restarted (kept after stop). */
  restarts(): Record<string, number> {
    return { ...this.restartCounts };
  }

  /** Stops the named processes (or all), SIGTERM first and SIGKILL after `graceMs`. */
  async stop(names?: string[], graceMs = 10_000): Promise<void> {
    const targets = [...this.processes.values()].filter((e) => !names || names.includes(e.spec.name));
    if (!names) this.stopping = true;
    for (const entry of targets) {
      this.processes.delete(entry.spec.name);
      entry.cancelRestart?.();
    }
    await Promise.all(targets.map((entry) => terminate(entry.child, graceMs)));
    for (const entry of targets) entry.log.end();
  }

  private launch(entry: Supervised): void {
    const child = spawn(entry.spec.command, entry.spec.args, { env: { ...process.env, ...entry.spec.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    entry.child = child;
    child.stdout?.pipe(entry.log, { end: false });
    child.stderr?.pipe(entry.log, { end: false });
    child.once('exit', (code, signal) => {
      if (this.stopping || this.processes.get(entry.spec.name) !== entry) return;
      entry.restarts++;
      this.restartCounts[entry.spec.name] = entry.restarts;
      const delayMs = Math.round(backoffDelay(RESTART_BACKOFF, entry.restarts));
      this.log.warn({ process: entry.spec.name, code, signal, restarts: entry.restarts, delayMs }, 'process exited; restarting');
      entry.cancelRestart = realClock.after(delayMs, () => {
        entry.cancelRestart = undefined;
        if (!this.stopping && this.processes.get(entry.spec.name) === entry) {
          this.launch(entry);
          this.onChange?.();
        }
      });
    });
    this.onChange?.();
  }
}

function terminate(child: ChildProcess | undefined, graceMs: number): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const force = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(force);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
