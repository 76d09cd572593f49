// `rlkube env score ENV FILE.jsonl`: a user tries an environment's grader on their own (answer, completion)
// pairs before training on it; the grading is the environment server's own code (rlkube_env.cli score).
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { datasetCache } from '../local/toolchain.js';

/** Streams the JSON lines to stdout; the exit status: 0 all scored, 1 some lines refused, 3 environment unusable. */
export function scoreFile(python: string, spec: { name: string; args?: Record<string, string | number>; dataset?: string }, file: string, seed: number): number {
  const result = spawnSync(python, ['-m', 'rlkube_env.cli', 'score', file === '-' ? '-' : resolve(file), '--spec', JSON.stringify(spec), '--seed', String(seed), '--cache-dir', datasetCache()], {
    stdio: 'inherit',
  });
  return result.status ?? 1;
}
