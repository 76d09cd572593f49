// The trainer behind its local HTTP API: state, and one GRPO step per batch (idempotent per step).
import { getJson, postJson } from './http.js';

export interface TrainerState {
  /** Steps done so far (= the index of the next train_step). */
  step: number;
  version: number;
  weights_path: string;
  digest: string;
  /** This trainer's rank among the learner's ranks (0 drives; absent: a single rank). */
  rank?: number;
  world_size?: number;
  /** The model's vocabulary size: every token id a group carries is below it. */
  vocab_size?: number;
}

export interface TrainGroup {
  policy_version: number;
  /** The task's prompt: the trainer checks prompt_token_ids are its tokens. */
  prompt?: string;
  prompt_token_ids: number[];
  /** `text`: what the learner scored; the trainer checks it is the text of token_ids. */
  completions: Array<{ token_ids: number[]; logprobs: number[]; reward: number; text?: string }>;
}

export interface TrainResult extends TrainerState {
  metrics: Record<string, number>;
  rejected: Array<{ index: number; reason: string; value: unknown }>;
  replayed?: boolean;
}

export class TrainerClient {
  constructor(private readonly baseUrl: string, private readonly timeoutMs = 600_000) {}

  state = () => getJson<TrainerState>(`${this.baseUrl}/v1/state`, 10_000);

  trainStep = (step: number, groups: TrainGroup[]) =>
    postJson<TrainResult>(`${this.baseUrl}/v1/train_step`, { step, groups }, this.timeoutMs);
}
