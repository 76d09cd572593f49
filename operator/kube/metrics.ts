// The operator's Prometheus metrics and its one HTTP server: /metrics, /healthz, /readyz.
import http from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { controlDecodeFailures } from '../../bus/index.js';
import type { QueueObserver } from './queue.js';

export class OperatorMetrics {
  readonly registry = new Registry();
  private readonly reconciles = new Counter({ name: 'rlkube_operator_reconcile_total', help: 'Reconciles, by controller and result', labelNames: ['controller', 'result'], registers: [this.registry] });
  private readonly errors = new Counter({ name: 'rlkube_operator_reconcile_errors_total', help: 'Reconciles that failed', labelNames: ['controller'], registers: [this.registry] });
  private readonly duration = new Histogram({
    name: 'rlkube_operator_reconcile_duration_seconds', help: 'Reconcile duration', labelNames: ['controller'],
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [this.registry],
  });
  private readonly queueDepth = new Gauge({ name: 'rlkube_operator_queue_depth', help: 'Keys waiting in the work queue', labelNames: ['controller'], registers: [this.registry] });
  readonly leader = new Gauge({ name: 'rlkube_operator_leader', help: '1 while this replica holds the leader lease', registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    // Progress records the jobs' watches skipped (each one also a Warning Event on its job).
    this.registry.registerMetric(controlDecodeFailures);
  }

  /** Exports a client's request counts (verb + resource) as rlkube_operator_api_requests_total. */
  trackRequests(calls: ReadonlyMap<string, number>): void {
    new Counter({
      name: 'rlkube_operator_api_requests_total', help: 'Kubernetes API requests made, by verb and resource', labelNames: ['request'], registers: [this.registry],
      collect() { this.reset(); for (const [request, n] of calls) this.inc({ request }, n); },
    });
  }

  observer(controller: string): QueueObserver {
    return {
      reconciled: (_key, seconds, error) => {
        this.duration.observe({ controller }, seconds);
        this.reconciles.inc({ controller, result: error ? 'error' : 'success' });
        if (error) this.errors.inc({ controller });
      },
      depth: (depth) => this.queueDepth.set({ controller }, depth),
    };
  }
}

export interface Probes { healthy(): boolean; ready(): boolean }

export function serveHttp(port: number, metrics: OperatorMetrics, probes: Probes): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics') {
      metrics.registry.metrics().then((text) => {
        res.writeHead(200, { 'content-type': metrics.registry.contentType });
        res.end(text);
      }, (err: unknown) => { res.writeHead(500); res.end(String(err)); });
      return;
    }
    const probe = path === '/healthz' ? probes.healthy() : path === '/readyz' ? probes.ready() : undefined;
    if (probe === undefined) { res.writeHead(404); res.end('not found\n'); return; }
    res.writeHead(probe ? 200 : 503, { 'content-type': 'text/plain' });
    res.end(probe ? 'ok\n' : 'not ready\n');
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, () => resolve(server));
  });
}
