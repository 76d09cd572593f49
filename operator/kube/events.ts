// Kubernetes Events about our objects (core/v1), best effort: a failed Event never fails a reconcile.
import type { Logger } from 'pino';
import { RESOURCES, type KubeObject, type ResourceType } from './client.js';

export type EventType = 'Normal' | 'Warning';

export interface EventSink {
  record(obj: KubeObject, type: EventType, reason: string, message: string): void;
}

/** The same event (object, reason, message) again within this window is not repeated. */
const REPEAT_WINDOW_MS = 5 * 60_000;

/** What recording takes of the API client: a create whose answer it does not read (KubeClient, or a test's fake). */
export interface EventCreator {
  create(type: ResourceType, namespace: string, obj: KubeObject): Promise<unknown>;
}

export class EventRecorder implements EventSink {
  private readonly recent = new Map<string, number>();

  constructor(private readonly client: EventCreator, private readonly log: Logger, private readonly component = 'rlkube-operator') {}

  record(obj: KubeObject, type: EventType, reason: string, message: string): void {
    const { name, namespace, uid, resourceVersion } = obj.metadata ?? {};
    if (!name || !namespace) return;
    const id = `${uid}/${reason}/${message}`;
    const seen = this.recent.get(id);
    if (seen !== undefined && Date.now() - seen < REPEAT_WINDOW_MS) return;
    this.recent.set(id, Date.now());
    if (this.recent.size > 2000) for (const [k, t] of this.recent) if (Date.now() - t >= REPEAT_WINDOW_MS) this.recent.delete(k);
    const now = new Date().toISOString();
    const event = {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { generateName: `${name}.`, namespace },
      involvedObject: { apiVersion: obj.apiVersion, kind: obj.kind, name, namespace, uid, resourceVersion },
      type, reason, message: message.slice(0, 1024),
      source: { component: this.component },
      reportingComponent: this.component,
      firstTimestamp: now, lastTimestamp: now, count: 1,
    };
    this.client.create(RESOURCES.events, namespace, event).catch((err) => {
      this.log.debug({ err: String(err), reason }, 'event not recorded');
    });
  }
}
