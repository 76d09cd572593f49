// Where what `npm run setup` makes lives, outside the repository: toolchain binaries, the Python venv, caches.
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** $RLKUBE_HOME, or ~/.cache/rlkube when it is unset or empty. */
export function toolchainHome(): string {
  return process.env.RLKUBE_HOME || join(homedir(), '.cache', 'rlkube');
}

/** Where the pinned toolchain binaries are. */
export const toolchainBinDir = () => join(toolchainHome(), 'bin');

/** Downloaded datasets, kept across runs (`rlkube run` and `rlkube env score` share them). */
export const datasetCache = () => join(toolchainHome(), 'datasets');

/** Absolute path of a toolchain binary; throws a message that says how to get it when it is missing. */
export function toolBinary(name: string): string {
  const path = join(toolchainBinDir(), name);
  if (!existsSync(path)) {
    throw new Error(`toolchain binary ${name} not found at ${path}: run \`npm run setup\` first`);
  }
  return path;
}
