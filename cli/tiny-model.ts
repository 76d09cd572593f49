// `rlkube make-tiny-model DIR`: the tiny Hugging Face model the HF examples, tests and benchmarks train — a
// random-init Qwen2-style decoder and its character tokenizer, made offline (images/trainer/rlkube_trainer/tiny_hf.py).
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const trainerRoot = resolve(fileURLToPath(new URL('../images/trainer', import.meta.url)));

/** Writes the model folder (kept when it already holds the same seed's model); returns its absolute path. */
export function makeTinyModel(python: string, dir: string, seed = 1): string {
  const out = resolve(dir);
  execFileSync(python, ['-m', 'rlkube_trainer.tiny_hf', '--out', out, '--seed', String(seed)], {
    env: { ...process.env, PYTHONPATH: trainerRoot },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return out;
}
