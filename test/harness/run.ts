// `rlkube run` as a child process for tests: start it on a manifest, follow its learner's progress on its bus,
// read its summary and the pids of its processes (to kill or pause them).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { connectBus, watchLearnerProgress, type LearnerProgress } from '../../bus/index.js';
import type { RunSummary } from '../../cli/report.js';
import { waitFor } from './groups.js';

export interface Run {
  outDir: string;
  child: ChildProcess;
  exited: Promise<number | null>;
  summary(): RunSummary;
  pids(): Record<string, number>;
}

export function startRun(args: string[], manifest = 'examples/reverse-cpu.yaml', { cwd }: { cwd?: string } = {}): Run {
  const outDir = mkdtempSync(join(tmpdir(), 'rlkube-run-'));
  // From another folder (cwd), as a user would run it there: the CLI and the manifest are found from the repository.
  const child = spawn(process.execPath, ['--import', 'tsx', resolve('cli/main.ts'), 'run', resolve(manifest), '--out', outDir, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    ...(cwd ? { cwd } : {}),
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    outDir,
    child,
    exited: exited.then((code) => {
      if (code !== 0) console.error(`rlkube run exited ${code}:\n${stderr}`);
      return code;
    }),
    summary: () => JSON.parse(readFileSync(join(outDir, 'summary.json'), 'utf8')),
    pids: () => JSON.parse(readFileSync(join(outDir, 'processes.json'), 'utf8')),
  };
}

export type Progress = Awaited<ReturnType<typeof followProgress>>;

/** The run's learner progress, watched on the run's own bus (run.json says where it is). */
export async function followProgress(run: Run) {
  await waitFor('run.json', () => existsSync(join(run.outDir, 'run.json')) || undefined, 60_000);
  const { natsUrl, namespace, job } = JSON.parse(readFileSync(join(run.outDir, 'run.json'), 'utf8'));
  const nc = await connectBus({ servers: natsUrl });
  let latest: LearnerProgress | undefined;
  const watch = await watchLearnerProgress(nc, { namespace, name: job }, (p) => (latest = p));
  return {
    nc,
    job: { namespace, name: job },
    step: () => latest?.step ?? 0,
    close: async () => {
      await watch.stop().catch(() => undefined);
      await nc.close().catch(() => undefined);
    },
  };
}

/** Every group published ended in exactly one count, and the per-worker ledger attributes every accepted one. */
export function countsAddUp(summary: RunSummary) {
  const { accepted, stale, rejected, published } = summary.groups;
  const leftOver = summary.groups.leftOver ?? 0;
  expect({ accepted, stale, rejected, leftOver, sum: accepted + stale + rejected + leftOver }).toEqual({ accepted, stale, rejected, leftOver, sum: published });
  const ledgerAccepted = Object.values(summary.workers).reduce((a, w) => a + w.accepted, 0);
  expect(ledgerAccepted).toBe(accepted);
}
