// A real environment server process (python/rlkube_env) for tests: started on a free port, stopped after.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { projectPython } from '../../local/python.js';

export interface EnvironmentServer { url: string; stop(): Promise<void> }

export async function startEnvironmentServer(spec: unknown, seed = 1): Promise<EnvironmentServer> {
  const child = spawn(projectPython(), ['-m', 'rlkube_env.server', '--port', '0', '--spec', JSON.stringify(spec), '--seed', String(seed)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`environment server exited ${code} before it was ready`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const event = JSON.parse(line) as { event: string; port?: number };
      if (event.event === 'ready') resolve(event.port!);
    });
  });
  return {
    url: `http://127.0.0.1:${port}`,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}
