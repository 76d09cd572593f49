// The header of a safetensors file (an 8-byte little-endian length, then that many bytes of JSON), read
// without touching the tensors: the agent needs only the trainer's metadata to hand a policy to an engine.
import { open } from 'node:fs/promises';
import { HttpError } from './http.js';

/** The safetensors format's own bound on the header (100 MB): anything larger is not a safetensors file. */
const MAX_HEADER_BYTES = 100_000_000;

export interface TensorInfo {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

export interface SafetensorsHeader {
  /** Bytes before the tensor data: 8 + the JSON header's length. */
  dataStart: number;
  /** `__metadata__`: string → string (the trainer's rlkube.* keys live here). */
  metadata: Record<string, string>;
  tensors: Record<string, TensorInfo>;
}

/** The header's JSON length from a file's first 8 bytes. */
export function headerLength(prefix: Uint8Array): number {
  if (prefix.byteLength < 8) throw new HttpError('InvalidWeights', `safetensors: ${prefix.byteLength} bytes, the length prefix needs 8`);
  const length = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (length < 2n || length > BigInt(MAX_HEADER_BYTES)) throw new HttpError('InvalidWeights', `safetensors: header length ${length} out of range`);
  return Number(length);
}

/** Parses a file's first 8 + headerLength bytes (more are ignored). */
export function parseSafetensorsHeader(bytes: Uint8Array): SafetensorsHeader {
  const length = headerLength(bytes);
  if (bytes.byteLength < 8 + length) throw new HttpError('InvalidWeights', `safetensors: header of ${length} bytes, only ${bytes.byteLength - 8} present`);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + length)));
  } catch {
    throw new HttpError('InvalidWeights', 'safetensors: the header is not UTF-8 JSON');
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw new HttpError('InvalidWeights', 'safetensors: the header is not a JSON object');
  const { __metadata__: rawMetadata, ...rawTensors } = json as Record<string, unknown>;
  const metadata: Record<string, string> = {};
  if (rawMetadata !== undefined) {
    if (!rawMetadata || typeof rawMetadata !== 'object' || Array.isArray(rawMetadata)) throw new HttpError('InvalidWeights', 'safetensors: __metadata__ is not an object');
    for (const [key, value] of Object.entries(rawMetadata)) {
      if (typeof value !== 'string') throw new HttpError('InvalidWeights', `safetensors: __metadata__.${key} is not a string`);
      metadata[key] = value;
    }
  }
  const tensors: Record<string, TensorInfo> = {};
  for (const [name, info] of Object.entries(rawTensors)) {
    const t = info as Partial<TensorInfo> | null;
    const offsets = t?.data_offsets;
    if (typeof t?.dtype !== 'string' || !Array.isArray(t.shape) || !Array.isArray(offsets) || offsets.length !== 2) {
      throw new HttpError('InvalidWeights', `safetensors: tensor ${name} lacks dtype, shape or data_offsets`);
    }
    tensors[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offsets[0]!, offsets[1]!] };
  }
  return { dataStart: 8 + length, metadata, tensors };
}

/** Reads only the header of the safetensors file at `path`. */
export async function readSafetensorsHeader(path: string): Promise<SafetensorsHeader> {
  const file = await open(path, 'r').catch((err: NodeJS.ErrnoException) => {
    throw new HttpError('WeightsNotFound', `cannot open ${path}: ${err.code ?? String(err)}`);
  });
  try {
    const prefix = new Uint8Array(8);
    if ((await file.read(prefix, 0, 8, 0)).bytesRead < 8) throw new HttpError('InvalidWeights', `${path}: shorter than a safetensors header`);
    const length = headerLength(prefix);
    const bytes = new Uint8Array(8 + length);
    bytes.set(prefix);
    if ((await file.read(bytes, 8, length, 8)).bytesRead < length) throw new HttpError('InvalidWeights', `${path}: header cut short`);
    return parseSafetensorsHeader(bytes);
  } finally {
    await file.close();
  }
}
