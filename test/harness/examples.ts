// The example manifests (examples/), as the unit, e2e and benchmark code reads them.
import { readFileSync } from 'node:fs';

export const EXAMPLES_DIR = new URL('../../examples/', import.meta.url);
export const readExample = (name: string): string => readFileSync(new URL(name, EXAMPLES_DIR), 'utf8');
