// The trajectory group codec: round trip, and every kind of bad input refused with its reason.
import { BusError, decodeGroup, encodeGroup } from '../../bus/index.js';
import { SIGNATURE_HEADER, alignedHeaders } from '../../bus/worker.js';
import { syntheticGroup } from '../harness/groups.js';

const limits = { job: 'ns/job', vocabSize: 64, maxBytes: 1 << 20 };

function reasonOf(data: Uint8Array, overrides: Partial<typeof limits> = {}): string {
  try {
    decodeGroup(data, { ...limits, ...overrides });
    return 'accepted';
  } catch (err) {
    if (err instanceof BusError) return err.reason;
    throw err;
  }
}

describe('trajectory group codec', () => {
  it('round-trips token ids, log-probs and rewards exactly', () => {
    const group = syntheticGroup({ job: 'ns/job', taskSeq: 7, policyVersion: 3, groupSize: 5, tokensPerCompletion: 11 });
    const decoded = decodeGroup(encodeGroup(group), limits);
    expect(decoded.taskId).toBe('t7');
    expect(decoded.policyVersion).toBe(3);
    expect(Array.from(decoded.promptTokenIds)).toEqual(Array.from(group.promptTokenIds));
    expect(decoded.completions.map((c) => Array.from(c.tokenIds))).toEqual(group.completions.map((c) => Array.from(c.tokenIds)));
    expect(decoded.completions.map((c) => Array.from(c.logprobs))).toEqual(group.completions.map((c) => Array.from(c.logprobs)));
    expect(decoded.completions.map((c) => c.reward)).toEqual(group.completions.map((c) => c.reward));
  });

  it('decodes from an unaligned buffer (copies instead of failing)', () => {
    const encoded = encodeGroup(syntheticGroup({ job: 'ns/job', taskSeq: 1, policyVersion: 0 }));
    // A Node Buffer at an odd offset, as a network client hands it over (Buffer#slice does not copy).
    const shifted = Buffer.alloc(encoded.byteLength + 1);
    shifted.set(encoded, 1);
    expect(decodeGroup(shifted.subarray(1), limits).taskSeq).toBe(1);
  });

  const good = () => encodeGroup(syntheticGroup({ job: 'ns/job', taskSeq: 1, policyVersion: 0 }));
  /** Re-encodes a good group with its JSON header changed (body kept, re-aligned). */
  const withHeader = (mutate: (h: Record<string, unknown>) => void) => {
    const bytes = good();
    const headerLength = new DataView(bytes.buffer).getUint32(4, true);
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength)));
    const body = bytes.subarray((8 + headerLength + 3) & ~3);
    mutate(header);
    const text = new TextEncoder().encode(JSON.stringify(header));
    const bodyOffset = (8 + text.byteLength + 3) & ~3;
    const out = new Uint8Array(bodyOffset + body.byteLength);
    new DataView(out.buffer).setUint32(0, 0x474b4c52, true);
    new DataView(out.buffer).setUint32(4, text.byteLength, true);
    out.set(text, 8);
    out.set(body, bodyOffset);
    return out;
  };

  it.each([
    ['empty message', new Uint8Array(0), 'Malformed'],
    ['random bytes', Uint8Array.from({ length: 300 }, (_, i) => (i * 37) % 256), 'Malformed'],
    ['truncated body', good().subarray(0, good().byteLength - 4), 'Malformed'],
    ['extra bytes', new Uint8Array([...good(), 0, 0, 0, 0]), 'Malformed'],
    ['wrong wire version', withHeader((h) => (h.v = 2)), 'UnsupportedVersion'],
    ['an unchanged header (control)', withHeader(() => undefined), 'accepted'],
    ['negative token count', withHeader((h) => (h.promptTokens = -1)), 'Malformed'],
    ['wrong job', withHeader((h) => (h.job = 'ns/jox')), 'WrongJob'],
  ].map(([name, data, reason]) => [name, reason, data]))('%s → %s', (_name, reason, data) => {
    expect(reasonOf(data as Uint8Array)).toBe(reason);
  });

  it('refuses token ids outside the vocabulary and oversized messages', () => {
    expect(reasonOf(good(), { vocabSize: 5 })).toBe('TokenOutOfRange');
    expect(reasonOf(good(), { maxBytes: 100 })).toBe('Oversized');
  });

  it('refuses positive log-probs', () => {
    const group = syntheticGroup({ job: 'ns/job', taskSeq: 1, policyVersion: 0 });
    group.completions[0]!.logprobs[0] = 0.5;
    expect(reasonOf(encodeGroup(group))).toBe('Malformed');
  });
});

describe('trajectory group codec: the hot path', () => {
  const group = () => syntheticGroup({ job: 'ns/job', taskSeq: 42, policyVersion: 1, groupSize: 3, tokensPerCompletion: 9 });
  const arrays = (g: ReturnType<typeof decodeGroup>) => ({
    prompt: Array.from(g.promptTokenIds),
    tokens: g.completions.map((c) => Array.from(c.tokenIds)),
    logprobs: g.completions.map((c) => Array.from(c.logprobs)),
  });

  it('takes an unaligned message over instead of copying it, with the same result', () => {
    const encoded = encodeGroup(group());
    const expected = arrays(decodeGroup(encoded, limits));
    for (const shift of [1, 2, 3]) {
      const carrier = new Uint8Array(encoded.byteLength + shift);
      carrier.set(encoded, shift);
      const data = carrier.subarray(shift);
      const decoded = decodeGroup(data, limits, { takeOver: true });
      expect(arrays(decoded)).toEqual(expected);
      expect(decoded.completions[0]!.tokenIds.buffer).toBe(carrier.buffer); // moved within, not copied
    }
  });

  it('never writes to the message without takeOver', () => {
    const encoded = encodeGroup(group());
    const carrier = new Uint8Array(encoded.byteLength + 1);
    carrier.set(encoded, 1);
    const before = Uint8Array.from(carrier);
    decodeGroup(carrier.subarray(1), limits);
    expect(carrier).toEqual(before);
  });

  it('encodes into a reused buffer exactly as into a fresh one (padding included)', () => {
    const fresh = encodeGroup(group());
    const dirty = new ArrayBuffer(fresh.byteLength + 100);
    new Uint8Array(dirty).fill(0xff);
    const reused = encodeGroup(group(), dirty);
    expect(reused.buffer).toBe(dirty);
    expect(Array.from(reused)).toEqual(Array.from(fresh));
    // Too small: a new buffer, same bytes.
    const small = new ArrayBuffer(16);
    const grown = encodeGroup(group(), small);
    expect(grown.buffer).not.toBe(small);
    expect(Array.from(grown)).toEqual(Array.from(fresh));
  });

  it('sizes a header with multi-byte UTF-8 text exactly', () => {
    const g = group();
    g.completions[0]!.text = 'héllo → 世界 🎲 \u0000 "quoted" \\ \ud800 lone';
    g.completions[1]!.finishReason = 'stöp';
    const decoded = decodeGroup(encodeGroup(g), limits);
    expect(decoded.completions[0]!.text).toBe(JSON.parse(JSON.stringify(g.completions[0]!.text)));
    expect(decoded.completions[1]!.finishReason).toBe('stöp');
    expect(arrays(decoded)).toEqual(arrays(decodeGroup(encodeGroup(group()), limits)));
  });

  it('refuses NaN and positive log-probs and out-of-range tokens anywhere in the body', () => {
    for (const at of [0, 4, 8]) {
      const g = group();
      g.completions[2]!.logprobs[at] = Number.NaN;
      expect(reasonOf(encodeGroup(g))).toBe('Malformed');
      const h = group();
      h.completions[1]!.tokenIds[at] = -1;
      expect(reasonOf(encodeGroup(h))).toBe('TokenOutOfRange');
      const k = group();
      k.completions[2]!.tokenIds[at] = limits.vocabSize;
      expect(reasonOf(encodeGroup(k))).toBe('TokenOutOfRange');
    }
    const p = group();
    p.promptTokenIds[5] = 1 << 30;
    expect(reasonOf(encodeGroup(p))).toBe('TokenOutOfRange');
  });

  it('refuses a group whose log-probs and tokens differ in length', () => {
    const g = group();
    g.completions[1]!.logprobs = g.completions[1]!.logprobs.subarray(1);
    expect(() => encodeGroup(g)).toThrow(BusError);
  });
});

describe('trajectory group codec: every position of the body is checked', () => {
  // 37 tokens: four full blocks of 8 and a tail, in each completion.
  const make = () => syntheticGroup({ job: 'ns/job', taskSeq: 3, policyVersion: 0, groupSize: 2, tokensPerCompletion: 37 });
  const messageOf = (data: Uint8Array) => {
    try {
      decodeGroup(data, limits);
      return 'accepted';
    } catch (err) {
      return (err as BusError).message;
    }
  };

  it('finds a bad token id or log-prob wherever it is, and names it', () => {
    for (let at = 0; at < 37; at++) {
      for (const [bad, expected] of [[-1, 'token id -1 '], [limits.vocabSize, `token id ${limits.vocabSize} `], [-(2 ** 31), 'token id -2147483648 ']] as const) {
        const g = make();
        g.completions[1]!.tokenIds[at] = bad;
        expect(messageOf(encodeGroup(g))).toContain(expected);
      }
      for (const [bad, expected] of [[0.5, 'log-prob 0.5 '], [Number.NaN, 'log-prob NaN '], [Number.POSITIVE_INFINITY, 'log-prob Infinity ']] as const) {
        const g = make();
        g.completions[0]!.logprobs[at] = bad;
        expect(messageOf(encodeGroup(g))).toContain(expected);
      }
    }
  });

  it('accepts the edges of the valid ranges', () => {
    const g = make();
    g.completions[0]!.tokenIds.fill(limits.vocabSize - 1);
    g.completions[1]!.tokenIds.fill(0);
    g.completions[0]!.logprobs.fill(0);
    g.completions[1]!.logprobs.fill(Number.NEGATIVE_INFINITY);
    expect(messageOf(encodeGroup(g))).toBe('accepted');
  });
});

describe('trajectory message headers', () => {
  it('carry the task id as the message id and the signature, padded to whole 4-byte words, whatever their lengths', () => {
    for (let digits = 1; digits <= 12; digits++) {
      const taskId = `t${'7'.repeat(digits)}`;
      for (const signature of [undefined, 's', 'x'.repeat(86), 'y'.repeat(87)]) {
        const headers = alignedHeaders(taskId, signature);
        expect(headers.get('Nats-Msg-Id')).toBe(taskId);
        expect(headers.get(SIGNATURE_HEADER)).toBe(signature ?? '');
        // (encode() is the client's wire encoding, not in its public types)
        expect((headers as unknown as { encode(): Uint8Array }).encode().byteLength % 4).toBe(0);
      }
    }
  });
});
