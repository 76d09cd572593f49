// The rollout engine behind its local HTTP API: vLLM's OpenAI-compatible completions (n samples with token
// ids and log-probs) and loading a policy version (tiny policy: by path; vLLM: a LoRA adapter).
import { EngineError, getJson, postJson } from './http.js';

export interface Sample {
  text: string;
  tokenIds: number[];
  logprobs: number[];
  promptTokenIds: number[];
  finishReason: string;
}

interface CompletionResponse {
  choices: Array<{
    text: string;
    token_ids?: number[];
    prompt_token_ids?: number[];
    logprobs?: { token_logprobs?: Array<number | null> } | null;
    finish_reason: string | null;
  }>;
}

export class EngineClient {
  constructor(
    private readonly baseUrl: string,
    private readonly kind: 'tiny' | 'vllm',
    private readonly model: string,
    private readonly timeoutMs = 120_000,
  ) {}

  health = () => getJson<unknown>(`${this.baseUrl}/health`, 5_000);

  async complete(prompt: string, n: number, maxTokens: number, temperature: number): Promise<Sample[]> {
    const response = await postJson<CompletionResponse>(
      `${this.baseUrl}/v1/completions`,
      { model: this.model, prompt, n, max_tokens: maxTokens, temperature, logprobs: 0, return_token_ids: true },
      this.timeoutMs,
    );
    if (!Array.isArray(response.choices) || response.choices.length !== n) {
      throw new EngineError('BadEngineResponse', `asked for ${n} samples, got ${response.choices?.length ?? 'none'}`);
    }
    return response.choices.map((choice) => {
      const tokenIds = choice.token_ids;
      const logprobs = choice.logprobs?.token_logprobs;
      if (!tokenIds || !logprobs || logprobs.length !== tokenIds.length || !choice.prompt_token_ids) {
        throw new EngineError('BadEngineResponse', 'a choice lacks token ids or log-probs (is return_token_ids supported?)');
      }
      return {
        text: choice.text,
        tokenIds,
        logprobs: logprobs.map((lp) => lp ?? 0),
        promptTokenIds: choice.prompt_token_ids,
        finishReason: choice.finish_reason ?? 'stop',
      };
    });
  }

  /** Loads policy `version` from a local file (the agent wrote it, digest-checked, from the object store). */
  async load(version: number, path: string, digest: string): Promise<void> {
    if (this.kind === 'vllm') {
      await postJson(`${this.baseUrl}/v1/load_lora_adapter`, { lora_name: `v${version}`, lora_path: path }, this.timeoutMs);
      return;
    }
    await postJson(`${this.baseUrl}/v1/load_weights`, { path, version, digest }, this.timeoutMs);
  }
}
