// NATS decentralized auth for per-job identities: the JWTs nats-server verifies (operator, account, user),
// credentials files, and what a job's identity may touch — exactly its own subjects, streams, KV bucket,
// object store and inboxes, so that the server, not our code, refuses anything of another job.
import { createHash } from 'node:crypto';
import type { KeyPair } from '@nats-io/nkeys';
import { jobNames, type JobKey } from './names.js';

export interface Permissions {
  pub: { allow: string[]; deny?: string[] };
  sub: { allow: string[]; deny?: string[] };
}

/**
 * Everything a job's agents do on the bus, and nothing more: publish tasks, groups and dead letters, pull from the job's
 * durable consumers, read and write its KV bucket and object store, purge its own streams (the learner
 * drops stale tasks; the object store drops old weights), remove counted groups (the learner's drain), receive replies on the job's own inbox prefix.
 * Streams are made, changed and removed by the operator only. The list is compact (per-stream wildcards,
 * a few denials) because the user JWT travels in the client's CONNECT line, which nats-server caps at
 * max_control_line (4 KiB by default).
 */
export function jobPermissions(job: JobKey): Permissions {
  const n = jobNames(job);
  const work = [n.tasksStream, n.trajStream];
  const stores = [n.controlStream, n.weightsStream];
  return {
    pub: {
      allow: [
        n.tasksWildcard, n.trajWildcard, n.deadSubject, n.controlWildcard, n.weightsWildcard, '$JS.API.INFO',
        // INFO and PURGE (the rest of STREAM.* is denied below); consumer INFO, CREATE (ordered readers), DELETE.
        ...[...work, ...stores].flatMap((s) => [`$JS.API.STREAM.*.${s}`, `$JS.API.CONSUMER.*.${s}.>`]),
        `$JS.API.STREAM.*.${n.deadStream}`, // the learner counts the dead letters
        `$JS.API.STREAM.MSG.DELETE.${n.trajStream}`, // the learner's end-of-run drain removes the groups it counted left over
        ...work.flatMap((s) => [`$JS.API.CONSUMER.MSG.NEXT.${s}.*`, `$JS.ACK.${s}.>`]),
        ...stores.flatMap((s) => [`$JS.API.STREAM.MSG.GET.${s}`, `$JS.API.DIRECT.GET.${s}.>`, `$JS.FC.${s}.>`]),
      ],
      deny: ['CREATE', 'UPDATE', 'DELETE', 'SNAPSHOT', 'RESTORE'].map((verb) => `$JS.API.STREAM.${verb}.>`),
    },
    sub: { allow: [`${n.inboxPrefix}.>`] },
  };
}

const b64url = (data: string | Uint8Array) => Buffer.from(data).toString('base64url');
const HEADER = b64url(JSON.stringify({ typ: 'JWT', alg: 'ed25519-nkey' }));

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
function base32(data: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of data) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) { out += BASE32[(value >>> (bits - 5)) & 31]; bits -= 5; }
  }
  return bits > 0 ? out + BASE32[(value << (5 - bits)) & 31] : out;
}

interface Claims {
  iss: string;
  sub: string;
  name: string;
  nats: Record<string, unknown>;
}

/** A NATS JWT (v2): claims signed with an nkey; `jti` is the hash of the claims, as the Go library makes it. */
export function encodeJwt(claims: Claims, signer: KeyPair, issuedAt = Math.floor(Date.now() / 1000)): string {
  if (signer.getPublicKey() !== claims.iss) throw new Error(`JWT issuer ${claims.iss} is not the signing key ${signer.getPublicKey()}`);
  const body = { iat: issuedAt, ...claims };
  const jti = base32(createHash('sha512-256').update(JSON.stringify(body)).digest());
  const payload = b64url(JSON.stringify({ jti, ...body }));
  return `${HEADER}.${payload}.${b64url(signer.sign(Buffer.from(`${HEADER}.${payload}`)))}`;
}

/** The claims of a JWT, unverified (the server verifies; we read what we issued). */
export function decodeJwt(jwt: string): Claims & { iat: number; jti: string } {
  const payload = jwt.split('.')[1];
  if (!payload) throw new Error('not a JWT');
  return JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
}

/** The operator JWT the server is configured with (self-signed by the operator's identity key). */
export function operatorJwt(operator: KeyPair, options: { name: string; systemAccount: string; signingKeys?: string[] }): string {
  return encodeJwt({
    iss: operator.getPublicKey(), sub: operator.getPublicKey(), name: options.name,
    nats: { type: 'operator', version: 2, system_account: options.systemAccount, ...(options.signingKeys?.length ? { signing_keys: options.signingKeys } : {}) },
  }, operator);
}

const UNLIMITED = { subs: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1 };
/** JetStream without limits of its own: the streams' limits (set by provisioning) are what bound a job. */
const JETSTREAM_UNLIMITED = { mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1 };

/**
 * An account JWT, signed by the operator (or one of its signing keys). `signingKeys` are the keys that may
 * issue users of the account: one per live job, so removing a job's key revokes every user it issued.
 */
export function accountJwt(signer: KeyPair, account: string, options: { name: string; jetstream: boolean; signingKeys?: string[]; issuedAt?: number }): string {
  return encodeJwt({
    iss: signer.getPublicKey(), sub: account, name: options.name,
    nats: {
      type: 'account', version: 2,
      limits: { ...UNLIMITED, ...(options.jetstream ? JETSTREAM_UNLIMITED : {}) },
      ...(options.signingKeys?.length ? { signing_keys: options.signingKeys } : {}),
    },
  }, signer, options.issuedAt);
}

/**
 * A user JWT. Signed by the account's identity key (`account` omitted) or by one of its signing keys
 * (`account` = the account's public key, which the server then names as the user's account).
 */
export function userJwt(signer: KeyPair, user: string, options: { name: string; account?: string; permissions?: Permissions }): string {
  return encodeJwt({
    iss: signer.getPublicKey(), sub: user, name: options.name,
    nats: {
      type: 'user', version: 2, subs: -1, data: -1, payload: -1,
      ...(options.permissions ?? {}),
      ...(options.account ? { issuer_account: options.account } : {}),
    },
  }, signer);
}

/** A credentials file (user JWT + seed), as `nats` tools and `credsAuthenticator` read it. */
export function credsFile(jwt: string, seed: Uint8Array | string): string {
  const s = typeof seed === 'string' ? seed : Buffer.from(seed).toString('utf8');
  return `-----BEGIN NATS USER JWT-----\n${jwt}\n------END NATS USER JWT------\n\n` +
    '************************* IMPORTANT *************************\n' +
    'NKEY Seed printed below can be used to sign and prove identity.\nNKEYs are sensitive and should be treated as secrets.\n\n' +
    `-----BEGIN USER NKEY SEED-----\n${s}\n------END USER NKEY SEED------\n`;
}

/** The user JWT of a credentials file. */
export function jwtOfCreds(creds: string): string {
  const m = /-----BEGIN NATS USER JWT-----\s*\n([^\n]+)\n/.exec(creds);
  if (!m) throw new Error('not a NATS credentials file');
  return m[1]!.trim();
}

/** The account a user JWT belongs to: the issuer, or the account whose signing key issued it. */
export function accountOfUser(jwt: string): string {
  const claims = decodeJwt(jwt);
  return (claims.nats.issuer_account as string | undefined) ?? claims.iss;
}
