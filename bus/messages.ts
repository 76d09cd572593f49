// Schemas of the bus's messages (versioned) and their JSON codecs, validated where they enter a process.
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { BusLimits } from '../api/bus-limits.js';
import { GroupCounts } from '../api/rljob.js';
import { BusError } from './errors.js';

/** Wire version of every message; a reader refuses versions it does not know. */
export const WIRE_VERSION = 1;

const Int = (min = 0) => Type.Integer({ minimum: min });
const Id = Type.String({ minLength: 1, maxLength: 253, pattern: '^[A-Za-z0-9._:/=-]+$' });

export const TaskSchema = Type.Object({
  v: Type.Literal(WIRE_VERSION),
  job: Id,
  taskId: Id,
  seq: Int(),
  /** SequentialPull: the exact policy version to generate with. AsyncPushPull: the version when issued. */
  policyVersion: Int(),
  /** Environment item; opaque to the bus. */
  payload: Type.Unknown(),
});
export type Task = Static<typeof TaskSchema>;

export const PolicyLocationSchema = Type.Union([
  Type.Object({ kind: Type.Literal('object'), name: Id, size: Int() }),
  Type.Object({ kind: Type.Literal('uri'), uri: Type.String({ minLength: 1, maxLength: 4096 }) }),
]);
export type PolicyLocation = Static<typeof PolicyLocationSchema>;

export const PolicyRecordSchema = Type.Object({
  v: Type.Literal(WIRE_VERSION),
  version: Int(),
  digest: Type.String({ pattern: '^sha256:[0-9a-f]{64}$' }),
  location: PolicyLocationSchema,
  createdAt: Type.String(),
});
export type PolicyRecord = Static<typeof PolicyRecordSchema>;

// The group counts are the RLJob status's own type (api/rljob.ts), so the record the learner writes and the
// status the operator mirrors it into cannot drift apart; api sits below the bus and imports nothing of it.
export type { GroupCounts };

/** Verdicts per worker identity: the ledger, the basis of any incentive scheme. */
export const WorkerTallySchema = Type.Object({ accepted: Int(), rejected: Int() });
export type WorkerTally = Static<typeof WorkerTallySchema>;

export const LearnerProgressSchema = Type.Object({
  v: Type.Literal(WIRE_VERSION),
  /** Steps done (the status's `step`). */
  step: Int(),
  maxSteps: Int(),
  state: Type.Union([
    Type.Literal('Starting'),
    Type.Literal('Running'),
    Type.Literal('Succeeded'),
    Type.Literal('Failed'),
  ]),
  policyVersion: Int(),
  /** Mean reward of the last step's accepted groups (null before the first step). */
  reward: Type.Union([Type.Number(), Type.Null()]),
  groups: GroupCounts,
  rejectedByReason: Type.Record(Type.String(), Int()),
  /** The ledger: verdicts per worker identity, the basis of any incentive scheme. */
  workers: Type.Optional(Type.Record(Type.String(), WorkerTallySchema)),
  updatedAt: Type.String(),
  message: Type.Optional(Type.String()),
});
export type LearnerProgress = Static<typeof LearnerProgressSchema>;

export const HeartbeatSchema = Type.Object({
  v: Type.Literal(WIRE_VERSION),
  worker: Id,
  pool: Type.String(),
  policyVersion: Type.Union([Type.Integer(), Type.Null()]),
  state: Type.Union([Type.Literal('Idle'), Type.Literal('Loading'), Type.Literal('Generating'), Type.Literal('Stopping')]),
  groupsPublished: Int(),
  at: Type.String(),
});
export type Heartbeat = Static<typeof HeartbeatSchema>;

/** A step's batch as the learner recorded it before training: which messages, from which workers and versions. */
export const BatchRecordSchema = Type.Object({
  stepIndex: Int(1),
  policyVersion: Int(),
  groups: Type.Array(Type.Object({ seq: Int(1), taskSeq: Int(), worker: Id, version: Int() }), { maxItems: 65_536 }),
});
export type BatchRecord = Static<typeof BatchRecordSchema>;

/** The learner's own resumable bookkeeping (not mirrored anywhere), one record written a few times per step:
 * task reservations, the counts and the ledger, and what it settled that may still come back. */
export const LearnerStateSchema = Type.Object({
  v: Type.Literal(WIRE_VERSION),
  /** Highest task sequence number reserved so far. */
  issuedSeq: Int(),
  /** The step (1-based index) whose SequentialPull tasks occupy [stepFirstSeq, stepLastSeq]. */
  stepIndex: Int(),
  stepFirstSeq: Int(),
  stepLastSeq: Int(),
  /** Steps whose groups are counted; the counts include the groups of every step up to it. */
  stepsCommitted: Int(),
  counts: Type.Object({
    accepted: Int(), offPolicy: Int(), stale: Int(), rejected: Int(), leftOver: Int(), rejectedByReason: Type.Record(Type.String(), Int()),
  }),
  /** The per-worker ledger: its accepted add up to counts.accepted. */
  workers: Type.Record(Type.String(), WorkerTallySchema),
  /** Stream sequences of the groups counted (acked: trained on; termed: stale, rejected or left over) whose
   * messages may still be in the stream (an ack or term lost with a process or a server): met again, they are
   * settled again without being counted again. Forgotten once the stream no longer holds them. */
  acked: Type.Array(Int(1), { maxItems: 65_536 }),
  termed: Type.Array(Int(1), { maxItems: 65_536 }),
  /** The batch of step stepsCommitted + 1, written before training: a restarted learner never uses it again and
   * counts it once the trainer says it trained on it. */
  pending: Type.Optional(BatchRecordSchema),
});
export type LearnerState = Static<typeof LearnerStateSchema>;

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

export interface JsonCodec<T> {
  encode(value: T): Uint8Array;
  /** Throws BusError('Malformed' | 'UnsupportedVersion' | 'Oversized'). */
  decode(data: Uint8Array): T;
}

export function jsonCodec<S extends TSchema>(name: string, schema: S, maxBytes = 1 << 20): JsonCodec<Static<S>> {
  const check = TypeCompiler.Compile(schema);
  return {
    encode: (value) => encoder.encode(JSON.stringify(value)),
    decode: (data) => {
      if (data.byteLength > maxBytes) throw new BusError('Oversized', `${name}: ${data.byteLength} bytes > ${maxBytes}`);
      let value: unknown;
      try {
        value = JSON.parse(decoder.decode(data));
      } catch {
        throw new BusError('Malformed', `${name}: not UTF-8 JSON`);
      }
      if (value && typeof value === 'object' && 'v' in value && value.v !== WIRE_VERSION) {
        throw new BusError('UnsupportedVersion', `${name}: wire version ${String(value.v)}, expected ${WIRE_VERSION}`);
      }
      if (!check.Check(value)) {
        const first = check.Errors(value).First();
        throw new BusError('Malformed', `${name}: ${first ? `${first.path || '/'} ${first.message}` : 'invalid'}`);
      }
      return value;
    },
  };
}

export const codecs = {
  task: jsonCodec('task', TaskSchema, BusLimits.maxTaskBytes),
  policy: jsonCodec('policy record', PolicyRecordSchema),
  progress: jsonCodec('learner progress', LearnerProgressSchema),
  heartbeat: jsonCodec('heartbeat', HeartbeatSchema),
  learnerState: jsonCodec('learner state', LearnerStateSchema),
};
