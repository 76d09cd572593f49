// Small TypeBox helpers that keep the schemas Kubernetes-shaped (structural, CEL rules next to the fields).
import { Type, type Static, type TSchema, type TLiteral, type TUnion, type SchemaOptions } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

/** A CEL rule for the CRD plus, where it does not compare with the old object, the same check in TypeScript. */
export interface Rule<Self = unknown> {
  /** CEL expression, evaluated by the API server (x-kubernetes-validations). */
  rule: string;
  /** Message the API server returns; starts with the field it is about. */
  message: string;
  /** JSONPath (relative to the node holding the rule) of the field the message is about. */
  fieldPath?: string;
  /** The same rule for local validation (CLI, agents). Absent for transition rules (oldSelf). */
  check?(self: Self): boolean;
}

/** Where the TypeScript twins of a node's CEL rules live; a symbol, so JSON output never shows them. */
export const RULES = Symbol.for('rlkube.rules');

/** Attaches CEL rules (and their TypeScript twins) to a schema node. */
export function withRules<T extends TSchema>(schema: T, rules: Rule<Static<T>>[]): T {
  const node = schema as T & { [RULES]?: Rule[]; 'x-kubernetes-validations'?: unknown[] };
  node[RULES] = [...(node[RULES] ?? []), ...rules];
  node['x-kubernetes-validations'] = node[RULES]!.map(({ rule, message, fieldPath }) =>
    fieldPath === undefined ? { rule, message } : { rule, message, fieldPath });
  return schema;
}

/** A string enum (one TS union type; an `enum` in the CRD). */
export function Enum<const V extends readonly string[]>(values: V, options: SchemaOptions = {}):
  TUnion<TLiteral<V[number]>[]> {
  return Type.Union(values.map((v) => Type.Literal(v)), options) as never;
}

/** RFC 1123 label that also starts with a letter (usable as a Service name, RFC 1035). */
export const DNS_LABEL = '^[a-z]([-a-z0-9]*[a-z0-9])?$';
export function DnsLabel(maxLength: number, options: SchemaOptions = {}) {
  return Type.String({ pattern: DNS_LABEL, minLength: 1, maxLength, ...options });
}

/** Kubernetes resource.Quantity: an integer or a string such as "500m", "16Gi". */
export const QUANTITY = '^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$';
export function Quantity(options: SchemaOptions = {}) {
  return Type.Union([Type.Integer({ minimum: 0 }), Type.String({ pattern: QUANTITY, maxLength: 64 })],
    { 'x-kubernetes-int-or-string': true, ...options });
}

/** map[string]string with bounded size (CEL cost estimates need the bounds). */
export function StringMap(options: SchemaOptions = {}) {
  return Type.Record(Type.String({ maxLength: 317 }), Type.String({ maxLength: 1024 }), { maxProperties: 64, ...options });
}

/**
 * NATS server URLs, comma-separated: nats:// or tls:// only. Every NATS client here is the Node transport,
 * which speaks NATS over TCP and drops the scheme, so a ws:// or wss:// URL would reach a WebSocket port with
 * the TCP protocol: refused wherever a URL is taken (RLJob spec.nats.url, the agents' and operator's settings,
 * infra's rlkube:nats.url, the chart's nats.url).
 */
const NATS_SERVER = '(nats|tls)://[^\\s,]+';
export const NATS_URL = `^${NATS_SERVER}(\\s*,\\s*${NATS_SERVER})*$`;
export function NatsUrl(options: SchemaOptions = {}) {
  return Type.String({ pattern: NATS_URL, maxLength: 1024, ...options });
}
const NATS_URL_RE = new RegExp(NATS_URL);
const NATS_SERVER_RE = new RegExp(`^${NATS_SERVER}$`);
/** The servers of a NATS URL list, or, for text outside the grammar, the first entry that is not a nats:// or tls:// URL. */
export function parseNatsUrl(text: string): { servers: string[] } | { bad: string } {
  const servers = text.split(',').map((s) => s.trim());
  if (NATS_URL_RE.test(text.trim())) return { servers };
  return { bad: servers.find((s) => !NATS_SERVER_RE.test(s)) ?? text };
}

/** A container image reference. */
export function Image(options: SchemaOptions = {}) {
  return Type.String({ minLength: 1, maxLength: 512, pattern: '^[^\\s]+$', ...options });
}

/**
 * Makes an optional object default to itself with every nested default filled in. The API server checks a
 * default against the node's CEL rules as written (it does not default inside a default), so `{}` fails.
 */
export function defaultsToFilled<T extends TSchema>(schema: T): T {
  (schema as { default?: unknown }).default = {};
  (schema as { default?: unknown }).default = Value.Default(schema, {});
  return schema;
}
