// What `pulumi up` stands up around the operator: the namespaces, a NATS JetStream server (the bus), GPU
// support on the nodes, and the operator itself from this repository's chart, wired to that NATS.
import * as k8s from '@pulumi/kubernetes';
import * as pulumi from '@pulumi/pulumi';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { natsServiceUrl, type PlatformConfig } from './config.js';

const defaultOperatorChart = resolve(fileURLToPath(new URL('../charts/rlkube-operator', import.meta.url)));
const partOf = { 'app.kubernetes.io/part-of': 'rlkube' };

export class RlkubePlatform extends pulumi.ComponentResource {
  /** Where the operator and the agents reach the bus. */
  readonly natsUrl: pulumi.Output<string>;
  readonly systemNamespace: pulumi.Output<string>;
  readonly jobNamespaces: pulumi.Output<string[]>;
  /** The Helm releases, for programs that build on the platform (dependsOn) and for the tests. */
  readonly releases: { nats: k8s.helm.v3.Release; operator: k8s.helm.v3.Release; devicePlugin?: k8s.helm.v3.Release };

  constructor(name: string, config: PlatformConfig, opts?: pulumi.ComponentResourceOptions) {
    super('rlkube:infra:Platform', name, {}, opts);
    const parent = { parent: this };

    const system = namespace(config.systemNamespace, {}, parent);
    const jobs = config.jobNamespaces.map((ns) => namespace(ns, { 'rlkube.dev/jobs': 'true' }, parent));
    const nats = natsRelease(config, system, parent);
    const devicePlugin = config.gpu.devicePlugin ? devicePluginRelease(config, parent) : undefined;
    const operator = operatorRelease(config, system, { ...parent, dependsOn: [nats, ...jobs, ...(devicePlugin ? [devicePlugin] : [])] });
    this.releases = { nats, operator, ...(devicePlugin ? { devicePlugin } : {}) };

    this.natsUrl = pulumi.output(natsServiceUrl(config));
    this.systemNamespace = system.metadata.name;
    this.jobNamespaces = pulumi.all(jobs.map((ns) => ns.metadata.name));
    this.registerOutputs({ natsUrl: this.natsUrl, systemNamespace: this.systemNamespace, jobNamespaces: this.jobNamespaces });
  }
}

function namespace(name: string, labels: Record<string, string>, opts: pulumi.CustomResourceOptions): k8s.core.v1.Namespace {
  return new k8s.core.v1.Namespace(name, { metadata: { name, labels: { ...partOf, ...labels } } }, opts);
}

/** NATS with JetStream on file storage (the bus's streams, KV and object store survive a server restart). */
function natsRelease(config: PlatformConfig, system: k8s.core.v1.Namespace, opts: pulumi.CustomResourceOptions): k8s.helm.v3.Release {
  const { replicas, storageSize, storageClass, maxPayloadBytes, chartVersion } = config.nats;
  return new k8s.helm.v3.Release(
    'nats',
    {
      name: 'nats',
      chart: 'nats',
      version: chartVersion,
      repositoryOpts: { repo: 'https://nats-io.github.io/k8s/helm/charts/' },
      namespace: system.metadata.name,
      values: {
        fullnameOverride: 'nats', // the service the operator is told about: nats.<namespace>.svc
        config: {
          cluster: { enabled: replicas > 1, replicas },
          jetstream: {
            enabled: true,
            fileStore: { enabled: true, pvc: { enabled: true, size: storageSize, ...(storageClass ? { storageClassName: storageClass } : {}) } },
          },
          merge: { max_payload: maxPayloadBytes },
        },
        podTemplate: { merge: { metadata: { labels: partOf } } },
      },
    },
    opts,
  );
}

/** NVIDIA's device plugin: GPU nodes advertise nvidia.com/gpu, which the rollout and learner pods request. */
function devicePluginRelease(config: PlatformConfig, opts: pulumi.CustomResourceOptions): k8s.helm.v3.Release {
  return new k8s.helm.v3.Release(
    'nvidia-device-plugin',
    {
      name: 'nvidia-device-plugin',
      chart: 'nvidia-device-plugin',
      version: config.gpu.devicePluginVersion,
      repositoryOpts: { repo: 'https://nvidia.github.io/k8s-device-plugin' },
      namespace: 'kube-system',
      values: {
        // GPU nodes are usually tainted so only GPU work lands there; the plugin must run on them anyway.
        tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }],
      },
    },
    opts,
  );
}

/** The operator (CRDs included, from the chart's crds/), told where NATS is and which namespaces to watch. */
function operatorRelease(config: PlatformConfig, system: k8s.core.v1.Namespace, opts: pulumi.CustomResourceOptions): k8s.helm.v3.Release {
  const image = config.operator.image ? splitImage(config.operator.image) : undefined;
  return new k8s.helm.v3.Release(
    'rlkube-operator',
    {
      name: 'rlkube-operator',
      chart: config.operator.chartPath ?? defaultOperatorChart,
      namespace: system.metadata.name,
      values: {
        replicaCount: config.operator.replicas,
        watchNamespaces: config.jobNamespaces,
        nats: { url: natsServiceUrl(config) },
        ...(image ? { image } : {}),
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
