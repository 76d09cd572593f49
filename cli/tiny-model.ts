// `rlkube make-tiny-model DIR`: the tiny Hugging Face model the HF examples, tests and benchmarks train — a
// random-init Qwen2-style decoder and its character tokenizer, made offline (python/rlkube_policy/tiny_hf.py).
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';

/**
 * Writes the model folder (kept when it already holds a model made with the same settings); returns its absolute
 * path. `formatFor` ("ALPHABET:MIN-MAX") adds a short supervised pass that teaches the output format only (strings
 * over the alphabet as long as the prompt, then EOS; not the task), as a base model knows its language before RL: what a LoRA adapter
 * needs, since it cannot move a random model's frozen embeddings and LM head.
 */
export function makeTinyModel(python: string, dir: string, options: { seed?: number; formatFor?: string } = {}): string {
  const out = resolve(dir);
  const args = ['-m', 'rlkube_policy.tiny_hf', '--out', out, '--seed', String(options.seed ?? 1)];
  if (options.formatFor) args.push('--format-for', options.formatFor);
  execFileSync(python, args, {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return out;
}
