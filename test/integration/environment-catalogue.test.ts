// The environment catalogue is Python's: the committed api/generated/environments.json is what
// `python -m rlkube_env.cli describe` prints now, and the TypeScript pre-check that reads it judges specs as the
// environment server does, in the same words (run `python -m rlkube_env.cli describe > api/generated/environments.json`
// from the repository root after changing an environment's args).
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { environmentProblem, type EnvironmentSpec } from '../../api/index.js';
import { projectPython } from '../../local/python.js';
import { ACCEPTED, REFUSALS } from '../fixtures/environment-specs.js';

const python = projectPython();
const CATALOGUE_FILE = new URL('../../api/generated/environments.json', import.meta.url);

/** What the environment server makes of a spec: undefined when it is usable, else its refusal. */
function serverVerdict(spec: EnvironmentSpec): { reason: string; field: string; message: string } | undefined {
  const result = spawnSync(python, ['-m', 'rlkube_env.cli', 'check', '--spec', JSON.stringify(spec), '--cache-dir', '/nonexistent'], { encoding: 'utf8' });
  if (result.status === 0) return undefined;
  expect({ status: result.status, stderr: result.stderr }).toEqual({ status: 3, stderr: '' });
  return JSON.parse(result.stdout);
}

describe('the environment catalogue', () => {
  it('committed equals what Python describes now (regenerate: python -m rlkube_env.cli describe > api/generated/environments.json)', () => {
    const described = spawnSync(python, ['-m', 'rlkube_env.cli', 'describe'], { encoding: 'utf8' });
    expect(described.status).toBe(0);
    expect(readFileSync(CATALOGUE_FILE, 'utf8')).toBe(described.stdout);
  });

  it.each(REFUSALS)('the server refuses as the pre-check does: %s', (_label, spec, reason, message) => {
    const verdict = serverVerdict(spec);
    expect(verdict).toEqual({ reason, field: message.slice(0, message.indexOf(':')), message });
    expect(verdict).toEqual(environmentProblem(spec));
  });

  it.each(ACCEPTED)('the server accepts what the pre-check accepts: %s', (_label, spec) => {
    expect(serverVerdict(spec)).toBeUndefined();
    expect(environmentProblem(spec)).toBeUndefined();
  });
});
