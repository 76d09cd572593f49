// The learn benchmark: `rlkube run examples/reverse-cpu.yaml` in each sync mode from the seeded random init, same
// machine, same run; steps and wall time until the reward (5-step moving average) first reaches 0.8.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { parseRLJobManifest } from '../api/index.js';
import { runJob } from '../cli/run.js';
import { projectPython } from '../local/python.js';
import type { RunSummary } from '../cli/report.js';

const TARGET = 0.8;
const WINDOW = 5;

export function firstReach(curve: RunSummary['reward']['curve']): { step: number; t: number } | undefined {
  for (let i = WINDOW - 1; i < curve.length; i++) {
    const mean = curve.slice(i - WINDOW + 1, i + 1).reduce((a, p) => a + p.reward, 0) / WINDOW;
    if (mean >= TARGET) return { step: curve[i]!.step, t: curve[i]!.t };
  }
  return undefined;
}

export async function run(): Promise<Record<string, number | boolean>> {
  const figures: Record<string, number | boolean> = {};
  for (const [label, mode] of [['seq', 'SequentialPull'], ['async', 'AsyncPushPull']] as const) {
    const job = parseRLJobManifest(readFileSync('examples/reverse-cpu.yaml', 'utf8'));
    job.spec.sync.mode = mode;
    const outDir = mkdtempSync(join(tmpdir(), `rlkube-learn-${label}-`));
    console.log(`${mode}: running ${job.spec.algorithm.maxSteps} steps → ${outDir}`);
    const summary = await runJob({ job, outDir, python: projectPython(), log: pino({ level: 'warn' }), signal: new AbortController().signal });
    const reached = firstReach(summary.reward.curve);
    console.log(`${mode}: reward ${summary.reward.initial?.toFixed(3)} → ${summary.reward.final?.toFixed(3)}; 0.8 ${reached ? `at step ${reached.step}, ${reached.t} s` : 'not reached'}; stale ${summary.groups.stale}`);
    figures[`${label}_reward_initial`] = Number((summary.reward.initial ?? 0).toFixed(3));
    figures[`${label}_reward_final`] = Number((summary.reward.final ?? 0).toFixed(3));
    figures[`${label}_steps_to_0_8`] = reached?.step ?? -1;
    figures[`${label}_wall_s`] = reached?.t ?? -1;
    figures[`${label}_stale`] = summary.groups.stale;
  }
  const both = (figures.seq_steps_to_0_8 as number) > 0 && (figures.async_steps_to_0_8 as number) > 0;
  figures.both_reached = both;
  figures.async_wall_ratio = both ? Number(((figures.async_wall_s as number) / (figures.seq_wall_s as number)).toFixed(3)) : -1;
  return figures;
}
