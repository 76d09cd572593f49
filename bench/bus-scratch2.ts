import { readFileSync, writeFileSync } from 'node:fs';
import { execSync } from 'node:child_process';
import { connectBus } from '../bus/index.js';
import { startNatsServer } from '../local/nats-server.js';
import { rawRate, busRate } from './bus.js';
import { inlinePublishers, threadPublishers } from './bus-publishers.js';
const ticks = (path: string) => { const f = readFileSync(path, 'utf8').split(') ')[1]!.split(' '); return (Number(f[11]) + Number(f[12])) * 10; }; // ms
const server = await startNatsServer({ maxPayload: 8 << 20 });
const spid = Number(execSync(`pgrep -f 'rlkube-${server.port}'`).toString().trim().split('\n')[0]);
const nc = await connectBus({ servers: server.url, name: 'bench' });
const pubs = await threadPublishers(server.url, 16);
const pstat = `/proc/${process.pid}/task/${process.pid}/stat`;
for (const [label, bytes, count] of ([['16k', 16384, 6016], ['256k', 262144, 1216]] as const).filter(([l]) => !process.env.S || process.env.S === l)) {
  const rows: Record<string, Array<{ rate: number; main: number; proc: number; srv: number; pub: number }>> = { raw: [], bus: [] };
  await rawRate(nc, pubs, bytes, 64 * Math.ceil(count / 256)); await busRate(nc, pubs, bytes, 64 * Math.ceil(count / 256));
  for (let r = 0; r < Number(process.env.R ?? 4); r++) for (const v of (process.env.V ?? 'raw,bus').split(',') as Array<'raw' | 'bus'>) {
    let m0 = 0, s0 = 0, p0 = process.cpuUsage(), m1 = 0, s1 = 0, pc = process.cpuUsage(), q0 = 0, q1 = 0;
    const meter = { start() { if (process.env.PERFCTL) { writeFileSync(process.env.PERFCTL, 'enable\n'); } q0 = ticks(pstat); m0 = ticks(`/proc/${process.pid}/task/${process.pid}/stat`); p0 = process.cpuUsage(); s0 = ticks(`/proc/${spid}/stat`); }, stop() { if (process.env.PERFCTL) { writeFileSync(process.env.PERFCTL, 'disable\n'); } q1 = ticks(pstat); pc = process.cpuUsage(p0); m1 = ticks(`/proc/${process.pid}/task/${process.pid}/stat`); s1 = ticks(`/proc/${spid}/stat`); } };
    const t0 = performance.now(); const rate = await (v === 'raw' ? rawRate : busRate)(nc, pubs, bytes, count, meter); 
    rows[v]!.push({ rate, main: (m1 - m0) * 1000 / count, proc: (pc.user + pc.system) / count, srv: (s1 - s0) * 1000 / count, pub: (q1 - q0) * 1000 / count });
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const best = (v: string) => Math.max(...rows[v]!.map((x) => x.rate));
  for (const v of Object.keys(rows).filter((k) => rows[k]!.length)) { const xs = rows[v]!; console.log(label, v, 'rates', xs.map((x) => x.rate.toFixed(0)).join(' '), `| med µs/msg main ${med(xs.map((x) => x.main)).toFixed(0)} pub ${med(xs.map((x) => x.pub)).toFixed(0)} proc ${med(xs.map((x) => x.proc)).toFixed(0)} server ${med(xs.map((x) => x.srv)).toFixed(0)}`); }
  if (rows.raw!.length && rows.bus!.length) console.log(label, 'ratio best', (best('bus') / best('raw')).toFixed(3), 'pairwise', rows.bus!.map((b, i) => (b.rate / rows.raw![i]!.rate).toFixed(2)).join(' '));
}
const dec = ((globalThis as any).__dec ?? []) as number[][]; const q = (i: number) => { const xs = dec.map((d) => d[i]!).sort((a, b) => a - b); return [0.1, 0.5, 0.9].map((p) => (xs[Math.floor(p * xs.length)]! * 1000).toFixed(1)).join('/'); }; if (dec.length) console.log('msg.data µs', q(0), 'decode µs p10/50/90', q(1), 'buffer bytes', q(3));
await pubs.close(); await nc.close(); await server.stop(); process.exit(0);
