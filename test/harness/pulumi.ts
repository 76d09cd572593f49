// Test harness: the pinned Pulumi CLI (toolchain/pulumi, built by `npm run setup`) on a stack of infra/ with a
// local file backend in a temp dir (never Pulumi Cloud), plugins only from $RLKUBE_HOME/pulumi (nothing is
// downloaded), and the stack's configuration in a temp file, so that nothing is written into the repository.
import { spawn } from 'node:child_process';
import { access, mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { toolchainBinDir } from '../../local/toolchain.js';

export const INFRA_DIR = fileURLToPath(new URL('../../infra/', import.meta.url));

export interface PulumiResult {
  code: number;
  /** stdout and stderr together, in order. */
  output: string;
}

export interface PulumiStack {
  readonly name: string;
  /** `pulumi <args> --stack <name>` in infra/, with the stack's config file where the command takes one. */
  run(args: string[], options?: { configFile?: boolean }): Promise<PulumiResult>;
  /** `pulumi config set --path rlkube:<key> <value>` (--secret with `secret`); throws on failure. */
  setConfig(key: string, value: string, options?: { secret?: boolean }): Promise<void>;
  /** The stack's resources in its state (`pulumi stack export`), by type and name. */
  resources(): Promise<Array<{ type: string; urn: string }>>;
  /** Removes the stack (state and config file) and the temp dir. Idempotent. */
  remove(): Promise<void>;
}

/** Where toolchain/pulumi/install.sh installs the Kubernetes provider plugin. */
export function pulumiHome(): string {
  return path.join(path.dirname(toolchainBinDir()), 'pulumi');
}

/** Creates a stack of infra/ in a fresh file backend; `kubeconfig` is the cluster the provider deploys to. */
export async function createPulumiStack(opts: { name: string; kubeconfig: string }): Promise<PulumiStack> {
  const cli = path.join(toolchainBinDir(), 'pulumi');
  await access(cli, fsConstants.X_OK).catch(() => {
    throw new Error(`pulumi harness: missing ${cli}; run \`npm run setup\` (or \`bash toolchain/pulumi/install.sh\`) to build it`);
  });
  const dir = await mkdtemp(path.join(tmpdir(), `rlkube-pulumi-${opts.name}-`));
  const configFile = path.join(dir, `Pulumi.${opts.name}.yaml`);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PATH: `${toolchainBinDir()}:${process.env.PATH ?? ''}`,
    PULUMI_HOME: pulumiHome(),
    PULUMI_BACKEND_URL: `file://${path.join(dir, 'state')}`,
    PULUMI_CONFIG_PASSPHRASE: 'rlkube-e2e',
    PULUMI_SKIP_UPDATE_CHECK: 'true',
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: 'true',
    KUBECONFIG: opts.kubeconfig,
  };
  const exec = (args: string[]) =>
    new Promise<PulumiResult>((resolve, reject) => {
      const child = spawn(cli, withFlags(args, ['--non-interactive', '--color', 'never']), { cwd: INFRA_DIR, env, stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stdout.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr.on('data', (d: Buffer) => (output += d.toString()));
      child.once('error', reject);
      child.once('close', (code) => resolve({ code: code ?? -1, output }));
    });
  await mkdir(path.join(dir, 'state')); // the file backend's directory must exist
  const init = await exec(['stack', 'init', opts.name]);
  if (init.code !== 0) throw new Error(`pulumi stack init ${opts.name} failed (${init.code}):\n${init.output}`);
  // `stack init` writes the stack's config (its encryption salt) beside Pulumi.yaml; keep it out of the tree.
  await rename(path.join(INFRA_DIR, `Pulumi.${opts.name}.yaml`), configFile);

  const stack: PulumiStack = {
    name: opts.name,
    run: (args, { configFile: withConfig = true } = {}) =>
      exec(withFlags(args, ['--stack', opts.name, ...(withConfig ? ['--config-file', configFile] : [])])),
    async setConfig(key, value, { secret = false } = {}) {
      const r = await stack.run(['config', 'set', '--path', `rlkube:${key}`, ...(secret ? ['--secret'] : []), '--', value]);
      if (r.code !== 0) throw new Error(`pulumi config set rlkube:${key} failed (${r.code}):\n${r.output}`);
    },
    async resources() {
      const r = await stack.run(['stack', 'export'], { configFile: false });
      if (r.code !== 0) throw new Error(`pulumi stack export failed (${r.code}):\n${r.output}`);
      const state = JSON.parse(r.output) as { deployment?: { resources?: Array<{ type: string; urn: string }> } };
      return (state.deployment?.resources ?? []).map(({ type, urn }) => ({ type, urn }));
    },
    async remove() {
      await stack.run(['stack', 'rm', '--yes', '--force'], { configFile: false }).catch(() => undefined);
      await rm(path.join(INFRA_DIR, `Pulumi.${opts.name}.yaml`), { force: true });
      await rm(dir, { recursive: true, force: true });
    },
  };
  return stack;
}


/** Flags go before a `--` (after it, everything is a positional argument, e.g. a config value). */
function withFlags(args: string[], flags: string[]): string[] {
  const end = args.indexOf('--');
  return end < 0 ? [...args, ...flags] : [...args.slice(0, end), ...flags, ...args.slice(end)];
}
