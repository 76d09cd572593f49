// The API schemas are the one source of types, validation and CRDs: the committed CRD YAML is what the
// generator makes, good manifests get defaults, and every refusal names the field.
import { readFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { InvalidManifestError, parseRLJobManifest, parseRLJobSpec } from '../../api/index.js';
import { CRD_DIRS, renderCrds } from '../../api/gen-crds.js';
import { NATS_URL } from '../../api/schema-kit.js';
import { crds, type CustomResourceDefinition, type SchemaNode } from '../../api/crd.js';
import { INVALID_CASES, baseJob, firstPool, readExample } from '../harness/operator-fixtures.js';

const ROOT = new URL('../../', import.meta.url);

describe('CRDs', () => {
  /** A CRD's one version (v1alpha1). */
  const versionOf = (crd: CustomResourceDefinition) => {
    expect(crd.spec.versions).toHaveLength(1);
    return crd.spec.versions[0]!;
  };

  test.each(CRD_DIRS)('committed YAML in %s equals the generated one (run `npm run gen:crds`)', (dir) => {
    for (const [file, text] of renderCrds()) {
      expect(readFileSync(new URL(`${dir}/${file}`, ROOT), 'utf8')).toBe(text);
    }
  });

  test('structural: every node has a type unless int-or-string / preserve-unknown-fields', () => {
    const untyped: string[] = [];
    const visit = (node: SchemaNode, path: string) => {
      if (node.type === undefined && !node['x-kubernetes-int-or-string'] && !node['x-kubernetes-preserve-unknown-fields']) untyped.push(path);
      for (const [k, v] of Object.entries(node.properties ?? {})) visit(v, `${path}.${k}`);
      if (node.items) visit(node.items, `${path}[]`);
      if (typeof node.additionalProperties === 'object') visit(node.additionalProperties, `${path}{}`);
      expect(node.anyOf === undefined || node['x-kubernetes-int-or-string']).toBeTruthy();
      expect(node.patternProperties).toBeUndefined();
      expect(node.const).toBeUndefined();
    };
    for (const crd of crds()) visit(versionOf(crd).schema.openAPIV3Schema, crd.spec.names.kind);
    expect(untyped).toEqual([]);
  });

  test('subresources, short names, category and columns', () => {
    const byKind: Record<string, CustomResourceDefinition> = Object.fromEntries(crds().map((c) => [c.spec.names.kind, c]));
    expect(Object.keys(byKind).sort()).toEqual(['Learner', 'RLJob', 'RolloutPool']);
    expect(versionOf(byKind.RolloutPool!).subresources.scale).toEqual({
      specReplicasPath: '.spec.replicas', statusReplicasPath: '.status.replicas', labelSelectorPath: '.status.selector',
    });
    for (const crd of Object.values(byKind)) {
      expect(versionOf(crd).subresources.status).toEqual({});
      expect(crd.spec.names.categories).toEqual(['rlkube']);
      const status = versionOf(crd).schema.openAPIV3Schema.properties?.status;
      expect(status?.properties?.conditions?.['x-kubernetes-list-map-keys']).toEqual(['type']);
    }
    expect(crds().map((c) => c.spec.names.shortNames[0])).toEqual(['rlj', 'rlp', 'rll']);
    expect(versionOf(byKind.RLJob!).additionalPrinterColumns.map((c) => c.name))
      .toEqual(['Mode', 'Step', 'Policy', 'Reward', 'Pools', 'Status', 'Age']);
  });

  test('every CEL rule is written with a message', () => {
    const text = [...renderCrds().values()].join('\n');
    const rules = text.match(/- rule: /g)?.length ?? 0;
    expect(rules).toBeGreaterThanOrEqual(10);
    expect(text.match(/ {2}message: /g)?.length).toBe(rules);
  });
});

describe('parseRLJobManifest', () => {
  test.each(['reverse-cpu.yaml', 'gsm8k-gpu.yaml'])('accepts examples/%s', (file) => {
    const job = parseRLJobManifest(readExample(file));
    expect(job.kind).toBe('RLJob');
    expect(job.spec.rollout.pools.length).toBeGreaterThan(0);
  });

  test('fills defaults like the API server would', () => {
    const job = parseRLJobManifest(stringify({
      apiVersion: 'rlkube.dev/v1alpha1', kind: 'RLJob', metadata: { name: 'd' },
      spec: { model: { name: 'tiny' }, environment: { name: 'reverse' }, rollout: { pools: [{ name: 'cpu' }] } },
    }));
    expect(job.spec.suspend).toBe(false);
    expect(job.spec.sync).toEqual({ mode: 'SequentialPull', maxStaleness: 1, maxTaskDeliveries: 5 });
    expect(job.spec.algorithm).toMatchObject({ groupSize: 8, batchSize: 32, isCap: 2 });
    expect(job.spec.rollout.pools[0]).toEqual({ name: 'cpu', replicas: 1, engine: { kind: 'tiny', gpus: 0 }, agent: {} });
    expect(job.spec.learner).toMatchObject({ nodes: 1, gpusPerNode: 0, checkpoint: { size: '1Gi', everySteps: 10 } });
  });

  test.each(INVALID_CASES.map((c) => [c.name, c] as const))('refuses %s, naming the field', (_name, c) => {
    let error: unknown;
    try { parseRLJobManifest(stringify(c.mutate(baseJob()))); } catch (err) { error = err; }
    expect(error).toBeInstanceOf(InvalidManifestError);
    const e = error as InvalidManifestError;
    expect(e.reason).toBe('InvalidManifest');
    expect(e.message).toContain(c.field);
  });

  test('enum errors list the allowed values', () => {
    const m = baseJob();
    m.spec.sync.mode = 'Later';
    expect(() => parseRLJobManifest(stringify(m))).toThrow(/spec\.sync\.mode: must be one of: SequentialPull, AsyncPushPull/);
  });

  test('several errors are reported together', () => {
    const m = baseJob();
    m.spec.algorithm.groupSize = 1;
    firstPool(m).replicas = -2;
    const fields = (() => { try { parseRLJobManifest(stringify(m)); return []; } catch (e) { return (e as InvalidManifestError).fields.map((f) => f.path); } })();
    expect(fields).toEqual(expect.arrayContaining(['spec.algorithm.groupSize', 'spec.rollout.pools[0].replicas']));
  });

  test.each([
    ['not YAML', 'spec: [unclosed', '(root)'],
    ['two documents', 'a: 1\n---\nb: 2\n', 'exactly one'],
    ['wrong kind', 'apiVersion: rlkube.dev/v1alpha1\nkind: Job\nmetadata: {name: x}\nspec: {}\n', 'kind'],
  ])('refuses %s', (_name, text, expected) => {
    expect(() => parseRLJobManifest(text)).toThrow(expected);
  });

  test('parseRLJobSpec validates a bare spec with paths under spec.', () => {
    expect(() => parseRLJobSpec({ ...baseJob().spec, algorithm: { groupSize: 0 } })).toThrow('spec.algorithm.groupSize');
    expect(parseRLJobSpec(baseJob().spec).algorithm.isCap).toBe(2);
  });
});

describe('NATS URLs: one grammar (api/schema-kit.ts NATS_URL) for the RLJob, the chart and every process', () => {
  const withUrl = (url: string) => { const m = baseJob(); m.spec.nats = { url }; return stringify(m); };

  test.each(['nats://nats.team-a:4222', 'tls://nats.example:4222', 'nats://a:4222,nats://b:4222', 'nats://a:4222, tls://b:4222', 'nats://user:pw@a:4222'])('spec.nats.url accepts %s', (url) => {
    expect(parseRLJobManifest(withUrl(url)).spec.nats?.url).toBe(url);
  });

  test.each(['ws://nats:8080', 'wss://nats:443', 'nats://a:4222,ws://b:8080', 'http://nats:4222', 'nats://a:4222,', 'nats://a b:4222'])('spec.nats.url refuses %s, naming the field', (url) => {
    expect(() => parseRLJobManifest(withUrl(url))).toThrow(/spec\.nats\.url/);
  });

  test('the chart\'s values.schema.json takes the same URLs', () => {
    const schema = JSON.parse(readFileSync(new URL('charts/rlkube-operator/values.schema.json', ROOT), 'utf8'));
    expect(schema.properties.nats.properties.url.pattern).toBe(NATS_URL);
  });
});
