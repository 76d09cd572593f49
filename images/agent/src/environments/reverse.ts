// `reverse`: reverse a short string. Dense reward (share of characters in the right place), so a tiny
// model learns it on CPU.
import { EnvironmentError, intArg, rng, type Environment, type EnvironmentArgs } from './environment.js';

export function reverseEnvironment(args: EnvironmentArgs, seed: number): Environment {
  const minLength = intArg(args, 'minLength', 2, 1, 16);
  const maxLength = intArg(args, 'maxLength', 4, minLength, 16);
  const alphabet = String(args.alphabet ?? 'abcd');
  if (!/^[a-z]{2,26}$/.test(alphabet)) {
    throw new EnvironmentError('InvalidEnvironmentArgs', `environment.args.alphabet must be 2–26 lowercase letters, got ${alphabet}`);
  }
  return {
    name: 'reverse',
    verifierId: 'reverse/v1',
    item(seq) {
      const random = rng(seed, seq);
      const length = minLength + Math.floor(random() * (maxLength - minLength + 1));
      const text = Array.from({ length }, () => alphabet[Math.floor(random() * alphabet.length)]).join('');
      return { prompt: `${text}=`, answer: [...text].reverse().join('') };
    },
    score: (item, completion) => positionalMatch(item.answer, completion),
  };
}

/** Characters in the right place over the longer of the two lengths (0 for an empty completion). */
export function positionalMatch(target: string, completion: string): number {
  const length = Math.max(target.length, completion.length);
  if (length === 0 || completion.length === 0) return 0;
  let same = 0;
  for (let i = 0; i < Math.min(target.length, completion.length); i++) if (target[i] === completion[i]) same++;
  return same / length;
}
