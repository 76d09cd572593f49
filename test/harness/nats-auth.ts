// Test harness: a real nats-server in decentralized-auth mode (operator JWT, full account resolver, a system
// account), with JetStream in one "jobs" account, and the credentials the rlkube operator is given in
// production: its own user in that account, a system-account user (to push account JWTs), and the NATS
// operator's signing key (to sign them).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAccount, createOperator, createUser, type KeyPair } from '@nats-io/nkeys';
import { accountJwt, credsFile, operatorJwt, userJwt } from '../../bus/auth.js';
import { waitForNatsReady } from '../../local/nats-server.js';
import { freePort } from '../../local/ports.js';
import { toolBinary } from '../../local/toolchain.js';

export interface AuthNatsServer {
  readonly url: string;
  readonly dir: string;
  /** Public key of the account that holds JetStream and the jobs' users. */
  readonly account: string;
  /** Credentials file of the rlkube operator's own user in that account (no permission limits). */
  readonly operatorCreds: string;
  /** Credentials file of a system-account user (account JWT updates). */
  readonly systemCreds: string;
  /** File holding the seed of the NATS operator's signing key (signs account JWTs). */
  readonly operatorSigningKey: string;
  /** The flags that give an rlkube operator these credentials. */
  readonly operatorArgs: string[];
  /** The server's recent output (for failure messages). */
  logs(): string;
  stop(): Promise<void>;
}

const seedOf = (kp: KeyPair) => Buffer.from(kp.getSeed()).toString('utf8');

export async function startAuthNats(options: { maxPayload?: number } = {}): Promise<AuthNatsServer> {
  const dir = mkdtempSync(join(tmpdir(), 'rlkube-nats-auth-'));
  const port = await freePort();
  const operator = createOperator();
  const signing = createOperator();
  const sys = createAccount();
  const jobs = createAccount();
  const opJwt = operatorJwt(operator, { name: 'rlkube-test', systemAccount: sys.getPublicKey(), signingKeys: [signing.getPublicKey()] });
  const sysJwt = accountJwt(signing, sys.getPublicKey(), { name: 'SYS', jetstream: false });
  const jobsJwt = accountJwt(signing, jobs.getPublicKey(), { name: 'rlkube', jetstream: true });

  const writeCreds = (file: string, account: KeyPair, name: string) => {
    const user = createUser();
    writeFileSync(join(dir, file), credsFile(userJwt(account, user.getPublicKey(), { name }), seedOf(user)), { mode: 0o600 });
    return join(dir, file);
  };
  const operatorCreds = writeCreds('operator.creds', jobs, 'rlkube-operator');
  const systemCreds = writeCreds('system.creds', sys, 'rlkube-operator-sys');
  const operatorSigningKey = join(dir, 'operator-signing.nk');
  writeFileSync(operatorSigningKey, `${seedOf(signing)}\n`, { mode: 0o600 });

  mkdirSync(join(dir, 'jwt'));
  const configFile = join(dir, 'nats-server.conf');
  writeFileSync(configFile, [
    `listen: "127.0.0.1:${port}"`,
    `server_name: "rlkube-auth-${port}"`,
    `max_payload: ${options.maxPayload ?? 1024 * 1024}`,
    `jetstream { store_dir: ${JSON.stringify(join(dir, 'js'))} }`,
    `operator: ${JSON.stringify(opJwt)}`,
    `system_account: ${sys.getPublicKey()}`,
    `resolver: { type: full, dir: ${JSON.stringify(join(dir, 'jwt'))}, allow_delete: false, interval: "2m" }`,
    `resolver_preload: { ${sys.getPublicKey()}: ${JSON.stringify(sysJwt)}, ${jobs.getPublicKey()}: ${JSON.stringify(jobsJwt)} }`,
    '',
  ].join('\n'));

  let output = '';
  const child: ChildProcess = spawn(toolBinary('nats-server'), ['-c', configFile, ...(process.env.RLKUBE_NATS_DEBUG ? ['-DV'] : [])], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-8000)));
  child.stderr?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-8000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await waitForNatsReady(port, 15_000, () => output);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  return {
    url: `nats://127.0.0.1:${port}`,
    dir,
    account: jobs.getPublicKey(),
    operatorCreds,
    systemCreds,
    operatorSigningKey,
    logs: () => output,
    operatorArgs: ['--nats-creds', operatorCreds, '--nats-system-creds', systemCreds, '--nats-operator-signing-key', operatorSigningKey],
    stop: async () => {
      if (child.exitCode === null) { child.kill('SIGTERM'); await exited; }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
