// Micro-benchmark of the trajectory group codec (encodeGroup / decodeGroup) in a hot loop, aligned and
// unaligned input: `npm run bench -- bus-codec`.
import { decodeGroup, encodeGroup } from '../bus/index.js';
import { syntheticGroup, tokensForBytes } from '../test/harness/groups.js';

const GROUP_SIZE = 8;

function time(iterations: number, body: () => void): number {
  for (let i = 0; i < Math.min(200, iterations); i++) body(); // warm-up
  let best = Infinity;
  for (let round = 0; round < 5; round++) {
    const started = performance.now();
    for (let i = 0; i < iterations; i++) body();
    best = Math.min(best, (performance.now() - started) / iterations);
  }
  return best * 1000; // µs
}

export async function run(): Promise<Record<string, number>> {
  const figures: Record<string, number> = {};
  for (const [label, bytes, iterations] of [['16k', 16 * 1024, 4000], ['256k', 256 * 1024, 400]] as const) {
    const group = syntheticGroup({ job: 'bench/j', taskSeq: 1, policyVersion: 0, groupSize: GROUP_SIZE, tokensPerCompletion: tokensForBytes(bytes, GROUP_SIZE) });
    const encoded = encodeGroup(group);
    const limits = { job: 'bench/j', vocabSize: 64, maxBytes: 8 << 20 };
    const shifted = new Uint8Array(encoded.byteLength + 1);
    shifted.set(encoded, 1);
    const unaligned = shifted.subarray(1);
    let sink = 0;
    const encodeUs = time(iterations, () => (sink += encodeGroup(group).byteLength));
    const decodeUs = time(iterations, () => (sink += decodeGroup(encoded, limits).taskSeq));
    const decodeUnalignedUs = time(iterations, () => (sink += decodeGroup(unaligned, limits).taskSeq));
    if (sink < 0) console.log(sink);
    console.log(`${label} (${encoded.byteLength} B): encode ${encodeUs.toFixed(1)} µs, decode ${decodeUs.toFixed(1)} µs, decode unaligned ${decodeUnalignedUs.toFixed(1)} µs`);
    Object.assign(figures, {
      [`encode_${label}_us`]: Number(encodeUs.toFixed(1)),
      [`decode_${label}_us`]: Number(decodeUs.toFixed(1)),
      [`decode_unaligned_${label}_us`]: Number(decodeUnalignedUs.toFixed(1)),
    });
  }
  return figures;
}
