// `math`: competition math. Answers are compared inside \boxed{...}, after normalisation.
import { readJsonl, pickRow } from './dataset.js';
import type { Environment, EnvironmentArgs } from './environment.js';

export function mathEnvironment(_args: EnvironmentArgs, seed: number, dataset?: string): Environment {
  const items = readJsonl(dataset, 'math');
  return {
    name: 'math',
    verifierId: 'math/v1',
    item: (seq) => {
      const row = pickRow(items, seed, seq);
      return { prompt: row.prompt, answer: normaliseAnswer(lastBoxed(row.answer) ?? row.answer) };
    },
    score: (item, completion) => {
      const boxed = lastBoxed(completion);
      return boxed !== undefined && normaliseAnswer(boxed) === item.answer ? 1 : 0;
    },
  };
}

/** The contents of the last \boxed{...}, braces balanced. */
export function lastBoxed(text: string): string | undefined {
  const start = text.lastIndexOf('\\boxed{');
  if (start < 0) return undefined;
  let depth = 0;
  for (let i = start + '\\boxed'.length; i < text.length; i++) {
    if (text[i] === '{') depth++;
    else if (text[i] === '}' && --depth === 0) return text.slice(start + '\\boxed{'.length, i);
  }
  return undefined;
}

/** Removes what does not change a mathematical answer: spaces, \left/\right, \! and \, , trailing .0, $ and text{} units. */
export function normaliseAnswer(answer: string): string {
  let s = answer.trim();
  s = s.replace(/\\text\{\s*[a-zA-Z ]*\}/g, '');
  s = s.replace(/\\left|\\right|\\!|\\,|\\;|\$/g, '');
  s = s.replace(/\\dfrac|\\tfrac/g, '\\frac');
  s = s.replace(/\s+/g, '');
  s = s.replace(/^(-?\d+)\.0+$/, '$1');
  s = s.replace(/\\frac(\d)(\d)/g, '\\frac{$1}{$2}');
  return s;
}
