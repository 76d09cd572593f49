// What a run leaves behind: summary.json and the reward curve as a picture (SVG).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { GroupCounts } from '../api/index.js';

export interface RunSummary {
  job: string;
  mode: string;
  steps: number;
  maxSteps: number;
  /** curve: mean reward of each step and the seconds since the run started when it was reported. */
  reward: { initial: number | null; final: number | null; curve: Array<{ step: number; reward: number; t: number }> };
  /** accepted + stale + rejected + leftOver = published; offPolicy: of the accepted, those made by an older policy version
   * (importance-weighted); deadLetteredTasks: poison tasks given up (no group). */
  groups: GroupCounts;
  rejectedByReason: Record<string, number>;
  workers: Record<string, { accepted: number; rejected: number }>;
  restarts: Record<string, number>;
  state: string;
  wall_s: number;
}

export function writeReport(outDir: string, summary: RunSummary): { summaryPath: string; curvePath: string } {
  const summaryPath = join(outDir, 'summary.json');
  const curvePath = join(outDir, 'reward.svg');
  writeFileSync(summaryPath, `${JSON.stringify(summary, null, 2)}\n`);
  writeFileSync(curvePath, rewardCurveSvg(summary));
  return { summaryPath, curvePath };
}

/** Mean reward per step, with a moving average; axes in steps and [0, 1]. */
export function rewardCurveSvg(summary: Pick<RunSummary, 'job' | 'mode' | 'maxSteps' | 'reward'>): string {
  const width = 720;
  const height = 420;
  const m = { left: 60, right: 20, top: 40, bottom: 50 };
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const points = summary.reward.curve;
  const maxStep = Math.max(1, summary.maxSteps, ...points.map((p) => p.step));
  const x = (step: number) => m.left + (step / maxStep) * plotW;
  const y = (reward: number) => m.top + (1 - Math.max(0, Math.min(1, reward))) * plotH;
  const path = (ps: Array<{ step: number; reward: number }>) => ps.map((p, i) => `${i ? 'L' : 'M'}${x(p.step).toFixed(1)},${y(p.reward).toFixed(1)}`).join(' ');
  const window = 10;
  const smooth = points.map((p, i) => {
    const slice = points.slice(Math.max(0, i - window + 1), i + 1);
    return { step: p.step, reward: slice.reduce((a, q) => a + q.reward, 0) / slice.length };
  });
  const grid = [0, 0.2, 0.4, 0.6, 0.8, 1]
    .map((r) => `<line x1="${m.left}" x2="${width - m.right}" y1="${y(r)}" y2="${y(r)}" stroke="#ddd"/><text x="${m.left - 8}" y="${y(r) + 4}" text-anchor="end" font-size="12">${r.toFixed(1)}</text>`)
    .join('');
  const ticks = Array.from({ length: 6 }, (_, i) => Math.round((maxStep * i) / 5))
    .map((s) => `<text x="${x(s)}" y="${height - m.bottom + 20}" text-anchor="middle" font-size="12">${s}</text>`)
    .join('');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="${width / 2}" y="24" text-anchor="middle" font-size="16">${escapeXml(summary.job)} — mean reward per step (${escapeXml(summary.mode)})</text>
${grid}${ticks}
<line x1="${m.left}" x2="${m.left}" y1="${m.top}" y2="${height - m.bottom}" stroke="#333"/>
<line x1="${m.left}" x2="${width - m.right}" y1="${height - m.bottom}" y2="${height - m.bottom}" stroke="#333"/>
<text x="${width / 2}" y="${height - 10}" text-anchor="middle" font-size="13">step</text>
<text x="16" y="${height / 2}" text-anchor="middle" font-size="13" transform="rotate(-90 16 ${height / 2})">reward</text>
<path d="${path(points)}" fill="none" stroke="#9ecae1" stroke-width="1.5"/>
<path d="${path(smooth)}" fill="none" stroke="#08519c" stroke-width="2.5"/>
</svg>
`;
}

const escapeXml = (s: string) => s.replace(/[<>&"]/g, (c) => `&#${c.charCodeAt(0)};`);
