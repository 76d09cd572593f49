// Micro-benchmark of the trajectory group codec (encodeGroup / decodeGroup) in a hot loop: `npm run bench --
// bus-codec`. Times are this thread's CPU time per call (best of 5), so other load on the machine matters less.
// Decoding an unaligned message either copies its body out or, taken over, moves it within the message; the
// taken-over figure excludes the cost of refilling the message between calls.
import { decodeGroup, encodeGroup } from '../bus/index.js';
import { syntheticGroup, tokensForBytes } from '../test/harness/groups.js';

const GROUP_SIZE = 8;

function cpuMicros(iterations: number, body: () => void): number {
  for (let i = 0; i < iterations; i++) body(); // warm-up (JIT, heap sizes)
  let best = Infinity;
  for (let round = 0; round < 5; round++) {
    const started = process.cpuUsage();
    for (let i = 0; i < iterations; i++) body();
    const used = process.cpuUsage(started);
    best = Math.min(best, (used.user + used.system) / iterations);
  }
  return best;
}

export async function run(): Promise<Record<string, number>> {
  const figures: Record<string, number> = {};
  for (const [label, bytes, iterations] of [['16k', 16 * 1024, 4000], ['256k', 256 * 1024, 400]] as const) {
    const group = syntheticGroup({ job: 'bench/j', taskSeq: 1, policyVersion: 0, groupSize: GROUP_SIZE, tokensPerCompletion: tokensForBytes(bytes, GROUP_SIZE) });
    const encoded = encodeGroup(group);
    const limits = { job: 'bench/j', vocabSize: 64, maxBytes: 8 << 20 };
    const carrier = new Uint8Array(encoded.byteLength + 1);
    const unaligned = carrier.subarray(1);
    unaligned.set(encoded);
    let sink = 0;
    const encodeUs = cpuMicros(iterations, () => (sink += encodeGroup(group).byteLength));
    const spare = new ArrayBuffer(encoded.byteLength); // as WorkerBus reuses the buffer of a published group
    const encodeReusedUs = cpuMicros(iterations, () => (sink += encodeGroup(group, spare).byteLength));
    const decodeUs = cpuMicros(iterations, () => (sink += decodeGroup(encoded, limits).taskSeq));
    const copiedUs = cpuMicros(iterations, () => (sink += decodeGroup(unaligned, limits).taskSeq));
    const refillUs = cpuMicros(iterations, () => (sink += (unaligned.set(encoded), unaligned[0]!)));
    const takenOverUs = cpuMicros(iterations, () => {
      unaligned.set(encoded);
      sink += decodeGroup(unaligned, limits, { takeOver: true }).taskSeq;
    }) - refillUs;
    if (sink < 0) console.log(sink);
    console.log(
      `${label} (${encoded.byteLength} B): encode ${encodeUs.toFixed(1)} µs (into a reused buffer ${encodeReusedUs.toFixed(1)} µs), ` +
        `decode ${decodeUs.toFixed(1)} µs, ` +
        `unaligned: copied ${copiedUs.toFixed(1)} µs, taken over ${takenOverUs.toFixed(1)} µs`,
    );
    Object.assign(figures, {
      [`encode_${label}_us`]: Number(encodeUs.toFixed(1)),
      [`encode_reused_${label}_us`]: Number(encodeReusedUs.toFixed(1)),
      [`decode_${label}_us`]: Number(decodeUs.toFixed(1)),
      [`decode_unaligned_copied_${label}_us`]: Number(copiedUs.toFixed(1)),
      [`decode_unaligned_taken_over_${label}_us`]: Number(takenOverUs.toFixed(1)),
    });
  }
  return figures;
}
