// How the rollout agent reads a policy file's safetensors header and writes a vLLM LoRA version as a PEFT
// directory: the adapter vLLM loads is byte for byte the trainer's, with the trainer's adapter_config.json.
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { adapterConfigOf, adapterName, policyKindOf, writePeftDir } from '../../agent/engine-client.js';
import { HttpError } from '../../agent/http.js';
import { headerLength, parseSafetensorsHeader, readSafetensorsHeader } from '../../agent/safetensors.js';

/** A safetensors file as the format lays it out: u64 LE header length, JSON header (space-padded to 8), data. */
function safetensors(header: Record<string, unknown>, data = new Uint8Array(8)): Uint8Array {
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const bytes = new Uint8Array(8 + json.length + data.byteLength);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(json.length), true);
  bytes.set(new TextEncoder().encode(json), 8);
  bytes.set(data, 8 + json.length);
  return bytes;
}

const adapterConfig = JSON.stringify({ peft_type: 'LORA', r: 8, lora_alpha: 16, target_modules: ['q_proj', 'v_proj'] });
const loraMetadata = { 'rlkube.kind': 'lora', 'rlkube.version': '3', 'rlkube.adapter_config': adapterConfig };
const tensor = { dtype: 'F32', shape: [2], data_offsets: [0, 8] };
const loraFile = () => safetensors({ __metadata__: loraMetadata, 'base_model.model.layers.0.q_proj.lora_A.weight': tensor });

const reasonOf = (f: () => unknown) => {
  try {
    f();
  } catch (err) {
    return err instanceof HttpError ? err.reason : String(err);
  }
  return 'no error';
};

let dir: string;
beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'rlkube-peft-'))));
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('safetensors header', () => {
  test('metadata, tensors and where the data starts', () => {
    const bytes = loraFile();
    const header = parseSafetensorsHeader(bytes);
    expect(header.metadata).toEqual(loraMetadata);
    expect(header.tensors).toEqual({ 'base_model.model.layers.0.q_proj.lora_A.weight': tensor });
    expect(header.dataStart).toBe(8 + headerLength(bytes));
    expect(header.dataStart % 8).toBe(0);
  });

  test.each<[string, Uint8Array]>([
    ['fewer than 8 bytes', new Uint8Array(5)],
    ['a length past the format\'s bound', (() => { const b = new Uint8Array(16); new DataView(b.buffer).setBigUint64(0, 1n << 40n, true); return b; })()],
    ['a header cut short', loraFile().subarray(0, 40)],
    ['a header that is not JSON', (() => { const b = safetensors({ a: tensor }); b[8] = 0x7b + 1; return b; })()],
    ['a non-string metadata value', safetensors({ __metadata__: { 'rlkube.version': 3 } })],
    ['a tensor without offsets', safetensors({ w: { dtype: 'F32', shape: [2] } })],
  ])('refuses %s as InvalidWeights', (_, bytes) => {
    expect(reasonOf(() => parseSafetensorsHeader(bytes))).toBe('InvalidWeights');
  });

  test('a file\'s header is read without its tensors', async () => {
    const data = new Uint8Array(1 << 16).fill(7);
    const path = join(dir, 'policy-v3.safetensors');
    writeFileSync(path, safetensors({ __metadata__: loraMetadata, w: { dtype: 'U8', shape: [data.length], data_offsets: [0, data.length] } }, data));
    const header = await readSafetensorsHeader(path);
    expect(header.metadata).toEqual(loraMetadata);
    expect(header.tensors['w']?.data_offsets).toEqual([0, data.length]);
  });

  test('a missing file is WeightsNotFound', async () => {
    await expect(readSafetensorsHeader(join(dir, 'absent.safetensors'))).rejects.toMatchObject({ reason: 'WeightsNotFound' });
  });
});

describe('policy metadata', () => {
  test.each<[Record<string, string>, number, string]>([
    [{ 'rlkube.kind': 'tiny', 'rlkube.version': '0' }, 0, 'tiny'],
    [{ 'rlkube.kind': 'full', 'rlkube.version': '7' }, 7, 'full'],
    [loraMetadata, 3, 'lora'],
    [{ 'rlkube.kind': 'lora', 'rlkube.version': '2' }, 3, 'InvalidWeights'], // a file of another version
    [{ 'rlkube.kind': 'pt' }, 1, 'InvalidWeights'],
    [{}, 1, 'InvalidWeights'],
  ])('%j as v%d → %s', (metadata, version, expected) => {
    let got: string;
    try {
      got = policyKindOf(metadata, version);
    } catch (err) {
      got = (err as HttpError).reason;
    }
    expect(got).toBe(expected);
  });

  test.each<[string, Record<string, string>]>([
    ['full weights', { 'rlkube.kind': 'full', 'rlkube.version': '3' }],
    ['no adapter config', { 'rlkube.kind': 'lora', 'rlkube.version': '3' }],
    ['an adapter config that is not JSON', { ...loraMetadata, 'rlkube.adapter_config': '{r: 8' }],
    ['an adapter config that is a list', { ...loraMetadata, 'rlkube.adapter_config': '[]' }],
  ])('no PEFT config from %s', (_, metadata) => {
    expect(reasonOf(() => adapterConfigOf(metadata, 3))).toBe('InvalidWeights');
  });

  test('adapters are named by version', () => {
    expect(adapterName(12)).toBe('policy-v12');
  });
});

describe('PEFT directory', () => {
  test('holds the same bytes as adapter_model.safetensors and the trainer\'s adapter_config.json', async () => {
    const file = join(dir, 'policy-v3.safetensors');
    writeFileSync(file, loraFile());
    const peft = join(dir, 'policy-v3');
    await writePeftDir(file, peft, loraMetadata, 3);
    expect(readdirSync(peft).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    expect(Buffer.compare(readFileSync(join(peft, 'adapter_model.safetensors')), readFileSync(file))).toBe(0);
    expect(readFileSync(join(peft, 'adapter_config.json'), 'utf8')).toBe(adapterConfig);
    expect(readdirSync(dir).sort()).toEqual(['policy-v3', 'policy-v3.safetensors']); // no partial directory left
  });

  test('replaces what an earlier attempt left under the same name', async () => {
    const file = join(dir, 'policy-v3.safetensors');
    writeFileSync(file, loraFile());
    const peft = join(dir, 'policy-v3');
    await writePeftDir(file, peft, { ...loraMetadata, 'rlkube.adapter_config': '{"r": 4}' }, 3);
    writeFileSync(join(peft, 'stray.bin'), 'x');
    await writePeftDir(file, peft, loraMetadata, 3);
    expect(readdirSync(peft).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    expect(readFileSync(join(peft, 'adapter_config.json'), 'utf8')).toBe(adapterConfig);
  });

  test('is never written for a full-weights file', async () => {
    const file = join(dir, 'policy-v3.safetensors');
    writeFileSync(file, safetensors({ __metadata__: { 'rlkube.kind': 'full', 'rlkube.version': '3' }, w: tensor }));
    await expect(writePeftDir(file, join(dir, 'policy-v3'), { 'rlkube.kind': 'full', 'rlkube.version': '3' }, 3)).rejects.toMatchObject({ reason: 'InvalidWeights' });
    expect(readdirSync(dir)).toEqual(['policy-v3.safetensors']);
  });
});
