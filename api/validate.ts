// Runtime validation against the same schemas the CRDs are made from: defaults, then errors named by field path.
import { FormatRegistry, type TSchema } from '@sinclair/typebox';
import { Value, ValueErrorType, type ValueError } from '@sinclair/typebox/value';
import { RULES, type Rule } from './schema-kit.js';

if (!FormatRegistry.Has('date-time')) FormatRegistry.Set('date-time', (v) => !Number.isNaN(Date.parse(v)));

export interface FieldError {
  /** kubectl-style path: spec.rollout.pools[0].engine.gpus */
  path: string;
  message: string;
}

/** JSON pointer (/spec/rollout/pools/0/name) → kubectl path (spec.rollout.pools[0].name). */
export function fieldPath(pointer: string, root = ''): string {
  let out = root;
  for (const raw of pointer.split('/').slice(1)) {
    const part = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    out += /^\d+$/.test(part) ? `[${part}]` : out === '' ? part : /^[A-Za-z_][\w]*$/.test(part) ? `.${part}` : `[${JSON.stringify(part)}]`;
  }
  return out;
}

function describe(error: ValueError): string {
  const schema = error.schema as { anyOf?: Array<{ const?: unknown }> };
  if (error.type === ValueErrorType.Union && schema.anyOf?.every((s) => s.const !== undefined)) {
    return `must be one of: ${schema.anyOf.map((s) => String(s.const)).join(', ')} (got ${JSON.stringify(error.value)})`;
  }
  if (error.type === ValueErrorType.ObjectAdditionalProperties) return 'unknown field';
  if (error.type === ValueErrorType.ObjectRequiredProperty) return 'required field missing';
  return error.message.replace(/^Expected /, 'expected ');
}

function checkRules(schema: TSchema, value: unknown, path: string, out: FieldError[]): void {
  if (value === undefined || value === null) return;
  const rules = (schema as { [RULES]?: Rule[] })[RULES] ?? [];
  for (const rule of rules) {
    if (!rule.check) continue; // transition rule: only the API server sees the old object
    let ok: boolean;
    try { ok = rule.check(value); } catch { ok = false; }
    if (!ok) out.push({ path: path + (rule.fieldPath ?? ''), message: rule.message });
  }
  checkListMapKeys(schema, value, path, out);
  const s = schema as { properties?: Record<string, TSchema>; patternProperties?: Record<string, TSchema>; items?: TSchema };
  if (s.properties && typeof value === 'object') {
    for (const [key, child] of Object.entries(s.properties)) {
      checkRules(child, (value as Record<string, unknown>)[key], path === '' ? key : `${path}.${key}`, out);
    }
  }
  if (s.patternProperties && typeof value === 'object') {
    const child = Object.values(s.patternProperties)[0]!;
    for (const [key, v] of Object.entries(value as object)) checkRules(child, v, `${path}[${JSON.stringify(key)}]`, out);
  }
  if (s.items && Array.isArray(value)) value.forEach((v, i) => checkRules(s.items!, v, `${path}[${i}]`, out));
}

/** A list-map (x-kubernetes-list-type: map) holds each key once: the API server refuses a duplicate, so do we. */
function checkListMapKeys(schema: TSchema, value: unknown, path: string, out: FieldError[]): void {
  const keys = (schema as { 'x-kubernetes-list-map-keys'?: string[] })['x-kubernetes-list-map-keys'];
  if (schema['x-kubernetes-list-type'] !== 'map' || !keys || !Array.isArray(value)) return;
  const seen = new Map<string, number>();
  value.forEach((item, i) => {
    const key = JSON.stringify(keys.map((k) => (item as Record<string, unknown>)[k]));
    const first = seen.get(key);
    if (first === undefined) seen.set(key, i);
    else out.push({ path: `${path}[${i}]`, message: `duplicate ${keys.join(' and ')}: the same as ${path}[${first}]` });
  });
}

/** Fills defaults (as the API server would) into a copy of value. */
export function withDefaults<T>(schema: TSchema, value: unknown): T {
  return Value.Default(schema, structuredClone(value)) as T;
}

/** Structural errors first; cross-field rules only on a structurally valid value (they assume its shape). */
export function validate(schema: TSchema, value: unknown, root = ''): FieldError[] {
  const errors = [...Value.Errors(schema, value)].map((e) => ({ path: fieldPath(e.path, root) || '(root)', message: describe(e) }));
  if (errors.length > 0) return errors;
  const out: FieldError[] = [];
  checkRules(schema, value, root, out);
  return out;
}

export function formatErrors(errors: FieldError[]): string {
  return errors.map((e) => `${e.path}: ${e.message}`).join('; ');
}
