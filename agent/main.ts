// The agent process (rollout or learner, by RLKUBE_ROLE): one typed config from the environment, pino
// logs, /metrics, and a clean stop on SIGTERM/SIGINT.
import { pino } from 'pino';
import { AgentEnvError, parseAgentEnv } from '../api/index.js';
import { runLearnerAgent } from './learner-agent.js';
import { agentMetrics, serveMetrics } from './metrics.js';
import { runRolloutAgent } from './rollout-agent.js';

const log = pino({ base: { pid: process.pid } });
let config;
try {
  config = parseAgentEnv(process.env);
} catch (err) {
  if (err instanceof AgentEnvError) {
    log.fatal({ setting: err.setting, reason: err.reason }, err.message);
    process.exit(2);
  }
  throw err;
}
const context = log.child({ job: config.job, worker: config.workerId, role: config.role, ...(config.role === 'rollout' ? { pool: config.pool } : {}) });
const metrics = agentMetrics();
const server = serveMetrics(metrics, config.metricsPort);
const controller = new AbortController();
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    context.info({ signal }, 'stopping');
    controller.abort();
  });
}
try {
  if (config.role === 'rollout') await runRolloutAgent(config, context, metrics, controller.signal);
  else await runLearnerAgent(config, context, metrics, controller.signal);
  server?.close();
  process.exit(0);
} catch (err) {
  context.fatal({ err: String(err), reason: (err as { reason?: string }).reason }, 'agent failed');
  process.exit(1);
}
