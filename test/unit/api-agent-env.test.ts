// The agent environment contract: one parse function, typed result, and errors that name the variable.
import { AGENT_ENV, AgentEnvError, agentJobSpec, formatAgentEnv, parseAgentEnv, parseRLJobSpec } from '../../api/index.js';
import { baseJob } from '../harness/operator-fixtures.js';

const spec = parseRLJobSpec(baseJob().spec);
const rolloutEnv = (): Record<string, string> => ({
  RLKUBE_NATS_URL: 'nats://nats.rlkube-system:4222',
  RLKUBE_NAMESPACE: 'team-a',
  RLKUBE_JOB: 'reverse',
  RLKUBE_ROLE: 'rollout',
  RLKUBE_POOL: 'reverse-cpu',
  RLKUBE_WORKER_ID: 'reverse-cpu-7d9f-abcde',
  RLKUBE_ENGINE_URL: 'http://127.0.0.1:8000/',
  RLKUBE_ENVIRONMENT_URL: 'http://127.0.0.1:8002',
  RLKUBE_JOB_SPEC: JSON.stringify(agentJobSpec(spec, 'rollout')),
});

describe('parseAgentEnv', () => {
  test('a rollout agent', () => {
    const config = parseAgentEnv(rolloutEnv());
    expect(config).toMatchObject({
      role: 'rollout', natsServers: ['nats://nats.rlkube-system:4222'], namespace: 'team-a', job: 'reverse',
      pool: 'reverse-cpu', engineUrl: 'http://127.0.0.1:8000', environmentUrl: 'http://127.0.0.1:8002', metricsPort: 9090,
    });
    expect(config.natsCreds).toBeUndefined();
    expect(config.jobSpec.algorithm.groupSize).toBe(4);
    expect(config.jobSpec.rollout).toBeUndefined();
  });

  test('a learner agent, with credentials and several servers', () => {
    const env = { ...rolloutEnv(), RLKUBE_ROLE: 'learner', RLKUBE_TRAINER_URL: 'http://127.0.0.1:8001', RLKUBE_NATS_CREDS: '/etc/rlkube/nats/creds',
      RLKUBE_NATS_URL: 'nats://a:4222, nats://b:4222', RLKUBE_JOB_SPEC: JSON.stringify(agentJobSpec(spec, 'learner')), RLKUBE_METRICS_PORT: '9100' };
    const config = parseAgentEnv(env);
    expect(config.role).toBe('learner');
    if (config.role !== 'learner') throw new Error('unreachable');
    expect(config).toMatchObject({ trainerUrl: 'http://127.0.0.1:8001', natsServers: ['nats://a:4222', 'nats://b:4222'], natsCreds: '/etc/rlkube/nats/creds', metricsPort: 9100 });
    expect(config.jobSpec.learner?.checkpoint.everySteps).toBe(10);
  });

  test('accepts the full RLJob spec too (local runs)', () => {
    expect(parseAgentEnv({ ...rolloutEnv(), RLKUBE_JOB_SPEC: JSON.stringify(spec) }).jobSpec.rollout?.pools).toHaveLength(1);
  });

  test.each<[string, Record<string, string | undefined>, string]>([
    ['missing NATS URL', { RLKUBE_NATS_URL: undefined }, AGENT_ENV.natsUrl],
    ['NATS URL of another scheme', { RLKUBE_NATS_URL: 'http://x:4222' }, AGENT_ENV.natsUrl],
    ['WebSocket NATS URL (the Node client speaks TCP)', { RLKUBE_NATS_URL: 'nats://a:4222,ws://b:8080' }, AGENT_ENV.natsUrl],
    ['bad namespace', { RLKUBE_NAMESPACE: 'Team_A' }, AGENT_ENV.namespace],
    ['missing job', { RLKUBE_JOB: '' }, AGENT_ENV.job],
    ['unknown role', { RLKUBE_ROLE: 'critic' }, AGENT_ENV.role],
    ['rollout without pool', { RLKUBE_POOL: undefined }, AGENT_ENV.pool],
    ['missing worker id', { RLKUBE_WORKER_ID: undefined }, AGENT_ENV.workerId],
    ['engine URL not a URL', { RLKUBE_ENGINE_URL: 'localhost:8000' }, AGENT_ENV.engineUrl],
    ['learner without trainer URL', { RLKUBE_ROLE: 'learner' }, AGENT_ENV.trainerUrl],
    ['missing environment server URL', { RLKUBE_ENVIRONMENT_URL: undefined }, AGENT_ENV.environmentUrl],
    ['spec not JSON', { RLKUBE_JOB_SPEC: '{model:' }, AGENT_ENV.jobSpec],
    ['spec invalid', { RLKUBE_JOB_SPEC: JSON.stringify({ ...spec, algorithm: { groupSize: 1 } }) }, 'spec.algorithm.groupSize'],
    ['metrics port not a number', { RLKUBE_METRICS_PORT: 'ninety' }, AGENT_ENV.metricsPort],
  ])('refuses %s, naming the setting', (_name, patch, expected) => {
    const env = { ...rolloutEnv(), ...patch };
    let error: unknown;
    try { parseAgentEnv(env); } catch (err) { error = err; }
    expect(error).toBeInstanceOf(AgentEnvError);
    expect((error as AgentEnvError).reason).toBe('InvalidAgentEnv');
    expect((error as Error).message).toContain(expected);
  });

  test('formatAgentEnv is the inverse of parseAgentEnv', () => {
    const config = parseAgentEnv(rolloutEnv());
    expect(parseAgentEnv(formatAgentEnv(config))).toEqual(config);
  });

  test('the rollout projection leaves out what only the operator acts on', () => {
    const projected = agentJobSpec({ ...spec, suspend: true, activeDeadlineSeconds: 5 }, 'rollout');
    expect(Object.keys(projected).sort()).toEqual(['algorithm', 'environment', 'model', 'sync', 'verification']);
  });
});
