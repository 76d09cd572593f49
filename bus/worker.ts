// Worker side of the bus: claim a task (kept alive while generating), learn of new policies, fetch their
// weights, publish a trajectory group idempotently (message id = task id), heartbeat.
import { jetstream, jetstreamManager, type Consumer, type JetStreamClient, type JsMsg, type PubAck } from '@nats-io/jetstream';
import { headers as natsHeaders, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { ControlStore, type Watch } from './control.js';
import { BusError } from './errors.js';
import { WIRE_VERSION, codecs, type Heartbeat, type PolicyRecord, type Task } from './messages.js';
import { jobNames, type JobKey } from './names.js';
import { backoffMs, isTransient, withRetry } from './retry.js';
import { WorkerKey } from './signing.js';
import { encodeGroup, type TrajectoryGroup } from './trajectory.js';
import { WeightsStore } from './weights.js';

export interface ClaimedTask {
  task: Task;
  /** How many times this task was handed out before (a dead worker's task comes back). */
  redeliveries: number;
  /** The group is published: the task is done. */
  done(): void;
  /** Give the task back to the queue (engine error, shutdown), after a delay. */
  release(delayMs?: number): void;
  /** The task is useless (e.g. SequentialPull leftover of an older version): drop it. */
  drop(reason: string): void;
}

export class WorkerBus {
  private readonly names;
  /** Encode buffers of acknowledged groups, for the next publishes (see recycle). */
  private readonly spareBuffers: ArrayBuffer[] = [];
  private spareBytes = 0;

  private constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly consumer: Consumer,
    private readonly taskAckWaitMs: number,
    readonly control: ControlStore,
    private readonly weights: WeightsStore,
    job: JobKey,
    readonly workerId: string,
    readonly pool: string,
    private readonly log: Logger | undefined,
    /** A task delivered more often than this is dead-lettered on its next claim; undefined: never. */
    private readonly maxDeliveries: number | undefined,
    /** Signs every group this worker publishes; its public key is registered under workerId. */
    private readonly key: WorkerKey,
  ) {
    this.names = jobNames(job);
  }

  static async open(
    nc: NatsConnection,
    job: JobKey,
    identity: { workerId: string; pool: string; log?: Logger; maxDeliveries?: number; key?: WorkerKey },
  ): Promise<WorkerBus> {
    const names = jobNames(job);
    const js = jetstream(nc);
    const jsm = await jetstreamManager(nc);
    const info = await withRetry('workers consumer info', () => jsm.consumers.info(names.tasksStream, names.workersConsumer));
    const control = await ControlStore.open(nc, job, identity.log ? { log: identity.log } : {});
    // Without a key of its own (tests, benchmarks) the worker signs with one made for this process.
    const key = identity.key ?? WorkerKey.create();
    await control.registerWorkerKey(identity.workerId, key.publicKey);
    return new WorkerBus(
      nc,
      js,
      await js.consumers.get(names.tasksStream, names.workersConsumer),
      (info.config.ack_wait ?? 30e9) / 1e6,
      control,
      await WeightsStore.open(nc, job, identity.log ? { log: identity.log } : {}),
      job,
      identity.workerId,
      identity.pool,
      identity.log,
      identity.maxDeliveries,
      key,
    );
  }

  /**
   * The next task, or undefined when none came within `waitMs`. While claimed, the task is kept alive with
   * in-progress acks, so only a dead worker's task goes back to the queue. Malformed tasks are dropped.
   * Undefined too after an error the server recovers from (after a short back-off); other errors are thrown.
   */
  async claim(waitMs = 2000): Promise<ClaimedTask | undefined> {
    for (let attempt = 0; ; attempt++) {
      if (this.nc.isClosed()) throw new BusError('Closed', `worker ${this.workerId}: connection closed`);
      let msg: JsMsg | null;
      try {
        msg = await this.consumer.next({ expires: Math.max(1000, waitMs) });
      } catch (err) {
        // A stalled or restarting server, a leader election: no task this time; anything else is final.
        if (!isTransient(err)) throw err;
        if (attempt === 0) this.log?.warn({ err: String(err) }, 'claim: bus unavailable');
        await new Promise((r) => setTimeout(r, backoffMs(attempt)));
        return undefined;
      }
      if (!msg) return undefined;
      let task: Task;
      try {
        task = codecs.task.decode(msg.data);
        if (task.job !== this.names.key) throw new BusError('WrongJob', `task for ${task.job}`);
      } catch (err) {
        msg.term(err instanceof BusError ? err.reason : 'Malformed');
        continue;
      }
      if (this.maxDeliveries !== undefined && msg.info.deliveryCount > this.maxDeliveries) {
        await this.deadLetter(msg, task);
        continue;
      }
      return this.claimed(msg, task);
    }
  }

  /**
   * A poison task (its deliveries all failed) leaves the queue for the dead letters, stored once under its task
   * id however many workers get here (a stall may hand it to two), then is terminated; the job goes on.
   */
  private async deadLetter(msg: JsMsg, task: Task): Promise<void> {
    const failed = msg.info.deliveryCount - 1;
    const h = natsHeaders();
    h.set(MSG_ID_HEADER, task.taskId);
    h.set(DELIVERIES_HEADER, String(failed));
    h.set(WORKER_HEADER, this.workerId);
    await withRetry(`dead-letter ${task.taskId}`, () => this.js.publish(this.names.deadSubject, msg.data, { headers: h }), this.log ? { log: this.log } : {});
    msg.term('MaxDeliveries');
    this.log?.warn({ task: task.taskId, deliveries: failed, reason: 'MaxDeliveries' }, 'poison task dead-lettered');
  }

  private claimed(msg: JsMsg, task: Task): ClaimedTask {
    const keepAlive = setInterval(() => msg.working(), Math.max(200, this.taskAckWaitMs / 3));
    keepAlive.unref();
    const settle = (action: () => void) => {
      clearInterval(keepAlive);
      action();
    };
    return {
      task,
      redeliveries: msg.info.deliveryCount - 1,
      done: () => settle(() => msg.ack()),
      release: (delayMs = 0) => settle(() => msg.nak(delayMs)),
      drop: (reason) => settle(() => msg.term(reason)),
    };
  }

  /**
   * Publishes a group under its task id, so a retry (or another worker redoing a lost task) is stored once, signed
   * with this worker's key (whatever worker the group names: the learner checks it against that worker's key).
   * Retries, with back-off, while the error is one the server recovers from — a full stream pushing back
   * (503), a stalled or restarting server, a leader election — until `signal` aborts; any other error (a
   * message the stream refuses, a stream that is gone) is thrown at once.
   */
  async publish(group: TrajectoryGroup, signal?: AbortSignal): Promise<PubAck> {
    const spare = this.spareBuffers.pop();
    if (spare) this.spareBytes -= spare.byteLength;
    const data = encodeGroup(group, spare);
    const headers = alignedHeaders(group.taskId, this.key.sign(data));
    const ack = await withRetry(
      `publish ${group.taskId}`,
      () => this.js.publish(this.names.trajSubject(group.policyVersion), data, {
        msgID: group.taskId,
        headers,
        timeout: 10_000,
      }),
      { ...(signal ? { signal } : {}), ...(this.log ? { log: this.log } : {}) },
    );
    this.recycle(data.buffer);
    return ack;
  }

  /**
   * Keeps the buffer of an acknowledged group for the next publish. Only after the server's ack: the client has
   * then written the message out and holds no reference to it (after a failure it might still, so such a buffer
   * is never reused). The pool never holds more buffers than publishes ran at once, nor more than 64 MiB.
   */
  private recycle(buffer: ArrayBufferLike): void {
    if (!(buffer instanceof ArrayBuffer)) return;
    if (this.spareBytes + buffer.byteLength > 64 << 20) return;
    this.spareBuffers.push(buffer);
    this.spareBytes += buffer.byteLength;
  }

  policy = () => this.control.policy();
  policyAt = (version: number) => this.control.policyAt(version);
  watchPolicy = (onChange: (record: PolicyRecord) => void): Promise<Watch> => this.control.watchPolicy(onChange);
  /** The policy's weights, digest-checked; undefined when the record points to shared storage (a URI). */
  weightsOf = (record: PolicyRecord) => this.weights.get(record);
  /** Streams the policy's weights into the file `path`, digest-checked (DigestMismatch and no file otherwise). */
  weightsToFile = (record: PolicyRecord, path: string) => this.weights.toFile(record, path);

  heartbeat(state: Heartbeat['state'], policyVersion: number | null, groupsPublished: number): Promise<number> {
    return this.control.putHeartbeat({
      v: WIRE_VERSION,
      worker: this.workerId,
      pool: this.pool,
      policyVersion,
      state,
      groupsPublished,
      at: new Date().toISOString(),
    });
  }
}

const MSG_ID_HEADER = 'Nats-Msg-Id';
const PAD_HEADER = 'Rlkube-Pad';
const DELIVERIES_HEADER = 'Rlkube-Deliveries';
const WORKER_HEADER = 'Rlkube-Worker';
/** The group's signature by its worker's key (bus/signing.ts). */
export const SIGNATURE_HEADER = 'Rlkube-Signature';

/**
 * The message-id and signature headers, padded to a whole number of 4-byte words. A consumer receives a large
 * message into a fresh buffer, headers first: with them a multiple of 4 long, the group's body (4-byte aligned
 * within the group) lands aligned, and the learner views its token ids and log-probs in place instead of moving them.
 */
export function alignedHeaders(taskId: string, signature?: string): MsgHdrs {
  const h = natsHeaders();
  h.set(MSG_ID_HEADER, taskId);
  if (signature !== undefined) h.set(SIGNATURE_HEADER, signature);
  // The header block on the wire: "NATS/1.0", then "\r\n<name>: <value>" per header, then "\r\n\r\n".
  const line = (name: string, value: string) => 4 + name.length + Buffer.byteLength(value);
  const length = 8 + line(MSG_ID_HEADER, taskId) + (signature === undefined ? 0 : line(SIGNATURE_HEADER, signature)) + 4;
  if (length % 4 !== 0) {
    // The padding line is "\r\n<name>: " + value; values are trimmed, so the value is 1 to 4 dots, not blank.
    const padLine = 4 + PAD_HEADER.length;
    h.set(PAD_HEADER, '.'.repeat(1 + (((-(length + padLine + 1) % 4) + 4) % 4)));
  }
  return h;
}
