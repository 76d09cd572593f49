// The HF learn benchmark: `rlkube run examples/hf-tiny-cpu.yaml` (the tiny HF model, random init) with LoRA in
// both sync modes and with full fine-tuning in SequentialPull, steps until the reward (5-step moving average)
// reaches 0.8; and the trainer's log-prob pass, peak memory at batch 256 over batch 16 (micro-batched).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { parseRLJobManifest, type RLJob } from '../api/index.js';
import { runJob } from '../cli/run.js';
import { projectPython } from '../local/python.js';
import { makeTinyModel } from '../cli/tiny-model.js';
import { firstReach } from './learn.js';

const EXAMPLE = 'examples/hf-tiny-cpu.yaml';
/** The model the example's comment makes: format-pretrained for its alphabet and lengths. */
const FORMAT = 'abcd:1-3';
/** Full fine-tuning: the example without its adapter, at the learning rate its comment gives. */
const FULL_LR = 0.001;

function logprobPeakMiB(batch: number): number {
  const out = execFileSync(projectPython(), ['python/scripts/logprob_memory.py', '--batch', String(batch)], {
    encoding: 'utf8',
  });
  const line = JSON.parse(out.trim().split('\n').at(-1)!) as { peak_growth_mib: number };
  console.log(`log-prob pass at batch ${batch}: peak RSS growth ${line.peak_growth_mib} MiB`);
  return line.peak_growth_mib;
}

export async function run(): Promise<Record<string, number | boolean>> {
  const figures: Record<string, number | boolean> = {};
  const model = makeTinyModel(projectPython(), join(mkdtempSync(join(tmpdir(), 'rlkube-model-')), 'tiny-qwen2'), { formatFor: FORMAT });
  const variants: Array<[string, (job: RLJob) => void]> = [
    ['lora_seq', (job) => { job.spec.sync.mode = 'SequentialPull'; }],
    ['lora_async', (job) => { job.spec.sync.mode = 'AsyncPushPull'; }],
    ['full_seq', (job) => { job.spec.sync.mode = 'SequentialPull'; delete job.spec.model.lora; job.spec.algorithm.learningRate = FULL_LR; }],
  ];
  for (const [label, adjust] of variants) {
    const job = parseRLJobManifest(readFileSync(EXAMPLE, 'utf8'));
    job.spec.model.name = model;
    adjust(job);
    const outDir = mkdtempSync(join(tmpdir(), `rlkube-learn-hf-${label}-`));
    console.log(`${label}: ${job.spec.sync.mode}, ${job.spec.model.lora ? 'LoRA' : 'full'}, ${job.spec.algorithm.maxSteps} steps → ${outDir}`);
    const summary = await runJob({ job, outDir, python: projectPython(), log: pino({ level: 'warn' }), signal: new AbortController().signal });
    const reached = firstReach(summary.reward.curve);
    console.log(`${label}: reward ${summary.reward.initial?.toFixed(3)} → ${summary.reward.final?.toFixed(3)}; 0.8 ${reached ? `at step ${reached.step}, ${reached.t} s` : 'not reached'}`);
    figures[`${label}_reward_initial`] = Number((summary.reward.initial ?? 0).toFixed(3));
    figures[`${label}_steps_to_0_8`] = reached?.step ?? -1;
    figures[`${label}_wall_s`] = reached?.t ?? -1;
  }
  figures.logprob_mem_ratio = Number((logprobPeakMiB(256) / logprobPeakMiB(16)).toFixed(3));
  return figures;
}
