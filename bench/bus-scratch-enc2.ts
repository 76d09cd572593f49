import * as neu from '../bus/trajectory.js';
import * as old from './bus-scratch-old.js';
import { syntheticGroup, tokensForBytes } from '../test/harness/groups.js';
const group = syntheticGroup({ job: 'bench/j', taskSeq: 1, policyVersion: 0, groupSize: 8, tokensPerCompletion: tokensForBytes(16384, 8) });
const te = new TextEncoder();
const json = JSON.stringify({ a: 'x'.repeat(880) });
const n = 16672;
const variants: Record<string, () => number> = {
  old: () => old.encodeGroup(group).byteLength,
  neu: () => neu.encodeGroup(group).byteLength,
  allocSlow: () => new Uint8Array(Buffer.allocUnsafeSlow(n).buffer, 0, n).byteLength,
  u8: () => new Uint8Array(n).byteLength,
  teEncode: () => te.encode(json).byteLength,
  teInto: () => { const o = new Uint8Array(1000); return te.encodeInto(json, o.subarray(8, 900)).written; },
};
const best: Record<string, number> = {};
for (let r = 0; r < 10; r++) for (const [k, f] of Object.entries(variants)) { let s = 0; for (let i = 0; i < 1000; i++) s += f(); const t = process.cpuUsage(); for (let i = 0; i < 10000; i++) s += f(); const u = process.cpuUsage(t); best[k] = Math.min(best[k] ?? 1e9, (u.user + u.system) / 10000); }
console.log(Object.entries(best).map(([k, x]) => `${k} ${x.toFixed(2)}µs`).join(' | '));
