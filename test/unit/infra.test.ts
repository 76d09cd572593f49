// The Pulumi program under Pulumi's own mocks: what it would create, wired how, for the default and the
// non-default settings; bad settings refused with the setting named. `pulumi up` for real: test/e2e/pulumi.test.ts.
import * as pulumi from '@pulumi/pulumi';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parsePlatformConfig, type PlatformConfig } from '../../infra/config.js';
import { NATS_ADMIN_SECRET, NATS_CREDS_SECRET, RlkubePlatform, splitImage } from '../../infra/platform.js';

interface Created {
  type: string;
  name: string;
  inputs: Record<string, unknown>;
}

let created: Created[] = [];
pulumi.runtime.setMocks(
  {
    newResource: (args) => {
      created.push({ type: args.type, name: args.name, inputs: args.inputs });
      return { id: `${args.name}-id`, state: args.inputs };
    },
    call: (args) => args.inputs,
  },
  'rlkube',
  'test',
);

/** Builds the platform and waits until every resource has been registered with the (mock) engine. */
async function plan(settings: Record<string, unknown> = {}) {
  created = [];
  const platform = new RlkubePlatform('rlkube', parsePlatformConfig(settings));
  const outputs = await new Promise<[string, string, string[]]>((resolve) =>
    pulumi.all([platform.natsUrl, platform.systemNamespace, platform.jobNamespaces]).apply(([url, system, jobs]) => resolve([url, system, list(jobs)])),
  );
  // A resource's id resolves once the (mock) engine has created it: then its inputs are recorded.
  await new Promise((resolve) => pulumi.all(Object.values(platform.releases).map((r) => r.id)).apply(resolve));
  const one = (type: string, name: string) => {
    const found = created.filter((c) => c.type === type && c.name === name);
    expect(found).toHaveLength(1);
    return found[0]!.inputs;
  };
  return { outputs, one, created: () => created };
}

/**
 * Pulumi tells arrays by `instanceof Array`, which fails across jest's module realms: an array made on the
 * test's side comes back as an object with keys 0..n-1 (a single-realm `pulumi up` gets the array).
 */
const list = (value: unknown) => Object.values(value as object);

/** What a recorded input holds at a path of keys (Pulumi records inputs untyped): undefined where the path ends. */
const at = (value: unknown, ...keys: string[]): unknown =>
  keys.reduce<unknown>((v, key) => (v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[key] : undefined), value);

const RELEASE = 'kubernetes:helm.sh/v3:Release';
const NAMESPACE = 'kubernetes:core/v1:Namespace';
const SECRET = 'kubernetes:core/v1:Secret';
const OPERATOR_CHART = join(process.cwd(), 'charts/rlkube-operator');
/** How a Pulumi secret reaches the (mock) engine: a value wrapped with this signature key. */
const SECRET_SIG = pulumi.runtime.specialSigKey;
const SECRET_VALUE = pulumi.runtime.specialSecretSig;

describe('infra (Pulumi program)', () => {
  it('by default: system and job namespaces, NATS with JetStream on file storage, the device plugin, the operator wired to NATS', async () => {
    const { outputs, one, created } = await plan();
    expect(outputs).toEqual(['nats://nats.rlkube-system.svc:4222', 'rlkube-system', ['rlkube-jobs']]);
    expect(at(one(NAMESPACE, 'rlkube-system'), 'metadata', 'labels', 'app.kubernetes.io/part-of')).toBe('rlkube');
    expect(at(one(NAMESPACE, 'rlkube-jobs'), 'metadata', 'labels', 'rlkube.dev/jobs')).toBe('true');

    const nats = one(RELEASE, 'nats');
    expect(at(nats, 'namespace')).toBe('rlkube-system');
    expect(at(nats, 'values', 'config', 'jetstream')).toMatchObject({ enabled: true, fileStore: { enabled: true, pvc: { enabled: true, size: '20Gi' } } });
    expect(at(nats, 'values', 'config', 'cluster', 'enabled')).toBe(false);
    // The bus's largest message (an 8 MiB trajectory group, plus headers) must fit.
    expect(at(nats, 'values', 'config', 'merge', 'max_payload')).toBeGreaterThan(8 * 1024 * 1024);

    const operator = one(RELEASE, 'rlkube-operator');
    expect(at(operator, 'namespace')).toBe('rlkube-system');
    expect(at(operator, 'values', 'nats', 'url')).toBe(outputs[0]);
    expect(at(operator, 'values', 'nats', 'url')).toContain(`${String(at(nats, 'values', 'fullnameOverride'))}.${String(at(nats, 'namespace'))}.svc`);
    expect(list(at(operator, 'values', 'watchNamespaces'))).toEqual(['rlkube-jobs']);
    expect(existsSync(join(String(at(operator, 'chart')), 'Chart.yaml'))).toBe(true); // this repository's chart
    expect(existsSync(join(String(at(operator, 'chart')), 'crds'))).toBe(true);

    expect(nats).toMatchObject({ chart: 'nats', version: '1.3.13', repositoryOpts: { repo: 'https://nats-io.github.io/k8s/helm/charts/' } });
    // one image is all an offline cluster needs for NATS
    expect(at(nats, 'values')).toMatchObject({ reloader: { enabled: false }, natsBox: { enabled: false } });
    expect(at(operator, 'values', 'images')).toBeUndefined(); // the chart's default images

    const devicePlugin = one(RELEASE, 'nvidia-device-plugin');
    expect(at(devicePlugin, 'values', 'tolerations')).toContainEqual({ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' });
    expect(at(devicePlugin, 'values')).not.toHaveProperty('affinity'); // the chart's node-feature affinity stays
    expect(created().map((c) => c.type).sort()).toEqual([NAMESPACE, NAMESPACE, RELEASE, RELEASE, RELEASE, 'rlkube:infra:Platform'].sort());
  });

  it('follows the settings: several job namespaces, a NATS cluster of 3, no device plugin, another image', async () => {
    const { outputs, one, created } = await plan({
      systemNamespace: 'rl-platform',
      jobNamespaces: ['team-a', 'team-b'],
      nats: { replicas: 3, storageSize: '100Gi', storageClass: 'fast-ssd' },
      gpu: { devicePlugin: false },
      images: { operator: 'registry.example.com:5000/rlkube/operator:1.2.3', agent: 'r.example/agent:7', trainer: 'r.example/trainer:7', vllm: 'r.example/vllm:7', nats: 'r.example/nats:2.12' },
      operator: { replicas: 3, chartPath: OPERATOR_CHART },
    });
    expect(outputs).toEqual(['nats://nats.rl-platform.svc:4222', 'rl-platform', ['team-a', 'team-b']]);
    expect(at(one(RELEASE, 'nats'), 'values', 'config', 'cluster')).toEqual({ enabled: true, replicas: 3 });
    expect(at(one(RELEASE, 'nats'), 'values', 'config', 'jetstream', 'fileStore', 'pvc')).toMatchObject({ size: '100Gi', storageClassName: 'fast-ssd' });
    const operator = one(RELEASE, 'rlkube-operator');
    expect(at(operator, 'values')).toMatchObject({ replicaCount: 3, image: { repository: 'registry.example.com:5000/rlkube/operator', tag: '1.2.3' } });
    expect(at(operator, 'values', 'images')).toEqual({ agent: 'r.example/agent:7', trainer: 'r.example/trainer:7', vllm: 'r.example/vllm:7' });
    expect(at(operator, 'chart')).toBe(OPERATOR_CHART);
    expect(at(one(RELEASE, 'nats'), 'values', 'container')).toEqual({ image: { fullImageName: 'r.example/nats:2.12' } });
    expect(list(at(operator, 'values', 'watchNamespaces'))).toEqual(['team-a', 'team-b']);
    expect(created().filter((c) => c.name === 'nvidia-device-plugin')).toHaveLength(0);
    expect(created().filter((c) => c.type === NAMESPACE).map((c) => c.name).sort()).toEqual(['rl-platform', 'team-a', 'team-b']);
  });

  it('with an existing NATS: no NATS chart, the operator pointed at it, its credentials in the Secrets the chart mounts', async () => {
    const { outputs, one, created } = await plan({
      nats: { url: 'nats://bus-a.example:4222,nats://bus-b.example:4222', credentials: 'OPERATOR CREDS', jobCredentials: { systemCreds: 'SYS CREDS', operatorSigningKey: 'SOKEY' } },
    });
    expect(outputs[0]).toBe('nats://bus-a.example:4222,nats://bus-b.example:4222');
    expect(created().filter((c) => c.name === 'nats')).toHaveLength(0);
    // the credentials are Pulumi secrets: encrypted in the stack's state
    const creds = one(SECRET, NATS_CREDS_SECRET);
    expect(creds).toMatchObject({ metadata: { namespace: 'rlkube-system' }, stringData: { [SECRET_SIG]: SECRET_VALUE, value: { creds: 'OPERATOR CREDS' } } });
    expect(one(SECRET, NATS_ADMIN_SECRET).stringData).toEqual({ [SECRET_SIG]: SECRET_VALUE, value: { 'system.creds': 'SYS CREDS', 'operator-signing.nk': 'SOKEY' } });
    expect(at(one(RELEASE, 'rlkube-operator'), 'values', 'nats')).toEqual({
      url: outputs[0], credentialsSecret: NATS_CREDS_SECRET, jobCredentials: { secret: NATS_ADMIN_SECRET },
    });
  });

  it('takes the charts from local paths (clusters without internet), and puts the device plugin on the labelled GPU nodes', async () => {
    const natsChart = mkdtempSync(join(tmpdir(), 'rlkube-nats-chart-'));
    writeFileSync(join(natsChart, 'Chart.yaml'), 'apiVersion: v2\nname: nats\nversion: 1.3.13\n');
    const { one } = await plan({
      nats: { chartPath: natsChart },
      gpu: { devicePluginChartPath: natsChart, nodeSelector: { 'node.example/gpu': 'h100' } },
    });
    const nats = one(RELEASE, 'nats');
    expect(at(nats, 'chart')).toBe(natsChart);
    expect(nats).not.toHaveProperty('repositoryOpts');
    const devicePlugin = one(RELEASE, 'nvidia-device-plugin');
    expect(at(devicePlugin, 'chart')).toBe(natsChart);
    // the chart's own affinity (node-feature labels) is dropped: the selector alone decides
    expect(at(devicePlugin, 'values')).toMatchObject({ nodeSelector: { 'node.example/gpu': 'h100' }, affinity: null });
    rmSync(natsChart, { recursive: true });
  });

  it('refuses bad settings, naming the setting', () => {
    const refused = (settings: Record<string, unknown>) => {
      try {
        parsePlatformConfig(settings);
        return 'accepted';
      } catch (err) {
        return (err as Error).message;
      }
    };
    expect(refused({ systemNamespace: 'Bad_NS' })).toMatch(/^rlkube:systemNamespace: .*DNS label/);
    expect(refused({ jobNamespaces: [] })).toMatch(/^rlkube:jobNamespaces: /);
    expect(refused({ jobNamespaces: ['a', 'a'] })).toMatch(/^rlkube:jobNamespaces: /);
    expect(refused({ nats: { replicas: 2 } })).toMatch(/^rlkube:nats\.replicas: /);
    expect(refused({ nats: { storageSize: 'lots' } })).toMatch(/^rlkube:nats\.storageSize: .*quantity/);
    expect(refused({ nats: { maxPayloadBytes: 1024 } })).toMatch(/^rlkube:nats\.maxPayloadBytes: /);
    expect(refused({ gpu: { devicePlugin: 'yes' } })).toMatch(/^rlkube:gpu\.devicePlugin: /);
    expect(refused({ operator: { replicas: 0 } })).toMatch(/^rlkube:operator\.replicas: /);
    expect(refused({ natsUrl: 'nats://x' })).toMatch(/^rlkube:natsUrl: unknown field/);
    expect(refused({ 'nats.replicas': 3 })).toBe('rlkube:nats.replicas: not a setting; a nested setting is set with --path: pulumi config set --path rlkube:nats.replicas <value>');
    expect(refused({ operator: { image: 'x:1' } })).toMatch(/^rlkube:operator\.image: unknown field/);
    expect(refused({ images: { operator: 'ghcr.io/rlkube/operator@sha256:abc' } })).toMatch(/^rlkube:images\.operator: a digest/);
    expect(refused({ images: { agent: 'has space:1' } })).toMatch(/^rlkube:images\.agent: /);
    expect(refused({ images: { engine: 'x:1' } })).toMatch(/^rlkube:images\.engine: unknown field/);
    expect(refused({ nats: { url: 'http://x:4222' } })).toMatch(/^rlkube:nats\.url: .*nats:\/\/host:port/);
    expect(refused({ nats: { url: 'nats://a:4222,ws://b:8080' } })).toMatch(/^rlkube:nats\.url: .*not ws:\/\//);
    expect(refused({ nats: { credentials: 'CREDS' } })).toMatch(/^rlkube:nats\.credentials: only with rlkube:nats\.url/);
    expect(refused({ nats: { url: 'nats://x:4222', jobCredentials: { systemCreds: 'S', operatorSigningKey: 'K' } } })).toMatch(/^rlkube:nats\.jobCredentials: needs rlkube:nats\.credentials/);
    expect(refused({ nats: { url: 'nats://x:4222', credentials: 'C', jobCredentials: { systemCreds: 'S' } } })).toMatch(/^rlkube:nats\.jobCredentials\.operatorSigningKey: /);
    expect(refused({ nats: { url: 'nats://x:4222', replicas: 3 } })).toMatch(/^rlkube:nats\.replicas: not used with rlkube:nats\.url/);
    expect(refused({ nats: { url: 'nats://x:4222' }, images: { nats: 'nats:2' } })).toMatch(/^rlkube:images\.nats: not used with rlkube:nats\.url/);
    expect(refused({ nats: { chartPath: '/no/such/chart' } })).toMatch(/^rlkube:nats\.chartPath: no chart at \/no\/such\/chart/);
    expect(refused({ operator: { chartPath: 'charts' } })).toMatch(/^rlkube:operator\.chartPath: no chart at /);
    expect(refused({ gpu: { nodeSelector: {} } })).toMatch(/^rlkube:gpu\.nodeSelector: /);
    expect(refused({ jobNamespaces: ['ok', 'Not_OK'] })).toMatch(/^rlkube:jobNamespaces\[1\]: .*DNS label/);
    const defaults: PlatformConfig = parsePlatformConfig({});
    expect(defaults).toMatchObject({ systemNamespace: 'rlkube-system', nats: { replicas: 1 }, gpu: { devicePlugin: true }, operator: { replicas: 2 } });
  });

  it('splits image references with registry ports and without tags', () => {
    expect(splitImage('ghcr.io/rlkube/operator:0.2.0')).toEqual({ repository: 'ghcr.io/rlkube/operator', tag: '0.2.0' });
    expect(splitImage('localhost:5000/operator')).toEqual({ repository: 'localhost:5000/operator' });
    expect(splitImage('operator')).toEqual({ repository: 'operator' });
  });
});
