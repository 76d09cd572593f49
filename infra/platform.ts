// What `pulumi up` stands up around the operator: the namespaces, a NATS JetStream server (the bus) or the
// credentials of an existing one, GPU support on the nodes, and the operator itself from this repository's
// chart, wired to that NATS.
import * as k8s from '@pulumi/kubernetes';
import * as pulumi from '@pulumi/pulumi';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { natsServiceUrl, type PlatformConfig } from './config.js';

const defaultOperatorChart = resolve(fileURLToPath(new URL('../charts/rlkube-operator', import.meta.url)));
const partOf = { 'app.kubernetes.io/part-of': 'rlkube' };
/** Secrets the operator chart mounts (nats.credentialsSecret, nats.jobCredentials.secret). */
export const NATS_CREDS_SECRET = 'rlkube-nats-creds';
export const NATS_ADMIN_SECRET = 'rlkube-nats-admin';

export class RlkubePlatform extends pulumi.ComponentResource {
  /** Where the operator and the agents reach the bus. */
  readonly natsUrl: pulumi.Output<string>;
  readonly systemNamespace: pulumi.Output<string>;
  readonly jobNamespaces: pulumi.Output<string[]>;
  /** The Helm releases, for programs that build on the platform (dependsOn) and for the tests. */
  readonly releases: { nats?: k8s.helm.v3.Release; operator: k8s.helm.v3.Release; devicePlugin?: k8s.helm.v3.Release };

  constructor(name: string, config: PlatformConfig, opts?: pulumi.ComponentResourceOptions) {
    super('rlkube:infra:Platform', name, {}, opts);
    const parent = { parent: this };

    const system = namespace(config.systemNamespace, {}, parent);
    const jobs = config.jobNamespaces.map((ns) => namespace(ns, { 'rlkube.dev/jobs': 'true' }, parent));
    const nats = config.nats.url === undefined ? natsRelease(config, system, parent) : undefined;
    const natsSecrets = natsCredentialSecrets(config, system, parent);
    const devicePlugin = config.gpu.devicePlugin ? devicePluginRelease(config, parent) : undefined;
    const operator = operatorRelease(config, system, natsSecrets, {
      ...parent,
      dependsOn: [...(nats ? [nats] : []), ...Object.values(natsSecrets), ...jobs, ...(devicePlugin ? [devicePlugin] : [])],
    });
    this.releases = { operator, ...(nats ? { nats } : {}), ...(devicePlugin ? { devicePlugin } : {}) };

    this.natsUrl = pulumi.output(natsServiceUrl(config));
    this.systemNamespace = system.metadata.name;
    this.jobNamespaces = pulumi.all(jobs.map((ns) => ns.metadata.name));
    this.registerOutputs({ natsUrl: this.natsUrl, systemNamespace: this.systemNamespace, jobNamespaces: this.jobNamespaces });
  }
}

function namespace(name: string, labels: Record<string, string>, opts: pulumi.CustomResourceOptions): k8s.core.v1.Namespace {
  return new k8s.core.v1.Namespace(name, { metadata: { name, labels: { ...partOf, ...labels } } }, opts);
}

/** A chart from a local path, or a version of a chart repository's. */
function chartSource(chart: string, path: string | undefined, repo: string, version: string) {
  return path !== undefined ? { chart: path } : { chart, version, repositoryOpts: { repo } };
}

/**
 * NATS with JetStream on file storage (the bus's streams, KV and object store survive a server restart).
 * Only the nats container: the config reloader and nats-box are off (a changed config rolls the pods through the
 * chart's checksum annotation), so one image is all an offline cluster needs.
 */
function natsRelease(config: PlatformConfig, system: k8s.core.v1.Namespace, opts: pulumi.CustomResourceOptions): k8s.helm.v3.Release {
  const { replicas, storageSize, storageClass, maxPayloadBytes, chartPath, chartRepo, chartVersion } = config.nats;
  return new k8s.helm.v3.Release(
    'nats',
    {
      name: 'nats',
      ...chartSource('nats', chartPath, chartRepo, chartVersion),
      namespace: system.metadata.name,
      values: {
        fullnameOverride: 'nats', // the service the operator is told about: nats.<namespace>.svc
        config: {
          cluster: { enabled: replicas > 1, replicas },
          jetstream: {
            enabled: true,
            fileStore: { enabled: true, pvc: { enabled: true, size: String(storageSize), ...(storageClass ? { storageClassName: storageClass } : {}) } },
          },
          merge: { max_payload: maxPayloadBytes },
        },
        ...(config.images.nats ? { container: { image: { fullImageName: config.images.nats } } } : {}),
        reloader: { enabled: false },
        natsBox: { enabled: false },
        podTemplate: { merge: { metadata: { labels: partOf } } },
      },
    },
    opts,
  );
}

/** The existing NATS's credentials, as the Secrets the operator chart mounts; their text is kept encrypted in the state. */
function natsCredentialSecrets(config: PlatformConfig, system: k8s.core.v1.Namespace, opts: pulumi.CustomResourceOptions) {
  const secret = (name: string, stringData: Record<string, string>) =>
    new k8s.core.v1.Secret(name, { metadata: { name, namespace: system.metadata.name, labels: partOf }, stringData: pulumi.secret(stringData) }, opts);
  const { credentials, jobCredentials } = config.nats;
  return {
    ...(credentials !== undefined ? { creds: secret(NATS_CREDS_SECRET, { creds: credentials }) } : {}),
    ...(jobCredentials !== undefined
      ? { admin: secret(NATS_ADMIN_SECRET, { 'system.creds': jobCredentials.systemCreds, 'operator-signing.nk': jobCredentials.operatorSigningKey }) }
      : {}),
  };
}

/**
 * NVIDIA's device plugin: GPU nodes advertise nvidia.com/gpu, which the rollout and learner pods request. With
 * gpu.nodeSelector it runs on the nodes with those labels (the chart's own affinity, which wants node-feature
 * labels, is replaced); otherwise on the nodes that affinity selects.
 */
function devicePluginRelease(config: PlatformConfig, opts: pulumi.CustomResourceOptions): k8s.helm.v3.Release {
  const { devicePluginChartPath, devicePluginChartRepo, devicePluginVersion, nodeSelector } = config.gpu;
  return new k8s.helm.v3.Release(
    'nvidia-device-plugin',
    {
      name: 'nvidia-device-plugin',
      ...chartSource('nvidia-device-plugin', devicePluginChartPath, devicePluginChartRepo, devicePluginVersion),
      namespace: 'kube-system',
      values: {
        // GPU nodes are usually tainted so only GPU work lands there; the plugin must run on them anyway.
        tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }],
        ...(nodeSelector ? { nodeSelector, affinity: null } : {}),
      },
    },
    opts,
  );
}

/** The operator (CRDs included, from the chart's crds/), told where NATS is, which namespaces to watch, which images to run. */
function operatorRelease(
  config: PlatformConfig,
  system: k8s.core.v1.Namespace,
  natsSecrets: ReturnType<typeof natsCredentialSecrets>,
  opts: pulumi.CustomResourceOptions,
): k8s.helm.v3.Release {
  const { operator: operatorImage, agent, trainer, vllm } = config.images;
  const podImages = Object.fromEntries(Object.entries({ agent, trainer, vllm }).filter(([, image]) => image !== undefined));
  return new k8s.helm.v3.Release(
    'rlkube-operator',
    {
      name: 'rlkube-operator',
      chart: config.operator.chartPath ?? defaultOperatorChart,
      namespace: system.metadata.name,
      values: {
        replicaCount: config.operator.replicas,
        watchNamespaces: config.jobNamespaces,
        nats: {
          url: natsServiceUrl(config),
          ...(natsSecrets.creds ? { credentialsSecret: natsSecrets.creds.metadata.name } : {}),
          ...(natsSecrets.admin ? { jobCredentials: { secret: natsSecrets.admin.metadata.name } } : {}),
        },
        ...(operatorImage ? { image: splitImage(operatorImage) } : {}),
        ...(Object.keys(podImages).length > 0 ? { images: podImages } : {}),
      },
    },
    opts,
  );
}

/** "registry/repo:tag" → the chart's image values; a reference without a tag keeps the chart's default. */
export function splitImage(reference: string): { repository: string; tag?: string } {
  const slash = reference.lastIndexOf('/');
  const colon = reference.lastIndexOf(':');
  return colon > slash ? { repository: reference.slice(0, colon), tag: reference.slice(colon + 1) } : { repository: reference };
}
