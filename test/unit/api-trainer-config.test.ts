// One trainer configuration: every trainer setting an RLJob exposes has the trainer's default and accepts only
// what the trainer accepts (api/generated/trainer-config.json, Python's own description, checked against Python by
// test/integration/trainer-config.test.ts), and trainerServerArgs passes each of them.
import { readFileSync } from 'node:fs';
import type { TSchema } from '@sinclair/typebox';
import { stringify } from 'yaml';
import {
  InvalidManifestError, RLJobSpec, TRAINER_SETTINGS, parseRLJobManifest, parseRLJobSpec, trainerFlag, trainerServerArgs,
} from '../../api/index.js';
import { baseJob } from '../harness/operator-fixtures.js';

interface Setting {
  name: string; flag: string; type: 'integer' | 'number' | 'boolean' | 'string'; help: string;
  default?: unknown; required?: boolean; nullable?: boolean; bounds?: Partial<Record<Bound, number>>;
}
type Bound = 'minimum' | 'exclusiveMinimum' | 'maximum' | 'exclusiveMaximum';

const described: Setting[] = JSON.parse(readFileSync(new URL('../../api/generated/trainer-config.json', import.meta.url), 'utf8')).settings;
const settingNamed = (name: string) => described.find((s) => s.name === name);
const exposed = Object.entries(TRAINER_SETTINGS);

/** RLJob fields in spec.algorithm / spec.verification that are not the trainer's, and whose they are. */
const NOT_THE_TRAINERS: Record<string, string> = {
  'algorithm.groupSize': 'the rollout agents (completions per task)',
  'algorithm.batchSize': 'the learner bus (groups per step)',
  'algorithm.maxSteps': 'the learner agent',
  'verification.rewardTolerance': "the learner agent's group check (it re-scores every group)",
};

/** The RLJob's schema node at a dotted path of the spec. */
function schemaAt(path: string): TSchema {
  const node = path.split('.').reduce<TSchema | undefined>((n, key) => n?.properties?.[key], RLJobSpec);
  if (node === undefined) throw new Error(`the RLJob has no spec.${path}`);
  return node;
}

type Tree = Record<string, unknown>;
const at = (root: object, path: string): unknown => path.split('.').reduce<unknown>((n, key) => (n as Tree)[key], root);

function setAt(root: object, path: string, value: unknown): void {
  const keys = path.split('.');
  (at(root, keys.slice(0, -1).join('.')) as Tree)[keys.at(-1)!] = value;
}

/** A valid value of an RLJob field other than its default. */
function another(node: TSchema): unknown {
  if (node.type === 'boolean') return !node.default;
  if (node.type === 'integer') return node.default + 1 <= (node.maximum ?? Infinity) ? node.default + 1 : node.default - 1;
  return node.default === 0 ? 0.5 : node.default / 2;
}

const filledJob = () => parseRLJobManifest(stringify(baseJob('knobs')));
const place = { host: '127.0.0.1', port: 8001, checkpointDir: '/ck' };

describe('the RLJob and the trainer agree on every setting the RLJob exposes', () => {
  test.each(exposed)('%s (spec.%s): the trainer knows it, and the types agree', (name, path) => {
    const setting = settingNamed(name);
    expect(setting).toBeDefined();
    expect(schemaAt(path).type).toBe(setting!.type);
  });

  test.each(exposed)('%s (spec.%s): the RLJob default is the trainer default', (name, path) => {
    expect(schemaAt(path).default).toBe(settingNamed(name)!.default);
  });

  test.each(exposed)('%s (spec.%s): every value the RLJob accepts, the trainer accepts', (name, path) => {
    const node = schemaAt(path);
    const { minimum, exclusiveMinimum, maximum, exclusiveMaximum } = settingNamed(name)!.bounds ?? {};
    // the RLJob's lower bound is at least the trainer's, and as strict where they meet (the same for the upper)
    if (minimum !== undefined) expect(node.minimum ?? node.exclusiveMinimum).toBeGreaterThanOrEqual(minimum);
    if (exclusiveMinimum !== undefined) {
      expect(node.exclusiveMinimum ?? node.minimum).toBeGreaterThanOrEqual(exclusiveMinimum);
      if (node.exclusiveMinimum === undefined) expect(node.minimum).toBeGreaterThan(exclusiveMinimum);
    }
    if (maximum !== undefined) expect(node.maximum ?? node.exclusiveMaximum).toBeLessThanOrEqual(maximum);
    if (exclusiveMaximum !== undefined) {
      expect(node.exclusiveMaximum ?? node.maximum).toBeLessThanOrEqual(exclusiveMaximum);
      if (node.exclusiveMaximum === undefined) expect(node.maximum).toBeLessThan(exclusiveMaximum);
    }
  });

  test('every field of spec.algorithm and spec.verification goes to the trainer, or is named as not the trainer\'s', () => {
    const paths = (['algorithm', 'verification'] as const).flatMap((part) =>
      Object.keys(schemaAt(part).properties).map((key) => `${part}.${key}`));
    const exposedPaths: string[] = Object.values(TRAINER_SETTINGS);
    expect(paths.filter((p) => !exposedPaths.includes(p) && !(p in NOT_THE_TRAINERS))).toEqual([]);
    expect(Object.keys(NOT_THE_TRAINERS).filter((p) => !paths.includes(p))).toEqual([]);
  });
});

describe('trainerServerArgs', () => {
  test('passes every exposed setting, each changed from its default, under the trainer\'s flag', () => {
    const job = filledJob();
    for (const [, path] of exposed) setAt(job.spec, path, another(schemaAt(path)));
    const spec = parseRLJobSpec(job.spec);
    const args = trainerServerArgs(spec, spec.learner, place);
    for (const [name, path] of exposed) {
      const value = at(spec, path);
      expect(value).not.toBe(schemaAt(path).default);
      if (typeof value === 'boolean') {
        expect(args).toContain(trainerFlag(name, value));
        expect(args).not.toContain(trainerFlag(name, !value));
      } else {
        const at = args.indexOf(settingNamed(name)!.flag);
        expect([name, args[at + 1]]).toEqual([name, String(value)]);
      }
    }
  });

  test('passes the defaults of a job that sets none, and only flags the trainer has', () => {
    const { spec } = filledJob();
    const args = trainerServerArgs(spec, spec.learner, place);
    expect(args).toEqual(expect.arrayContaining(['--minibatches', '8', '--max-grad-norm', '1', '--adam-beta1', '0.9',
      '--adam-beta2', '0.999', '--no-skip-uniform-groups', '--micro-batch', '16', '--micro-batch-tokens', '16384', '--checkpoint-every', '10']));
    const processFlags = ['--host', '--port', '--nproc-per-node'];  // the server process's, not the trainer's settings
    const known = new Set([...described.flatMap((s) => [s.flag, `--no-${s.flag.slice(2)}`]), ...processFlags]);
    expect(args.filter((a) => a.startsWith('--') && !known.has(a))).toEqual([]);
  });
});

describe('the new settings are bounded', () => {
  test.each([
    ['algorithm.minibatches', 0], ['algorithm.maxGradNorm', 0], ['algorithm.adamBeta1', 1], ['algorithm.adamBeta2', 1.5],
    ['algorithm.clipLow', 1], ['algorithm.skipUniformGroups', 'yes'], ['learner.microBatch', 0],
    ['learner.microBatchTokens', 0], ['learner.microBatchTokens', 1048577],
  ] as const)('refuses spec.%s: %p, naming the field', (path, value) => {
    const m = baseJob();
    setAt(m.spec, path, value);
    expect(() => parseRLJobManifest(stringify(m))).toThrow(InvalidManifestError);
    expect(() => parseRLJobManifest(stringify(m))).toThrow(`spec.${path}`);
  });
});
