// The operator chart's values and what they render, through the pinned helm (no cluster needed): every value in
// values.yaml has a bad value that `helm lint` refuses naming that value (values.schema.json), while the defaults
// and realistic settings pass; the PodDisruptionBudget and the ServiceMonitor appear only when asked for; the
// namespaced mode grants the operator's rules in the watched namespaces only.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { V1ClusterRole, V1Deployment, V1PodDisruptionBudget, V1Role, V1RoleBinding, V1Service } from '@kubernetes/client-node';
import { parse } from 'yaml';
import { CHART, helm, renderChart, type RenderedObject } from '../harness/helm.js';
import { REPO_ROOT } from '../harness/operator-fixtures.js';

/** Each value of values.yaml: a bad setting and where the refusal must point ("" is the top level). */
const BAD_VALUES: Array<{ value: string; args: string[]; at: string }> = [
  { value: 'image.repository', args: ['--set', 'image.repository=ghcr.io/rlkube/operator:0.1.0'], at: '/image/repository' },
  { value: 'image.tag', args: ['--set', 'image.tag=0.1.0@sha256'], at: '/image/tag' },
  { value: 'image.pullPolicy', args: ['--set', 'image.pullPolicy=Sometimes'], at: '/image/pullPolicy' },
  { value: 'imagePullSecrets', args: ['--set-json', 'imagePullSecrets=["regcred"]'], at: '/imagePullSecrets/0' },
  { value: 'replicaCount', args: ['--set', 'replicaCount=two'], at: '/replicaCount' },
  { value: 'replicaCount', args: ['--set', 'replicaCount=0'], at: '/replicaCount' },
  { value: 'replicaCount', args: ['--set', 'leaderElection.enabled=false'], at: '/replicaCount' }, // 2 replicas, no Lease
  { value: 'watchNamespaces', args: ['--set', 'watchNamespaces={team-a,Team_B}'], at: '/watchNamespaces/1' },
  { value: 'watchNamespaces', args: ['--set', 'watchNamespaces={team-a,team-a}'], at: '/watchNamespaces' },
  { value: 'podDisruptionBudget.enabled', args: ['--set', 'podDisruptionBudget.enabled=yes'], at: '/podDisruptionBudget/enabled' },
  { value: 'nats.url', args: ['--set', 'nats.url=http://nats:4222'], at: '/nats/url' },
  { value: 'nats.url', args: ['--set', 'nats.url=wss://nats:443'], at: '/nats/url' },
  { value: 'nats.credentialsSecret', args: ['--set', 'nats.credentialsSecret=NATS_creds'], at: '/nats/credentialsSecret' },
  { value: 'nats.jobCredentials.secret', args: ['--set', 'nats.jobCredentials.secret=rlkube nats'], at: '/nats/jobCredentials/secret' },
  { value: 'nats.jobCredentials.secret', args: ['--set', 'nats.jobCredentials.secret=rlkube-nats-admin'], at: '/nats/credentialsSecret' }, // needs it
  { value: 'images.agent', args: ['--set', 'images.agent=ghcr.io/rlkube/Agent:0.1.0'], at: '/images/agent' },
  { value: 'images.trainer', args: ['--set', 'images.trainer='], at: '/images/trainer' },
  { value: 'images.vllm', args: ['--set', 'images.vllm=ghcr.io/rlkube/vllm:0.1.0:gpu'], at: '/images/vllm' },
  { value: 'leaderElection.enabled', args: ['--set', 'leaderElection.enabled=maybe'], at: '/leaderElection/enabled' },
  { value: 'leaderElection.leaseName', args: ['--set', 'leaderElection.leaseName=Lease_1'], at: '/leaderElection/leaseName' },
  { value: 'leaderElection.leaseDurationSeconds', args: ['--set', 'leaderElection.leaseDurationSeconds=1'], at: '/leaderElection/leaseDurationSeconds' },
  { value: 'metricsPort', args: ['--set', 'metricsPort=70000'], at: '/metricsPort' },
  { value: 'serviceMonitor.enabled', args: ['--set', 'serviceMonitor.enabled=on'], at: '/serviceMonitor/enabled' },
  { value: 'serviceMonitor.interval', args: ['--set', 'serviceMonitor.interval=30 seconds'], at: '/serviceMonitor/interval' },
  { value: 'serviceMonitor.labels', args: ['--set', 'serviceMonitor.labels.release=1'], at: '/serviceMonitor/labels/release' },
  { value: 'workers', args: ['--set', 'workers=0'], at: '/workers' },
  { value: 'statusPeriodMs', args: ['--set', 'statusPeriodMs=60001'], at: '/statusPeriodMs' },
  { value: 'logLevel', args: ['--set', 'logLevel=loud'], at: '/logLevel' },
  { value: 'resources.requests.cpu', args: ['--set', 'resources.requests.cpu=lots'], at: '/resources/requests/cpu' },
  { value: 'resources.requests.memory', args: ['--set', 'resources.requests.memory=128MB'], at: '/resources/requests/memory' },
  { value: 'resources.limits.memory', args: ['--set', 'resources.limits.memory=-256Mi'], at: '/resources/limits/memory' },
  { value: 'serviceAccount.create', args: ['--set', 'serviceAccount.create=no'], at: '/serviceAccount/create' },
  { value: 'serviceAccount.name', args: ['--set', 'serviceAccount.name=Operator'], at: '/serviceAccount/name' },
  { value: 'serviceAccount.name', args: ['--set', 'serviceAccount.create=false'], at: '/serviceAccount/name' }, // then required
  { value: 'podAnnotations', args: ['--set', 'podAnnotations.prometheus\\.io/scrape=true'], at: '/podAnnotations/prometheus.io~1scrape' },
  { value: 'nodeSelector', args: ['--set-json', 'nodeSelector={"pool":3}'], at: '/nodeSelector/pool' },
  { value: 'tolerations', args: ['--set-json', 'tolerations=[{"key":"gpu","operator":"Maybe"}]'], at: '/tolerations/0/operator' },
  { value: 'affinity', args: ['--set-json', 'affinity={"nodeAfinity":{}}'], at: '/affinity' },
  { value: '(a value the chart does not have)', args: ['--set', 'replicas=3'], at: '' },
];

/** Dotted paths of values.yaml's leaves (an empty map or list is a leaf). */
function leaves(values: Record<string, unknown>, prefix = ''): string[] {
  return Object.entries(values).flatMap(([k, v]) =>
    v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length > 0 ? leaves(v as Record<string, unknown>, `${prefix}${k}.`) : [`${prefix}${k}`]);
}

const lint = (args: string[]) => {
  const r = helm(['lint', CHART, ...args]);
  return { code: r.code, output: r.stdout + r.stderr };
};
/** A rendered object of a kind, as the Kubernetes client types it (helm renders the metadata these tests read). */
type As<T> = RenderedObject & Omit<T, 'apiVersion' | 'kind' | 'metadata'>;
interface RenderedKinds {
  Deployment: As<V1Deployment>; PodDisruptionBudget: As<V1PodDisruptionBudget>; Service: As<V1Service>;
  ClusterRole: As<V1ClusterRole>; ClusterRoleBinding: As<V1RoleBinding>; Role: As<V1Role>; RoleBinding: As<V1RoleBinding>;
  /** monitoring.coreos.com/v1, not in the client: the fields checked here. */
  ServiceMonitor: RenderedObject & { spec: { selector: { matchLabels: Record<string, string> }; endpoints: unknown[] } };
}
/** The rendered objects of one kind (selected by their own `kind`, so the type is theirs). */
const only = <K extends keyof RenderedKinds>(objects: RenderedObject[], kind: K) => objects.filter((o) => o.kind === kind) as Array<RenderedKinds[K]>;

describe('operator chart values', () => {
  test('every value in values.yaml has a bad value in the table below', () => {
    const values = parse(readFileSync(join(REPO_ROOT, CHART, 'values.yaml'), 'utf8')) as Record<string, unknown>;
    const tried = new Set(BAD_VALUES.map((c) => c.value));
    expect(leaves(values).filter((v) => !tried.has(v))).toEqual([]);
  });

  test.each(BAD_VALUES)('helm lint refuses $args, naming $at', ({ args, at }) => {
    const r = lint(args);
    expect(r.code).not.toBe(0);
    expect(r.output).toContain(`- at '${at}'`);
  });

  test.each<[string, string[]]>([
    ['the defaults', []],
    ['one replica without leader election', ['--set', 'replicaCount=1,leaderElection.enabled=false']],
    ['namespaced mode', ['--set', 'watchNamespaces={team-a,team-b}']],
    ['own registry and images', ['--set', 'image.repository=registry.example.com:5000/me/operator,image.tag=0.2.0-rc.1,images.agent=registry.example.com:5000/me/agent:0.2.0,images.trainer=me/trainer@sha256:' + 'a'.repeat(64)]],
    ['a whole-number image tag (what --set makes of image.tag=2)', ['--set', 'image.tag=2']],
    ['several NATS servers and credentials', ['--set', 'nats.url=nats://a:4222\\,tls://b:4222,nats.credentialsSecret=rlkube-nats,nats.jobCredentials.secret=rlkube-nats-admin']],
    ['an existing ServiceAccount', ['--set', 'serviceAccount.create=false,serviceAccount.name=platform-operator']],
    ['numeric quantities, pod placement', ['--set-json', 'resources={"requests":{"cpu":0.5,"memory":"128Mi"},"limits":{"memory":"1Gi","ephemeral-storage":"1G"}}',
      '--set-json', 'tolerations=[{"key":"dedicated","operator":"Equal","value":"ops","effect":"NoSchedule"}]', '--set', 'nodeSelector.pool=ops,podAnnotations.team=ops',
      '--set-json', 'affinity={"podAntiAffinity":{"preferredDuringSchedulingIgnoredDuringExecution":[]}}', '--set-json', 'imagePullSecrets=[{"name":"regcred"}]']],
    ['a ServiceMonitor with labels', ['--set', 'serviceMonitor.enabled=true,serviceMonitor.interval=1m30s,serviceMonitor.labels.release=kube-prometheus-stack']],
  ])('helm lint passes %s', (_name, args) => {
    const r = lint(args);
    expect({ code: r.code, output: r.output }).toEqual({ code: 0, output: expect.stringContaining('0 chart(s) failed') });
  });

  test('a PodDisruptionBudget (minAvailable 1) only with more than one replica, unless turned off', () => {
    const objects = renderChart([]);
    const [pdb] = only(objects, 'PodDisruptionBudget');
    const [deployment] = only(objects, 'Deployment');
    expect(only(objects, 'PodDisruptionBudget')).toHaveLength(1);
    expect(pdb!.spec).toEqual({ minAvailable: 1, selector: deployment!.spec?.selector });
    expect(only(renderChart(['--set', 'replicaCount=1']), 'PodDisruptionBudget')).toEqual([]);
    expect(only(renderChart(['--set', 'podDisruptionBudget.enabled=false']), 'PodDisruptionBudget')).toEqual([]);
  });

  test('a ServiceMonitor only when enabled, on the metrics Service; enabled on a cluster without its CRD is refused', () => {
    expect(only(renderChart(['--api-versions', 'monitoring.coreos.com/v1/ServiceMonitor']), 'ServiceMonitor')).toEqual([]);
    const objects = renderChart(['--set', 'serviceMonitor.enabled=true,serviceMonitor.labels.release=kps', '--api-versions', 'monitoring.coreos.com/v1/ServiceMonitor']);
    const [monitor] = only(objects, 'ServiceMonitor');
    const [service] = only(objects, 'Service');
    expect(monitor!.metadata.labels).toMatchObject({ release: 'kps' });
    expect(service!.metadata.labels).toMatchObject(monitor!.spec.selector.matchLabels);
    expect(monitor!.spec.endpoints).toEqual([{ port: 'metrics', path: '/metrics', interval: '30s' }]);
    expect(service!.spec?.ports?.map((p) => p.name)).toContain('metrics');

    const refused = helm(['template', 'rlkube', CHART, '--set', 'serviceMonitor.enabled=true']);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('serviceMonitor.enabled: this cluster has no monitoring.coreos.com/v1 ServiceMonitor');
  });

  test('namespaced mode: the operator\'s rules as a Role in each watched namespace, nothing cluster-wide', () => {
    const clusterWide = renderChart([]);
    const [clusterRole] = only(clusterWide, 'ClusterRole');
    const scoped = renderChart(['--set', 'watchNamespaces={team-a,team-b}']);
    expect([...only(scoped, 'ClusterRole'), ...only(scoped, 'ClusterRoleBinding')]).toEqual([]);
    const roles = only(scoped, 'Role').filter((r) => r.metadata.name === 'rlkube-rlkube-operator');
    expect(roles.map((r) => r.metadata.namespace)).toEqual(['team-a', 'team-b']);
    for (const role of roles) expect(role.rules).toEqual(clusterRole!.rules);
    const bindings = only(scoped, 'RoleBinding').filter((b) => b.metadata.name === 'rlkube-rlkube-operator');
    expect(bindings.map((b) => [b.metadata.namespace, b.roleRef.kind, b.subjects])).toEqual(['team-a', 'team-b'].map((ns) =>
      [ns, 'Role', [{ kind: 'ServiceAccount', name: 'rlkube-rlkube-operator', namespace: 'rlkube-system' }]]));
    // the Lease stays in the release namespace
    expect(only(scoped, 'Role').filter((r) => r.metadata.name.endsWith('-leader-election')).map((r) => r.metadata.namespace)).toEqual(['rlkube-system']);
    const [deployment] = only(scoped, 'Deployment');
    expect(deployment!.spec?.template.spec?.containers[0]?.env).toContainEqual({ name: 'RLKUBE_WATCH_NAMESPACES', value: 'team-a,team-b' });
  });
});
