// The job's control KV bucket: policy records, learner progress, the learner's own state, heartbeats.
import { JetStreamApiError, jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { Counter } from 'prom-client';
import { BusError } from './errors.js';
import { WRONG_LAST_SEQUENCE, type Fence } from './lease.js';
import { withRetry } from './retry.js';
import {
  codecs,
  type Heartbeat,
  type JsonCodec,
  type LearnerState,
  type LearnerProgress,
  type PolicyRecord,
} from './messages.js';
import { controlKeys, jobNames, type JobKey } from './names.js';

const encoder = new TextEncoder();

export interface Watch {
  stop(): Promise<void>;
}

/**
 * Control records a watch skipped because they did not decode (e.g. UnsupportedVersion: a writer one wire version
 * ahead), by key and reason. In no registry of its own: a process serving metrics registers it in its registry.
 */
export const controlDecodeFailures = new Counter({
  name: 'rlkube_control_decode_failures_total',
  help: 'Control KV records skipped by a watch because they did not decode',
  labelNames: ['key', 'reason'],
  registers: [],
});

export interface ControlOptions {
  log?: Logger;
  /** Told of every record a watch skips (the operator makes an Event of it): a frozen-looking job says why. */
  onUndecodable?: (key: string, err: BusError) => void;
}

export class ControlStore {
  private fenceBy: Fence | undefined;

  private constructor(
    private readonly kv: KV,
    private readonly js: JetStreamClient,
    private readonly subjectOf: (key: string) => string,
    private readonly options: ControlOptions,
  ) {}

  static async open(nc: NatsConnection, job: JobKey, options: ControlOptions = {}): Promise<ControlStore> {
    const names = jobNames(job);
    const kv = await withRetry('open control bucket', () => new Kvm(nc).open(names.controlBucket, { bindOnly: true }));
    return new ControlStore(kv, jetstream(nc), names.controlSubject, options);
  }

  /**
   * From now on the learner's own records (policy, progress, learner state) are written only under `fence`:
   * refused locally once it has lapsed, and by the server once another learner took the lease (LeaseLost).
   */
  fence(fence: Fence): void {
    this.fenceBy = fence;
  }

  policy = () => this.read(controlKeys.policy, codecs.policy);
  policyAt = (version: number) => this.read(controlKeys.policyVersion(version), codecs.policy);
  async putPolicy(record: PolicyRecord): Promise<void> {
    // The per-version record first: a worker that sees `policy` can always find the version it names.
    await this.learnerPut(controlKeys.policyVersion(record.version), codecs.policy.encode(record));
    await this.learnerPut(controlKeys.policy, codecs.policy.encode(record));
  }
  deletePolicyAt = (version: number) => this.purge(controlKeys.policyVersion(version));

  progress = () => this.read(controlKeys.learner, codecs.progress);
  putProgress = (progress: LearnerProgress) => this.learnerPut(controlKeys.learner, codecs.progress.encode(progress));

  learnerState = () => this.read(controlKeys.learnerState, codecs.learnerState);
  putLearnerState = (state: LearnerState) => this.learnerPut(controlKeys.learnerState, codecs.learnerState.encode(state));

  /** One attempt: the next heartbeat follows in seconds, so a stalled server must not queue them up. */
  putHeartbeat = (beat: Heartbeat) => this.kv.put(controlKeys.worker(beat.worker), codecs.heartbeat.encode(beat));

  /**
   * Registers `publicKey` as the signing key of `workerId`, once: the first registration of an id stands. The same
   * key again (a restarted worker) is fine; another one is refused (KeyConflict).
   */
  async registerWorkerKey(workerId: string, publicKey: string): Promise<void> {
    const key = controlKeys.workerKey(workerId);
    try {
      await withRetry(`register ${key}`, () => this.kv.create(key, encoder.encode(publicKey)));
      return;
    } catch (err) {
      if (!(err instanceof JetStreamApiError && err.code === WRONG_LAST_SEQUENCE)) throw err;
    }
    const registered = await this.workerKey(workerId);
    if (registered !== publicKey) {
      throw new BusError('KeyConflict', `worker ${workerId} is registered with another signing key: a second worker of that name, or a lost key file`);
    }
  }

  /** The signing key registered for `workerId`; undefined when none is. */
  async workerKey(workerId: string): Promise<string | undefined> {
    const entry = await withRetry(`get ${controlKeys.workerKey(workerId)}`, () => this.kv.get(controlKeys.workerKey(workerId)));
    return entry && entry.operation === 'PUT' && entry.length > 0 ? entry.string() : undefined;
  }

  /** Calls onChange with every valid value of `key`, the current one first; invalid values are skipped, and said so. */
  async watch<T>(key: string, codec: JsonCodec<T>, onChange: (value: T) => void): Promise<Watch> {
    const iterator = await this.kv.watch({ key });
    const done = (async () => {
      for await (const entry of iterator) {
        if (entry.operation !== 'PUT') continue;
        let value: T;
        try {
          value = codec.decode(entry.value);
        } catch (err) {
          if (!(err instanceof BusError)) throw err;
          controlDecodeFailures.inc({ key, reason: err.reason });
          this.options.log?.warn({ key, reason: err.reason, err: err.message, revision: entry.revision }, 'control record skipped: it does not decode');
          this.options.onUndecodable?.(key, err);
          continue;
        }
        onChange(value);
      }
    })();
    return {
      stop: async () => {
        iterator.stop();
        await done;
      },
    };
  }

  watchPolicy = (onChange: (record: PolicyRecord) => void) => this.watch(controlKeys.policy, codecs.policy, onChange);
  watchProgress = (onChange: (progress: LearnerProgress) => void) =>
    this.watch(controlKeys.learner, codecs.progress, onChange);

  private put(key: string, value: Uint8Array): Promise<number> {
    return withRetry(`put ${key}`, () => this.kv.put(key, value));
  }

  /** A write of the learner's: fenced by its lease when it has one (a KV put with the lease's expectation). */
  private async learnerPut(key: string, value: Uint8Array): Promise<void> {
    const fence = this.fenceBy;
    if (!fence) {
      await this.put(key, value);
      return;
    }
    fence.assertHeld();
    const expect = { lastSubjectSequence: fence.revision, lastSubjectSequenceSubject: fence.subject };
    try {
      await withRetry(`put ${key}`, () => this.js.publish(this.subjectOf(key), value, { expect }));
    } catch (err) {
      if (!(err instanceof JetStreamApiError && err.code === WRONG_LAST_SEQUENCE)) throw err;
      fence.lose(`write of ${key} refused: another learner holds the lease`);
      fence.assertHeld(); // throws LeaseLost
    }
  }

  private async purge(key: string): Promise<void> {
    await withRetry(`purge ${key}`, () => this.kv.purge(key));
  }

  private async read<T>(key: string, codec: JsonCodec<T>): Promise<T | undefined> {
    const entry = await withRetry(`get ${key}`, () => this.kv.get(key));
    if (!entry || entry.operation !== 'PUT' || entry.length === 0) return undefined;
    return codec.decode(entry.value);
  }
}

/** The operator's view: learner progress, event-driven through a KV watch. */
export async function watchLearnerProgress(
  nc: NatsConnection,
  job: JobKey,
  onChange: (progress: LearnerProgress) => void,
  options: ControlOptions = {},
): Promise<Watch> {
  return (await ControlStore.open(nc, job, options)).watchProgress(onChange);
}
