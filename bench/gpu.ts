// The GPU check: python/scripts/gpu_check.py (a 0.5B-class model with random weights in bf16: trainer
// tokens/s and peak memory, hf engine generation tokens/s). Without a GPU it says so and reports no figure.
import { spawn } from 'node:child_process';
import { projectPython } from '../local/python.js';

export async function run(): Promise<Record<string, number | string | boolean>> {
  const child = spawn(projectPython(), ['python/scripts/gpu_check.py'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let last = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    for (const line of chunk.split('\n').filter(Boolean)) {
      if (line.startsWith('{')) last = line;
      else console.log(line);
    }
  });
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  if (code !== 0 || !last) throw new Error(`gpu_check.py exited ${code}`);
  return JSON.parse(last) as Record<string, number | string | boolean>;
}
