// `rlkube env score ENV FILE.jsonl`: a user tries an environment's grader on their own (answer, completion)
// pairs before training on it; the grading is the environment server's own code (rlkube_env.cli score).
import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const trainerDir = resolve(fileURLToPath(new URL('../images/trainer', import.meta.url)));

/** Streams the JSON lines to stdout; the exit status: 0 all scored, 1 some lines refused, 3 environment unusable. */
export function scoreFile(python: string, spec: { name: string; args?: Record<string, string | number>; dataset?: string }, file: string, seed: number): number {
  const inherited = process.env.PYTHONPATH ? `:${process.env.PYTHONPATH}` : '';
  const result = spawnSync(python, ['-m', 'rlkube_env.cli', 'score', file === '-' ? '-' : resolve(file), '--spec', JSON.stringify(spec), '--seed', String(seed), '--cache-dir', join(process.env.HOME ?? '.', '.cache', 'rlkube', 'datasets')], {
    stdio: 'inherit',
    env: { ...process.env, PYTHONPATH: `${trainerDir}${inherited}` },
  });
  return result.status ?? 1;
}
