// What can be told of spec.environment without running it: the operator refuses these before it makes pods,
// `rlkube run` before it starts anything. The rules are not written here: they are read from the environment
// catalogue (api/generated/environments.json), which Python prints from the declarations its environments read
// their args through (`python -m rlkube_env.cli describe`). The environment server (python/rlkube_env) is the
// authority on the rest (a dataset's rows, a reasoning-gym task's config); both sides say the same words.
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import catalogue from './generated/environments.json' with { type: 'json' };
import type { EnvironmentSpec } from './rljob.js';

const IntegerArg = Type.Object({
  type: Type.Literal('integer'), description: Type.String(), minimum: Type.Integer(), maximum: Type.Integer(), default: Type.Optional(Type.Integer()),
});
const StringArg = Type.Object({
  type: Type.Literal('string'), description: Type.String(), pattern: Type.String(), 'x-meaning': Type.String(), default: Type.Optional(Type.String()),
});
type ArgDescription = Static<typeof IntegerArg> | Static<typeof StringArg>;

/** One environment of the catalogue (rlkube_env's Signature.describe): its args as a JSON schema, the rules across
 * them, whether it reads a dataset. additionalProperties true: undeclared args are the environment's own config
 * (a plug-in's), passed on unchecked. */
const EnvironmentDescription = Type.Object({
  name: Type.String(),
  summary: Type.String(),
  dataset: Type.Union([Type.Literal('required'), Type.Literal('none')]),
  args: Type.Object({
    type: Type.Literal('object'),
    properties: Type.Record(Type.String(), Type.Union([IntegerArg, StringArg])),
    required: Type.Array(Type.String()),
    additionalProperties: Type.Boolean(),
    'x-more-args': Type.Optional(Type.String()),
  }),
  rules: Type.Array(Type.Object({ rule: Type.Literal('notAbove'), arg: Type.String(), limit: Type.String() })),
});
export type EnvironmentDescription = Static<typeof EnvironmentDescription>;

function catalogueOf(committed: { environments: unknown }): readonly EnvironmentDescription[] {
  const environments = Type.Array(EnvironmentDescription);
  if (!Value.Check(environments, committed.environments)) {
    const [first] = Value.Errors(environments, committed.environments);
    throw new Error(`api/generated/environments.json is not an environment catalogue (${first?.path}: ${first?.message}); regenerate it (docs/contracts.md)`);
  }
  return committed.environments;
}

/** The built-in environments, in the catalogue's order. */
export const ENVIRONMENT_CATALOGUE = catalogueOf(catalogue);

export interface EnvironmentProblem {
  reason: 'InvalidEnvironmentArgs' | 'DatasetUnreadable' | 'UnknownEnvironment';
  /** The manifest field at fault, e.g. environment.args.minLength. */
  field: string;
  message: string;
}

const problem = (reason: EnvironmentProblem['reason'], field: string, detail: string): EnvironmentProblem =>
  ({ reason, field, message: `${field}: ${detail}` });
const argProblem = (name: string, detail: string): EnvironmentProblem => problem('InvalidEnvironmentArgs', `environment.args.${name}`, detail);

/** An integer argument: a number without a fraction, or a string of decimal digits (the catalogue's $comment). */
function integerOf(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) ? value : undefined;
  return typeof value === 'string' && /^[+-]?[0-9]+$/.test(value) ? Number(value) : undefined;
}

const meaning = (arg: ArgDescription): string => arg.type === 'integer' ? `an integer in [${arg.minimum}, ${arg.maximum}]` : arg['x-meaning'];

/** The value read, or the problem with it (the messages of rlkube_env.environment's IntArg and TextArg). */
function readArg(name: string, arg: ArgDescription, value: unknown): number | string | EnvironmentProblem {
  if (arg.type === 'integer') {
    const n = integerOf(value);
    if (n !== undefined && n >= arg.minimum && n <= arg.maximum) return n;
  } else if (typeof value === 'string' && new RegExp(arg.pattern).test(value)) {
    return value;
  }
  return argProblem(name, `must be ${meaning(arg)}, got ${JSON.stringify(value)}`);
}

/** The args' problem, checked in rlkube_env's Signature.read order: unknown args, each declared arg, the rules. */
function argsProblem(environment: EnvironmentDescription, spec: Record<string, unknown>): EnvironmentProblem | undefined {
  // What the environment server is handed is JSON, where an undefined value is no value.
  const args = Object.fromEntries(Object.entries(spec).filter(([, value]) => value !== undefined));
  const declared = environment.args.properties;
  if (!environment.args.additionalProperties) {
    const unknown = Object.keys(args).find((key) => !Object.hasOwn(declared, key));
    if (unknown !== undefined) {
      const takes = Object.keys(declared).join(', ') || 'none';
      return argProblem(unknown, `is not an argument of ${environment.name} (it takes ${takes})`);
    }
  }
  const values: Record<string, number | string> = {};
  for (const [name, arg] of Object.entries(declared)) {
    if (!Object.hasOwn(args, name)) {
      if (arg.default === undefined) return argProblem(name, `is required: ${meaning(arg)}`);
      values[name] = arg.default;
      continue;
    }
    const value = readArg(name, arg, args[name]);
    if (typeof value === 'object') return value;
    values[name] = value;
  }
  for (const { arg, limit } of environment.rules) {
    if (values[arg]! > values[limit]!) return argProblem(arg, `${values[arg]} is above environment.args.${limit} ${values[limit]}`);
  }
  return undefined;
}

const HF_DATASET = /^hf:[^/:\s]+\/[^/:\s]+(:[^:\s]+){0,2}$/;

/** A dataset where none is read, a missing one, or one whose address is not read (rlkube_env.datasets' words). */
function datasetProblem(environment: EnvironmentDescription, dataset: string | undefined): EnvironmentProblem | undefined {
  if (environment.dataset === 'none') {
    return dataset === undefined ? undefined : problem('InvalidEnvironmentArgs', 'environment.dataset', `environment ${environment.name} takes no dataset`);
  }
  if (!dataset) return problem('InvalidEnvironmentArgs', 'environment.dataset', `environment ${environment.name} needs a dataset (JSONL or Parquet: a path, an http(s) URL or hf:<owner>/<name>)`);
  if (dataset.startsWith('hf:') && !HF_DATASET.test(dataset)) return problem('DatasetUnreadable', 'environment.dataset', `${dataset}: a hub dataset is hf:<owner>/<name>[:<config>[:<split>]]`);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(dataset) && !/^https?:\/\//.test(dataset)) return problem('DatasetUnreadable', 'environment.dataset', `${dataset}: only local paths, http(s) URLs and hf:<owner>/<name> are read`);
  return undefined;
}

/** The first problem found, or undefined. A custom image (environment.image) is its own judge. */
export function environmentProblem(env: EnvironmentSpec): EnvironmentProblem | undefined {
  if (env.image) return undefined;
  const environment = ENVIRONMENT_CATALOGUE.find((e) => e.name === env.name);
  if (!environment) {
    const names = ENVIRONMENT_CATALOGUE.map((e) => e.name).join(', ');
    return problem('UnknownEnvironment', 'environment.name', `${JSON.stringify(env.name)} is not one of ${names}`);
  }
  // In the server's order: an environment that reads no dataset refuses one before its args are read.
  const args = (): EnvironmentProblem | undefined => argsProblem(environment, env.args ?? {});
  const dataset = (): EnvironmentProblem | undefined => datasetProblem(environment, env.dataset);
  return environment.dataset === 'none' ? dataset() ?? args() : args() ?? dataset();
}
