// Learner side of the bus, the façade over its parts: the sync policy says which tasks to issue (sync-policy.ts),
// the judge checks every group (judge.ts), the settlement counts each once and persists (settlement.ts); this
// file pulls exactly one batch per step, publishes policies, settles messages and drains at the end.
import { JetStreamApiError, jetstream, jetstreamManager, type Consumer, type JetStreamClient, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { retainedPolicyVersions } from '../api/retention.js';
import type { SyncMode } from '../api/rljob.js';
import { ControlStore } from './control.js';
import { CopyDetector } from './copies.js';
import { BusError, type RejectReason } from './errors.js';
import { GroupJudge, UsedTasks, taskIdOf, type GroupCheck, type Judgement } from './judge.js';
import { WIRE_VERSION, codecs, type BatchRecord, type PolicyRecord, type Task } from './messages.js';
import { jobNames, type JobKey } from './names.js';
import { Settlement, emptyLearnerState, type Ledger, type LearnerCounts, type Settled, type TrainedStep } from './settlement.js';
import { RegisteredKeys } from './signing.js';
import { syncPolicyFor, type SyncPolicy } from './sync-policy.js';
import { isTransient, backoffMs, withRetry, type RetryOptions } from './retry.js';
import type { TrajectoryGroup } from './trajectory.js';
import { WeightsStore, digestOf } from './weights.js';
import { SIGNATURE_HEADER } from './worker.js';

export type { SyncMode, LearnerCounts, TrainedStep };

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
  /** Old policy versions kept in the object store for slow workers (default: api/retention.ts). */
  keepVersions?: number;
  /** No group for this long: re-count what is in flight and re-issue what was lost. */
  stallMs?: number;
  log?: Logger;
}

export interface Batch {
  /** The 1-based index of the step this batch is for. */
  stepIndex: number;
  policyVersion: number;
  groups: TrajectoryGroup[];
}

interface Held {
  msg: JsMsg;
  group: TrajectoryGroup;
}

export class LearnerBus {
  private settlement = new Settlement(emptyLearnerState(), (state) => this.control.putLearnerState(state));
  private held: Held[] = [];
  /** Tasks whose group was used (trained on, counted stale or rejected): never used again. */
  private readonly used: UsedTasks;
  private readonly copies = new CopyDetector();
  private readonly judge: GroupJudge;
  private readonly policy: SyncPolicy;
  private closed = false;
  private keepAlive: NodeJS.Timeout | undefined;
  private readonly names;

  private constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly consumer: Consumer,
    readonly control: ControlStore,
    private readonly weights: WeightsStore,
    private readonly groupAckWaitMs: number,
    job: JobKey,
    private readonly options: LearnerBusOptions,
  ) {
    this.names = jobNames(job);
    this.policy = syncPolicyFor(options.mode, options);
    this.used = new UsedTasks(Math.max(65_536, 4 * options.taskWindow, 4 * options.batchSize));
    // Every group's signature is checked against the key its worker registered.
    const keys = new RegisteredKeys((workerId) => control.workerKey(workerId));
    this.judge = new GroupJudge({
      keys,
      copies: this.copies,
      used: this.used,
      tasks: () => this.settlement.tasks,
      decodeLimits: { job: this.names.key, vocabSize: options.vocabSize, maxBytes: options.maxGroupBytes },
      usesUpStepTask: (taskSeq, tasks) => this.policy.usesUpStepTask(taskSeq, tasks),
    });
  }

  static async open(nc: NatsConnection, job: JobKey, options: LearnerBusOptions): Promise<LearnerBus> {
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
      await ControlStore.open(nc, job, options.log ? { log: options.log } : {}),
      await WeightsStore.open(nc, job, options.log ? { log: options.log } : {}),
      (info.config.ack_wait ?? 30e9) / 1e6,
      job, options,
    );
  }

  /**
   * Restores the learner's bookkeeping after a restart, the trainer having done `stepsDone` steps. Returns the
   * step the trainer trained on but this bus never counted: the caller commits it, with the trainer's exclusions.
   */
  async resume(stepsDone: number): Promise<TrainedStep | undefined> {
    const saved = await this.control.learnerState();
    if (!saved) return undefined;
    this.settlement = new Settlement(saved, (state) => this.control.putLearnerState(state));
    const trained = this.settlement.resume(stepsDone);
    for (const seq of this.settlement.pendingTaskSeqs()) this.used.add(seq);
    await this.settlement.save();
    return trained;
  }

  /** Accepted (and of them off-policy), stale, rejected (also by reason) and left-over groups so far. */
  get counts(): Readonly<LearnerCounts> {
    return this.settlement.counts;
  }

  /** Verdicts per worker identity; its accepted add up to counts.accepted. */
  get ledger(): Ledger {
    return this.settlement.ledger;
  }

  /** Steps whose groups are counted (and acked). */
  get stepsCommitted(): number {
    return this.settlement.stepsCommitted;
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
    const expired = version - (this.options.keepVersions ?? retainedPolicyVersions(this.options.maxStaleness));
    if (expired >= 0) {
      // Left behind, a version's weights take space in the store until the job is deleted: worth a warning, not the step.
      await this.weights.delete(expired).catch((err: unknown) => this.options.log?.warn({ version: expired, err: String(err) }, 'old policy weights not deleted'));
      await this.control.deletePolicyAt(expired).catch((err: unknown) => this.options.log?.warn({ version: expired, err: String(err) }, 'old policy record not deleted'));
    }
    return record;
  }

  /**
   * Collects exactly batchSize accepted groups for step `stepIndex`, trained from `policyVersion`, under the
   * job's sync policy (which tasks, which versions usable), and records the batch before returning it.
   */
  async nextBatch(stepIndex: number, policyVersion: number, verify: GroupCheck): Promise<Batch> {
    const { batchSize } = this.options;
    await this.issueForStep(stepIndex, policyVersion);
    const at = { version: policyVersion, oldestUsable: this.policy.oldestUsable(policyVersion) };
    this.copies.forgetBefore(at.oldestUsable);
    this.startKeepAlive();
    let idleSince = Date.now();
    let toppedUpAt = 0;
    let stalls = 0;
    while (this.held.length < batchSize) {
      if (this.closed || this.nc.isClosed()) throw new BusError('Closed', `learner bus closed while collecting step ${stepIndex}`);
      // Counting what is in flight costs two requests: do it at the start of a step and then a few times a
      // second, not per pull (the window only drains by B per step). Its round trips overlap this pull; it
      // is over before the next one (or before the step returns).
      let topUp: Promise<void> | undefined;
      if (this.policy.keepsWindowFull && Date.now() - toppedUpAt > 250) {
        topUp = this.topUpWindow(policyVersion);
        topUp.catch(() => undefined); // awaited below: this only keeps an early failure from counting as unhandled
      }
      let received = 0;
      let tasksUsedUp = 0;
      const toSettle: Array<{ msg: JsMsg; how: Settled; reason?: string }> = [];
      const verdicts: Array<Promise<void>> = [];
      const onJudged = (msg: JsMsg, judgement: Judgement) => {
        if (this.count(msg, judgement)) toSettle.push({ msg, how: 'term', reason: judgement.outcome === 'rejected' ? judgement.reason : 'Stale' });
        if (judgement.outcome !== 'accepted' && judgement.taskUsedUp) tasksUsedUp++;
      };
      try {
        const messages = await this.consumer.fetch({ max_messages: batchSize - this.held.length, expires: 1000 });
        for await (const msg of messages) {
          received++;
          // Not only redeliveries: a nats-server killed before it stored its consumer's state delivers again, as
          // if for the first time (delivery count 1), messages it had delivered and seen settled (chaos test).
          if (this.settleAgain(msg)) continue;
          const judged = this.judge.judge(msg.data, msg.headers?.get(SIGNATURE_HEADER), at, verify);
          // An asynchronous verdict is awaited after the pull, never inside it: the pull must go on being read
          // (its heartbeats) however long a verifier takes, and the group's verifiers then run side by side.
          if (judged instanceof Promise) verdicts.push(judged.then((j) => onJudged(msg, j)));
          else onJudged(msg, judged);
        }
        await Promise.all(verdicts);
        // Rejections used up some of this step's tasks: the policy may issue as many more, so the step gets B.
        const replacements = this.policy.replaceUsedUp(tasksUsedUp);
        if (replacements > 0) await this.reserveAndPublish(replacements, policyVersion);
      } catch (err) {
        await Promise.allSettled(verdicts);
        if (!isTransient(err)) {
          await topUp?.catch(() => undefined); // as before: no top-up still running once the step has failed
          throw err;
        }
        if (stalls++ % 20 === 0) this.options.log?.warn({ err: String(err), stepIndex, stalls }, 'bus unavailable: retrying');
        await new Promise((r) => setTimeout(r, backoffMs(Math.min(stalls, 3))));
      }
      if (topUp) {
        await topUp;
        toppedUpAt = Date.now();
      }
      // Counts are persisted before the messages leave the stream, so a restart never undercounts; with them
      // the messages about to be termed, so a restart that meets one again settles it without counting it twice.
      await this.settleAll(toSettle);
      if (received > 0) idleSince = Date.now();
      else if (Date.now() - idleSince > (this.options.stallMs ?? 10_000)) {
        await this.reissueLost(policyVersion);
        idleSince = Date.now();
      }
    }
    const groups = this.held.map((h) => h.group);
    const record: BatchRecord = {
      stepIndex,
      policyVersion,
      groups: this.held.map((h) => ({ seq: h.msg.seq, taskSeq: h.group.taskSeq, worker: h.group.workerId, version: h.group.policyVersion })),
    };
    this.settlement.recordBatch(record);
    await this.settlement.save();
    return { stepIndex, policyVersion, groups };
  }

  /**
   * After the trainer has stored the step: its groups are counted and leave the stream for good. `excluded` are
   * the groups (by index in the batch) the trainer left out of the loss after its own checks: they count as
   * rejected, by reason, not as accepted. Also commits a `TrainedStep` handed back by resume (nothing held).
   */
  async commit(step: TrainedStep, excluded: ReadonlyArray<{ index: number; reason: RejectReason }> = []): Promise<void> {
    this.stopKeepAlive();
    const held = this.held;
    this.held = [];
    this.settlement.commit(step.stepIndex, new Map(excluded.map((e) => [e.index, e.reason])));
    await this.settlement.save();
    for (const h of held) h.msg.ack();
    // Once a step: what the stream no longer holds cannot come back, so it need not be remembered.
    this.settlement.forgetRemoved(await this.inStream());
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
   * End of run: stops issuing (purges queued tasks), counts every group stored so far that was never counted as
   * left over, removes them, and returns how many groups were published up to that point, so accepted + stale +
   * rejected + leftOver equals it exactly. The stream is read, not pulled: groups a killed learner held stay
   * with its dead pull until their ack wait ends, and are counted here all the same. Groups of tasks still being
   * generated arrive later and are left out of both.
   */
  async drain(): Promise<number> {
    await this.retry('purge tasks', () => this.jsm.streams.purge(this.names.tasksStream));
    const published = await this.published();
    const remaining = (await this.storedSeqs()).filter((seq) => seq <= published);
    for (const seq of remaining) if (!this.settlement.settledAs(seq)) this.settlement.countLeftOver(seq);
    await this.settlement.save(); // counted before removed: a restart mid-drain counts none twice
    await Promise.all(remaining.map((seq) => this.retry(`remove group ${seq}`, () => this.jsm.streams.deleteMessage(this.names.trajStream, seq, false)).catch((err: unknown) => {
      if (!isNoSuchMessage(err)) throw err; // gone already: an ack or term of this learner's landed meanwhile
    })));
    this.settlement.forgetRemoved(await this.inStream());
    await this.settlement.save();
    return published;
  }

  close(): void {
    this.closed = true;
    this.stopKeepAlive();
  }

  /** Counts a judged group (an accepted one is held for the step instead); true when its message is to be termed. */
  private count(msg: JsMsg, judgement: Judgement): boolean {
    switch (judgement.outcome) {
      case 'accepted':
        this.held.push({ msg, group: judgement.group });
        return false;
      case 'stale':
        this.settlement.countStale(msg.seq);
        return true;
      case 'rejected': {
        const { reason, group, copiedFrom } = judgement;
        this.settlement.countRejected(msg.seq, reason, group?.workerId);
        if (copiedFrom !== undefined) this.options.log?.warn({ task: group?.taskId, worker: group?.workerId, original: copiedFrom }, 'group copied from another worker');
        else this.options.log?.debug({ reason, seq: msg.seq, task: group?.taskId, worker: group?.workerId }, 'group rejected');
        return true;
      }
    }
  }

  /** Saves what was counted, then settles the messages: a message leaves the stream only once its count is stored. */
  private async settleAll(toSettle: ReadonlyArray<{ msg: JsMsg; how: Settled; reason?: string }>): Promise<void> {
    if (toSettle.length === 0) return;
    await this.settlement.save();
    for (const { msg, how, reason } of toSettle) settle(msg, how, reason);
  }

  /**
   * A message already counted (by this learner or one before it), delivered again (its ack was lost, e.g. with
   * a restarted server): settled as before, or, still held for the step, kept under its new delivery. Counted
   * once either way. False when it was never counted.
   */
  private settleAgain(msg: JsMsg): boolean {
    const settled = this.settlement.settledAs(msg.seq);
    if (settled) {
      settle(msg, settled, 'Redelivered');
      return true;
    }
    if (this.held.length === 0) return false;
    const held = this.held.find((h) => h.msg.seq === msg.seq);
    if (held) held.msg = msg;
    return held !== undefined;
  }

  /** Which sequences the trajectories stream still holds: the ones it holds no more cannot be delivered again. */
  private async inStream(): Promise<(seq: number) => boolean> {
    const { state } = await this.retry('trajectories info', () => this.jsm.streams.info(this.names.trajStream, { deleted_details: true }));
    const deleted = new Set(state.deleted ?? []);
    return (seq) => state.messages > 0 && seq >= state.first_seq && seq <= state.last_seq && !deleted.has(seq);
  }

  /** The sequences of the groups stored now, oldest first. */
  private async storedSeqs(): Promise<number[]> {
    const { state } = await this.retry('trajectories info', () => this.jsm.streams.info(this.names.trajStream, { deleted_details: true }));
    if (state.messages === 0) return [];
    const deleted = new Set(state.deleted ?? []);
    const seqs: number[] = [];
    for (let seq = state.first_seq; seq <= state.last_seq; seq++) if (!deleted.has(seq)) seqs.push(seq);
    return seqs;
  }

  /** An idempotent request, retried while the server recovers (logged through the learner's logger). */
  private retry<T>(what: string, operation: () => Promise<T>): Promise<T> {
    const options: RetryOptions = this.options.log ? { log: this.options.log } : {};
    return withRetry(what, operation, options);
  }

  /** The step's own tasks, as the sync policy says (SequentialPull: exactly B, tagged with its version). */
  private async issueForStep(stepIndex: number, version: number): Promise<void> {
    const { dropQueuedOf, step } = this.policy.issueForStep(stepIndex, version, this.settlement.tasks);
    if (dropQueuedOf !== undefined) {
      const filter = this.names.tasksSubject(dropQueuedOf);
      await this.retry('purge old tasks', () => this.jsm.streams.purge(this.names.tasksStream, { filter }));
    }
    if (!step) return;
    if (step.stepIndex !== this.settlement.tasks.stepIndex) {
      this.settlement.startStep(step);
      await this.settlement.save();
    }
    // Re-publishing after a restart is harmless: the stream stores each task id once.
    await this.publishTasks(step.firstSeq, step.lastSeq, version);
  }

  private async topUpWindow(version: number): Promise<void> {
    const missing = this.policy.topUp(await this.inFlight());
    if (missing > 0) await this.reserveAndPublish(missing, version);
  }

  /** Nothing arrived for a while: issue again whatever the in-flight count says went missing. */
  private async reissueLost(version: number): Promise<void> {
    const missing = this.policy.reissue(await this.inFlight());
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

  /** Issues `count` new tasks tagged `version` (the sync policy's scheduling calls this; so may a caller that
   * wants tasks queued ahead, as the bus benchmark does). */
  async issueTasks(count: number, version: number): Promise<void> {
    await this.reserveAndPublish(count, version);
  }

  private async reserveAndPublish(count: number, version: number): Promise<void> {
    const { firstSeq, lastSeq } = this.settlement.reserveTasks(count);
    await this.settlement.save();
    await this.publishTasks(firstSeq, lastSeq, version);
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

/**
 * The server's answers to a delete of a message no longer stored: 10037 (no message found), 10043 (sequence not
 * found), or a failed delete carrying the store's "no message found" (10057 on nats-server 2.12).
 */
function isNoSuchMessage(err: unknown): boolean {
  if (!(err instanceof JetStreamApiError)) return false;
  return err.code === 10037 || err.code === 10043 || /no message found/i.test(err.message);
}

function settle(msg: JsMsg, how: Settled, reason?: string): void {
  if (how === 'ack') msg.ack();
  else msg.term(reason);
}
