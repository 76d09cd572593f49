// Builds rlkube's container images from images/*/Dockerfile with one tag scheme, <registry>/<name>:<version>
// (default ghcr.io/rlkube/<name>:<package.json version>, the names the chart, the operator's defaults and infra/
// use), with buildah, or docker where no buildah is installed.
//
//   npm run images                              build all (operator, agent, trainer, nats, vllm)
//   npm run images -- --push REGISTRY           build as REGISTRY/<name>:<version> and push
//   npm run images -- --only operator,agent --build-arg operator:BUILD_BASE=node:20-bookworm-slim
//
// Package installs inside a build (npm ci, pip, apt) trust the host's CA bundle through a build secret (`ca`),
// mounted only for those steps: it is never part of an image.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { toolchainHome } from '../local/toolchain.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const IMAGE_NAMES = ['operator', 'agent', 'trainer', 'nats', 'vllm'] as const;
export type ImageName = (typeof IMAGE_NAMES)[number];
export const DEFAULT_REGISTRY = 'ghcr.io/rlkube';
export const IMAGE_VERSION = (JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
/** Where the host keeps its CA bundle (Debian); mounted as the `ca` build secret when present. */
export const HOST_CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';

/** The reference an image is built and pushed as. */
export const imageRef = (name: ImageName, registry = DEFAULT_REGISTRY, version = IMAGE_VERSION) => `${registry}/${name}:${version}`;

export class ImageBuildError extends Error {
  constructor(readonly reason: 'NoBuilder' | 'BuildFailed' | 'PushFailed' | 'MissingInput' | 'BadArgument', message: string) {
    super(message);
    this.name = 'ImageBuildError';
  }
}


interface Recipe {
  dockerfile: string;
  /** Build context; a function when the context is prepared (the nats-server binary copied in). */
  context: string | ((dir: string) => void);
}

const RECIPES: Record<ImageName, Recipe> = {
  operator: { dockerfile: 'images/operator/Dockerfile', context: '.' },
  agent: { dockerfile: 'images/agent/Dockerfile', context: '.' },
  trainer: { dockerfile: 'images/trainer/Dockerfile', context: '.' },
  nats: {
    dockerfile: 'images/nats/Dockerfile',
    // The pinned nats-server that `npm run setup` built (toolchain/install.sh), so image and tests run one binary.
    context: (dir) => {
      const bin = path.join(toolchainHome(), 'bin', 'nats-server');
      if (!existsSync(bin)) throw new ImageBuildError('MissingInput', `${bin} is missing: run \`npm run setup\` first`);
      copyFileSync(bin, path.join(dir, 'nats-server'));
    },
  },
  // vLLM's published image plus python/rlkube_vllm: gigabytes, for GPU nodes (the tests do not build it)
  vllm: { dockerfile: 'images/vllm/Dockerfile', context: '.' },
};

export interface BuildOptions {
  registry?: string;
  version?: string;
  only?: readonly ImageName[];
  /** Build arguments per image (e.g. a base image). */
  buildArgs?: Partial<Record<ImageName, Record<string, string>>>;
  /** Extra `--secret id=…,src=…` per image (besides `ca`). */
  secrets?: Partial<Record<ImageName, Record<string, string>>>;
  /** Push after building. */
  push?: boolean;
  /** Where build output goes (default: inherited). */
  stdio?: 'inherit' | 'pipe';
}

export function builder(): 'buildah' | 'docker' {
  for (const b of ['buildah', 'docker'] as const) {
    if (spawnSync('sh', ['-c', `command -v ${b}`]).status === 0) return b;
  }
  throw new ImageBuildError('NoBuilder', 'neither buildah nor docker is installed (`npm run setup` installs buildah)');
}

/** Builds (and pushes) the images; returns the references built. */
export function buildImages(opts: BuildOptions = {}): string[] {
  const tool = builder();
  const refs: string[] = [];
  for (const name of opts.only ?? IMAGE_NAMES) {
    const recipe = RECIPES[name];
    const ref = imageRef(name, opts.registry, opts.version);
    let context = typeof recipe.context === 'string' ? path.join(REPO_ROOT, recipe.context) : '';
    let tmp: string | undefined;
    try {
      if (typeof recipe.context === 'function') {
        tmp = mkdtempSync(path.join(os.tmpdir(), `rlkube-image-${name}-`));
        recipe.context(tmp);
        context = tmp;
      }
      const secrets = { ...(existsSync(HOST_CA_BUNDLE) ? { ca: HOST_CA_BUNDLE } : {}), ...(opts.secrets?.[name] ?? {}) };
      const args = [
        ...(tool === 'buildah' ? ['build', '--layers', '--network', 'host'] : ['build']),
        '-f', path.join(REPO_ROOT, recipe.dockerfile), '-t', ref,
        ...Object.entries(opts.buildArgs?.[name] ?? {}).flatMap(([k, v]) => ['--build-arg', `${k}=${v}`]),
        ...Object.entries(secrets).flatMap(([id, src]) => ['--secret', `id=${id},src=${src}`]),
        context,
      ];
      const r = spawnSync(tool, args, { stdio: opts.stdio ?? 'inherit', encoding: 'utf8', env: { ...process.env, DOCKER_BUILDKIT: '1' } });
      if (r.status !== 0) {
        const out = opts.stdio === 'pipe' ? `\n${(r.stdout ?? '').slice(-4000)}${(r.stderr ?? '').slice(-4000)}` : '';
        throw new ImageBuildError('BuildFailed', `${tool} build of ${ref} (${recipe.dockerfile}) failed with exit ${r.status}${out}`);
      }
      if (opts.push) {
        const p = spawnSync(tool, ['push', ref], { stdio: opts.stdio ?? 'inherit', encoding: 'utf8' });
        if (p.status !== 0) throw new ImageBuildError('PushFailed', `${tool} push ${ref} failed with exit ${p.status}${p.stderr ? `: ${p.stderr.slice(-2000)}` : ''}`);
      }
      refs.push(ref);
    } finally {
      if (tmp) rmSync(tmp, { recursive: true, force: true });
    }
  }
  return refs;
}

/** Writes a built image to a docker-archive tar (what containerd's `ctr images import` reads). */
export function saveImage(ref: string, file: string): void {
  const tool = builder();
  rmSync(file, { force: true });
  const r = tool === 'buildah'
    ? spawnSync('buildah', ['push', '-q', ref, `docker-archive:${file}:${ref}`], { encoding: 'utf8' })
    : spawnSync('docker', ['save', '-o', file, ref], { encoding: 'utf8' });
  if (r.status !== 0) throw new ImageBuildError('BuildFailed', `saving ${ref} to ${file} failed: ${r.stderr}`);
}

function parseArgs(argv: string[]): BuildOptions {
  const opts: BuildOptions = { buildArgs: {} };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new ImageBuildError('BadArgument', `${a} needs a value`);
      return v;
    };
    if (a === '--push') {
      opts.registry = value();
      opts.push = true;
    } else if (a === '--registry') opts.registry = value();
    else if (a === '--version') opts.version = value();
    else if (a === '--only') {
      const names = value().split(',');
      for (const n of names) if (!(IMAGE_NAMES as readonly string[]).includes(n)) throw new ImageBuildError('BadArgument', `--only: unknown image ${n} (one of ${IMAGE_NAMES.join(', ')})`);
      opts.only = names as ImageName[];
    } else if (a === '--build-arg') {
      const m = /^([a-z]+):([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(value());
      if (!m || !(IMAGE_NAMES as readonly string[]).includes(m[1]!)) throw new ImageBuildError('BadArgument', '--build-arg takes IMAGE:NAME=VALUE');
      const name = m[1] as ImageName;
      opts.buildArgs![name] = { ...(opts.buildArgs![name] ?? {}), [m[2]!]: m[3]! };
    } else throw new ImageBuildError('BadArgument', `unknown argument ${a}`);
  }
  return opts;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const refs = buildImages(parseArgs(process.argv.slice(2)));
    console.log(JSON.stringify({ built: refs }));
  } catch (err) {
    const reason = err instanceof ImageBuildError ? err.reason : 'BuildFailed';
    console.error(`images: ${reason}: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
}
