// The trajectory group: one message per finished GRPO group, a small JSON header followed by the token
// ids and behavior log-probs as raw little-endian arrays, so decoding a large group is views, not parsing.
import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { BusError } from '../bus/errors.js';
import { WIRE_VERSION } from '../bus/messages.js';

const MAGIC = 0x474b4c52; // "RLKG" little-endian
const PREFIX_BYTES = 8; // magic u32 + header length u32
const MAX_HEADER_BYTES = 1 << 20;

const Id = Type.String({ minLength: 1, maxLength: 253, pattern: '^[A-Za-z0-9._:/=-]+$' });
const HeaderSchema = Type.Object({
  v: Type.Literal(WIRE_VERSION),
  job: Id,
  taskId: Id,
  taskSeq: Type.Integer({ minimum: 0 }),
  policyVersion: Type.Integer({ minimum: 0 }),
  policyDigest: Type.String({ maxLength: 80 }),
  workerId: Id,
  pool: Type.String({ maxLength: 63 }),
  verifierId: Type.String({ maxLength: 128 }),
  promptTokens: Type.Integer({ minimum: 0 }),
  completions: Type.Array(
    Type.Object({
      tokens: Type.Integer({ minimum: 0 }),
      reward: Type.Number(),
      text: Type.String({ maxLength: 65536 }),
      finishReason: Type.String({ maxLength: 32 }),
    }),
    { minItems: 1, maxItems: 1024 },
  ),
  timings: Type.Object({ generateMs: Type.Number({ minimum: 0 }), scoreMs: Type.Number({ minimum: 0 }) }),
  signature: Type.Optional(Type.String({ maxLength: 1024 })),
});
type Header = Static<typeof HeaderSchema>;
const checkHeader = TypeCompiler.Compile(HeaderSchema);

export interface Completion {
  tokenIds: Int32Array;
  /** Behavior log-probs, one per token of tokenIds. */
  logprobs: Float32Array;
  reward: number;
  text: string;
  finishReason: string;
}

export interface TrajectoryGroup {
  /** "<namespace>/<job>" */
  job: string;
  taskId: string;
  taskSeq: number;
  policyVersion: number;
  policyDigest: string;
  workerId: string;
  pool: string;
  verifierId: string;
  promptTokenIds: Int32Array;
  completions: Completion[];
  timings: { generateMs: number; scoreMs: number };
  signature?: string;
}

export interface DecodeLimits {
  /** Messages for any other job are refused (WrongJob). */
  job: string;
  /** Token ids must lie in [0, vocabSize). */
  vocabSize: number;
  maxBytes: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });
const align4 = (n: number) => (n + 3) & ~3;

export function encodeGroup(group: TrajectoryGroup): Uint8Array {
  const header: Header = {
    v: WIRE_VERSION,
    job: group.job,
    taskId: group.taskId,
    taskSeq: group.taskSeq,
    policyVersion: group.policyVersion,
    policyDigest: group.policyDigest,
    workerId: group.workerId,
    pool: group.pool,
    verifierId: group.verifierId,
    promptTokens: group.promptTokenIds.length,
    completions: group.completions.map((c) => {
      if (c.logprobs.length !== c.tokenIds.length) {
        throw new BusError('Malformed', `task ${group.taskId}: ${c.tokenIds.length} tokens but ${c.logprobs.length} log-probs`);
      }
      return { tokens: c.tokenIds.length, reward: c.reward, text: c.text, finishReason: c.finishReason };
    }),
    timings: group.timings,
    ...(group.signature === undefined ? {} : { signature: group.signature }),
  };
  const headerBytes = encoder.encode(JSON.stringify(header));
  const bodyOffset = align4(PREFIX_BYTES + headerBytes.byteLength);
  const words = group.promptTokenIds.length + group.completions.reduce((n, c) => n + 2 * c.tokenIds.length, 0);
  const out = new Uint8Array(bodyOffset + 4 * words);
  const view = new DataView(out.buffer);
  view.setUint32(0, MAGIC, true);
  view.setUint32(4, headerBytes.byteLength, true);
  out.set(headerBytes, PREFIX_BYTES);
  const body = new Int32Array(out.buffer, bodyOffset, words);
  let at = 0;
  body.set(group.promptTokenIds, at);
  at += group.promptTokenIds.length;
  for (const c of group.completions) {
    body.set(c.tokenIds, at);
    at += c.tokenIds.length;
    new Float32Array(out.buffer, bodyOffset + 4 * at, c.logprobs.length).set(c.logprobs);
    at += c.logprobs.length;
  }
  return out;
}

/** Decodes and checks a group; throws BusError with the rejection reason. Never throws anything else. */
export function decodeGroup(data: Uint8Array, limits: DecodeLimits): TrajectoryGroup {
  if (data.byteLength > limits.maxBytes) throw new BusError('Oversized', `${data.byteLength} bytes > ${limits.maxBytes}`);
  if (data.byteLength < PREFIX_BYTES) throw new BusError('Malformed', 'shorter than the group prefix');
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (view.getUint32(0, true) !== MAGIC) throw new BusError('Malformed', 'not a trajectory group (bad magic)');
  const headerLength = view.getUint32(4, true);
  if (headerLength > MAX_HEADER_BYTES || PREFIX_BYTES + headerLength > data.byteLength) {
    throw new BusError('Malformed', `header length ${headerLength} exceeds the message`);
  }
  let header: unknown;
  try {
    header = JSON.parse(decoder.decode(data.subarray(PREFIX_BYTES, PREFIX_BYTES + headerLength)));
  } catch {
    throw new BusError('Malformed', 'header is not UTF-8 JSON');
  }
  if (header && typeof header === 'object' && 'v' in header && header.v !== WIRE_VERSION) {
    throw new BusError('UnsupportedVersion', `wire version ${String(header.v)}, expected ${WIRE_VERSION}`);
  }
  if (!checkHeader.Check(header)) {
    const first = checkHeader.Errors(header).First();
    throw new BusError('Malformed', `header ${first ? `${first.path} ${first.message}` : 'invalid'}`);
  }
  if (header.job !== limits.job) throw new BusError('WrongJob', `group for job ${header.job}, this is ${limits.job}`);

  const bodyOffset = align4(PREFIX_BYTES + headerLength);
  const words = header.promptTokens + header.completions.reduce((n, c) => n + 2 * c.tokens, 0);
  if (bodyOffset + 4 * words !== data.byteLength) {
    throw new BusError('Malformed', `body is ${data.byteLength - bodyOffset} bytes, header describes ${4 * words}`);
  }
  // Typed-array views need 4-byte alignment of the underlying buffer; copy only when it is not.
  const aligned = (data.byteOffset + bodyOffset) % 4 === 0 ? data : new Uint8Array(data); // (Buffer#slice would not copy)
  const base = aligned.byteOffset + bodyOffset;
  const ints = new Int32Array(aligned.buffer, base, words);
  const floats = new Float32Array(aligned.buffer, base, words);

  const promptTokenIds = ints.subarray(0, header.promptTokens);
  checkTokens(promptTokenIds, limits.vocabSize, header.taskId);
  let at = header.promptTokens;
  const completions = header.completions.map((c): Completion => {
    const tokenIds = ints.subarray(at, at + c.tokens);
    checkTokens(tokenIds, limits.vocabSize, header.taskId);
    const logprobs = floats.subarray(at + c.tokens, at + 2 * c.tokens);
    for (let i = 0; i < logprobs.length; i++) {
      const lp = logprobs[i]!;
      if (!(lp <= 1e-3)) throw new BusError('Malformed', `task ${header.taskId}: log-prob ${lp} is not ≤ 0`);
    }
    at += 2 * c.tokens;
    return { tokenIds, logprobs, reward: c.reward, text: c.text, finishReason: c.finishReason };
  });
  return {
    job: header.job,
    taskId: header.taskId,
    taskSeq: header.taskSeq,
    policyVersion: header.policyVersion,
    policyDigest: header.policyDigest,
    workerId: header.workerId,
    pool: header.pool,
    verifierId: header.verifierId,
    promptTokenIds,
    completions,
    timings: header.timings,
    ...(header.signature === undefined ? {} : { signature: header.signature }),
  };
}

function checkTokens(ids: Int32Array, vocabSize: number, taskId: string): void {
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    if (id < 0 || id >= vocabSize) throw new BusError('TokenOutOfRange', `task ${taskId}: token id ${id} outside [0, ${vocabSize})`);
  }
}
