// The environment contract of the agent containers, in one place: variable names, the typed config they
// parse into, and the projection of the RLJob spec that an agent receives. Documented in docs/agent-env.md.
import { Type, type Static } from '@sinclair/typebox';
import { LearnerTemplate, type EngineKind } from './common.js';
import { RLJobSpec, RolloutSpec, taskWindowRule } from './rljob.js';
import { parseNatsUrl, withRules } from './schema-kit.js';
import { formatErrors, validate, withDefaults } from './validate.js';

export const AGENT_ENV = {
  natsUrl: 'RLKUBE_NATS_URL',
  natsCreds: 'RLKUBE_NATS_CREDS',
  namespace: 'RLKUBE_NAMESPACE',
  job: 'RLKUBE_JOB',
  role: 'RLKUBE_ROLE',
  pool: 'RLKUBE_POOL',
  workerId: 'RLKUBE_WORKER_ID',
  engineUrl: 'RLKUBE_ENGINE_URL',
  /** tiny | hf | vllm: how the rollout agent hands a policy version to its engine (docs/contracts.md). */
  engineKind: 'RLKUBE_ENGINE_KIND',
  trainerUrl: 'RLKUBE_TRAINER_URL',
  /** The agent's own environment server (docs/contracts.md): prompts for the rollout agent, re-scoring for the learner's. */
  environmentUrl: 'RLKUBE_ENVIRONMENT_URL',
  /** Not the agents': the hub token the environment server reads (spec.environment.tokenSecret), beside HF_TOKEN. */
  hfToken: 'RLKUBE_HF_TOKEN',
  jobSpec: 'RLKUBE_JOB_SPEC',
  metricsPort: 'RLKUBE_METRICS_PORT',
} as const;
export type AgentEnvName = (typeof AGENT_ENV)[keyof typeof AGENT_ENV];

export const DEFAULT_AGENT_METRICS_PORT = 9090;

/**
 * The RLJob spec as an agent sees it. The operator leaves out what only it acts on (suspend, deadlines,
 * the other pools), so that editing those does not restart every agent; a full spec is accepted too.
 */
const { rollout: _rollout, learner: _learner, suspend: _suspend, ...agentFields } = RLJobSpec.properties;
export const AgentJobSpec = withRules(Type.Object({
  ...agentFields,
  suspend: Type.Optional(Type.Boolean()),
  rollout: Type.Optional(RolloutSpec),
  learner: Type.Optional(LearnerTemplate),
}, { additionalProperties: false }), [taskWindowRule]);
export type AgentJobSpec = Static<typeof AgentJobSpec>;

/** What goes into RLKUBE_JOB_SPEC for an agent of the given role. */
export function agentJobSpec(spec: Static<typeof RLJobSpec>, role: AgentRole): AgentJobSpec {
  const { suspend: _s, activeDeadlineSeconds: _d, ttlSecondsAfterFinished: _t, managedBy: _m, rollout: _r, learner, ...rest } = spec;
  return role === 'learner' ? { ...rest, learner } : rest;
}

export type AgentRole = 'rollout' | 'learner';

interface CommonAgentConfig {
  natsServers: string[];
  /** Path of a NATS credentials file; absent → no credentials. */
  natsCreds?: string;
  namespace: string;
  job: string;
  workerId: string;
  jobSpec: AgentJobSpec;
  metricsPort: number;
  environmentUrl: string;
}
export interface RolloutAgentConfig extends CommonAgentConfig {
  role: 'rollout';
  pool: string;
  engineUrl: string;
  /** Absent: tiny for the tiny model, hf for any other (what `rlkube run` starts); the operator always sets it. */
  engineKind?: EngineKind;
}
const engineKinds: readonly string[] = ['tiny', 'hf', 'vllm'] satisfies EngineKind[];
export interface LearnerAgentConfig extends CommonAgentConfig { role: 'learner'; trainerUrl: string }
export type AgentConfig = RolloutAgentConfig | LearnerAgentConfig;

export class AgentEnvError extends Error {
  readonly reason = 'InvalidAgentEnv' as const;
  constructor(readonly setting: AgentEnvName, message: string) {
    super(`${setting}: ${message}`);
    this.name = 'AgentEnvError';
  }
}

type Env = Record<string, string | undefined>;
const NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function required(env: Env, name: AgentEnvName): string {
  const value = env[name]?.trim();
  if (!value) throw new AgentEnvError(name, 'is required');
  return value;
}

function httpUrl(env: Env, name: AgentEnvName): string {
  const value = required(env, name);
  let url: URL;
  try { url = new URL(value); } catch { throw new AgentEnvError(name, `not a URL: ${value}`); }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new AgentEnvError(name, `must be http(s), got ${value}`);
  return value.replace(/\/+$/, '');
}

function dnsName(env: Env, name: AgentEnvName): string {
  const value = required(env, name);
  if (!NAME.test(value) || value.length > 253) throw new AgentEnvError(name, `not a valid Kubernetes name: ${value}`);
  return value;
}

/** Parses an agent's environment (pass process.env from main); throws AgentEnvError naming the variable. */
export function parseAgentEnv(env: Env): AgentConfig {
  const nats = parseNatsUrl(required(env, AGENT_ENV.natsUrl));
  if ('bad' in nats) throw new AgentEnvError(AGENT_ENV.natsUrl, `not a nats:// or tls:// URL: ${nats.bad}`);
  const natsServers = nats.servers;
  const portText = env[AGENT_ENV.metricsPort]?.trim();
  const metricsPort = portText ? Number(portText) : DEFAULT_AGENT_METRICS_PORT;
  if (!Number.isInteger(metricsPort) || metricsPort < 0 || metricsPort > 65535) {
    throw new AgentEnvError(AGENT_ENV.metricsPort, `not a port number: ${portText}`);
  }
  let specJson: unknown;
  try { specJson = JSON.parse(required(env, AGENT_ENV.jobSpec)); } catch (err) {
    if (err instanceof AgentEnvError) throw err;
    throw new AgentEnvError(AGENT_ENV.jobSpec, `not JSON: ${(err as Error).message}`);
  }
  const jobSpec = withDefaults<AgentJobSpec>(AgentJobSpec, specJson);
  const errors = validate(AgentJobSpec, jobSpec, 'spec');
  if (errors.length > 0) throw new AgentEnvError(AGENT_ENV.jobSpec, formatErrors(errors));

  const creds = env[AGENT_ENV.natsCreds]?.trim();
  const common: CommonAgentConfig = {
    natsServers,
    ...(creds ? { natsCreds: creds } : {}),
    namespace: dnsName(env, AGENT_ENV.namespace),
    job: dnsName(env, AGENT_ENV.job),
    workerId: required(env, AGENT_ENV.workerId),
    jobSpec,
    metricsPort,
    environmentUrl: httpUrl(env, AGENT_ENV.environmentUrl),
  };
  const role = required(env, AGENT_ENV.role);
  if (role === 'rollout') {
    const engineKind = env[AGENT_ENV.engineKind]?.trim();
    if (engineKind && !engineKinds.includes(engineKind)) throw new AgentEnvError(AGENT_ENV.engineKind, `must be tiny, hf or vllm, got ${engineKind}`);
    return {
      ...common, role, pool: dnsName(env, AGENT_ENV.pool), engineUrl: httpUrl(env, AGENT_ENV.engineUrl),
      ...(engineKind ? { engineKind: engineKind as EngineKind } : {}),
    };
  }
  if (role === 'learner') return { ...common, role, trainerUrl: httpUrl(env, AGENT_ENV.trainerUrl) };
  throw new AgentEnvError(AGENT_ENV.role, `must be rollout or learner, got ${role}`);
}

/** The inverse of parseAgentEnv: the variables that describe config (local runs, tests). */
export function formatAgentEnv(config: AgentConfig): Record<string, string> {
  const env: Record<string, string> = {
    [AGENT_ENV.natsUrl]: config.natsServers.join(','),
    [AGENT_ENV.namespace]: config.namespace,
    [AGENT_ENV.job]: config.job,
    [AGENT_ENV.role]: config.role,
    [AGENT_ENV.workerId]: config.workerId,
    [AGENT_ENV.jobSpec]: JSON.stringify(config.jobSpec),
    [AGENT_ENV.metricsPort]: String(config.metricsPort),
    [AGENT_ENV.environmentUrl]: config.environmentUrl,
  };
  if (config.natsCreds) env[AGENT_ENV.natsCreds] = config.natsCreds;
  if (config.role === 'rollout') {
    env[AGENT_ENV.pool] = config.pool;
    env[AGENT_ENV.engineUrl] = config.engineUrl;
    if (config.engineKind) env[AGENT_ENV.engineKind] = config.engineKind;
  } else {
    env[AGENT_ENV.trainerUrl] = config.trainerUrl;
  }
  return env;
}
