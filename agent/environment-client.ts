// The agent's client of its environment server (docs/contracts.md): the prompt of task seq, the rewards of a
// group's completions. The environment itself is Python (python/rlkube_env) or a user's own image.
import type { Logger } from 'pino';
import { realClock, type Clock } from '../util/clock.js';
import { retry } from '../util/retry.js';
import { HttpError, PEER_BACKOFF, getJson, isPeerAway, postJson } from './http.js';

/** GET /health of a usable environment. */
export interface EnvironmentInfo {
  status: 'ok';
  environment: string;
  /** Names the grader (and its version) in every trajectory group. */
  graderId: string;
}
/** POST /task {seq}: the prompt only; the reference answer stays with the server. */
export interface TaskPrompt { seq: number; prompt: string }
/** POST /score {seq, completions}: a reward in [0, 1] per completion, in order (details are optional). */
export interface Scores { graderId: string; rewards: number[]; details?: Array<Record<string, unknown>> }

/** The server says the job's environment cannot be used (bad args, a dataset that is not one): no retry cures it. */
export class EnvironmentUnusable extends Error {
  constructor(readonly reason: string, message: string) {
    super(message);
    this.name = 'EnvironmentUnusable';
  }
}

const CALL_TIMEOUT_MS = 120_000;

export class EnvironmentClient {
  constructor(
    private readonly url: string,
    private readonly log: Logger,
    private readonly signal: AbortSignal,
    private readonly clock: Clock = realClock,
  ) {}

  /** The server's identity, or EnvironmentUnusable with its reason; a server not up yet is waited for. */
  ready(): Promise<EnvironmentInfo> {
    const health = () =>
      getJson<EnvironmentInfo>(`${this.url}/health`, 10_000).catch((err: unknown) => {
        if (err instanceof HttpError && err.status === 503) throw new EnvironmentUnusable(err.reason, err.message.replace(/^.*? 503 /, ''));
        throw err;
      });
    // Whatever else fails (refused, 404 from a server still starting) is a server not up yet.
    return this.retry('environment health', health, (err) => !(err instanceof EnvironmentUnusable));
  }

  task(seq: number): Promise<TaskPrompt> {
    return this.retry('environment task', () => postJson<TaskPrompt>(`${this.url}/task`, { seq }, CALL_TIMEOUT_MS), isPeerAway);
  }

  score(seq: number, completions: string[]): Promise<Scores> {
    return this.retry('environment score', () => postJson<Scores>(`${this.url}/score`, { seq, completions }, CALL_TIMEOUT_MS), isPeerAway);
  }

  /** A server restarting (its supervisor brings it back) is waited out; its refusals are not. */
  private retry<T>(what: string, request: () => Promise<T>, classify: (err: unknown) => boolean): Promise<T> {
    return retry(what, request, { classify, backoff: PEER_BACKOFF, signal: this.signal, log: this.log, clock: this.clock });
  }
}
