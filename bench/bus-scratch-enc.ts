import * as neu from '../bus/trajectory.js';
import * as old from './bus-scratch-old.js';
import { syntheticGroup, tokensForBytes } from '../test/harness/groups.js';
const group = syntheticGroup({ job: 'bench/j', taskSeq: 1, policyVersion: 0, groupSize: 8, tokensPerCompletion: tokensForBytes(16384, 8) });
const json = JSON.stringify({ a: 'x'.repeat(600) });
const enc = new TextEncoder(); const scratch = new Uint8Array(4096);
const variants: Record<string, () => number> = {
  old: () => old.encodeGroup(group).byteLength,
  neu: () => neu.encodeGroup(group).byteLength,
  stringify: () => JSON.stringify({ ...group, promptTokenIds: 0, completions: group.completions.map((c) => ({ tokens: c.tokenIds.length, reward: c.reward, text: c.text, finishReason: c.finishReason })) }).length,
  te: () => enc.encode(json).byteLength,
  teInto: () => enc.encodeInto(json, scratch.subarray(8, 4000)).written,
  bufLen: () => Buffer.byteLength(json),
  bufWrite: () => (Buffer.from(scratch.buffer) as Buffer).write(json, 8, 'utf8'),
};
for (let r = 0; r < 3; r++) {
  const res: string[] = [];
  for (const [k, f] of Object.entries(variants)) {
    let s = 0; for (let i = 0; i < 2000; i++) s += f();
    const t = performance.now(); for (let i = 0; i < 20000; i++) s += f(); res.push(`${k} ${((performance.now() - t) / 20).toFixed(2)}`);
  }
  console.log(res.join(' | '));
}
