// The infrastructure's settings: one TypeBox schema gives the type, the defaults and the validation of the
// stack configuration (`pulumi config set --path rlkube:nats.replicas 3`), so a bad value is refused before
// anything is planned, with the setting named.
import { Type, type Static } from '@sinclair/typebox';
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DnsLabel, Image, NatsUrl, Quantity, StringMap, defaultsToFilled, withRules } from '../api/schema-kit.js';
import { validate, withDefaults } from '../api/validate.js';

const NATS_CHART_REPO = 'https://nats-io.github.io/k8s/helm/charts/';
const DEVICE_PLUGIN_REPO = 'https://nvidia.github.io/k8s-device-plugin';

/** A secret setting's text (`pulumi config set --secret --path rlkube:nats.credentials "$(cat op.creds)"`). */
const SecretText = (description: string) => Type.String({ minLength: 1, description });
/** A chart in a local directory (with Chart.yaml) or .tgz; relative paths are relative to infra/. */
const ChartPath = Type.String({ minLength: 1, description: 'a local chart: a directory with Chart.yaml, or a .tgz' });

const NatsSchema = withRules(
  defaultsToFilled(Type.Object(
    {
      /** An existing NATS (comma-separated URLs): no NATS is installed, the operator is pointed at this one. */
      url: Type.Optional(NatsUrl({ description: 'nats://host:port or tls://host:port, comma-separated (not ws://: the operator speaks NATS over TCP)' })),
      /** The operator's NATS credentials file (user JWT + seed), for an existing NATS with auth. */
      credentials: Type.Optional(SecretText('the text of a NATS .creds file')),
      /**
       * Per-job NATS identities (decentralized auth, see the chart's nats.jobCredentials): a system-account
       * user's .creds and the seed of a signing key of the NATS operator.
       */
      jobCredentials: Type.Optional(Type.Object(
        { systemCreds: SecretText('the text of a system-account user .creds file'), operatorSigningKey: SecretText('an operator signing key seed (SO...)') },
        { additionalProperties: false },
      )),
      /** The NATS chart: from this repository by default, or from a local path (clusters without internet). */
      chartRepo: Type.String({ minLength: 1, default: NATS_CHART_REPO }),
      chartVersion: Type.String({ minLength: 1, default: '1.3.13' }),
      chartPath: Type.Optional(ChartPath),
      /** 1, or a JetStream cluster of 3 or 5 (Raft needs an odd count). */
      replicas: Type.Union([Type.Literal(1), Type.Literal(3), Type.Literal(5)], { default: 1 }),
      /** JetStream file store per server: trajectories, tasks, the control KV and policy weights. */
      storageSize: Quantity({ default: '20Gi', description: 'a Kubernetes quantity, e.g. 20Gi' }),
      storageClass: Type.Optional(Type.String({ minLength: 1 })),
      /** Largest message: a trajectory group (8 MiB, see bus/provision.ts) plus its headers. */
      maxPayloadBytes: Type.Integer({ minimum: 1 << 20, maximum: 64 << 20, default: 16 << 20 }),
    },
    { additionalProperties: false },
  )),
  [
    { rule: '!has(self.credentials) || has(self.url)', message: 'only with rlkube:nats.url (the NATS installed here runs without auth)', fieldPath: '.credentials', check: (n: Nats) => n.credentials === undefined || n.url !== undefined },
    { rule: '!has(self.jobCredentials) || has(self.credentials)', message: 'needs rlkube:nats.credentials too (the jobs\' account is that user\'s account)', fieldPath: '.jobCredentials', check: (n: Nats) => n.jobCredentials === undefined || n.credentials !== undefined },
  ],
);
type Nats = { url?: string; credentials?: string; jobCredentials?: object };

/** Settings of the NATS chart: meaningless, so refused, beside an existing NATS (rlkube:nats.url). */
const NATS_CHART_SETTINGS = ['chartRepo', 'chartVersion', 'chartPath', 'replicas', 'storageSize', 'storageClass', 'maxPayloadBytes'] as const;

export const PlatformConfigSchema = Type.Object(
  {
    /** Where the operator and NATS run. */
    systemNamespace: DnsLabel(63, { default: 'rlkube-system', description: 'a DNS label (lowercase, digits, -)' }),
    /** Namespaces for teams' RLJobs; the operator watches exactly these (namespaced RBAC). */
    jobNamespaces: Type.Array(DnsLabel(63, { description: 'a DNS label (lowercase, digits, -)' }), { minItems: 1, uniqueItems: true, default: ['rlkube-jobs'] }),
    /** Every component's image ("registry/repository:tag"); unset: the chart's default. */
    images: defaultsToFilled(Type.Object(
      {
        operator: Type.Optional(withRules(Image({ description: 'registry/repository:tag' }), [
          { rule: "!self.contains('@')", message: 'a digest (@sha256:...) is not supported for the operator image: use repository:tag', check: (s: string) => !s.includes('@') },
        ])),
        agent: Type.Optional(Image()),
        trainer: Type.Optional(Image()),
        vllm: Type.Optional(Image()),
        nats: Type.Optional(Image()),
      },
      { additionalProperties: false },
    )),
    nats: NatsSchema,
    gpu: defaultsToFilled(Type.Object(
      {
        /** NVIDIA's device plugin, so nodes advertise nvidia.com/gpu (drivers must be on the nodes). */
        devicePlugin: Type.Boolean({ default: true }),
        devicePluginVersion: Type.String({ minLength: 1, default: '0.17.1' }),
        devicePluginChartRepo: Type.String({ minLength: 1, default: DEVICE_PLUGIN_REPO }),
        devicePluginChartPath: Type.Optional(ChartPath),
        /**
         * Labels of the GPU nodes: the plugin runs on nodes with all of them. Unset: the chart's own node
         * affinity, nodes labelled nvidia.com/gpu.present=true (GPU feature discovery) or
         * feature.node.kubernetes.io/pci-10de.present=true (node feature discovery); on none, it runs nowhere.
         */
        nodeSelector: Type.Optional(StringMap({ minProperties: 1 })),
      },
      { additionalProperties: false },
    )),
    operator: defaultsToFilled(Type.Object(
      {
        /** Path of the operator chart (default: this repository's charts/rlkube-operator). */
        chartPath: Type.Optional(ChartPath),
        replicas: Type.Integer({ minimum: 1, maximum: 5, default: 2 }),
      },
      { additionalProperties: false },
    )),
  },
  { additionalProperties: false },
);

export type PlatformConfig = Static<typeof PlatformConfigSchema>;

export class InfraConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InfraConfigError';
  }
}

/** `rlkube:<path>: <message>`, the way `pulumi config set --path` names the setting. */
const refusal = (path: string, message: string) => new InfraConfigError(`rlkube:${path}: ${message}`);

/**
 * Settings from what the stack configuration holds (undefined: not set), defaults filled in. Throws
 * InfraConfigError naming the first bad setting as `rlkube:<path>`. Chart paths are resolved against `baseDir`
 * (infra/, where `pulumi up` runs the program) and must exist.
 */
export function parsePlatformConfig(raw: Record<string, unknown>, baseDir = process.cwd()): PlatformConfig {
  const given = Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== undefined));
  // `pulumi config set rlkube:nats.replicas 3` without --path makes a key with a dot, not a nested setting.
  const flat = Object.keys(given).find((key) => key.includes('.'));
  if (flat) throw refusal(flat, `not a setting; a nested setting is set with --path: pulumi config set --path rlkube:${flat} <value>`);
  const nats = (given.nats ?? {}) as Record<string, unknown>;
  if (typeof nats === 'object' && nats.url !== undefined) {
    const chartSetting = NATS_CHART_SETTINGS.find((key) => nats[key] !== undefined);
    if (chartSetting) throw refusal(`nats.${chartSetting}`, 'not used with rlkube:nats.url (an existing NATS: none is installed)');
    if ((given.images as Record<string, unknown> | undefined)?.nats !== undefined) throw refusal('images.nats', 'not used with rlkube:nats.url (an existing NATS: none is installed)');
  }
  const config = withDefaults<PlatformConfig>(PlatformConfigSchema, given);
  const [first] = validate(PlatformConfigSchema, config);
  if (first) {
    const schema = first.path === '(root)' ? undefined : describedAt(first.path);
    throw refusal(first.path, `${first.message}${schema ? ` (${schema})` : ''}`);
  }
  const chartPaths: Array<[string, string | undefined]> = [
    ['nats.chartPath', config.nats.chartPath], ['gpu.devicePluginChartPath', config.gpu.devicePluginChartPath], ['operator.chartPath', config.operator.chartPath],
  ];
  for (const [setting, path] of chartPaths) {
    if (path === undefined) continue;
    const full = resolve(baseDir, path);
    if (!isChart(full)) throw refusal(setting, `no chart at ${full} (a directory with Chart.yaml, or a .tgz)`);
    setPath(config, setting, full);
  }
  return config;
}

function isChart(path: string): boolean {
  if (!existsSync(path)) return false;
  return statSync(path).isDirectory() ? existsSync(join(path, 'Chart.yaml')) : path.endsWith('.tgz');
}

function setPath(config: PlatformConfig, dotted: string, value: string): void {
  const [group, key] = dotted.split('.') as [keyof PlatformConfig, string];
  (config[group] as Record<string, unknown>)[key] = value;
}

/** The description of the schema node at a dotted path (what a valid value looks like), if it has one. */
function describedAt(path: string): string | undefined {
  interface Described { description?: string; items?: Described; properties?: Record<string, Described> }
  let node: Described | undefined = PlatformConfigSchema;
  for (const part of path.replace(/\[\d+\]/g, '.*').split('.')) {
    node = part === '*' ? node?.items : node?.properties?.[part];
  }
  return node?.description;
}

/** The NATS client URL(s) the operator and the agents dial: the existing NATS, or the server installed here. */
export const natsServiceUrl = (config: PlatformConfig) => config.nats.url ?? `nats://nats.${config.systemNamespace}.svc:4222`;
