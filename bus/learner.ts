// Learner side of the bus: issues tasks under the job's sync mode, collects exactly one batch per step,
// judges every group (decode, duplicates, staleness, caller's verifier), publishes policies, and resumes.
import { JetStreamApiError, jetstream, jetstreamManager, type Consumer, type JetStreamClient, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import type { SyncMode } from '../api/rljob.js';
import { ControlStore } from './control.js';
import { CopyDetector } from './copies.js';
import { BusError, type RejectReason } from './errors.js';
import { backoffMs, isTransient, withRetry, type RetryOptions } from './retry.js';
import { WIRE_VERSION, codecs, type GroupCounts, type LearnerState, type PolicyRecord, type Task } from './messages.js';
import { jobNames, type JobRef } from './names.js';
import { RegisteredKeys, digestOfMessage } from './signing.js';
import { decodeGroup, type DecodeLimits, type TrajectoryGroup } from './trajectory.js';
import { WeightsStore, digestOf } from './weights.js';
import { SIGNATURE_HEADER } from './worker.js';

export type { SyncMode };

export type Verdict = { ok: true } | { ok: false; reason: RejectReason; message: string };
export type GroupVerifier = (group: TrajectoryGroup) => Verdict | Promise<Verdict>;

export interface LearnerBusOptions {
  mode: SyncMode;
  batchSize: number;
  /** AsyncPushPull: a group is used at version v only if its version ≥ v − maxStaleness. */
  maxStaleness: number;
  /** AsyncPushPull: tasks queued + groups waiting, at most. */
  taskWindow: number;
  vocabSize: number;
  maxGroupBytes: number;
  /** The environment item for task `seq`: a pure function, so a restarted learner re-issues the same task. */
  taskPayload: (seq: number) => unknown | Promise<unknown>;
  /** Old policy versions kept in the object store for slow workers. */
  keepVersions?: number;
  /** No group for this long: re-count what is in flight and re-issue what was lost. */
  stallMs?: number;
  /**
   * Told of every group the bus rejects itself whose signature is its worker's (not of those with a bad one:
   * the worker they name did not send them). The learner agent's per-worker ledger.
   */
  onRejected?: (workerId: string, reason: RejectReason) => void;
  log?: Logger;
}

export interface Batch {
  step: number;
  policyVersion: number;
  groups: TrajectoryGroup[];
}

interface Held {
  msg: JsMsg;
  group: TrajectoryGroup;
}

/** `redelivered`: a message judged and counted before, delivered again (an ack lost with a restarted server). */
type Judgement = { outcome: 'accepted' | 'stale' | 'redelivered' | RejectReason; taskConsumed?: boolean };
const isPromiseLike = <T>(value: T | PromiseLike<T>): value is PromiseLike<T> =>
  typeof (value as { then?: unknown } | null)?.then === 'function';

export interface LearnerCounts extends Omit<GroupCounts, 'published'> {
  rejectedByReason: Record<string, number>;
}

export class LearnerBus {
  private state: LearnerState = {
    v: WIRE_VERSION,
    issuedSeq: 0,
    step: 0,
    stepFirstSeq: 1,
    stepLastSeq: 0,
    committedStep: 0,
    counts: { accepted: 0, offPolicy: 0, stale: 0, rejected: 0, rejectedByReason: {} },
    batches: [],
  };
  /** Tasks whose group was used (trained on, counted stale or rejected by the verifier): never used again. */
  private readonly used: UsedTasks;
  /** Groups a previous incarnation trained on, whose acks may have died with it: acked quietly if they return. */
  private readonly trainedBefore = new Set<string>();
  /** Stream sequence → how this learner settled it (acked: trained on; termed: stale or rejected). */
  private readonly settled = new Map<number, 'ack' | 'term'>();
  private held: Held[] = [];
  /** Every group's signature is checked against the key its worker registered. */
  private readonly keys: RegisteredKeys;
  private readonly copies = new CopyDetector();
  private closed = false;
  private keepAlive: NodeJS.Timeout | undefined;
  private readonly names;
  private readonly decodeLimits: DecodeLimits;

  private constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly consumer: Consumer,
    readonly control: ControlStore,
    private readonly weights: WeightsStore,
    private readonly groupAckWaitMs: number,
    job: JobRef,
    private readonly options: LearnerBusOptions,
  ) {
    this.names = jobNames(job);
    this.keys = new RegisteredKeys((workerId) => control.workerKey(workerId));
    this.used = new UsedTasks(Math.max(65_536, 4 * options.taskWindow, 4 * options.batchSize));
    this.decodeLimits = { job: this.names.key, vocabSize: options.vocabSize, maxBytes: options.maxGroupBytes };
  }

  static async open(nc: NatsConnection, job: JobRef, options: LearnerBusOptions): Promise<LearnerBus> {
    if (options.mode === 'AsyncPushPull' && options.taskWindow < options.batchSize) {
      throw new BusError('Malformed', `taskWindow ${options.taskWindow} < batchSize ${options.batchSize}`);
    }
    const names = jobNames(job);
    const js = jetstream(nc);
    const jsm = await jetstreamManager(nc);
    const info = await withRetry('learner consumer info', () => jsm.consumers.info(names.trajStream, names.learnerConsumer), options.log ? { log: options.log } : {});
    const consumer = await js.consumers.get(names.trajStream, names.learnerConsumer);
    return new LearnerBus(
      nc, js, jsm, consumer,
      await ControlStore.open(nc, job),
      await WeightsStore.open(nc, job, options.log ? { log: options.log } : {}),
      (info.config.ack_wait ?? 30e9) / 1e6,
      job, options,
    );
  }

  /**
   * Restores the learner's bookkeeping after a restart. `trainedStep` is the last step the trainer's
   * checkpoint holds; groups recorded for it are never used again.
   */
  async resume(trainedStep: number): Promise<void> {
    const saved = await this.control.learnerState();
    if (!saved) return;
    this.state = saved;
    for (const seq of saved.termed ?? []) this.remember(seq, 'term'); // counted; their terms may have been lost
    this.state.termed = [];
    for (const batch of saved.batches) {
      if (batch.step > trainedStep) continue; // collected, never trained: those groups come back and are used
      // Trained on: acks sent just before the learner died may never have left it, so any of these may come
      // back; they are acked quietly then. Those of a step not yet committed are counted now.
      for (const id of batch.taskIds) {
        this.used.add(seqOf(id));
        this.trainedBefore.add(id);
      }
      if (batch.step > saved.committedStep) {
        this.state.counts.accepted += batch.taskIds.length;
        this.state.counts.offPolicy = (this.state.counts.offPolicy ?? 0) + (batch.offPolicy ?? 0);
      }
    }
    this.state.batches = saved.batches.filter((b) => b.step <= trainedStep);
    this.state.committedStep = trainedStep;
  }

  /** Accepted (and of them off-policy), stale and rejected groups so far (rejections also by reason). */
  get counts(): LearnerCounts {
    return this.state.counts;
  }

  /**
   * Stores the weights of `version` and announces it; workers watching `policy` pick it up. A trainer's file
   * (`path`) is streamed into the store and announced only if it hashes to the trainer's `digest`
   * (DigestMismatch otherwise); `bytes` are for small weights; `uri` names shared storage.
   */
  async publishPolicy(
    version: number,
    weights: { bytes: Uint8Array } | { path: string; digest: string } | { uri: string; digest: string },
  ): Promise<PolicyRecord> {
    const record: PolicyRecord = {
      v: WIRE_VERSION,
      version,
      digest: 'bytes' in weights ? digestOf(weights.bytes) : weights.digest,
      location: 'bytes' in weights ? await this.weights.put(version, weights.bytes)
        : 'path' in weights ? await this.weights.putFile(version, weights.path, weights.digest)
        : { kind: 'uri', uri: weights.uri },
      createdAt: new Date().toISOString(),
    };
    await this.control.putPolicy(record);
    const expired = version - (this.options.keepVersions ?? Math.max(2, this.options.maxStaleness + 2));
    if (expired >= 0) {
      await this.weights.delete(expired).catch(() => undefined);
      await this.control.deletePolicyAt(expired).catch(() => undefined);
    }
    return record;
  }

  /**
   * Collects exactly batchSize accepted groups for `step`, trained from `policyVersion`. SequentialPull:
   * issues exactly the step's tasks (plus one per rejected group) and accepts only that version.
   * AsyncPushPull: keeps the task window full and accepts versions within maxStaleness.
   */
  async nextBatch(step: number, policyVersion: number, verify: GroupVerifier): Promise<Batch> {
    const { batchSize, mode } = this.options;
    if (mode === 'SequentialPull') await this.issueStepTasks(step, policyVersion);
    this.copies.forgetBefore(this.oldestUsable(policyVersion));
    this.startKeepAlive();
    let idleSince = Date.now();
    let toppedUpAt = 0;
    let stalls = 0;
    while (this.held.length < batchSize) {
      if (this.closed || this.nc.isClosed()) throw new BusError('Closed', `learner bus closed while collecting step ${step}`);
      // Counting what is in flight costs two requests: do it at the start of a step and then a few times a
      // second, not per pull (the window only drains by B per step). Its round trips overlap this pull; it
      // is over before the next one (or before the step returns).
      let topUp: Promise<void> | undefined;
      if (mode === 'AsyncPushPull' && Date.now() - toppedUpAt > 250) {
        topUp = this.topUpWindow(policyVersion);
        topUp.catch(() => undefined); // awaited below: this only keeps an early failure from counting as unhandled
      }
      let received = 0;
      let tasksUsedUp = 0;
      const settle: Array<() => void> = [];
      const termed: number[] = [];
      const verdicts: Array<Promise<void>> = [];
      const onJudged = (msg: JsMsg, { outcome, taskConsumed }: Judgement) => {
        if (outcome === 'accepted' || outcome === 'redelivered') return;
        settle.push(() => this.settle(msg, 'term', outcome));
        termed.push(msg.seq);
        if (taskConsumed) tasksUsedUp++;
      };
      try {
        const messages = await this.consumer.fetch({ max_messages: batchSize - this.held.length, expires: 1000 });
        for await (const msg of messages) {
          received++;
          const judged = this.judge(msg, policyVersion, verify);
          // An asynchronous verdict is awaited after the pull, never inside it: the pull must go on being read
          // (its heartbeats) however long a verifier takes, and the group's verifiers then run side by side.
          if (judged instanceof Promise) verdicts.push(judged.then((j) => onJudged(msg, j)));
          else onJudged(msg, judged);
        }
        await Promise.all(verdicts);
        // Rejections used up some of this step's SequentialPull tasks: issue as many more, so the step gets B.
        if (tasksUsedUp > 0 && mode === 'SequentialPull') await this.reserveAndPublish(tasksUsedUp, policyVersion);
      } catch (err) {
        await Promise.allSettled(verdicts);
        if (!isTransient(err)) {
          await topUp?.catch(() => undefined); // as before: no top-up still running once the step has failed
          throw err;
        }
        if (stalls++ % 20 === 0) this.options.log?.warn({ err: String(err), step, stalls }, 'bus unavailable: retrying');
        await new Promise((r) => setTimeout(r, backoffMs(Math.min(stalls, 3))));
      }
      if (topUp) {
        await topUp;
        toppedUpAt = Date.now();
      }
      if (settle.length > 0) {
        // Counts are persisted before the messages leave the stream, so a restart never undercounts; with them
        // the messages about to be termed, so a restart that finds one still there (its term died with this
        // process) settles it again instead of counting it twice. A later save's answer on this connection
        // means these terms reached the server, so each save names only the latest round's.
        this.state.termed = termed;
        await this.save();
        this.state.termed = [];
        for (const s of settle) s();
      }
      if (received > 0) idleSince = Date.now();
      else if (Date.now() - idleSince > (this.options.stallMs ?? 10_000)) {
        await this.reissueLost(policyVersion);
        idleSince = Date.now();
      }
    }
    const groups = this.held.map((h) => h.group);
    const offPolicy = groups.filter((g) => g.policyVersion < policyVersion).length;
    this.state.batches = [...this.state.batches.filter((b) => b.step < step).slice(-2), { step, taskIds: groups.map((g) => g.taskId), offPolicy }];
    await this.save();
    return { step, policyVersion, groups };
  }

  /**
   * After the trainer has stored the step: the batch's groups leave the stream for good. `excluded` are the
   * groups (by index in the batch) the trainer left out of the loss after its own checks: they count as
   * rejected, by reason, not as accepted.
   */
  async commit(batch: Batch, excluded: ReadonlyArray<{ index: number; reason: RejectReason }> = []): Promise<void> {
    this.stopKeepAlive();
    const held = this.held;
    this.held = [];
    const dropped = new Map(excluded.filter((e) => e.index >= 0 && e.index < held.length).map((e) => [e.index, e.reason]));
    this.counts.accepted += held.length - dropped.size;
    const offPolicy = held.filter((h, i) => !dropped.has(i) && h.group.policyVersion < batch.policyVersion).length;
    this.counts.offPolicy = (this.counts.offPolicy ?? 0) + offPolicy;
    for (const reason of dropped.values()) this.countRejected(reason);
    this.state.committedStep = batch.step;
    // No write needed for the accepted ones: the batch record says these were trained on, and a lost ack only
    // means a redelivery, which the used set turns away. Exclusions are rare and would be lost: write them.
    if (dropped.size > 0) await this.save();
    for (const h of held) this.settle(h.msg, 'ack');
  }

  /** Poison tasks dead-lettered by the workers since the job began (0 for a job provisioned without dead letters). */
  async deadLettered(): Promise<number> {
    try {
      return (await this.retry('dead letters info', () => this.jsm.streams.info(this.names.deadStream))).state.last_seq;
    } catch (err) {
      if (err instanceof JetStreamApiError && err.status === 404) return 0;
      throw err;
    }
  }

  /** Groups stored on the trajectories stream since the job began (dedup'd retries excluded). */
  async published(): Promise<number> {
    return (await this.retry('trajectories info', () => this.jsm.streams.info(this.names.trajStream))).state.last_seq;
  }

  /**
   * End of run: stops issuing (purges queued tasks), counts every group stored so far that was not used as
   * stale, and returns how many groups were published up to that point, so accepted + stale + rejected
   * equals it exactly. Groups of tasks still being generated arrive later and are left out of both.
   */
  async drain(): Promise<number> {
    await this.retry('purge tasks', () => this.jsm.streams.purge(this.names.tasksStream));
    const published = await this.published();
    for (let attempt = 0; !this.nc.isClosed(); ) {
      let received = 0;
      try {
        const messages = await this.consumer.fetch({ max_messages: 256, expires: 1000 });
        for await (const msg of messages) {
          if (msg.seq > published) {
            msg.nak();
            continue;
          }
          received++;
          if (this.settleAgain(msg)) continue;
          if (this.trainedBefore.delete(this.peekTaskId(msg) ?? '')) this.settle(msg, 'ack');
          else {
            this.counts.stale++;
            this.settle(msg, 'term', 'RunFinished');
          }
        }
      } catch (err) {
        // A stall mid-drain: what was settled stays settled (and remembered), the rest comes again.
        if (!isTransient(err)) throw err;
        await new Promise((r) => setTimeout(r, backoffMs(attempt++)));
        continue;
      }
      if (received === 0) break;
    }
    await this.save();
    return published;
  }

  close(): void {
    this.closed = true;
    this.stopKeepAlive();
  }

  /** The oldest policy version a group may have to be used at `version`. */
  private oldestUsable(version: number): number {
    return this.options.mode === 'SequentialPull' ? version : version - this.options.maxStaleness;
  }

  /**
   * Synchronous unless the verifier returns a promise or the worker's key is not known yet (one await per group
   * adds up on the hot path).
   */
  private judge(msg: JsMsg, version: number, verify: GroupVerifier): Judgement | Promise<Judgement> {
    // Not only redeliveries: a nats-server killed before it stored its consumer's state delivers again, as if
    // for the first time (delivery count 1), messages it had delivered and seen settled (seen in the chaos test).
    if (this.settleAgain(msg)) return { outcome: 'redelivered' };
    const digest = digestOfMessage(msg.data); // what the worker signed, before the decoder may move the bytes
    let group: TrajectoryGroup;
    try {
      // The message is only acked, termed or kept alive after this: the group may take its bytes over.
      group = decodeGroup(msg.data, this.decodeLimits, { takeOver: true });
    } catch (err) {
      return { outcome: this.reject(err instanceof BusError && isRejectReason(err.reason) ? err.reason : 'Malformed', msg) };
    }
    // In the stream's order, whatever the key lookups below take: the first publisher of a group is the original.
    const copiedFrom = this.copies.copiedFrom(group);
    const signed = this.keys.check(group.workerId, digest, msg.headers?.get(SIGNATURE_HEADER));
    if (isPromiseLike(signed)) return Promise.resolve(signed).then((ok) => this.judgeSigned(ok, copiedFrom, msg, group, version, verify));
    return this.judgeSigned(signed, copiedFrom, msg, group, version, verify);
  }

  private judgeSigned(signed: boolean, copiedFrom: string | undefined, msg: JsMsg, group: TrajectoryGroup, version: number, verify: GroupVerifier): Judgement | Promise<Judgement> {
    // Not counted against the worker the group names: it did not send it.
    if (!signed) return { outcome: this.reject('BadSignature', msg), taskConsumed: true };
    if (this.trainedBefore.delete(group.taskId)) {
      this.settle(msg, 'ack');
      return { outcome: 'accepted' };
    }
    if (group.taskId !== taskIdOf(group.taskSeq) || group.taskSeq > this.state.issuedSeq) {
      return { outcome: this.reject('UnknownTask', msg, group) };
    }
    if (this.used.has(group.taskSeq)) return { outcome: this.reject('Duplicate', msg, group) };
    if (copiedFrom !== undefined) {
      this.used.add(group.taskSeq);
      this.options.log?.warn({ task: group.taskId, worker: group.workerId, original: copiedFrom }, 'group copied from another worker');
      return { outcome: this.reject('Copied', msg, group), taskConsumed: true };
    }
    if (group.policyVersion > version) return { outcome: this.reject('FutureVersion', msg, group) };
    const oldest = this.oldestUsable(version);
    this.used.add(group.taskSeq);
    if (group.policyVersion < oldest) {
      this.counts.stale++;
      this.remember(msg.seq, 'term'); // termed by the caller, once the counts are saved
      // A stale group for one of this step's SequentialPull tasks used that task up.
      return { outcome: 'stale', taskConsumed: group.taskSeq >= this.state.stepFirstSeq };
    }
    const verdict = verify(group);
    if (isPromiseLike(verdict)) return Promise.resolve(verdict).then((v) => this.apply(v, msg, group));
    return this.apply(verdict, msg, group);
  }

  /** The verifier's verdict on a group that passed the bus's own checks. */
  private apply(verdict: Verdict, msg: JsMsg, group: TrajectoryGroup): Judgement {
    if (!verdict.ok) {
      this.options.log?.debug({ task: group.taskId, worker: group.workerId, reason: verdict.reason }, verdict.message);
      return { outcome: this.reject(verdict.reason, msg), taskConsumed: true }; // the verifier's caller keeps its own ledger
    }
    this.held.push({ msg, group });
    return { outcome: 'accepted' };
  }

  private save() {
    return this.control.putLearnerState(this.state);
  }

  /** An idempotent request, retried while the server recovers (logged through the learner's logger). */
  private retry<T>(what: string, operation: () => Promise<T>): Promise<T> {
    const options: RetryOptions = this.options.log ? { log: this.options.log } : {};
    return withRetry(what, operation, options);
  }

  /**
   * A message this learner already judged and counted, delivered again (its ack was lost, e.g. with a
   * restarted server): settled as before, or, still held for the step, kept under its new delivery. Counted
   * once either way. False when it was never judged here.
   */
  private settleAgain(msg: JsMsg): boolean {
    const settled = this.settled.get(msg.seq);
    if (settled) {
      this.settle(msg, settled, 'Redelivered');
      return true;
    }
    if (this.held.length === 0) return false;
    const held = this.held.find((h) => h.msg.seq === msg.seq);
    if (held) held.msg = msg;
    return held !== undefined;
  }

  private settle(msg: JsMsg, how: 'ack' | 'term', reason?: string): void {
    this.remember(msg.seq, how);
    if (how === 'ack') msg.ack();
    else msg.term(reason);
  }

  /** Redeliveries follow within an ack wait or a server restart: the newest 64 Ki settlements are plenty. */
  private remember(seq: number, how: 'ack' | 'term'): void {
    this.settled.set(seq, how);
    if (this.settled.size > 65_536) this.settled.delete(this.settled.keys().next().value!);
  }

  /** `group`: a group whose signature checked out, counted against its worker (onRejected). */
  private reject(reason: RejectReason, msg: JsMsg, group?: TrajectoryGroup): RejectReason {
    this.remember(msg.seq, 'term'); // termed by the caller, once the counts are saved
    this.countRejected(reason);
    if (group) this.options.onRejected?.(group.workerId, reason);
    this.options.log?.debug({ reason, seq: msg.seq }, 'group rejected');
    return reason;
  }

  private countRejected(reason: RejectReason): void {
    this.counts.rejected++;
    this.counts.rejectedByReason[reason] = (this.counts.rejectedByReason[reason] ?? 0) + 1;
  }

  private peekTaskId(msg: JsMsg): string | undefined {
    try {
      return decodeGroup(msg.data, this.decodeLimits).taskId;
    } catch {
      return undefined;
    }
  }

  private async issueStepTasks(step: number, version: number): Promise<void> {
    if (this.state.step !== step) {
      // Leftovers of the previous step would only make stale groups.
      if (version > 0) {
        const filter = this.names.tasksSubject(version - 1);
        await this.retry('purge old tasks', () => this.jsm.streams.purge(this.names.tasksStream, { filter }));
      }
      const first = this.state.issuedSeq + 1;
      const last = first + this.options.batchSize - 1;
      Object.assign(this.state, { issuedSeq: last, step, stepFirstSeq: first, stepLastSeq: last });
      await this.save();
    }
    // Re-publishing after a restart is harmless: the stream stores each task id once.
    await this.publishTasks(this.state.stepFirstSeq, this.state.stepLastSeq, version);
  }

  private async topUpWindow(version: number): Promise<void> {
    const outstanding = await this.inFlight();
    const missing = this.options.taskWindow - outstanding;
    if (missing > 0) await this.reserveAndPublish(missing, version);
  }

  /** Nothing arrived for a while: issue again whatever the in-flight count says went missing. */
  private async reissueLost(version: number): Promise<void> {
    const wanted = this.options.mode === 'SequentialPull' ? this.options.batchSize : this.options.taskWindow;
    const missing = wanted - (await this.inFlight());
    if (missing > 0) {
      this.options.log?.warn({ missing, version }, 'groups overdue: re-issuing tasks');
      await this.reserveAndPublish(missing, version);
    }
  }

  /** Tasks queued or being generated + groups stored (held ones included). Read tasks first: a group
   * moving between the two streams is then counted twice (harmless), never missed. */
  private async inFlight(): Promise<number> {
    const tasks = (await this.retry('tasks info', () => this.jsm.streams.info(this.names.tasksStream))).state.messages;
    const groups = (await this.retry('trajectories info', () => this.jsm.streams.info(this.names.trajStream))).state.messages;
    return tasks + groups;
  }

  /** Issues `count` new tasks tagged `version` (the mode's scheduling calls this; so may a caller that
   * wants tasks queued ahead, as the bus benchmark does). */
  async issueTasks(count: number, version: number): Promise<void> {
    await this.reserveAndPublish(count, version);
  }

  private async reserveAndPublish(count: number, version: number): Promise<void> {
    const first = this.state.issuedSeq + 1;
    this.state.issuedSeq += count;
    await this.save();
    await this.publishTasks(first, first + count - 1, version);
  }

  private async publishTasks(firstSeq: number, lastSeq: number, version: number): Promise<void> {
    const publishes: Promise<unknown>[] = [];
    for (let seq = firstSeq; seq <= lastSeq; seq++) {
      const task: Task = { v: WIRE_VERSION, job: this.names.key, taskId: taskIdOf(seq), seq, policyVersion: version, payload: await this.options.taskPayload(seq) };
      const data = codecs.task.encode(task);
      const subject = this.names.tasksSubject(version);
      publishes.push(this.retry(`issue ${task.taskId}`, () => this.js.publish(subject, data, { msgID: task.taskId })));
    }
    await Promise.all(publishes);
  }

  private startKeepAlive(): void {
    if (this.keepAlive) return;
    this.keepAlive = setInterval(() => {
      for (const h of this.held) h.msg.working();
    }, Math.max(250, this.groupAckWaitMs / 3));
    this.keepAlive.unref();
  }

  private stopKeepAlive(): void {
    clearInterval(this.keepAlive);
    this.keepAlive = undefined;
  }
}

export const taskIdOf = (seq: number) => `t${seq}`;
const seqOf = (taskId: string) => Number(taskId.slice(1));

/**
 * Task sequence numbers already used, in bounded memory: the newest `capacity` of them, and every number up to
 * the newest one forgotten. A task still unanswered while `capacity` later ones were used (far more than the
 * task window holds) is thereby closed: a group for it, should one ever come, is a Duplicate.
 */
class UsedTasks {
  private readonly seqs = new Set<number>();
  private forgottenThrough = 0;

  constructor(private readonly capacity: number) {}

  has(seq: number): boolean {
    return seq <= this.forgottenThrough || this.seqs.has(seq);
  }

  add(seq: number): void {
    this.seqs.add(seq);
    if (this.seqs.size <= this.capacity) return;
    const oldest = this.seqs.values().next().value!; // insertion order: the one used longest ago
    this.seqs.delete(oldest);
    this.forgottenThrough = Math.max(this.forgottenThrough, oldest);
  }
}

const rejectReasons = new Set<string>(['Malformed', 'Oversized', 'UnsupportedVersion', 'WrongJob', 'TokenOutOfRange']);
const isRejectReason = (reason: string): reason is RejectReason => rejectReasons.has(reason);
