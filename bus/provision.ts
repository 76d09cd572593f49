// Provisions and removes a job's NATS resources: tasks + trajectories streams and their durable consumers,
// the control KV bucket, the weights object store and the dead letters. Idempotent; a changed limit is applied.
// Everything is replicated as the NATS it runs on allows: R3 on a cluster of three or more, R1 on one server.
import {
  AckPolicy,
  DiscardPolicy,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  jetstreamManager,
  type ConsumerConfig,
  type JetStreamManager,
  type StreamConfig,
} from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import { nanos, type NatsConnection } from '@nats-io/transport-node';
import { BusLimits } from '../api/bus-limits.js';
import { jobNames, type JobKey } from './names.js';

export interface BusLimits {
  /** Largest trajectory group message (bytes); the server's max_payload must allow it. */
  maxGroupBytes: number;
  /** Groups stored and not yet consumed by the learner; publishers get backpressure beyond it. */
  maxPendingGroups: number;
  /** Tasks queued and not yet finished by a worker. */
  maxPendingTasks: number;
  /** A republished task or group with the same id inside this window is stored once. */
  duplicateWindowMs: number;
  /** A claimed task not acked (nor kept alive with working()) in this time goes to another worker. */
  taskAckWaitMs: number;
  /** A group the learner holds unacked (during its training step) longer than this is redelivered. */
  groupAckWaitMs: number;
  storage: 'file' | 'memory';
  /** Replicas of every stream, bucket and store; by default what the server says its cluster allows (see replicasFor). */
  replicas?: number;
  /** Dead letters kept (the oldest go first); the count of all ever dead-lettered is kept regardless. */
  maxDeadLetters: number;
}

export const defaultBusLimits: BusLimits = {
  maxGroupBytes: BusLimits.maxGroupBytes,
  maxPendingGroups: 4096,
  maxPendingTasks: 4096,
  duplicateWindowMs: 10 * 60_000,
  taskAckWaitMs: 30_000,
  groupAckWaitMs: 60_000,
  storage: 'file',
  maxDeadLetters: 10_000,
};

/**
 * The replica count for the server `nc` is connected to: 1 on a lone server; on a cluster, 3 (what survives one
 * lost node), or fewer while fewer nodes are known (a 2-node cluster, or one node down when the job starts).
 * connect_urls lists the client URLs of every node the server sees, its own included.
 */
export function replicasFor(nc: NatsConnection): number {
  const info = nc.info;
  if (!info?.cluster) return 1;
  return Math.max(1, Math.min(3, info.connect_urls?.length ?? 3));
}

export async function provisionJob(nc: NatsConnection, job: JobKey, overrides: Partial<BusLimits> = {}): Promise<void> {
  const limits = { ...defaultBusLimits, ...overrides };
  const replicas = limits.replicas ?? replicasFor(nc);
  const names = jobNames(job);
  const jsm = await jetstreamManager(nc);
  const storage = limits.storage === 'file' ? StorageType.File : StorageType.Memory;
  const common = {
    retention: RetentionPolicy.Workqueue,
    storage,
    discard: DiscardPolicy.New,
    duplicate_window: nanos(limits.duplicateWindowMs),
    num_replicas: replicas,
  } satisfies Partial<StreamConfig>;

  await ensureStream(jsm, {
    ...common,
    name: names.tasksStream,
    subjects: [names.tasksWildcard],
    max_msgs: limits.maxPendingTasks,
    max_msg_size: BusLimits.maxTaskBytes,
  });
  await ensureStream(jsm, {
    ...common,
    name: names.trajStream,
    subjects: [names.trajWildcard],
    max_msgs: limits.maxPendingGroups,
    max_msg_size: limits.maxGroupBytes,
  });
  await ensureConsumer(jsm, names.tasksStream, {
    durable_name: names.workersConsumer,
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(limits.taskAckWaitMs),
    max_deliver: -1,
    max_ack_pending: limits.maxPendingTasks,
  });
  await ensureConsumer(jsm, names.trajStream, {
    durable_name: names.learnerConsumer,
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(limits.groupAckWaitMs),
    max_deliver: -1,
    max_ack_pending: limits.maxPendingGroups,
  });
  await ensureStream(jsm, {
    name: names.deadStream,
    subjects: [names.deadSubject],
    retention: RetentionPolicy.Limits,
    storage,
    discard: DiscardPolicy.Old,
    max_msgs: limits.maxDeadLetters,
    max_msg_size: BusLimits.maxTaskBytes,
    duplicate_window: nanos(limits.duplicateWindowMs),
    num_replicas: replicas,
  });
  await new Kvm(nc).create(names.controlBucket, { history: 1, storage, replicas });
  await new Objm(nc).create(names.weightsStore, { storage, replicas });
}

/** Removes everything provisionJob made; absent resources are fine. */
export async function teardownJob(nc: NatsConnection, job: JobKey): Promise<void> {
  const names = jobNames(job);
  const jsm = await jetstreamManager(nc);
  for (const stream of [names.tasksStream, names.trajStream, names.deadStream, names.controlStream, names.weightsStream]) {
    await ignoreNotFound(jsm.streams.delete(stream));
  }
}

/** True when the job's streams exist (used by tests and the operator's status). */
export async function jobProvisioned(nc: NatsConnection, job: JobKey): Promise<boolean> {
  const jsm = await jetstreamManager(nc);
  const names = jobNames(job);
  return (await ignoreNotFound(jsm.streams.info(names.trajStream))) !== undefined;
}

async function ensureStream(jsm: JetStreamManager, config: Partial<StreamConfig> & { name: string }): Promise<void> {
  const existing = await ignoreNotFound(jsm.streams.info(config.name));
  if (!existing) {
    await jsm.streams.add(config);
    return;
  }
  const current = existing.config as unknown as Record<string, unknown>;
  const changed = Object.entries(config).some(([key, value]) => JSON.stringify(current[key]) !== JSON.stringify(value));
  if (changed) {
    const { retention: _r, storage: _s, ...mutable } = config; // retention and storage cannot change in place
    await jsm.streams.update(config.name, mutable);
  }
}

async function ensureConsumer(jsm: JetStreamManager, stream: string, config: Partial<ConsumerConfig> & { durable_name: string }) {
  const existing = await ignoreNotFound(jsm.consumers.info(stream, config.durable_name));
  if (!existing) {
    await jsm.consumers.add(stream, config);
  } else if (existing.config.ack_wait !== config.ack_wait || existing.config.max_ack_pending !== config.max_ack_pending) {
    await jsm.consumers.update(stream, config.durable_name, config);
  }
}

async function ignoreNotFound<T>(operation: Promise<T>): Promise<T | undefined> {
  try {
    return await operation;
  } catch (err) {
    if (err instanceof JetStreamApiError && err.status === 404) return undefined;
    throw err;
  }
}
