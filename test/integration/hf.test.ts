// `rlkube run` of a Hugging Face model end to end (the tiny Qwen2-style model, made offline): every policy
// version — a LoRA adapter, or the full weights — travels from the trainer through the bus's object store into
// the hf engines, and the groups they generate with it pass the trainer's log-prob check.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { projectPython } from '../../local/python.js';
import { makeTinyModel } from '../../cli/tiny-model.js';
import { countsAddUp, startRun } from '../harness/run.js';

const STEPS = 4;
const BATCH = 8;
let dir: string;
let model: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'rlkube-hf-'));
  model = makeTinyModel(projectPython(), join(dir, 'tiny-qwen2'));
});

/** The example, pointed at the model made above; `full` drops the adapter. */
function manifest(name: string, full: boolean): string {
  const job = parse(readFileSync('examples/hf-tiny-cpu.yaml', 'utf8'));
  job.spec.model.name = model;
  job.spec.algorithm.batchSize = BATCH;
  if (full) delete job.spec.model.lora;
  const path = join(dir, `${name}.yaml`);
  writeFileSync(path, stringify(job));
  return path;
}

test.each([
  ['LoRA adapters', 'AsyncPushPull', false],
  ['full weights', 'SequentialPull', true],
])('%s reach the hf engines every step (%s): every group passes the log-prob check, counts add up', async (_label, mode, full) => {
  const run = startRun(['--mode', mode, '--max-steps', String(STEPS)], manifest(full ? 'full' : 'lora', full));
  expect(await run.exited).toBe(0);
  const summary = run.summary();
  expect(summary.state).toBe('Succeeded');
  expect(summary.steps).toBe(STEPS);
  // Groups of versions 1.. come from engines that loaded what the trainer wrote: a wrong or missing update
  // would show as LogprobMismatch (current version) or hang the run (a version never loaded).
  expect(summary.groups.rejected).toBe(0);
  expect(summary.rejectedByReason).toEqual({});
  expect(summary.groups.accepted).toBeGreaterThanOrEqual(STEPS * BATCH);
  countsAddUp(summary);
});
