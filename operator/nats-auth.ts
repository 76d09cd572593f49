// Per-job NATS identities (decentralized JWT auth). Each live job owns one signing key of the jobs account;
// its pods' user is signed by that key and may touch only the job's subjects (bus/auth.ts). The account JWT
// lists exactly the live jobs' keys: removing a job's key and pushing the account JWT to the servers (via
// the system account) revokes the job's users, and the server disconnects them. The operator keeps no
// key seeds: a job's key signs its user once, then only its public half stays, in the account JWT and on
// the job's Secret.
import { readFileSync } from 'node:fs';
import { createAccount, createUser, fromSeed, type KeyPair } from '@nats-io/nkeys';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { accountJwt, accountOfUser, credsFile, jobPermissions, jwtOfCreds, userJwt } from '../bus/auth.js';
import { connectBus, type JobKey } from '../bus/index.js';
import { NotLeaderError, type WriteFence } from './kube/client.js';

/** What the operator is given to issue job identities (operator/config.ts: --nats-system-creds, ...). */
export interface NatsAuthFiles {
  /** The operator's own user in the jobs account (its issuer names the account). */
  creds: string;
  /** A user of the system account: account JWT updates go through it. */
  systemCreds: string;
  /** Seed of the NATS operator's signing key (signs the account JWT). */
  operatorSigningKey: string;
}

export interface IssuedIdentity {
  /** Public key of the job's signing key (kept on the Secret, listed in the account JWT). */
  signingKey: string;
  /** The job's credentials file (user JWT + seed): goes into the Secret only. */
  creds: string;
}

/** A key or credentials file the operator cannot use: names the setting, never the content. */
export class NatsAuthFileError extends Error {
  readonly reason = 'InvalidConfig' as const;
  constructor(readonly setting: string, message: string) {
    super(`${setting}: ${message}`);
    this.name = 'NatsAuthFileError';
  }
}

function readKey<T>(setting: string, path: string, parse: (text: string) => T): T {
  let text: string;
  try { text = readFileSync(path, 'utf8'); } catch (err) { throw new NatsAuthFileError(setting, `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? err}`); }
  try { return parse(text); } catch (err) { throw new NatsAuthFileError(setting, `${path} is not usable: ${(err as Error).message}`); }
}

/** An account JWT the servers refused (or no server answered). */
export class AccountUpdateError extends Error {
  readonly reason = 'AccountUpdateFailed' as const;
  constructor(message: string) {
    super(message);
    this.name = 'AccountUpdateError';
  }
}

export class JobIdentities {
  readonly account: string;
  private readonly signer: KeyPair;
  private system?: Promise<NatsConnection>;
  /** The signing keys the account JWT lists (or is about to): one per live job that has credentials. */
  private readonly keys = new Map<string, string>();
  private lastIssuedAt = 0;
  /** The last push failed: the servers may hold an older key list than `keys`. */
  private stale = false;
  private pushing: Promise<void> = Promise.resolve();
  private queued?: Promise<void>;

  /** fence: a deposed leader's account JWT would drop the keys of jobs created since: it pushes nothing. */
  constructor(private readonly servers: string[], private readonly files: NatsAuthFiles, private readonly log: Logger, private readonly fence?: WriteFence) {
    this.account = readKey('--nats-creds', files.creds, (text) => accountOfUser(jwtOfCreds(text)));
    this.signer = readKey('--nats-operator-signing-key', files.operatorSigningKey, (text) => {
      const kp = fromSeed(new TextEncoder().encode(text.trim()));
      if (!kp.getPublicKey().startsWith('O')) throw new Error('not an operator key (its seed starts with SO)');
      return kp;
    });
    readKey('--nats-system-creds', files.systemCreds, jwtOfCreds);
  }

  /** A new identity for the job: a fresh signing key of the account, and the one user it signs. */
  issue(job: JobKey): IssuedIdentity {
    const key = createAccount();
    const user = createUser();
    try {
      const jwt = userJwt(key, user.getPublicKey(), { name: `${job.namespace}/${job.name}`, account: this.account, permissions: jobPermissions(job) });
      return { signingKey: key.getPublicKey(), creds: credsFile(jwt, user.getSeed()) };
    } finally {
      key.clear(); // the key signs this one user only; nothing else may ever be signed with it
      user.clear();
    }
  }

  /** The signing key the account lists for the job, if any. */
  keyOf(jobKey: string): string | undefined { return this.keys.get(jobKey); }

  /** Lists (or replaces) the job's key in the account and pushes the account JWT. */
  async grant(jobKey: string, signingKey: string): Promise<void> {
    if (this.keys.get(jobKey) === signingKey && !this.stale) return;
    this.keys.set(jobKey, signingKey);
    await this.publish();
  }

  /** Drops the job's key from the account and pushes: the server disconnects the job's users. */
  async revoke(jobKey: string): Promise<void> {
    if (!this.keys.delete(jobKey) && !this.stale) return;
    await this.publish();
  }

  /** Starts from what the Secrets say (after a restart): exactly these keys, pushed at once. */
  async reset(keys: Map<string, string>): Promise<void> {
    this.keys.clear();
    for (const [k, v] of keys) this.keys.set(k, v);
    await this.publish();
  }

  /**
   * Pushes the account JWT with the keys as they are when the push starts. Pushes run one at a time; calls
   * made while one runs share the next one (which carries all their changes).
   */
  private publish(): Promise<void> {
    this.queued ??= this.pushing.catch(() => undefined).then(() => {
      this.queued = undefined;
      return this.push().then(() => { this.stale = false; }, (err: unknown) => { this.stale = true; throw err; });
    });
    this.pushing = this.queued;
    return this.queued;
  }

  private async push(): Promise<void> {
    this.system ??= connectBus({ servers: this.servers, name: 'rlkube-operator-sys', credsFile: this.files.systemCreds });
    const nc = await this.system.catch((err) => { this.system = undefined; throw err; });
    // The full resolver keeps the newest JWT by issue time (seconds): never go back, even within a second.
    this.lastIssuedAt = Math.max(this.lastIssuedAt, Math.floor(Date.now() / 1000));
    if (this.fence && this.fence.writableForMs() <= 0) throw new NotLeaderError('account JWT update: not sent, leadership not confirmed');
    const keys = [...new Set(this.keys.values())].sort();
    const jwt = accountJwt(this.signer, this.account, { name: 'rlkube', jetstream: true, signingKeys: keys, issuedAt: this.lastIssuedAt });
    const reply = await nc.request('$SYS.REQ.CLAIMS.UPDATE', jwt, { timeout: 5_000 }).catch((err: Error) => {
      throw new AccountUpdateError(`account JWT update: ${err.message}`);
    });
    const answer = reply.json<{ data?: { code?: number; message?: string }; error?: { code?: number; description?: string } }>();
    if (answer.error || (answer.data?.code ?? 200) >= 300) {
      throw new AccountUpdateError(`account JWT update refused: ${answer.error?.description ?? answer.data?.message ?? 'no reason given'}`);
    }
    this.log.debug({ account: this.account, jobKeys: keys.length }, 'account JWT pushed');
  }

  async close(): Promise<void> {
    const nc = await this.system?.catch(() => undefined);
    this.system = undefined;
    await nc?.drain().catch(() => undefined);
  }
}
