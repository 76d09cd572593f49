// The pinned helm binary (toolchain/kube/install.sh) run on this repository's operator chart.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { toolchainBinDir } from '../../local/toolchain.js';

export const CHART = 'charts/rlkube-operator';
const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface HelmResult { code: number | null; stdout: string; stderr: string }

/** Runs helm in the repository root; never throws on a non-zero exit (tests assert on refusals). */
export function helm(args: string[]): HelmResult {
  const r = spawnSync(join(toolchainBinDir(), 'helm'), args, { cwd: REPO_ROOT, encoding: 'utf8' });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

export interface RenderedObject { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; [field: string]: unknown }

/** `helm template` of the chart with these extra arguments: the objects it renders (throws with helm's stderr). */
export function renderChart(args: string[]): RenderedObject[] {
  const r = helm(['template', 'rlkube', CHART, '--namespace', 'rlkube-system', ...args]);
  if (r.code !== 0) throw new Error(`helm template ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return parseAllDocuments(r.stdout).map((d) => d.toJS() as RenderedObject | null).filter((o): o is RenderedObject => o !== null);
}
