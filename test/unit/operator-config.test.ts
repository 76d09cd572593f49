// The operator's configuration: flags, then environment, then defaults; a bad value names its setting.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAccount, createOperator, createUser } from '@nats-io/nkeys';
import pino from 'pino';
import { credsFile, userJwt } from '../../bus/auth.js';
import { ConfigError, parseOperatorConfig } from '../../operator/config.js';
import { JobIdentities, NatsAuthFileError } from '../../operator/nats-auth.js';

const env = { RLKUBE_NATS_URL: 'nats://nats.rlkube-system:4222', POD_NAMESPACE: 'rlkube-system', POD_NAME: 'rlkube-operator-7c9-x' };

describe('parseOperatorConfig', () => {
  test('defaults from the environment of a pod', () => {
    const c = parseOperatorConfig([], env);
    expect(c).toMatchObject({
      namespaces: [], natsUrl: 'nats://nats.rlkube-system:4222', metricsPort: 8080, workers: 64, logLevel: 'info',
      leaderElection: { enabled: true, leaseName: 'rlkube-operator', leaseNamespace: 'rlkube-system', identity: 'rlkube-operator-7c9-x', leaseDurationMs: 15_000 },
    });
    expect(c.kubeconfig).toBeUndefined();
  });

  test('flags win over the environment', () => {
    const c = parseOperatorConfig(['--nats-url', 'nats://a:1,nats://b:2', '--namespaces', 'team-a,team-b', '--metrics-port', '0', '--leader-elect', 'false', '--kubeconfig', '/k'], env);
    expect(c).toMatchObject({ natsUrl: 'nats://a:1,nats://b:2', namespaces: ['team-a', 'team-b'], metricsPort: 0, kubeconfig: '/k' });
    expect(c.leaderElection.enabled).toBe(false);
  });

  test.each<[string, string | undefined, string[]]>([
    ['unset: all namespaces', undefined, []],
    ['empty, as the chart sets it without watchNamespaces: all namespaces', '', []],
    ['the chart\'s list: only those', 'team-a,team-b', ['team-a', 'team-b']],
    ['blanks and repeats dropped (one watch per namespace)', ' team-a, ,team-b,team-a ', ['team-a', 'team-b']],
  ])('watched namespaces from RLKUBE_WATCH_NAMESPACES, %s', (_name, value, namespaces) => {
    expect(parseOperatorConfig([], { ...env, RLKUBE_WATCH_NAMESPACES: value }).namespaces).toEqual(namespaces);
  });

  test('per-job credentials: on with the system creds and the operator signing key, off without', () => {
    expect(parseOperatorConfig([], env).jobCredentials).toBeUndefined();
    const c = parseOperatorConfig([], { ...env, RLKUBE_NATS_CREDS: '/c', RLKUBE_NATS_SYSTEM_CREDS: '/s', RLKUBE_NATS_OPERATOR_SIGNING_KEY: '/k' });
    expect(c).toMatchObject({ natsCreds: '/c', jobCredentials: { systemCreds: '/s', operatorSigningKey: '/k' } });
  });

  test.each<[string, string[], Record<string, string | undefined>, string]>([
    ['missing NATS URL', [], { ...env, RLKUBE_NATS_URL: undefined }, '--nats-url (RLKUBE_NATS_URL)'],
    ['NATS URL of another scheme', ['--nats-url', 'http://x'], env, '--nats-url'],
    ['port out of range', ['--metrics-port', '70000'], env, '--metrics-port (RLKUBE_METRICS_PORT)'],
    ['port from env not a number', [], { ...env, RLKUBE_METRICS_PORT: 'eighty' }, '--metrics-port'],
    ['bad namespace', ['--namespaces', 'Team_A'], env, '--namespaces'],
    ['namespace name over 63 characters', [], { ...env, RLKUBE_WATCH_NAMESPACES: `team-a,${'n'.repeat(64)}` }, '--namespaces (RLKUBE_WATCH_NAMESPACES)'],
    ['WebSocket NATS URL (the operator speaks TCP)', ['--nats-url', 'nats://a:4222,wss://b:443'], env, '--nats-url'],
    ['a trailing comma in the NATS URL list', ['--nats-url', 'nats://a:4222,'], env, '--nats-url'],
    ['leader-elect not a boolean', ['--leader-elect', 'maybe'], env, '--leader-elect'],
    ['zero workers', ['--workers', '0'], env, '--workers'],
    ['unknown log level', ['--log-level', 'loud'], env, '--log-level'],
    ['unknown flag', ['--nats', 'x'], env, 'flags'],
    ['system creds without the operator signing key', ['--nats-creds', '/c', '--nats-system-creds', '/s'], env, '--nats-operator-signing-key (RLKUBE_NATS_OPERATOR_SIGNING_KEY)'],
    ['operator signing key without system creds', ['--nats-creds', '/c', '--nats-operator-signing-key', '/k'], env, '--nats-system-creds'],
    ['per-job credentials without the operator\'s own', ['--nats-system-creds', '/s', '--nats-operator-signing-key', '/k'], env, '--nats-creds (RLKUBE_NATS_CREDS)'],
  ])('refuses %s, naming the setting', (_name, argv, e, setting) => {
    let error: unknown;
    try { parseOperatorConfig(argv, e); } catch (err) { error = err; }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toContain(setting);
    expect((error as ConfigError).reason).toBe('InvalidConfig');
  });
});

describe('per-job credentials files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rlkube-auth-files-'));
  const account = createAccount();
  const user = createUser();
  const creds = join(dir, 'op.creds');
  writeFileSync(creds, credsFile(userJwt(account, user.getPublicKey(), { name: 'op' }), user.getSeed()));
  const signing = join(dir, 'signing.nk');
  writeFileSync(signing, Buffer.from(createOperator().getSeed()).toString());
  const notOperator = join(dir, 'account.nk');
  writeFileSync(notOperator, Buffer.from(createAccount().getSeed()).toString());
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const log = pino({ level: 'silent' });

  test('the jobs account is the one the operator\'s own user belongs to', () => {
    expect(new JobIdentities(['nats://x:4222'], { creds, systemCreds: creds, operatorSigningKey: signing }, log).account).toBe(account.getPublicKey());
  });

  test.each([
    ['a missing file', { creds, systemCreds: join(dir, 'absent'), operatorSigningKey: signing }, '--nats-system-creds: cannot read'],
    ['an account key where the operator signing key belongs', { creds, systemCreds: creds, operatorSigningKey: notOperator }, '--nats-operator-signing-key'],
    ['a seed where credentials belong', { creds: signing, systemCreds: creds, operatorSigningKey: signing }, '--nats-creds'],
  ])('refuses %s, naming the setting and not the content', (_name, files, message) => {
    let error: unknown;
    try { new JobIdentities(['nats://x:4222'], files, log); } catch (err) { error = err; }
    expect(error).toBeInstanceOf(NatsAuthFileError);
    expect((error as Error).message).toContain(message);
    expect((error as Error).message).not.toMatch(/SO[A-Z0-9]{20}|SA[A-Z0-9]{20}/); // no seed in the message
  });
});
