// A small typed Kubernetes REST client: JSON over one keep-alive HTTPS agent, server-side apply under one
// field manager, status subresource writes, every call bounded in time and every write behind the leader's
// fence. (client-node 1.x has server-side apply through KubernetesObjectApi.patch, but neither a total
// deadline per call nor a check at the moment a write leaves, which fencing needs; see WriteFence.)
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import type { KubeConfig, V1Status } from '@kubernetes/client-node';

export const FIELD_MANAGER = 'rlkube-operator';

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string; namespace?: string; uid?: string; resourceVersion?: string; generation?: number;
    labels?: Record<string, string>; annotations?: Record<string, string>; finalizers?: string[];
    deletionTimestamp?: string; creationTimestamp?: string;
    ownerReferences?: Array<{ apiVersion: string; kind: string; name: string; uid: string; controller?: boolean; blockOwnerDeletion?: boolean }>;
  };
  [key: string]: unknown;
}

export interface KubeList<T> { metadata: { resourceVersion?: string }; items: T[] }

/** A failed API call, with the Status reason (NotFound, Conflict, Invalid, ...) as the machine reason. */
export class KubeApiError extends Error {
  constructor(readonly statusCode: number, readonly reason: string, message: string) {
    super(message);
    this.name = 'KubeApiError';
  }
}
export const isNotFound = (err: unknown) => err instanceof KubeApiError && err.statusCode === 404;
export const isConflict = (err: unknown) => err instanceof KubeApiError && err.statusCode === 409;

/**
 * Leadership as writes need it: how much longer (ms) this process may still write, as the leader elector
 * sees it (≤ 0: it may not). A write is checked when it is about to leave and cut off when the window ends,
 * so a leader that was frozen, or whose lease could not be renewed, writes nothing once another may lead.
 */
export interface WriteFence {
  writableForMs(): number;
}

/** A write refused because this process cannot confirm it leads (fenced): nothing was sent, or it was cut off. */
export class NotLeaderError extends Error {
  readonly reason = 'NotLeader' as const;
  constructor(message: string) {
    super(message);
    this.name = 'NotLeaderError';
  }
}

export interface KubeClientOptions {
  /** Whose apply this is; everything the operator writes uses FIELD_MANAGER. */
  fieldManager?: string;
  /** Whole-call limit (connect, send, response) for every request; writes also end with the fence's window. */
  timeoutMs?: number;
  fence?: WriteFence;
  /** Sent as User-Agent, so that the API server's audit log tells replicas apart. */
  userAgent?: string;
}

/** Where a kind lives in the REST API. */
export interface ResourceType { group: string; version: string; plural: string; kind: string }

export const RESOURCES = {
  rljobs: { group: 'rlkube.dev', version: 'v1alpha1', plural: 'rljobs', kind: 'RLJob' },
  rolloutpools: { group: 'rlkube.dev', version: 'v1alpha1', plural: 'rolloutpools', kind: 'RolloutPool' },
  learners: { group: 'rlkube.dev', version: 'v1alpha1', plural: 'learners', kind: 'Learner' },
  deployments: { group: 'apps', version: 'v1', plural: 'deployments', kind: 'Deployment' },
  statefulsets: { group: 'apps', version: 'v1', plural: 'statefulsets', kind: 'StatefulSet' },
  services: { group: '', version: 'v1', plural: 'services', kind: 'Service' },
  pods: { group: '', version: 'v1', plural: 'pods', kind: 'Pod' },
  events: { group: '', version: 'v1', plural: 'events', kind: 'Event' },
  secrets: { group: '', version: 'v1', plural: 'secrets', kind: 'Secret' },
  leases: { group: 'coordination.k8s.io', version: 'v1', plural: 'leases', kind: 'Lease' },
} satisfies Record<string, ResourceType>;

/** REST path of a collection (namespace undefined → all namespaces) or of one object. */
export function resourcePath(type: ResourceType, namespace?: string, name?: string, subresource?: string): string {
  const base = type.group === '' ? `/api/${type.version}` : `/apis/${type.group}/${type.version}`;
  const ns = namespace ? `/namespaces/${encodeURIComponent(namespace)}` : '';
  const obj = name ? `/${encodeURIComponent(name)}` : '';
  return `${base}${ns}/${type.plural}${obj}${subresource ? `/${subresource}` : ''}`;
}

interface RequestOptions { body?: unknown; contentType?: string; query?: Record<string, string | undefined> }

export class KubeClient {
  private readonly server: URL;
  private auth?: { options: https.RequestOptions; at: number };
  private authReading?: Promise<https.RequestOptions>;
  private agent?: http.Agent;
  /** Requests made, by verb and resource (exported as a metric; the benchmark reads it). */
  readonly calls = new Map<string, number>();

  private readonly fieldManager: string;
  private readonly timeoutMs: number;

  constructor(private readonly kc: KubeConfig, private readonly options: KubeClientOptions = {}) {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error('kubeconfig has no current cluster');
    this.server = new URL(cluster.server);
    this.fieldManager = options.fieldManager ?? FIELD_MANAGER;
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  /** Ms this write may still take: the call's limit, cut to the fence's window; throws when fenced. */
  private writeWindow(method: string, path: string): number {
    const left = this.options.fence?.writableForMs() ?? Number.POSITIVE_INFINITY;
    if (left <= 0) throw new NotLeaderError(`${method} ${path}: not sent, leadership not confirmed`);
    return Math.min(this.timeoutMs, left);
  }

  /** TLS material and auth headers from the kubeconfig, re-read every minute (rotated tokens). */
  private authOptions(): Promise<https.RequestOptions> {
    if (this.auth && Date.now() - this.auth.at < 60_000) return Promise.resolve(this.auth.options);
    // One read at a time: a burst of first requests must not each build (and then drop) an agent.
    this.authReading ??= this.readAuth().finally(() => { this.authReading = undefined; });
    return this.authReading;
  }

  private async readAuth(): Promise<https.RequestOptions> {
    const options: https.RequestOptions = {};
    await this.kc.applyToHTTPSOptions(options);
    const { ca, cert, key, pfx, passphrase, rejectUnauthorized, servername, headers, auth } = options as https.RequestOptions & { rejectUnauthorized?: boolean };
    if (!this.agent && this.server.protocol !== 'https:') this.agent = new http.Agent({ keepAlive: true });
    if (!this.agent) {
      // One TLS context for every connection (given as ca/cert/key, each new socket would parse them again).
      const secureContext = tls.createSecureContext({ ca, cert, key, pfx, passphrase });
      this.agent = new https.Agent({ keepAlive: true, maxSockets: 64, secureContext, servername, ...(rejectUnauthorized === undefined ? {} : { rejectUnauthorized }) });
    }
    this.auth = { options: { headers, ...(auth ? { auth } : {}) }, at: Date.now() };
    return this.auth.options;
  }

  async request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const write = method !== 'GET';
    if (write) this.writeWindow(method, path); // before waiting for anything
    const auth = await this.authOptions();
    const url = new URL(path, this.server);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, v);
    const body = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    const [plural, , sub] = path.replace(/^\/apis?\/(([^/]+\/)?v[^/]+)(\/namespaces\/[^/]+)?\//, '').split('/');
    const callKey = `${method} ${plural}${sub ? `/${sub}` : ''}`;
    this.calls.set(callKey, (this.calls.get(callKey) ?? 0) + 1);
    const transport = url.protocol === 'https:' ? https : http;
    return new Promise<T>((resolve, reject) => {
      let limitMs: number;
      try { limitMs = write ? this.writeWindow(method, url.pathname) : this.timeoutMs; } catch (err) { reject(err); return; }
      const req = transport.request(url, {
        method,
        agent: this.agent,
        ...(auth.auth ? { auth: auth.auth } : {}),
        headers: {
          ...(auth.headers as Record<string, string> | undefined),
          accept: 'application/json',
          ...(this.options.userAgent ? { 'user-agent': this.options.userAgent } : {}),
          ...(body === undefined ? {} : { 'content-type': opts.contentType ?? 'application/json', 'content-length': Buffer.byteLength(body) }),
        },
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try { json = text ? JSON.parse(text) : undefined; } catch { json = undefined; }
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) { resolve(json as T); return; }
          // An error answer is a Status object (or not JSON at all: a proxy's page).
          const problem = json as V1Status | undefined;
          reject(new KubeApiError(status, problem?.reason || `HTTP${status}`, `${method} ${url.pathname}: ${problem?.message ?? text.slice(0, 500)}`));
        });
        res.on('error', reject);
      });
      // The whole call, not just socket idleness: a hung API server must not outlast the leader's window. At
      // the window's end a write is cut off unless a renewal has moved the window on meanwhile.
      const started = performance.now();
      let deadline: NodeJS.Timeout;
      const expire = () => {
        const spent = performance.now() - started;
        const left = write ? Math.min(this.timeoutMs - spent, this.options.fence?.writableForMs() ?? Number.POSITIVE_INFINITY) : this.timeoutMs - spent;
        if (left > 0) { deadline = setTimeout(expire, left); return; }
        req.destroy(write && spent < this.timeoutMs
          ? new NotLeaderError(`${method} ${url.pathname}: cut off, leadership not confirmed`)
          : new KubeApiError(0, 'Timeout', `${method} ${url.pathname}: no answer within ${Math.round(spent)} ms`));
      };
      deadline = setTimeout(expire, limitMs);
      req.once('close', () => clearTimeout(deadline));
      req.on('error', reject);
      if (!write) { req.end(body); return; }
      // Nothing leaves before the socket can send: check the fence again at that moment (the process may have
      // been frozen in between). A new connection sends what was written to it once connected (TLS: once its
      // handshake is done), so for one the check waits until then; a frozen process would otherwise send a
      // write checked before it froze as soon as it wakes.
      req.once('socket', (socket) => {
        const send = () => {
          try { this.writeWindow(method, url.pathname); } catch (err) { req.destroy(err as Error); return; }
          req.end(body);
        };
        if (socket.connecting) socket.once(socket instanceof tls.TLSSocket ? 'secureConnect' : 'connect', send);
        else send();
      });
    });
  }

  get<T extends KubeObject>(type: ResourceType, namespace: string | undefined, name: string): Promise<T> {
    return this.request<T>('GET', resourcePath(type, namespace, name));
  }

  list<T extends KubeObject>(type: ResourceType, namespace?: string, labelSelector?: string): Promise<KubeList<T>> {
    return this.request<KubeList<T>>('GET', resourcePath(type, namespace), { query: { labelSelector } });
  }

  create<T extends KubeObject>(type: ResourceType, namespace: string | undefined, obj: KubeObject): Promise<T> {
    return this.request<T>('POST', resourcePath(type, namespace), { body: obj });
  }

  replace<T extends KubeObject>(type: ResourceType, namespace: string | undefined, name: string, obj: KubeObject): Promise<T> {
    return this.request<T>('PUT', resourcePath(type, namespace, name), { body: obj });
  }

  /** Server-side apply (force) under our field manager: the object says everything we want of it. */
  apply<T extends KubeObject>(type: ResourceType, obj: KubeObject, subresource?: 'status'): Promise<T> {
    const { name, namespace } = obj.metadata ?? {};
    if (!name) throw new Error(`apply ${type.kind}: metadata.name missing`);
    return this.request<T>('PATCH', resourcePath(type, namespace, name, subresource), {
      body: obj, contentType: 'application/apply-patch+yaml', query: { fieldManager: this.fieldManager, force: 'true' },
    });
  }

  /** JSON merge patch (used where ownership must not move to our field manager). */
  mergePatch<T extends KubeObject>(type: ResourceType, namespace: string | undefined, name: string, patch: unknown, subresource?: string): Promise<T> {
    return this.request<T>('PATCH', resourcePath(type, namespace, name, subresource), { body: patch, contentType: 'application/merge-patch+json' });
  }

  async delete(type: ResourceType, namespace: string | undefined, name: string, propagationPolicy: 'Background' | 'Foreground' = 'Background'): Promise<void> {
    await this.request('DELETE', resourcePath(type, namespace, name), { body: { kind: 'DeleteOptions', apiVersion: 'v1', propagationPolicy } });
  }

  close(): void { this.agent?.destroy(); }
}
