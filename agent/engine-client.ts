// The rollout engine behind its local HTTP API (docs/contracts.md): OpenAI-compatible completions (n samples
// with token ids and log-probs) and loading a policy version from the safetensors file the agent wrote.
// tiny and hf engines load the file by path; vLLM loads a LoRA version as a PEFT adapter directory, asked
// for by name in every completion, and full weights in place through rlkube's route in the vLLM image.
import { copyFile, link, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { EngineKind } from '../api/index.js';
import { HttpError, getJson, postJson } from './http.js';
import { readSafetensorsHeader } from './safetensors.js';

export interface Sample {
  text: string;
  tokenIds: number[];
  logprobs: number[];
  promptTokenIds: number[];
  finishReason: string;
}

/** A policy version on the engine's disk, digest-checked by the agent. */
export interface PolicyFile {
  version: number;
  /** The safetensors file, as the trainer wrote it. */
  path: string;
  digest: string;
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

/** The trainer's safetensors metadata keys (the weights contract, docs/contracts.md). */
export const POLICY_METADATA = { kind: 'rlkube.kind', version: 'rlkube.version', adapterConfig: 'rlkube.adapter_config' } as const;
export type PolicyKind = 'tiny' | 'full' | 'lora';

/** vLLM's name for the LoRA adapter of a policy version; completions ask for it as their model. */
export const adapterName = (version: number) => `policy-v${version}`;
/** rlkube's full-weights route in the vLLM engine image (python/rlkube_vllm/routes.py). */
export const VLLM_LOAD_WEIGHTS_PATH = '/rlkube/v1/load_weights';

/** What kind of policy a file's metadata says it holds, checked against the version it should be. */
export function policyKindOf(metadata: Record<string, string>, version: number): PolicyKind {
  const kind = metadata[POLICY_METADATA.kind];
  if (kind !== 'tiny' && kind !== 'full' && kind !== 'lora') {
    throw new HttpError('InvalidWeights', `policy file: ${POLICY_METADATA.kind} is ${JSON.stringify(kind)}, not tiny, full or lora`);
  }
  const claimed = metadata[POLICY_METADATA.version];
  if (claimed !== undefined && claimed !== String(version)) {
    throw new HttpError('InvalidWeights', `policy file of v${version} says it is v${claimed}`);
  }
  return kind;
}

/** The adapter_config.json text of a LoRA policy file (PEFT's own, as the trainer saved it). */
export function adapterConfigOf(metadata: Record<string, string>, version: number): string {
  if (policyKindOf(metadata, version) !== 'lora') throw new HttpError('InvalidWeights', `policy v${version} is not a LoRA adapter`);
  const text = metadata[POLICY_METADATA.adapterConfig];
  let config: unknown;
  try {
    config = text === undefined ? undefined : JSON.parse(text);
  } catch {
    throw new HttpError('InvalidWeights', `policy v${version}: ${POLICY_METADATA.adapterConfig} is not JSON`);
  }
  if (!config || typeof config !== 'object' || Array.isArray(config)) {
    throw new HttpError('InvalidWeights', `policy v${version}: ${POLICY_METADATA.adapterConfig} is missing or not a JSON object`);
  }
  return text!;
}

/**
 * Writes the PEFT directory `dir` of a LoRA policy file: adapter_model.safetensors (the same bytes: a hard
 * link, a copy across filesystems) and adapter_config.json (the text the trainer put in the metadata).
 * Built beside `dir` and renamed into place, so an engine never sees half a directory.
 */
export async function writePeftDir(file: string, dir: string, metadata: Record<string, string>, version: number): Promise<void> {
  const config = adapterConfigOf(metadata, version);
  const partial = `${dir}.partial`;
  await rm(partial, { recursive: true, force: true });
  await mkdir(partial, { recursive: true });
  const model = join(partial, 'adapter_model.safetensors');
  await link(file, model).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EXDEV' && err.code !== 'EPERM') throw err;
    return copyFile(file, model);
  });
  await writeFile(join(partial, 'adapter_config.json'), config);
  await rm(dir, { recursive: true, force: true });
  await rename(partial, dir);
}

export class EngineClient {
  /** The model completions ask for: the served model, or the loaded LoRA adapter's name. */
  private served: string;
  private adapter: { name: string; dir: string } | undefined;

  constructor(
    private readonly baseUrl: string,
    private readonly kind: EngineKind,
    private readonly model: string,
    private readonly timeoutMs = 120_000,
  ) {
    this.served = model;
  }

  health = () => getJson<unknown>(`${this.baseUrl}/health`, 5_000);

  async complete(prompt: string, n: number, maxTokens: number, temperature: number): Promise<Sample[]> {
    const response = await postJson<CompletionResponse>(
      `${this.baseUrl}/v1/completions`,
      { model: this.served, prompt, n, max_tokens: maxTokens, temperature, logprobs: 0, return_token_ids: true },
      this.timeoutMs,
    );
    if (!Array.isArray(response.choices) || response.choices.length !== n) {
      throw new HttpError('BadEngineResponse', `asked for ${n} samples, got ${response.choices?.length ?? 'none'}`);
    }
    return response.choices.map((choice) => {
      const tokenIds = choice.token_ids;
      const logprobs = choice.logprobs?.token_logprobs;
      if (!tokenIds || !logprobs || logprobs.length !== tokenIds.length || !choice.prompt_token_ids) {
        throw new HttpError('BadEngineResponse', 'a choice lacks token ids or log-probs (is return_token_ids supported?)');
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

  /** Loads a policy version; completions use it from the next call on. */
  async load(policy: PolicyFile): Promise<void> {
    const { version, path, digest } = policy;
    if (this.kind !== 'vllm') {
      await postJson(`${this.baseUrl}/v1/load_weights`, { path, version, digest }, this.timeoutMs);
      return;
    }
    const { metadata } = await readSafetensorsHeader(path);
    if (policyKindOf(metadata, version) === 'lora') return this.loadAdapter(policy, metadata);
    await postJson(`${this.baseUrl}${VLLM_LOAD_WEIGHTS_PATH}`, { path, version, digest }, this.timeoutMs);
    // A full version replaces the base model: no adapter applies on top of it.
    const previous = this.adapter;
    this.adapter = undefined;
    this.served = this.model;
    if (previous) await this.unloadAdapter(previous);
  }

  /** vLLM LoRA: the version's PEFT directory beside its file, loaded under its name, the previous one unloaded. */
  private async loadAdapter({ version, path }: PolicyFile, metadata: Record<string, string>): Promise<void> {
    const name = adapterName(version);
    const dir = join(dirname(path), name);
    await writePeftDir(path, dir, metadata, version);
    await postJson(`${this.baseUrl}/v1/load_lora_adapter`, { lora_name: name, lora_path: dir }, this.timeoutMs);
    const previous = this.adapter;
    this.adapter = { name, dir };
    this.served = name;
    // The same name again (reloaded into a restarted engine) is the adapter just loaded: nothing to unload.
    if (previous && previous.name !== name) await this.unloadAdapter(previous);
  }

  private async unloadAdapter(previous: { name: string; dir: string }): Promise<void> {
    // Already gone (an engine restarted under the agent) is what unloading wants: only other errors matter.
    await postJson(`${this.baseUrl}/v1/unload_lora_adapter`, { lora_name: previous.name }, this.timeoutMs).catch((err: unknown) => {
      if (!(err instanceof HttpError && err.status === 404)) throw err;
    });
    await rm(previous.dir, { recursive: true, force: true });
  }
}
