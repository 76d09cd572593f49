// The job's control KV bucket: policy records, learner progress, the learner's own state, heartbeats.
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { BusError } from './errors.js';
import { withRetry } from './retry.js';
import {
  codecs,
  type Heartbeat,
  type JsonCodec,
  type LearnerState,
  type LearnerProgress,
  type PolicyRecord,
} from './messages.js';
import { controlKeys, jobNames, type JobRef } from './names.js';

export interface Watch {
  stop(): Promise<void>;
}

export class ControlStore {
  private constructor(private readonly kv: KV) {}

  static async open(nc: NatsConnection, job: JobRef): Promise<ControlStore> {
    return new ControlStore(await withRetry('open control bucket', () => new Kvm(nc).open(jobNames(job).controlBucket, { bindOnly: true })));
  }

  policy = () => this.read(controlKeys.policy, codecs.policy);
  policyAt = (version: number) => this.read(controlKeys.policyVersion(version), codecs.policy);
  async putPolicy(record: PolicyRecord): Promise<void> {
    // The per-version record first: a worker that sees `policy` can always find the version it names.
    await this.put(controlKeys.policyVersion(record.version), codecs.policy.encode(record));
    await this.put(controlKeys.policy, codecs.policy.encode(record));
  }
  deletePolicyAt = (version: number) => this.purge(controlKeys.policyVersion(version));

  progress = () => this.read(controlKeys.learner, codecs.progress);
  putProgress = (progress: LearnerProgress) => this.put(controlKeys.learner, codecs.progress.encode(progress));

  learnerState = () => this.read(controlKeys.learnerState, codecs.learnerState);
  putLearnerState = (state: LearnerState) => this.put(controlKeys.learnerState, codecs.learnerState.encode(state));

  /** One attempt: the next heartbeat follows in seconds, so a stalled server must not queue them up. */
  putHeartbeat = (beat: Heartbeat) => this.kv.put(controlKeys.worker(beat.worker), codecs.heartbeat.encode(beat));

  /** Calls onChange with every valid value of `key`, the current one first; invalid values are skipped. */
  async watch<T>(key: string, codec: JsonCodec<T>, onChange: (value: T) => void): Promise<Watch> {
    const iterator = await this.kv.watch({ key });
    const done = (async () => {
      for await (const entry of iterator) {
        if (entry.operation !== 'PUT') continue;
        try {
          onChange(codec.decode(entry.value));
        } catch (err) {
          if (!(err instanceof BusError)) throw err;
        }
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
  job: JobRef,
  onChange: (progress: LearnerProgress) => void,
): Promise<Watch> {
  return (await ControlStore.open(nc, job)).watchProgress(onChange);
}
