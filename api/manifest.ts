// Parsing RLJob manifests outside the cluster (rlkube run): YAML → defaults → validation → typed RLJob.
import { parseAllDocuments } from 'yaml';
import type { TSchema } from '@sinclair/typebox';
import { RLJobSchema, RLJobSpec, type RLJob } from './rljob.js';
import { formatErrors, validate, withDefaults, type FieldError } from './validate.js';

export class InvalidManifestError extends Error {
  readonly reason = 'InvalidManifest' as const;
  constructor(readonly fields: FieldError[], summary?: string) {
    super(summary ?? `invalid RLJob manifest: ${formatErrors(fields)}`);
    this.name = 'InvalidManifestError';
  }
}

function parsed<T>(schema: TSchema, value: unknown, root: string): T {
  const defaulted = withDefaults<T>(schema, value);
  const errors = validate(schema, defaulted, root);
  if (errors.length > 0) throw new InvalidManifestError(errors);
  return defaulted;
}

/** Validates one RLJob YAML document and returns it with defaults applied; throws InvalidManifestError. */
export function parseRLJobManifest(yamlText: string): RLJob {
  const docs = parseAllDocuments(yamlText).filter((d) => d.contents !== null);
  if (docs.length !== 1) {
    throw new InvalidManifestError([{ path: '(root)', message: `expected exactly one YAML document, found ${docs.length}` }]);
  }
  const doc = docs[0]!;
  if (doc.errors.length > 0) {
    throw new InvalidManifestError([{ path: '(root)', message: `YAML: ${doc.errors[0]!.message}` }]);
  }
  return parsed<RLJob>(RLJobSchema, doc.toJS(), '');
}

/** Validates an RLJob spec (JSON from RLKUBE_JOB_SPEC or an API object) and applies defaults. */
export function parseRLJobSpec(value: unknown): RLJob['spec'] {
  return parsed<RLJob['spec']>(RLJobSpec, value, 'spec');
}
