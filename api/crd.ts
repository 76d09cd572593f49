// CustomResourceDefinitions generated from the TypeBox schemas: structural OpenAPI v3, CEL rules, subresources, columns.
import type { TSchema } from '@sinclair/typebox';
import { GROUP, VERSION } from './common.js';
import { LearnerSchema } from './learner.js';
import { RLJobSchema } from './rljob.js';
import { RolloutPoolSchema } from './rolloutpool.js';

/** A schema node, as TypeBox writes it and as the CRD carries it: the keywords read here, any other passed through. */
export interface SchemaNode {
  [keyword: string]: unknown;
  $id?: string;
  type?: string;
  anyOf?: SchemaNode[];
  const?: unknown;
  enum?: unknown[];
  pattern?: string;
  default?: unknown;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number | boolean;
  exclusiveMaximum?: number | boolean;
  properties?: Record<string, SchemaNode>;
  patternProperties?: Record<string, SchemaNode>;
  additionalProperties?: boolean | SchemaNode;
  required?: string[];
  items?: SchemaNode;
  'x-kubernetes-int-or-string'?: boolean;
  'x-kubernetes-preserve-unknown-fields'?: boolean;
  'x-kubernetes-list-map-keys'?: string[];
}

/** TypeBox (JSON Schema draft 7 flavour) → Kubernetes structural OpenAPI v3. */
export function toOpenAPI(schema: TSchema | SchemaNode): SchemaNode {
  const node = JSON.parse(JSON.stringify(schema)) as SchemaNode; // drops TypeBox's symbol keys
  return convert(node);
}

function convert(node: SchemaNode): SchemaNode {
  const out: SchemaNode = { ...node };
  delete out.$id;
  if (Array.isArray(out.anyOf)) {
    if (out['x-kubernetes-int-or-string']) {
      const pattern = out.anyOf.find((s) => s.pattern)?.pattern;
      out.anyOf = [{ type: 'integer' }, { type: 'string' }];
      if (pattern) out.pattern = pattern;
    } else if (out['x-kubernetes-preserve-unknown-fields']) {
      delete out.anyOf;
    } else if (out.anyOf.every((s) => s.const !== undefined)) {
      out.type = 'string';
      out.enum = out.anyOf.map((s) => s.const);
      delete out.anyOf;
    } else {
      throw new Error(`unsupported union in CRD schema: ${JSON.stringify(node).slice(0, 200)}`);
    }
  }
  if (out.const !== undefined) { out.enum = [out.const]; delete out.const; }
  if (typeof out.exclusiveMinimum === 'number') { out.minimum = out.exclusiveMinimum; out.exclusiveMinimum = true; }
  if (typeof out.exclusiveMaximum === 'number') { out.maximum = out.exclusiveMaximum; out.exclusiveMaximum = true; }
  if (out.additionalProperties === false || out.additionalProperties === true) delete out.additionalProperties;
  if (out.patternProperties) {
    out.additionalProperties = convert(Object.values(out.patternProperties)[0]!);
    delete out.patternProperties;
  }
  if (out.properties) {
    const properties = Object.fromEntries(Object.entries(out.properties).map(([k, v]) => [k, convert(v)]));
    out.properties = properties;
    // A defaulted field is filled in before validation; listing it as required would only confuse readers.
    const required = (out.required ?? []).filter((k) => properties[k]?.default === undefined);
    if (required.length > 0) out.required = required; else delete out.required;
  }
  if (out.items) out.items = convert(out.items);
  // An opaque core-type object (left to the Pod API) lists no properties.
  if (out['x-kubernetes-preserve-unknown-fields'] && out.properties && Object.keys(out.properties).length === 0) delete out.properties;
  // type first, so the YAML reads like hand-written CRDs
  const { type, ...rest } = out;
  return type === undefined ? rest : { type, ...rest };
}

interface PrinterColumn { name: string; type: string; jsonPath: string; description?: string; priority?: number }

/** A CustomResourceDefinition as crdFor makes it (apiextensions.k8s.io/v1, wire field names). */
export interface CustomResourceDefinition {
  apiVersion: 'apiextensions.k8s.io/v1';
  kind: 'CustomResourceDefinition';
  metadata: { name: string; labels: Record<string, string> };
  spec: {
    group: string;
    names: { kind: string; listKind: string; plural: string; singular: string; shortNames: string[]; categories: string[] };
    scope: 'Namespaced';
    versions: Array<{
      name: string; served: boolean; storage: boolean;
      schema: { openAPIV3Schema: SchemaNode };
      subresources: { status: Record<string, never>; scale?: KindDef['scale'] };
      additionalPrinterColumns: PrinterColumn[];
    }>;
  };
}

interface KindDef {
  schema: TSchema;
  kind: string;
  plural: string;
  shortName: string;
  columns: PrinterColumn[];
  scale?: { specReplicasPath: string; statusReplicasPath: string; labelSelectorPath: string };
}

const AGE: PrinterColumn = { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' };
const READY_CONDITION: PrinterColumn = { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status' };

export const KINDS: KindDef[] = [
  {
    schema: RLJobSchema, kind: 'RLJob', plural: 'rljobs', shortName: 'rlj',
    columns: [
      { name: 'Mode', type: 'string', jsonPath: '.spec.sync.mode' },
      { name: 'Step', type: 'string', jsonPath: '.status.progress', description: 'step/maxSteps' },
      { name: 'Policy', type: 'integer', jsonPath: '.status.policyVersion', description: 'current policy version' },
      { name: 'Reward', type: 'number', jsonPath: '.status.reward', description: 'mean reward of the last step' },
      { name: 'Pools', type: 'string', jsonPath: '.status.readyPools', description: 'ready/total rollout pools' },
      { name: 'Status', type: 'string', jsonPath: '.status.summary' },
      AGE,
    ],
  },
  {
    schema: RolloutPoolSchema, kind: 'RolloutPool', plural: 'rolloutpools', shortName: 'rlp',
    columns: [
      { name: 'Job', type: 'string', jsonPath: '.spec.jobRef.name' },
      { name: 'Engine', type: 'string', jsonPath: '.spec.engine.kind' },
      { name: 'GPUs', type: 'integer', jsonPath: '.spec.engine.gpus', description: 'GPUs per replica' },
      { name: 'Desired', type: 'integer', jsonPath: '.spec.replicas' },
      { name: 'Available', type: 'integer', jsonPath: '.status.readyReplicas' },
      READY_CONDITION,
      AGE,
    ],
    scale: { specReplicasPath: '.spec.replicas', statusReplicasPath: '.status.replicas', labelSelectorPath: '.status.selector' },
  },
  {
    schema: LearnerSchema, kind: 'Learner', plural: 'learners', shortName: 'rll',
    columns: [
      { name: 'Job', type: 'string', jsonPath: '.spec.jobRef.name' },
      { name: 'Nodes', type: 'integer', jsonPath: '.spec.nodes' },
      { name: 'GPUs/Node', type: 'integer', jsonPath: '.spec.gpusPerNode' },
      { name: 'Available', type: 'integer', jsonPath: '.status.readyReplicas' },
      READY_CONDITION,
      AGE,
    ],
  },
];

export function crdFor(def: KindDef): CustomResourceDefinition {
  const root = toOpenAPI(def.schema);
  if (!root.properties) throw new Error(`${def.kind}: the schema's root has no properties`);
  // Only name/generateName may be constrained under metadata; the name rule lives at the root (CEL).
  root.properties.apiVersion = { type: 'string' };
  root.properties.kind = { type: 'string' };
  root.properties.metadata = { type: 'object' };
  root.required = ['spec'];
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${def.plural}.${GROUP}`, labels: { 'app.kubernetes.io/name': 'rlkube' } },
    spec: {
      group: GROUP,
      names: {
        kind: def.kind, listKind: `${def.kind}List`, plural: def.plural, singular: def.kind.toLowerCase(),
        shortNames: [def.shortName], categories: ['rlkube'],
      },
      scope: 'Namespaced',
      versions: [{
        name: VERSION, served: true, storage: true,
        schema: { openAPIV3Schema: root },
        subresources: def.scale ? { status: {}, scale: def.scale } : { status: {} },
        additionalPrinterColumns: def.columns,
      }],
    },
  };
}

export const crds = (): CustomResourceDefinition[] => KINDS.map(crdFor);
export const crdFileName = (def: { plural: string }) => `${GROUP}_${def.plural}.yaml`;
