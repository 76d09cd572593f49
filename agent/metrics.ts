// The agents' Prometheus metrics and the small HTTP server that serves them (/metrics, /healthz).
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Registry } from 'prom-client';
import { controlDecodeFailures } from '../bus/index.js';

export function agentMetrics() {
  const registry = new Registry();
  // The watches of the job's control records count what they skip (bus/control.ts).
  registry.registerMetric(controlDecodeFailures);
  return {
    registry,
    groupsPublished: new Counter({ name: 'rlkube_groups_published_total', help: 'Trajectory groups published by this rollout agent', registers: [registry] }),
    engineErrors: new Counter({ name: 'rlkube_engine_errors_total', help: 'Engine failures that released a task', labelNames: ['reason'], registers: [registry] }),
    groups: new Gauge({ name: 'rlkube_learner_groups', help: 'Groups counted by the learner (accepted, stale, rejected, leftOver)', labelNames: ['outcome'], registers: [registry] }),
    step: new Gauge({ name: 'rlkube_learner_step', help: 'Learner steps done', registers: [registry] }),
    reward: new Gauge({ name: 'rlkube_learner_reward', help: 'Mean reward of the last step', registers: [registry] }),
  };
}
export type AgentMetrics = ReturnType<typeof agentMetrics>;

/** Port 0 serves nothing (local runs start many agents on one machine). */
export function serveMetrics(metrics: AgentMetrics, port: number): Server | undefined {
  if (port === 0) return undefined;
  const server = createServer((req, res) => {
    if (req.url === '/healthz') return void res.end('ok');
    if (req.url !== '/metrics') return void res.writeHead(404).end();
    metrics.registry.metrics().then((body) => res.setHeader('content-type', metrics.registry.contentType).end(body));
  });
  server.listen(port);
  return server;
}
