// `gsm8k`: grade-school math. The reference answer follows `####`; a completion's answer is its last number.
import { readJsonl, pickRow } from './dataset.js';
import type { Environment, EnvironmentArgs } from './environment.js';

export function gsm8kEnvironment(_args: EnvironmentArgs, seed: number, dataset?: string): Environment {
  const items = readJsonl(dataset, 'gsm8k');
  return {
    name: 'gsm8k',
    verifierId: 'gsm8k/v1',
    item: (seq) => {
      const row = pickRow(items, seed, seq);
      return { prompt: `${row.prompt}\nAnswer:`, answer: referenceAnswer(row.answer) };
    },
    score: (item, completion) => {
      const answer = lastNumber(completion);
      return answer !== undefined && answer === normaliseNumber(item.answer) ? 1 : 0;
    },
  };
}

export function referenceAnswer(solution: string): string {
  const marker = solution.lastIndexOf('####');
  return normaliseNumber(marker >= 0 ? solution.slice(marker + 4) : solution) ?? solution.trim();
}

export function lastNumber(text: string): string | undefined {
  const numbers = text.replace(/(\d),(\d)/g, '$1$2').match(/-?\d+(?:\.\d+)?/g);
  return numbers ? normaliseNumber(numbers[numbers.length - 1]!) : undefined;
}

function normaliseNumber(text: string): string | undefined {
  const match = text.replace(/[,$\s]/g, '').match(/-?\d+(?:\.\d+)?/);
  if (!match) return undefined;
  const value = Number(match[0]);
  return Number.isFinite(value) ? String(value) : undefined;
}
