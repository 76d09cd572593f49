// Policy weights through the job's object store, streamed both ways (never whole in memory): the learner
// stores a trainer's file and checks its sha256 against the trainer's digest before anything announces it;
// a rollout agent streams a version into a file on its disk, hashing along, and keeps it only on a match.
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { Objm, setSha256Backend, type ObjectStore } from '@nats-io/obj';
import type { NatsConnection } from '@nats-io/transport-node';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { BusError } from './errors.js';
import { withRetry, type RetryOptions } from './retry.js';
import type { PolicyLocation, PolicyRecord } from './messages.js';
import { jobNames, weightsObjectName, type JobKey } from './names.js';

// The object store client hashes every chunk it stores; its default is a pure-JS SHA-256 at a few hundred
// MB/s, Node's (OpenSSL) is several times faster. Process-wide, as the client asks.
setSha256Backend('native');

/**
 * Bytes per stored chunk (one message each), capped by the server's max_payload. Not as large as the bus
 * allows: a reader assembles each message in a buffer that grows by doubling, and large buffers cost copies
 * and garbage collection. bench/weights.ts, 8 engines reading 128 MiB (ratio to a loopback copy, one run
 * each on a loaded 2-core machine): 128 KiB 1.49, 256 KiB 1.49, 1 MiB 1.60, 4 MiB 2.87. 1 MiB keeps the
 * message count (and the store's round trips per policy) four times lower than 256 KiB for multi-GB weights.
 */
export const WEIGHTS_CHUNK_BYTES = 1024 * 1024;
/** A download that sees no chunk for this long is abandoned (its object was deleted or its server stalled). */
const CHUNK_TIMEOUT_MS = 30_000;

export const digestOf = (bytes: Uint8Array) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

/** The store's digest ("SHA-256=" + padded base64url of the same hash) in rlkube's form ("sha256:" + hex). */
export function digestOfStoreDigest(storeDigest: string): string {
  const prefix = 'SHA-256=';
  if (!storeDigest.startsWith(prefix)) throw new BusError('Malformed', `object store digest ${storeDigest} is not SHA-256`);
  return `sha256:${Buffer.from(storeDigest.slice(prefix.length), 'base64url').toString('hex')}`;
}

export interface WeightsStoreOptions {
  chunkBytes?: number;
  log?: Logger;
}

export class WeightsStore {
  private readonly names;
  private readonly retry: RetryOptions;

  private constructor(
    private readonly js: JetStreamClient,
    private readonly store: ObjectStore,
    job: JobKey,
    private readonly chunkBytes: number,
    log: Logger | undefined,
  ) {
    this.names = jobNames(job);
    this.retry = log ? { log } : {};
  }

  static async open(nc: NatsConnection, job: JobKey, options: WeightsStoreOptions = {}): Promise<WeightsStore> {
    const store = await withRetry('open weights store', () => new Objm(nc).open(jobNames(job).weightsStore));
    const chunkBytes = Math.min(options.chunkBytes ?? WEIGHTS_CHUNK_BYTES, nc.info?.max_payload ?? 1024 * 1024);
    return new WeightsStore(jetstream(nc), store, job, chunkBytes, options.log);
  }

  /** Small weights held in memory (tests, the tiny policy); large ones go through putFile. */
  async put(version: number, bytes: Uint8Array): Promise<PolicyLocation> {
    const name = weightsObjectName(version);
    await withRetry(`put ${name}`, () => this.store.putBlob({ name, options: { max_chunk_size: this.chunkBytes } }, bytes), this.retry);
    return { kind: 'object', name, size: bytes.byteLength };
  }

  /**
   * Streams the file at `path` into the store as `version`, the store client hashing it chunk by chunk.
   * DigestMismatch (and the object removed) when the bytes are not the ones `expectedDigest` names: a file
   * rewritten under the trainer, or a torn one, must never be announced.
   */
  async putFile(version: number, path: string, expectedDigest: string): Promise<PolicyLocation> {
    const name = weightsObjectName(version);
    // Each attempt reads the file again from its start (a failed put purges the chunks it stored).
    const info = await withRetry(`put ${name}`, () => this.store.put(
      { name, options: { max_chunk_size: this.chunkBytes } },
      Readable.toWeb(createReadStream(path, { highWaterMark: this.chunkBytes })) as ReadableStream<Uint8Array>,
    ), this.retry);
    const digest = digestOfStoreDigest(info.digest);
    if (digest !== expectedDigest) {
      await this.delete(version);
      throw new BusError('DigestMismatch', `policy v${version}: ${path} hashes to ${digest}, the trainer said ${expectedDigest}`);
    }
    return { kind: 'object', name, size: info.size };
  }

  /** The blob a record names, checked against its digest; undefined for URI records (shared storage). Small weights only. */
  async get(record: PolicyRecord): Promise<Uint8Array | undefined> {
    if (record.location.kind === 'uri') return undefined;
    const location = record.location;
    const bytes = await withRetry(`get ${location.name}`, () => this.store.getBlob(location.name), this.retry);
    if (!bytes) throw new BusError('NotFound', `policy v${record.version}: object ${record.location.name} is gone`);
    const digest = digestOf(bytes);
    if (digest !== record.digest) {
      throw new BusError('DigestMismatch', `policy v${record.version}: object digest ${digest} != record ${record.digest}`);
    }
    return bytes;
  }

  /**
   * Streams the object a record names into the file `dest`: written to a temporary file beside it, hashed
   * along, renamed to `dest` only when the digest is the record's. On DigestMismatch or any failure nothing
   * is left behind. Memory stays at a few chunks: the next chunks are acknowledged to the server (flow
   * control) only as this loop reaches them, after the previous one is on disk.
   */
  async toFile(record: PolicyRecord, dest: string): Promise<void> {
    const location = record.location;
    if (location.kind !== 'object') throw new BusError('NotFound', `policy v${record.version} is at ${location.uri}, not in the store`);
    await withRetry(`get ${location.name}`, () => this.download(record, location.name, dest), this.retry);
  }

  delete = async (version: number) => {
    await withRetry(`delete weights v${version}`, () => this.store.delete(weightsObjectName(version)), this.retry);
  };

  private async download(record: PolicyRecord, name: string, dest: string): Promise<void> {
    const info = await this.store.info(name);
    if (!info || info.deleted) throw new BusError('NotFound', `policy v${record.version}: object ${name} is gone`);
    const temp = `${dest}.${randomBytes(6).toString('hex')}.partial`;
    const file = await open(temp, 'wx');
    const hash = createHash('sha256');
    let size = 0;
    let kept = false;
    try {
      if (info.size > 0) {
        // One filter subject, as a string: the consumer is then created on a subject that names its filter
        // ($JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>), the form a job's identity is allowed.
        const consumer = await this.js.consumers.getPushConsumer(this.names.weightsStream, {
          filter_subjects: this.names.weightsChunks(info.nuid),
        });
        const chunks = await consumer.consume();
        let lastChunkAt = Date.now();
        const stall = setInterval(() => {
          if (Date.now() - lastChunkAt > CHUNK_TIMEOUT_MS) chunks.stop(new BusError('Timeout', `policy v${record.version}: no chunk of ${name} for ${CHUNK_TIMEOUT_MS} ms`));
        }, 1000);
        try {
          for await (const chunk of chunks) {
            lastChunkAt = Date.now();
            hash.update(chunk.data);
            await file.write(chunk.data);
            size += chunk.data.byteLength;
            if (chunk.info.pending === 0) break;
          }
        } finally {
          clearInterval(stall);
          chunks.stop();
        }
        const ended = await chunks.closed();
        if (ended instanceof Error && size < info.size) throw ended;
      }
      await file.close();
      const digest = `sha256:${hash.digest('hex')}`;
      if (digest !== record.digest || size !== info.size) {
        throw new BusError('DigestMismatch', `policy v${record.version}: ${size} bytes hashing to ${digest}, the record says ${record.digest}`);
      }
      await rename(temp, dest);
      kept = true;
    } finally {
      if (!kept) {
        await file.close().catch(() => undefined);
        await rm(temp, { force: true });
      }
    }
  }
}
