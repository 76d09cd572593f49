// Dataset-driven environments read JSONL ({"question": ..., "answer": ...} per line); task seq picks a row.
import { readFileSync } from 'node:fs';
import { EnvironmentError, rng, type EnvironmentItem } from './environment.js';

export function readJsonl(path: string | undefined, environment: string): EnvironmentItem[] {
  if (!path) throw new EnvironmentError('InvalidEnvironmentArgs', `environment ${environment} needs environment.dataset (a JSONL file)`);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new EnvironmentError('DatasetUnreadable', `environment.dataset ${path}: ${(err as Error).message}`);
  }
  const rows = text.split('\n').filter((line) => line.trim() !== '');
  const items = rows.map((line, index) => {
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch {
      throw new EnvironmentError('DatasetUnreadable', `environment.dataset ${path}: line ${index + 1} is not JSON`);
    }
    const { question, answer, problem, solution } = row as Record<string, unknown>;
    const prompt = question ?? problem;
    const target = answer ?? solution;
    if (typeof prompt !== 'string' || typeof target !== 'string') {
      throw new EnvironmentError('DatasetUnreadable', `environment.dataset ${path}: line ${index + 1} needs string question/answer (or problem/solution)`);
    }
    return { prompt, answer: target };
  });
  if (items.length === 0) throw new EnvironmentError('DatasetUnreadable', `environment.dataset ${path} has no rows`);
  return items;
}

/** Task seq → row: a seeded shuffle-free pick, so every process maps a seq to the same row. */
export const pickRow = (items: EnvironmentItem[], seed: number, seq: number) =>
  items[Math.floor(rng(seed, seq)() * items.length)]!;
