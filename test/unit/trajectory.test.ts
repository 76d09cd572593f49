// The trajectory group codec: round trip, and every kind of bad input refused with its reason.
import { BusError, decodeGroup, encodeGroup } from '../../bus/index.js';
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
  ])('%s → %s', (_name, data, reason) => {
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
