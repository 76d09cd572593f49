// Where the toolchain binaries that `npm run setup` builds live (outside the repository).
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export function toolchainHome(): string {
  return process.env.RLKUBE_HOME ?? join(homedir(), '.cache', 'rlkube');
}

/** Absolute path of a toolchain binary; throws a message that says how to get it when it is missing. */
export function toolBinary(name: string): string {
  const path = join(toolchainHome(), 'bin', name);
  if (!existsSync(path)) {
    throw new Error(`toolchain binary ${name} not found at ${path}: run \`npm run setup\` first`);
  }
  return path;
}
