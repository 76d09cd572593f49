// The agent's client of its environment server (docs/contracts.md): the prompt of task seq, the rewards of a
// group's completions. The environment itself is Python (images/trainer/rlkube_env) or a user's own image.
import type { Logger } from 'pino';
import { HttpError, getJson, postJson } from './http.js';

/** GET /health of a usable environment. */
export interface EnvironmentInfo {
  status: 'ok';
  environment: string;
  /** Names the grader (and its version) in every trajectory group. */
  verifierId: string;
}
/** POST /task {seq}: the prompt only; the reference answer stays with the server. */
export interface TaskPrompt { seq: number; prompt: string }
/** POST /score {seq, completions}: a reward in [0, 1] per completion, in order (details are optional). */
export interface Scores { verifierId: string; rewards: number[]; details?: Array<Record<string, unknown>> }

/** The server says the job's environment cannot be used (bad args, a dataset that is not one): no retry cures it. */
export class EnvironmentUnusable extends Error {
  constructor(readonly reason: string, message: string) {
    super(message);
    this.name = 'EnvironmentUnusable';
  }
}

const CALL_TIMEOUT_MS = 120_000;

export class EnvironmentClient {
  constructor(private readonly url: string, private readonly log: Logger, private readonly signal: AbortSignal) {}

  /** The server's identity, or EnvironmentUnusable with its reason; a server not up yet is waited for. */
  async ready(): Promise<EnvironmentInfo> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await getJson<EnvironmentInfo>(`${this.url}/health`, 10_000);
      } catch (err) {
        if (err instanceof HttpError && err.status === 503) throw new EnvironmentUnusable(err.reason, err.message.replace(/^.*? 503 /, ''));
        if (this.signal.aborted) throw err;
        if (attempt % 40 === 39) this.log.warn({ err: String(err) }, 'waiting for the environment server');
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }

  task(seq: number): Promise<TaskPrompt> {
    return this.call(() => postJson<TaskPrompt>(`${this.url}/task`, { seq }, CALL_TIMEOUT_MS));
  }

  score(seq: number, completions: string[]): Promise<Scores> {
    return this.call(() => postJson<Scores>(`${this.url}/score`, { seq, completions }, CALL_TIMEOUT_MS));
  }

  /** A server restarting (its supervisor brings it back) is waited out; its refusals are not. */
  private async call<T>(request: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await request();
      } catch (err) {
        const away = err instanceof HttpError && (err.reason === 'Unreachable' || err.reason === 'Timeout');
        if (!away || this.signal.aborted) throw err;
        if (attempt % 20 === 19) this.log.warn({ err: String(err) }, 'environment server unreachable; retrying');
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }
}
