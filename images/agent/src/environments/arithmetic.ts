// `arithmetic`: small integer sums and differences; reward 1 for the exact answer, else 0.
import { intArg, rng, type Environment, type EnvironmentArgs } from './environment.js';

export function arithmeticEnvironment(args: EnvironmentArgs, seed: number): Environment {
  const maxOperand = intArg(args, 'maxOperand', 9, 1, 1_000_000);
  return {
    name: 'arithmetic',
    verifierId: 'arithmetic/v1',
    item(seq) {
      const random = rng(seed, seq);
      const a = Math.floor(random() * (maxOperand + 1));
      const b = Math.floor(random() * (maxOperand + 1));
      const op = random() < 0.5 ? '+' : '-';
      return { prompt: `${a}${op}${b}=`, answer: String(op === '+' ? a + b : a - b) };
    },
    score: (item, completion) => (completion.trim() === item.answer ? 1 : 0),
  };
}
