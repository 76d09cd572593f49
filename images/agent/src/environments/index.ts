// The environment registry: adding an environment is one file plus one line here.
import { arithmeticEnvironment } from './arithmetic.js';
import { EnvironmentError, type Environment, type EnvironmentArgs } from './environment.js';
import { gsm8kEnvironment } from './gsm8k.js';
import { mathEnvironment } from './math.js';
import { reverseEnvironment } from './reverse.js';

const registry: Record<string, (args: EnvironmentArgs, seed: number, dataset?: string) => Environment> = {
  reverse: reverseEnvironment,
  arithmetic: arithmeticEnvironment,
  gsm8k: gsm8kEnvironment,
  math: mathEnvironment,
};

export function createEnvironment(spec: { name: string; args?: EnvironmentArgs; dataset?: string }, seed: number): Environment {
  const make = registry[spec.name];
  if (!make) throw new EnvironmentError('UnknownEnvironment', `environment.name ${spec.name} is not one of ${Object.keys(registry).join(', ')}`);
  return make(spec.args ?? {}, seed, spec.dataset);
}

export { EnvironmentError, type Environment, type EnvironmentItem } from './environment.js';
