// The infrastructure's settings: one TypeBox schema gives the type, the defaults and the validation of the
// stack configuration (`pulumi config set --path rlkube:nats.replicas 3`), so a bad value is refused before
// anything is planned, with the setting named.
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

const DnsLabel = Type.String({ pattern: '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$', description: 'a DNS label (lowercase, digits, -)' });
const Quantity = Type.String({ pattern: '^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$', description: 'a Kubernetes quantity, e.g. 10Gi' });

export const PlatformConfigSchema = Type.Object(
  {
    /** Where the operator and NATS run. */
    systemNamespace: Type.String({ ...DnsLabel, default: 'rlkube-system' }),
    /** Namespaces for teams' RLJobs; the operator watches exactly these. */
    jobNamespaces: Type.Array(DnsLabel, { minItems: 1, uniqueItems: true, default: ['rlkube-jobs'] }),
    nats: Type.Object(
      {
        /** The official NATS chart (https://nats-io.github.io/k8s/helm/charts/), pinned. */
        chartVersion: Type.String({ default: '1.3.13' }),
        /** 1, or a JetStream cluster of 3 or 5 (Raft needs an odd count). */
        replicas: Type.Union([Type.Literal(1), Type.Literal(3), Type.Literal(5)], { default: 1 }),
        /** JetStream file store per server: trajectories, tasks, the control KV and policy weights. */
        storageSize: Type.String({ ...Quantity, default: '20Gi' }),
        storageClass: Type.Optional(Type.String({ minLength: 1 })),
        /** Largest message: a trajectory group (8 MiB, see bus/provision.ts) plus its headers. */
        maxPayloadBytes: Type.Integer({ minimum: 1 << 20, maximum: 64 << 20, default: 16 << 20 }),
      },
      { default: {} },
    ),
    gpu: Type.Object(
      {
        /** NVIDIA's device plugin, so nodes advertise nvidia.com/gpu (drivers must be on the nodes). */
        devicePlugin: Type.Boolean({ default: true }),
        devicePluginVersion: Type.String({ default: '0.17.1' }),
      },
      { default: {} },
    ),
    operator: Type.Object(
      {
        /** Path of the operator chart (this repository's charts/rlkube-operator). */
        chartPath: Type.Optional(Type.String({ minLength: 1 })),
        image: Type.Optional(Type.String({ minLength: 1, description: 'repository:tag of the operator image' })),
        replicas: Type.Integer({ minimum: 1, maximum: 5, default: 2 }),
      },
      { default: {} },
    ),
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

/**
 * Settings from what the stack configuration holds (undefined: not set), defaults filled in. Throws
 * InfraConfigError naming the first bad setting as `rlkube:<path>`.
 */
export function parsePlatformConfig(raw: Record<string, unknown>): PlatformConfig {
  const given = Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== undefined));
  const config = Value.Default(PlatformConfigSchema, structuredClone(given));
  const first = Value.Errors(PlatformConfigSchema, config).First();
  if (first) {
    const path = first.path.replace(/^\//, '').replaceAll('/', '.');
    throw new InfraConfigError(`rlkube:${path || '(root)'}: ${first.message}${first.schema.description ? ` (${first.schema.description})` : ''}`);
  }
  return config as PlatformConfig;
}

/** The NATS client URL of the platform's server(s), as the operator and the agents dial it. */
export const natsServiceUrl = (config: PlatformConfig) => `nats://nats.${config.systemNamespace}.svc:4222`;
