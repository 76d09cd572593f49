import * as neu from '../bus/trajectory.js';
import * as old from './bus-scratch-old.js';
import { syntheticGroup, tokensForBytes } from '../test/harness/groups.js';
function time(iterations: number, body: () => void): number {
  for (let i = 0; i < Math.min(200, iterations); i++) body();
  const started = performance.now();
  for (let i = 0; i < iterations; i++) body();
  return ((performance.now() - started) / iterations) * 1000;
}
for (const [label, bytes, iterations] of [['16k', 16 * 1024, 2000], ['256k', 256 * 1024, 200]] as const) {
  const group = syntheticGroup({ job: 'bench/j', taskSeq: 1, policyVersion: 0, groupSize: 8, tokensPerCompletion: tokensForBytes(bytes, 8) });
  const encoded = neu.encodeGroup(group);
  if (Buffer.compare(encoded, old.encodeGroup(group)) !== 0) throw new Error('encodings differ');
  const limits = { job: 'bench/j', vocabSize: 64, maxBytes: 8 << 20 };
  const shifted = new Uint8Array(encoded.byteLength + 1); shifted.set(encoded, 1); const un = shifted.subarray(1);
  const best: Record<string, number> = {};
  let sink = 0;
  for (let r = 0; r < 7; r++) {
    for (const [name, m] of [['old', old], ['new', neu]] as const) {
      const e = time(iterations, () => (sink += m.encodeGroup(group).byteLength));
      const d = time(iterations, () => (sink += m.decodeGroup(encoded, limits).taskSeq));
      const u = time(iterations, () => (sink += m.decodeGroup(un, limits).taskSeq));
      for (const [k, v] of [['enc', e], ['dec', d], ['decU', u]] as const) best[`${name} ${k}`] = Math.min(best[`${name} ${k}`] ?? 1e9, v);
    }
  }
  console.log(label, Object.entries(best).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(' | '), sink > 0 ? '' : '!');
}
