import { TypeCompiler } from '@sinclair/typebox/compiler';
import * as neu from '../bus/trajectory.js';
import * as old from './bus-scratch-old.js';
import { syntheticGroup, tokensForBytes } from '../test/harness/groups.js';
const group = syntheticGroup({ job: 'bench/j', taskSeq: 1, policyVersion: 0, groupSize: 8, tokensPerCompletion: tokensForBytes(16384, 8) });
const enc = neu.encodeGroup(group);
const hl = new DataView(enc.buffer).getUint32(4, true);
const hbytes = enc.subarray(8, 8 + hl);
const td = new TextDecoder('utf-8', { fatal: true });
const str = td.decode(hbytes);
const obj = JSON.parse(str);
// re-create the header schema check via the module? not exported: time full decode and parts
const limits = { job: 'bench/j', vocabSize: 64, maxBytes: 8 << 20 };
const variants: Record<string, () => number> = {
  decode: () => neu.decodeGroup(enc, limits).taskSeq,
  oldDecode: () => old.decodeGroup(enc, limits).taskSeq,
  check: () => (neu as any).__check(obj) ? 1 : 0,
  tdecode: () => td.decode(hbytes).length,
  parse: () => JSON.parse(str).v,
  encode: () => neu.encodeGroup(group).byteLength,
  stringify: () => JSON.stringify(obj).length,
};
const best: Record<string, number> = {};
for (let r = 0; r < 10; r++) for (const [k, f] of Object.entries(variants)) { let s = 0; for (let i = 0; i < 1000; i++) s += f(); const t = process.cpuUsage(); for (let i = 0; i < 10000; i++) s += f(); const u = process.cpuUsage(t); best[k] = Math.min(best[k] ?? 1e9, (u.user + u.system) / 10000); }
console.log(Object.entries(best).map(([k, x]) => `${k} ${x.toFixed(2)}µs`).join(' | '), str.length);
