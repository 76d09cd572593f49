// The operator's one typed configuration, parsed from flags (and their environment variables) at start-up;
// a bad value stops the process with a message naming the setting.
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { Command, CommanderError, Option } from 'commander';
import { parseNatsUrl } from '../api/schema-kit.js';

export interface OperatorConfig {
  /** Path of a kubeconfig; undefined → in-cluster service account, else the default kubeconfig. */
  kubeconfig?: string;
  /** Namespaces to watch; [] → all. */
  namespaces: string[];
  natsUrl: string;
  natsCreds?: string;
  /**
   * Per-job NATS identities (decentralized JWT auth), when the server runs in operator mode: a system-account
   * user's credentials (account JWT updates) and the NATS operator's signing key (signs the account JWT).
   * The jobs' account is the one natsCreds belongs to. Absent: jobs get no credentials of their own.
   */
  jobCredentials?: { systemCreds: string; operatorSigningKey: string };
  metricsPort: number;
  leaderElection: { enabled: boolean; leaseName: string; leaseNamespace: string; identity: string; leaseDurationMs: number };
  images: { agent: string; trainer: string; vllm: string };
  workers: number;
  /** Status writes per object are batched into at most one per this many milliseconds. */
  statusPeriodMs: number;
  logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error';
}

export class ConfigError extends Error {
  readonly reason = 'InvalidConfig' as const;
  constructor(readonly setting: string, message: string) {
    super(`${setting}: ${message}`);
    this.name = 'ConfigError';
  }
}

const SA_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function int(setting: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) throw new ConfigError(setting, `must be an integer in [${min}, ${max}], got ${JSON.stringify(text)}`);
  return n;
}

/**
 * The watched namespaces: comma-separated names, blanks ignored, each at most once (a namespace listed twice
 * would get two watches and every event twice); none → all namespaces.
 */
function parseNamespaces(text: string): string[] {
  const namespaces = [...new Set(text.split(',').map((s) => s.trim()).filter(Boolean))];
  for (const ns of namespaces) {
    if (!DNS_LABEL.test(ns) || ns.length > 63) throw new ConfigError(settingName('namespaces'), `not a namespace name: ${ns}`);
  }
  return namespaces;
}

function inClusterNamespace(): string | undefined {
  try { return readFileSync(SA_NAMESPACE_FILE, 'utf8').trim(); } catch { return undefined; }
}

/** Every setting: its flag, the environment variable read when the flag is absent, and its default. */
const SETTINGS = {
  kubeconfig: { flag: '--kubeconfig <path>', env: 'KUBECONFIG', help: 'kubeconfig file (default: in-cluster, then ~/.kube/config)' },
  namespaces: { flag: '--namespaces <list>', env: 'RLKUBE_WATCH_NAMESPACES', help: 'comma-separated namespaces to watch (default: all)', default: '' },
  natsUrl: { flag: '--nats-url <url>', env: 'RLKUBE_NATS_URL', help: 'NATS server URL(s), comma-separated' },
  natsCreds: { flag: '--nats-creds <path>', env: 'RLKUBE_NATS_CREDS', help: 'NATS credentials file' },
  natsSystemCreds: { flag: '--nats-system-creds <path>', env: 'RLKUBE_NATS_SYSTEM_CREDS', help: 'credentials of a NATS system-account user: turns on per-job credentials' },
  natsOperatorSigningKey: { flag: '--nats-operator-signing-key <path>', env: 'RLKUBE_NATS_OPERATOR_SIGNING_KEY', help: 'file with the seed of a NATS operator signing key (signs the jobs account JWT)' },
  metricsPort: { flag: '--metrics-port <port>', env: 'RLKUBE_METRICS_PORT', help: 'port of /metrics, /healthz, /readyz', default: '8080' },
  leaderElect: { flag: '--leader-elect <bool>', env: 'RLKUBE_LEADER_ELECT', help: 'elect one active replica through a Lease', default: 'true' },
  leaseName: { flag: '--lease-name <name>', env: 'RLKUBE_LEASE_NAME', help: 'name of the leader-election Lease', default: 'rlkube-operator' },
  leaseNamespace: { flag: '--lease-namespace <ns>', env: 'POD_NAMESPACE', help: 'namespace of the Lease (default: the pod namespace)' },
  leaseDuration: { flag: '--lease-duration <seconds>', env: 'RLKUBE_LEASE_DURATION', help: 'leader lease duration', default: '15' },
  identity: { flag: '--identity <id>', env: 'POD_NAME', help: 'identity in the Lease (default: pod name, then host name)' },
  agentImage: { flag: '--agent-image <image>', env: 'RLKUBE_AGENT_IMAGE', help: 'agent image', default: 'ghcr.io/rlkube/agent:0.1.0' },
  trainerImage: { flag: '--trainer-image <image>', env: 'RLKUBE_TRAINER_IMAGE', help: 'trainer and tiny-policy image', default: 'ghcr.io/rlkube/trainer:0.1.0' },
  vllmImage: { flag: '--vllm-image <image>', env: 'RLKUBE_VLLM_IMAGE', help: 'vLLM engine image (images/vllm)', default: 'ghcr.io/rlkube/vllm:0.1.0' },
  workers: { flag: '--workers <n>', env: 'RLKUBE_WORKERS', help: 'concurrent reconciles per kind', default: '64' },
  statusPeriod: { flag: '--status-period-ms <ms>', env: 'RLKUBE_STATUS_PERIOD_MS', help: 'at most one status write per object per period', default: '1000' },
  logLevel: { flag: '--log-level <level>', env: 'RLKUBE_LOG_LEVEL', help: 'trace|debug|info|warn|error', default: 'info' },
} satisfies Record<string, { flag: string; env: string; help: string; default?: string }>;
type Setting = keyof typeof SETTINGS;

/** "--nats-url (RLKUBE_NATS_URL)": how a message names a setting. */
export const settingName = (s: Setting) => `${SETTINGS[s].flag.split(' ')[0]} (${SETTINGS[s].env})`;

export function parseOperatorConfig(argv: string[], env: Record<string, string | undefined>): OperatorConfig {
  const program = new Command('rlkube-operator')
    .exitOverride()
    .configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
  for (const { flag, help } of Object.values(SETTINGS)) program.addOption(new Option(flag, help));
  try {
    program.parse(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) throw new ConfigError('flags', err.message.replace(/^error: /, ''));
    throw err;
  }
  const flags = program.opts<Record<string, string | undefined>>();
  const o = Object.fromEntries(Object.entries(SETTINGS).map(([k, s]) => {
    const fromEnv = env[s.env]?.trim() ? env[s.env] : undefined;
    return [k, flags[k] ?? fromEnv ?? ('default' in s ? s.default : undefined)];
  })) as Record<Setting, string | undefined>;

  const natsUrl = o.natsUrl?.trim();
  if (!natsUrl) throw new ConfigError(settingName('natsUrl'), 'is required');
  const nats = parseNatsUrl(natsUrl);
  if ('bad' in nats) throw new ConfigError(settingName('natsUrl'), `not a nats:// or tls:// URL: ${nats.bad}`);
  if ((o.natsSystemCreds === undefined) !== (o.natsOperatorSigningKey === undefined)) {
    const [given, missing] = o.natsSystemCreds === undefined ? ['natsOperatorSigningKey', 'natsSystemCreds'] as const : ['natsSystemCreds', 'natsOperatorSigningKey'] as const;
    throw new ConfigError(settingName(missing), `is required with ${settingName(given)} (per-job credentials need both)`);
  }
  if (o.natsSystemCreds !== undefined && o.natsCreds === undefined) {
    throw new ConfigError(settingName('natsCreds'), `is required with ${settingName('natsSystemCreds')}: the jobs' account is the one the operator's own user belongs to`);
  }
  const namespaces = parseNamespaces(o.namespaces ?? '');
  const leaderElect = (o.leaderElect ?? 'true').toLowerCase();
  if (!['true', 'false'].includes(leaderElect)) throw new ConfigError(settingName('leaderElect'), `must be true or false, got ${o.leaderElect}`);
  const leaseNamespace = o.leaseNamespace ?? inClusterNamespace() ?? namespaces[0] ?? 'default';
  if (!DNS_LABEL.test(leaseNamespace)) throw new ConfigError(settingName('leaseNamespace'), `not a namespace name: ${leaseNamespace}`);
  const leaseName = o.leaseName!;
  if (!DNS_LABEL.test(leaseName)) throw new ConfigError(settingName('leaseName'), `not a valid name: ${leaseName}`);
  const logLevel = o.logLevel as OperatorConfig['logLevel'];
  if (!['trace', 'debug', 'info', 'warn', 'error'].includes(logLevel)) throw new ConfigError(settingName('logLevel'), `unknown level ${logLevel}`);
  if (o.kubeconfig !== undefined && o.kubeconfig.trim() === '') throw new ConfigError(settingName('kubeconfig'), 'is empty');

  return {
    ...(o.kubeconfig ? { kubeconfig: o.kubeconfig } : {}),
    namespaces,
    natsUrl,
    ...(o.natsCreds ? { natsCreds: o.natsCreds } : {}),
    ...(o.natsSystemCreds && o.natsOperatorSigningKey ? { jobCredentials: { systemCreds: o.natsSystemCreds, operatorSigningKey: o.natsOperatorSigningKey } } : {}),
    metricsPort: int(settingName('metricsPort'), o.metricsPort!, 0, 65535),
    leaderElection: {
      enabled: leaderElect === 'true',
      leaseName,
      leaseNamespace,
      identity: o.identity ?? os.hostname(),
      leaseDurationMs: int(settingName('leaseDuration'), o.leaseDuration!, 2, 600) * 1000,
    },
    images: { agent: o.agentImage!, trainer: o.trainerImage!, vllm: o.vllmImage! },
    workers: int(settingName('workers'), o.workers!, 1, 256),
    statusPeriodMs: int(settingName('statusPeriod'), o.statusPeriod!, 0, 60_000),
    logLevel,
  };
}
