// The environment catalogue is Python's: the committed api/generated/environments.json is what
// `python -m rlkube_env.cli describe` prints now (regenerate it from the repository root after changing an
// environment: docs/contracts.md), and the TypeScript pre-check that reads it judges specs as the environment
// server does, in the same words, so `rlkube run` and the operator refuse a bad arg before anything starts.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { environmentProblem, type EnvironmentSpec } from '../../api/index.js';
import { projectPython } from '../../local/python.js';
import { ACCEPTED, REFUSALS } from '../fixtures/environment-specs.js';
import { readExample } from '../harness/examples.js';

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

describe('rlkube run', () => {
  it('refuses an unknown environment arg before it starts anything, naming the field', () => {
    const job = parse(readExample('reverse-cpu.yaml'));
    job.spec.environment = { name: 'reverse', args: { minLen: 2 } };
    const dir = mkdtempSync(join(tmpdir(), 'rlkube-catalogue-'));
    writeFileSync(join(dir, 'job.yaml'), stringify(job));
    const result = spawnSync(process.execPath, ['--import', 'tsx', 'cli/main.ts', 'run', join(dir, 'job.yaml'), '--out', join(dir, 'out')], { encoding: 'utf8' });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('InvalidEnvironmentArgs');
    expect(result.stderr).toContain('environment.args.minLen: is not an argument of reverse (it takes minLength, maxLength, alphabet)');
    expect(existsSync(join(dir, 'out', 'run.json'))).toBe(false); // no bus, no process was started
  });
});
