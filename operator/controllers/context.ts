// What every controller is given: the API client, the informer caches, the bus, events, config, a logger.
import type { V1Deployment, V1Pod, V1Secret, V1Service, V1StatefulSet } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Learner, RLJob, RolloutPool } from '../../api/index.js';
import type { BusError, LearnerProgress } from '../../bus/index.js';
import type { KubeClient, KubeObject, ResourceType } from '../kube/client.js';
import type { EventSink } from '../kube/events.js';
import type { Informer } from '../kube/informer.js';
import type { BuildConfig } from './builders.js';
import type { BurstGate } from './burst-gate.js';
import type { JobCredentials } from './credentials.js';
import type { WriteMemo } from './expectations.js';
import type { StatusPacer } from './pacing.js';

export interface JobKey { namespace: string; name: string }

/** The bus's provisioning API as the controllers use it (operator/nats.ts implements it over NATS). */
export interface JobBus {
  /** Connects to the job's NATS (or the default), or fails (a job's own URL has a deadline). */
  connect(natsUrl?: string): Promise<void>;
  provision(job: JobKey, natsUrl?: string): Promise<void>;
  teardown(job: JobKey, natsUrl?: string): Promise<void>;
  watchProgress(job: JobKey, watcher: ProgressWatcher, natsUrl?: string): Promise<{ stop(): Promise<void> }>;
}

/** Told of the job's learner-progress records as a KV watch delivers them. */
export interface ProgressWatcher {
  onChange(progress: LearnerProgress): void;
  /** A record at `key` that does not decode (another wire version, a corrupt value) was skipped: progress looks frozen. */
  onUndecodable(key: string, err: BusError): void;
}

type K<T> = T & KubeObject;
export interface Caches {
  jobs: Informer<K<RLJob>>;
  pools: Informer<K<RolloutPool>>;
  learners: Informer<K<Learner>>;
  deployments: Informer<K<V1Deployment>>;
  statefulsets: Informer<K<V1StatefulSet>>;
  services: Informer<K<V1Service>>;
  pods: Informer<K<V1Pod>>;
  /** The jobs' NATS credentials Secrets (only when the operator issues them). */
  secrets?: Informer<K<V1Secret>>;
}

export interface ControllerContext {
  client: KubeClient;
  memo: WriteMemo;
  pacer: StatusPacer;
  caches: Caches;
  bus: JobBus;
  events: EventSink;
  config: BuildConfig;
  log: Logger;
  /** Issues and revokes the jobs' NATS credentials (absent: an open server, jobs get none). */
  credentials?: JobCredentials;
  /** Asks the job controller to reconcile a job (KV progress changed). */
  enqueueJob(key: string): void;
  /**
   * We created this object (a Learner or RolloutPool): its controller may reconcile it now, from our write,
   * rather than after the watch has delivered it (see WriteMemo.created).
   */
  created?(type: ResourceType, obj: KubeObject): void;
  /** What can wait (status, the finalizer, NATS provisioning) yields to a burst of reconciles through this. */
  gate: BurstGate;
}
