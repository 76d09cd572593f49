// Where a group comes from: worker signatures (bus/signing.ts) and copies of another worker's completions (bus/copies.ts).
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { COPY_EVIDENCE, CopyDetector, copyFingerprint } from '../../bus/copies.js';
import { RegisteredKeys, WorkerKey, digestOfMessage, signatureCheckOf } from '../../bus/signing.js';
import type { TrajectoryGroup } from '../../bus/index.js';
import { syntheticGroup } from '../harness/groups.js';

const bytes = (text: string) => new TextEncoder().encode(text);

describe('worker signatures', () => {
  const key = WorkerKey.create();
  const data = bytes('a group');

  it("verify with the signer's registered key only, and only for the bytes signed", () => {
    const check = signatureCheckOf(key.publicKey)!;
    expect(check(digestOfMessage(data), key.sign(data))).toBe(true);
    expect(check(digestOfMessage(bytes('a group!')), key.sign(data))).toBe(false);
    expect(check(digestOfMessage(data), WorkerKey.create().sign(data))).toBe(false);
    expect(check(digestOfMessage(data), 'not a signature')).toBe(false);
    expect(signatureCheckOf('UNOTAKEY')).toBeUndefined();
    expect(signatureCheckOf(key.seed)).toBeUndefined(); // a seed is not a public key
  });

  it('survive a restart: the key file gives the same key back, readable by its owner only', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'rlkube-key-')), 'keys', 'w0.nk');
    const first = WorkerKey.loadOrCreate(path);
    expect(WorkerKey.loadOrCreate(path).publicKey).toBe(first.publicKey);
    expect(readFileSync(path, 'utf8')).toBe(first.seed);
    expect(statSync(path).mode & 0o077).toBe(0);
  });

  it('are checked against the first key registered for the worker, looked up once', async () => {
    const lookups: string[] = [];
    const registered: Record<string, string> = { w0: key.publicKey };
    const keys = new RegisteredKeys(async (worker) => {
      lookups.push(worker);
      return registered[worker];
    });
    const digest = digestOfMessage(data);
    expect(await keys.check('w0', digest, key.sign(data))).toBe(true);
    registered.w0 = WorkerKey.create().publicKey; // a later registration does not displace the first
    expect(keys.check('w0', digest, key.sign(data))).toBe(true); // known now: no lookup, no promise
    expect(await keys.check('w1', digest, key.sign(data))).toBe(false); // nothing registered
    expect(keys.check('w0', digest, undefined)).toBe(false); // unsigned
    expect(lookups).toEqual(['w0', 'w1']);
  });
});

/** A group of G completions, each `tokens` tokens of log-prob `logprob`, all distinct unless `same`. */
function group(workerId: string, options: { logprob: number; same?: boolean; taskSeq?: number }): TrajectoryGroup {
  const g = syntheticGroup({ job: 'ns/j', taskSeq: options.taskSeq ?? 1, policyVersion: 2, workerId, groupSize: 8, tokensPerCompletion: 6 });
  g.completions.forEach((c, i) => {
    c.tokenIds = Int32Array.from({ length: 6 }, (_, t) => 3 + ((options.same ? 0 : i) + t) % 40);
    c.logprobs = new Float32Array(6).fill(options.logprob);
  });
  return g;
}

describe('copied completions', () => {
  it("a group too unlikely to be drawn twice, seen again from another worker, is a copy, whatever task or version it claims", () => {
    const detector = new CopyDetector();
    expect(detector.copiedFrom(group('honest', { logprob: -3 }))).toBeUndefined();
    const copy = group('copier', { logprob: -3, taskSeq: 9 });
    copy.policyVersion = 3;
    copy.completions.reverse(); // the order does not hide it
    expect(detector.copiedFrom(copy)).toBe('honest');
    expect(detector.copiedFrom(group('honest', { logprob: -3, taskSeq: 5 }))).toBeUndefined(); // its own again
  });

  it('a likely group seen twice is chance, not a copy (a confident policy answers alike)', () => {
    // 8 times the same completion at probability ~0.94 each: drawn again about 6 times in 10
    const likely = group('a', { logprob: -0.01, same: true });
    expect(copyFingerprint(likely)).toBeUndefined();
    const detector = new CopyDetector();
    detector.copiedFrom(likely);
    expect(detector.copiedFrom(group('b', { logprob: -0.01, same: true }))).toBeUndefined();
  });

  it('the evidence threshold is the multinomial probability of the multiset of completions', () => {
    // 8 distinct completions of probability p each: 8! p^8. At the threshold's edge, either side of it:
    const p = (COPY_EVIDENCE / 40320) ** (1 / 8);
    const perToken = (q: number) => Math.log(q) / 6;
    expect(copyFingerprint(group('a', { logprob: perToken(p * 1.01) }))).toBeUndefined();
    expect(copyFingerprint(group('a', { logprob: perToken(p * 0.99) }))).toBeDefined();
  });

  it('forgets the fingerprints of versions no group may have any more', () => {
    const detector = new CopyDetector();
    detector.copiedFrom(group('honest', { logprob: -3 }));
    detector.forgetBefore(2);
    expect(detector.size).toBe(1);
    detector.forgetBefore(3);
    expect(detector.size).toBe(0);
  });
});
