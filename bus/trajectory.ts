// The trajectory group: one message per finished GRPO group, a small JSON header followed by the token
// ids and behavior log-probs as raw little-endian arrays, so decoding a large group is views, not parsing.
import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { BusError } from './errors.js';
import { WIRE_VERSION } from './messages.js';

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
  graderId: Type.String({ maxLength: 128 }),
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
  graderId: string;
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

export interface DecodeOptions {
  /**
   * The caller hands `data` over to the group (a message it will not read again): a body that is not 4-byte
   * aligned is then moved back by 1–3 bytes inside `data`, over the end of the already parsed header,
   * instead of being copied to a new buffer. Without it, `data` is never written to.
   */
  takeOver?: boolean;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });
const align4 = (n: number) => (n + 3) & ~3;

// The hot path of the bus: the codec runs once per group on each side. It allocates only what it returns (the
// message, which the worker reuses once published; the group and its views into the message), writes the
// header straight into the message, and checks every token and log-prob with tight scans (see below).

/**
 * Encodes a group. With `reuse`, a buffer no longer referenced anywhere else (e.g. one whose publish was
 * acknowledged), the message is written into it when it fits, and a view of it is returned.
 */
export function encodeGroup(group: TrajectoryGroup, reuse?: ArrayBuffer): Uint8Array {
  const { promptTokenIds, completions } = group;
  const described: Header['completions'] = []; // (packed, not new Array(n): JSON.stringify is slower on holes)
  let words = promptTokenIds.length;
  for (let i = 0; i < completions.length; i++) {
    const c = completions[i]!;
    if (c.logprobs.length !== c.tokenIds.length) {
      throw new BusError('Malformed', `task ${group.taskId}: ${c.tokenIds.length} tokens but ${c.logprobs.length} log-probs`);
    }
    described.push({ tokens: c.tokenIds.length, reward: c.reward, text: c.text, finishReason: c.finishReason });
    words += 2 * c.tokenIds.length;
  }
  const header: Header = {
    v: WIRE_VERSION,
    job: group.job,
    taskId: group.taskId,
    taskSeq: group.taskSeq,
    policyVersion: group.policyVersion,
    policyDigest: group.policyDigest,
    workerId: group.workerId,
    pool: group.pool,
    graderId: group.graderId,
    promptTokens: promptTokenIds.length,
    completions: described,
    timings: group.timings,
    ...(group.signature === undefined ? {} : { signature: group.signature }),
  };
  const json = JSON.stringify(header);
  const headerLength = Buffer.byteLength(json, 'utf8');
  const bodyOffset = align4(PREFIX_BYTES + headerLength);
  const size = bodyOffset + 4 * words;
  // Every byte is written below (prefix, header, zeroed padding, body), so the buffer need not be zeroed first.
  const out = new Uint8Array(reuse && reuse.byteLength >= size ? reuse : Buffer.allocUnsafeSlow(size).buffer, 0, size);
  const view = new DataView(out.buffer);
  view.setUint32(0, MAGIC, true);
  view.setUint32(4, headerLength, true);
  // (The buffer is not zeroed: a header shorter than counted would send stale memory, so make sure it is not.)
  if (encoder.encodeInto(json, out.subarray(PREFIX_BYTES, PREFIX_BYTES + headerLength)).written !== headerLength) {
    throw new Error('trajectory header: UTF-8 length miscounted');
  }
  out.fill(0, PREFIX_BYTES + headerLength, bodyOffset);
  const ints = new Int32Array(out.buffer, bodyOffset, words);
  const floats = new Float32Array(out.buffer, bodyOffset, words);
  ints.set(promptTokenIds, 0);
  let at = promptTokenIds.length;
  for (let i = 0; i < completions.length; i++) {
    const c = completions[i]!;
    ints.set(c.tokenIds, at);
    floats.set(c.logprobs, at + c.tokenIds.length);
    at += 2 * c.tokenIds.length;
  }
  return out;
}

/** Decodes and checks a group; throws BusError with the rejection reason. Never throws anything else. */
export function decodeGroup(data: Uint8Array, limits: DecodeLimits, options: DecodeOptions = {}): TrajectoryGroup {
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

  const described = header.completions;
  const bodyOffset = align4(PREFIX_BYTES + headerLength);
  let words = header.promptTokens;
  for (let i = 0; i < described.length; i++) words += 2 * described[i]!.tokens;
  if (bodyOffset + 4 * words !== data.byteLength) {
    throw new BusError('Malformed', `body is ${data.byteLength - bodyOffset} bytes, header describes ${4 * words}`);
  }
  // Typed-array views need 4-byte alignment; a network client hands over messages at any offset, so an
  // unaligned body is moved back within the message (taken over) or copied (only the body, not the header).
  let buffer = data.buffer;
  let base = data.byteOffset + bodyOffset;
  const misaligned = base % 4;
  if (misaligned !== 0 && options.takeOver) {
    data.copyWithin(bodyOffset - misaligned, bodyOffset); // bodyOffset ≥ 8: only header bytes are overwritten
    base -= misaligned;
  } else if (misaligned !== 0) {
    const body = new Uint8Array(4 * words);
    body.set(data.subarray(bodyOffset));
    buffer = body.buffer;
    base = 0;
  }
  const ints = new Int32Array(buffer, base, words);
  const floats = new Float32Array(buffer, base, words);

  const { vocabSize } = limits;
  let at = header.promptTokens;
  checkTokens(ints, 0, at, vocabSize, header.taskId);
  const completions: Completion[] = [];
  for (let i = 0; i < described.length; i++) {
    const c = described[i]!;
    const end = at + c.tokens;
    checkTokens(ints, at, end, vocabSize, header.taskId);
    checkLogprobs(floats, end, end + c.tokens, header.taskId);
    completions.push({
      tokenIds: ints.subarray(at, end),
      logprobs: floats.subarray(end, end + c.tokens),
      reward: c.reward,
      text: c.text,
      finishReason: c.finishReason,
    });
    at = end + c.tokens;
  }
  return {
    job: header.job,
    taskId: header.taskId,
    taskSeq: header.taskSeq,
    policyVersion: header.policyVersion,
    policyDigest: header.policyDigest,
    workerId: header.workerId,
    pool: header.pool,
    graderId: header.graderId,
    promptTokenIds: ints.subarray(0, header.promptTokens),
    completions,
    timings: header.timings,
    ...(header.signature === undefined ? {} : { signature: header.signature }),
  };
}

/** Token ids ids[from, to) must lie in [0, vocabSize). */
function checkTokens(ids: Int32Array, from: number, to: number, vocabSize: number, taskId: string): void {
  const bad = firstTokenOutside(ids, from, to, vocabSize);
  if (bad >= 0) throw new BusError('TokenOutOfRange', `task ${taskId}: token id ${ids[bad]} outside [0, ${vocabSize})`);
}

/** Log-probs lps[from, to) must be ≤ 0 (with a little room for rounding); NaN is refused. */
function checkLogprobs(lps: Float32Array, from: number, to: number, taskId: string): void {
  const bad = firstLogprobAbove(lps, from, to, 1e-3);
  if (bad >= 0) throw new BusError('Malformed', `task ${taskId}: log-prob ${lps[bad]} is not ≤ 0`);
}

// The scans are the codec's hot loops (two per completion, over every token). They have nothing but the loop
// in them (no throw, no call) and look at 8 elements per step, which lets the compiler keep the array's base
// and length in registers instead of reloading and re-checking them per element: 2x faster than the plain
// loop. A block with a bad value is then rescanned one element at a time for the exact index.
function firstTokenOutside(ids: Int32Array, from: number, to: number, vocabSize: number): number {
  let i = from;
  for (; i + 8 <= to; i += 8) {
    const a = ids[i]!, b = ids[i + 1]!, c = ids[i + 2]!, d = ids[i + 3]!;
    const e = ids[i + 4]!, f = ids[i + 5]!, g = ids[i + 6]!, h = ids[i + 7]!;
    if ((a | b | c | d | e | f | g | h) < 0 || Math.max(a, b, c, d, e, f, g, h) >= vocabSize) break;
  }
  for (; i < to; i++) {
    const id = ids[i]!;
    if (id < 0 || id >= vocabSize) return i;
  }
  return -1;
}

function firstLogprobAbove(lps: Float32Array, from: number, to: number, limit: number): number {
  let i = from;
  for (; i + 8 <= to; i += 8) {
    // (`!(x <= limit)`, not `x > limit`: NaN fails every comparison and is refused too.)
    if (!(lps[i]! <= limit && lps[i + 1]! <= limit && lps[i + 2]! <= limit && lps[i + 3]! <= limit &&
      lps[i + 4]! <= limit && lps[i + 5]! <= limit && lps[i + 6]! <= limit && lps[i + 7]! <= limit)) break;
  }
  for (; i < to; i++) if (!(lps[i]! <= limit)) return i;
  return -1;
}
