// The live progress line of `rlkube run`: step/maxSteps, policy version, reward, groups/s, accepted (off-policy), stale, rejected.
import type { LearnerProgress } from '../bus/index.js';

export class ProgressLine {
  private readonly started = Date.now();
  private readonly tty = process.stderr.isTTY;
  private lastPrintedStep = -1;

  constructor(private readonly mode: string) {}

  update(p: LearnerProgress): void {
    const seconds = Math.max(0.001, (Date.now() - this.started) / 1000);
    const line =
      `[${this.mode}] step ${p.step}/${p.maxSteps}  policy v${p.policyVersion}  reward ${p.reward === null ? '—' : p.reward.toFixed(3)}` +
      `  groups/s ${(p.groups.accepted / seconds).toFixed(1)}  accepted ${p.groups.accepted} (off-policy ${p.groups.offPolicy ?? 0})  stale ${p.groups.stale}  rejected ${p.groups.rejected}` +
      (p.state === 'Running' ? '' : `  ${p.state}`);
    if (this.tty) process.stderr.write(`\r\x1b[2K${line}`);
    else if (p.step !== this.lastPrintedStep && (p.step % 10 === 0 || p.state !== 'Running')) process.stderr.write(`${line}\n`);
    this.lastPrintedStep = p.step;
  }

  done(): void {
    if (this.tty) process.stderr.write('\n');
  }
}
