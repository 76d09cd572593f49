// Worker identity keys: every rollout worker signs each group it publishes with its own Ed25519 key (an nkey),
// whose public half it registers once in the job's control bucket; the learner checks every group's signature
// against the key registered for the worker the group names (bus/learner.ts).
//
// What a valid signature proves: the group's bytes are exactly what the holder of the key first registered
// under that worker id published — no other worker can publish under that id (ledger credit or blame), and no
// relay or store changed them. What it does not prove: that the group is honest (the learner re-scores it and
// the trainer re-computes its log-probs), nor that the first registrant of an id is the pod of that name:
// every pod of a job shares the job's NATS identity, so a pod that registers an id no one holds yet takes it
// (per-worker NATS identities would close that).
import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { createUser, fromPublic, fromSeed, Prefix } from '@nats-io/nkeys';
// nkeys signs and verifies in pure JavaScript (~20 ms per signature here); node's Ed25519 does the same with
// the same keys in ~0.1 ms, so the keys come from nkeys and the signatures from node:crypto. nkeys exposes the
// raw key bytes only through its codec.
import { Codec } from '@nats-io/nkeys/lib/codec.js';
import { BusError } from './errors.js';

// DER wrappings of raw Ed25519 keys (RFC 8410): a PKCS#8 private key from its 32-byte seed, an SPKI public key.
const PKCS8_ED25519 = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_ED25519 = Buffer.from('302a300506032b6570032100', 'hex');

const encoder = new TextEncoder();

/** A worker's signing key. */
export class WorkerKey {
  private constructor(
    /** The nkey seed ("SU…"): the secret, kept in a file only the worker reads. */
    readonly seed: string,
    /** The nkey public key ("U…"): what the worker registers. */
    readonly publicKey: string,
    private readonly privateKey: KeyObject,
  ) {}

  static create(): WorkerKey {
    return WorkerKey.fromSeed(new TextDecoder().decode(createUser().getSeed()));
  }

  static fromSeed(seed: string): WorkerKey {
    let publicKey: string;
    let raw: Uint8Array;
    try {
      publicKey = fromSeed(encoder.encode(seed)).getPublicKey();
      raw = Codec.decodeSeed(encoder.encode(seed)).buf;
    } catch (err) {
      throw new BusError('Malformed', `not an nkey seed: ${(err as Error).message}`);
    }
    const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, raw]), format: 'der', type: 'pkcs8' });
    return new WorkerKey(seed, publicKey, privateKey);
  }

  /**
   * The key kept in `path` (made there, readable by its owner only, when there is none yet): a restarted worker
   * signs with the key it registered before. Two processes racing to make it end up with the same one.
   */
  static loadOrCreate(path: string): WorkerKey {
    try {
      return WorkerKey.fromSeed(readFileSync(path, 'utf8').trim());
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const key = WorkerKey.create();
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    try {
      writeFileSync(path, key.seed, { flag: 'wx', mode: 0o600 });
      return key;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      return WorkerKey.fromSeed(readFileSync(path, 'utf8').trim());
    }
  }

  /** The signature (base64url) of a message's bytes: Ed25519 over their SHA-256. */
  sign(data: Uint8Array): string {
    return sign(null, digestOfMessage(data), this.privateKey).toString('base64url');
  }
}

/** A registered public key, ready to check signatures; undefined for a string that is not a user nkey. */
export function signatureCheckOf(publicKey: string): SignatureCheck | undefined {
  let raw: Uint8Array;
  try {
    fromPublic(publicKey); // checks the prefix and checksum
    raw = Codec.decode(Prefix.User, encoder.encode(publicKey));
  } catch {
    return undefined;
  }
  const key = createPublicKey({ key: Buffer.concat([SPKI_ED25519, raw]), format: 'der', type: 'spki' });
  return (digest, signature) => {
    try {
      return verify(null, digest, key, Buffer.from(signature, 'base64url'));
    } catch {
      return false;
    }
  };
}

/** Whether `signature` signs the message whose digest is `digest` (see digestOfMessage). */
export type SignatureCheck = (digest: Uint8Array, signature: string) => boolean;

/** What is signed: the SHA-256 of the message's bytes, taken before the learner's decoder may move them. */
export const digestOfMessage = (data: Uint8Array): Buffer => createHash('sha256').update(data).digest();

/**
 * The learner's view of the registered keys: each worker's looked up once, then checked in memory. The first key
 * this learner finds for a worker stands; a worker with none registered (yet) is looked up again next time.
 */
export class RegisteredKeys {
  private readonly known = new Map<string, SignatureCheck>();

  constructor(private readonly lookup: (workerId: string) => Promise<string | undefined>) {}

  /** Synchronous once the worker's key is known. */
  check(workerId: string, digest: Uint8Array, signature: string | undefined): boolean | Promise<boolean> {
    if (!signature) return false;
    const known = this.known.get(workerId);
    if (known) return known(digest, signature);
    return this.lookup(workerId).then((publicKey) => {
      const check = publicKey === undefined ? undefined : signatureCheckOf(publicKey);
      if (!check) return false;
      this.known.set(workerId, check);
      return check(digest, signature);
    });
  }
}
