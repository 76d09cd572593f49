// Policy weights: blobs into the job's object store (or a URI for weights too large for it), with a
// sha256 digest that every reader checks before the bytes reach an engine.
import { Objm, type ObjectStore } from '@nats-io/obj';
import type { NatsConnection } from '@nats-io/transport-node';
import { createHash } from 'node:crypto';
import { BusError } from './errors.js';
import { withRetry } from './retry.js';
import type { PolicyLocation, PolicyRecord } from './messages.js';
import { jobNames, weightsObjectName, type JobRef } from './names.js';

export const digestOf = (bytes: Uint8Array) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

export class WeightsStore {
  private constructor(private readonly store: ObjectStore) {}

  static async open(nc: NatsConnection, job: JobRef): Promise<WeightsStore> {
    return new WeightsStore(await withRetry('open weights store', () => new Objm(nc).open(jobNames(job).weightsStore)));
  }

  async put(version: number, bytes: Uint8Array): Promise<PolicyLocation> {
    const name = weightsObjectName(version);
    await withRetry(`put ${name}`, () => this.store.putBlob({ name }, bytes));
    return { kind: 'object', name, size: bytes.byteLength };
  }

  /** The blob a record names, checked against its digest; undefined for URI records (shared storage). */
  async get(record: PolicyRecord): Promise<Uint8Array | undefined> {
    if (record.location.kind === 'uri') return undefined;
    const location = record.location;
    const bytes = await withRetry(`get ${location.name}`, () => this.store.getBlob(location.name));
    if (!bytes) throw new BusError('NotFound', `policy v${record.version}: object ${record.location.name} is gone`);
    const digest = digestOf(bytes);
    if (digest !== record.digest) {
      throw new BusError('DigestMismatch', `policy v${record.version}: object digest ${digest} != record ${record.digest}`);
    }
    return bytes;
  }

  delete = async (version: number) => {
    await withRetry(`delete weights v${version}`, () => this.store.delete(weightsObjectName(version)));
  };
}
