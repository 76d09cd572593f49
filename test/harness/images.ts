// Container images for the test cluster's real node, made without pulling from any registry: Debian bookworm
// bases from debootstrap (the Debian release the published bases use), the host's own node binary for the Node
// images (Debian's nodejs is 18, rlkube needs 20), Debian's python3-torch for the trainer, the pause binary and
// nats-server from the toolchain; then images/*/Dockerfile built on those bases by images/build.ts, under the very
// names the chart and the operator default to. Bases and builds are cached (buildah's storage, layer cache);
// the OCI archives for containerd are written once per image ID under $RLKUBE_HOME/images.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, realpathSync, rmSync } from 'node:fs';
import path from 'node:path';
import { buildImages, imageRef, saveImage, type ImageName } from '../../images/build.js';
import { toolchainBinDir, toolchainHome } from '../../local/toolchain.js';
import { PAUSE_IMAGE } from './node.js';

export const TEST_BASES = {
  debian: 'localhost/rlkube-test/debian:bookworm',
  node: 'localhost/rlkube-test/node:20',
  python: 'localhost/rlkube-test/python:bookworm',
} as const;
const DEBIAN_MIRROR = 'http://deb.debian.org/debian';
const SUITE = 'bookworm';

function run(cmd: string, args: string[], what: string, input?: string): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`test images: ${what} failed (${cmd} ${args.slice(0, 4).join(' ')}…, exit ${r.status}): ${(r.stderr || r.stdout || String(r.error)).slice(-3000)}`);
  return r.stdout;
}

const imageExists = (ref: string) => spawnSync('buildah', ['inspect', '--type', 'image', ref], { stdio: 'ignore' }).status === 0;
const imageId = (ref: string) => run('buildah', ['inspect', '--type', 'image', '--format', '{{.FromImageID}}', ref], `inspecting ${ref}`).trim();

/** A container made from `from`, changed by `edit(mountpoint)`, committed as `ref` with the given config. */
function commit(ref: string, from: string, edit: (root: string) => void, config: string[] = []): void {
  const c = run('buildah', ['from', '--pull-never', from], `buildah from ${from}`).trim();
  try {
    const root = run('buildah', ['mount', c], `mounting ${c}`).trim();
    edit(root);
    if (config.length > 0) run('buildah', ['config', ...config, c], `configuring ${ref}`);
    run('buildah', ['commit', '-q', c, ref], `committing ${ref}`);
  } finally {
    spawnSync('buildah', ['rm', c], { stdio: 'ignore' });
  }
}

/** A debootstrap'd bookworm (minbase plus `include`) as image `ref`; the download is done once per package set. */
function debianImage(ref: string, include: string[]): void {
  if (imageExists(ref)) return;
  const key = createHash('sha256').update(`${SUITE} ${include.join(',')}`).digest('hex').slice(0, 12);
  const rootfs = path.join(toolchainHome(), 'images', `rootfs-${key}`);
  const tar = `${rootfs}.tar`;
  if (!existsSync(tar)) {
    rmSync(rootfs, { recursive: true, force: true });
    mkdirSync(path.dirname(rootfs), { recursive: true });
    run('debootstrap', ['--variant=minbase', ...(include.length ? [`--include=${include.join(',')}`] : []), SUITE, rootfs, DEBIAN_MIRROR], `debootstrap ${SUITE}`);
    // apt's downloads and lists are not part of an image
    rmSync(path.join(rootfs, 'var/cache/apt/archives'), { recursive: true, force: true });
    rmSync(path.join(rootfs, 'var/lib/apt/lists'), { recursive: true, force: true });
    mkdirSync(path.join(rootfs, 'var/cache/apt/archives/partial'), { recursive: true });
    run('tar', ['-C', rootfs, '-cf', `${tar}.tmp`, '.'], `packing ${rootfs}`);
    run('mv', [`${tar}.tmp`, tar], `moving ${tar}`);
    rmSync(rootfs, { recursive: true, force: true });
  }
  const c = run('buildah', ['from', 'scratch'], 'buildah from scratch').trim();
  try {
    run('buildah', ['add', c, tar, '/'], `adding ${tar}`);
    run('buildah', ['config', '--env', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', '--cmd', '["/bin/bash"]', c], `configuring ${ref}`);
    run('buildah', ['commit', '-q', c, ref], `committing ${ref}`);
  } finally {
    spawnSync('buildah', ['rm', c], { stdio: 'ignore' });
  }
}

/** Debian + this machine's node 20 and npm, laid out as node:20-bookworm-slim (and distroless's /nodejs/bin/node). */
function nodeImage(): void {
  const node = realpathSync(process.execPath);
  const version = process.version;
  const ref = TEST_BASES.node;
  if (imageExists(ref) && run('buildah', ['inspect', '--type', 'image', '--format', '{{index .ImageAnnotations "rlkube.node"}}', ref], 'inspect').trim() === version) return;
  const npmDir = path.resolve(path.dirname(node), '..', 'lib', 'node_modules', 'npm');
  if (!existsSync(path.join(npmDir, 'bin', 'npm-cli.js'))) throw new Error(`test images: npm not found at ${npmDir}`);
  commit(ref, TEST_BASES.debian, (root) => {
    run('cp', [node, path.join(root, 'usr/local/bin/node')], 'copying node');
    mkdirSync(path.join(root, 'usr/local/lib/node_modules'), { recursive: true });
    run('cp', ['-a', npmDir, path.join(root, 'usr/local/lib/node_modules/npm')], 'copying npm');
    run('ln', ['-sf', '../lib/node_modules/npm/bin/npm-cli.js', path.join(root, 'usr/local/bin/npm')], 'linking npm');
    mkdirSync(path.join(root, 'nodejs/bin'), { recursive: true });
    run('ln', ['-sf', '/usr/local/bin/node', path.join(root, 'nodejs/bin/node')], 'linking /nodejs/bin/node');
  }, ['--annotation', `rlkube.node=${version}`]);
}

/**
 * Debian's python3-torch and numpy (torch 1.13: the CPU path of the tiny model runs on it), plus the pinned
 * safetensors from the wheels `npm run setup` downloads ($RLKUBE_HOME/wheels): PyPI's torch wheel needs its CUDA
 * libraries to import at all (gigabytes), too much for an image made on every CI machine.
 */
function pythonImage(): void {
  const debian = 'localhost/rlkube-test/python-debian:bookworm';
  debianImage(debian, ['python3', 'python3-torch', 'python3-numpy']);
  const wheels = path.join(toolchainHome(), 'wheels');
  const wheel = existsSync(wheels) ? readdirSync(wheels).find((f) => /^safetensors-.*-abi3-manylinux.*x86_64.*\.whl$/.test(f)) : undefined;
  if (!wheel) throw new Error(`test images: no safetensors wheel in ${wheels}; run \`npm run setup\` (it downloads python/requirements.txt)`);
  const ref = TEST_BASES.python;
  if (imageExists(ref) && run('buildah', ['inspect', '--type', 'image', '--format', '{{index .ImageAnnotations "rlkube.wheels"}}', ref], 'inspect').trim() === wheel) return;
  commit(ref, debian, (root) => {
    // a wheel is a zip laid out for site-packages (no scripts in this one)
    run('unzip', ['-q', '-o', path.join(wheels, wheel), '-d', path.join(root, 'usr/local/lib/python3.11/dist-packages')], `unpacking ${wheel}`);
  }, ['--annotation', `rlkube.wheels=${wheel}`]);
}

/** scratch + the toolchain's pause binary. */
function pauseImage(): void {
  if (imageExists(PAUSE_IMAGE)) return;
  const c = run('buildah', ['from', 'scratch'], 'buildah from scratch').trim();
  try {
    run('buildah', ['copy', c, path.join(toolchainBinDir(), 'pause'), '/pause'], 'copying pause');
    run('buildah', ['config', '--entrypoint', '["/pause"]', '--user', '65535:65535', c], 'configuring pause');
    run('buildah', ['commit', '-q', c, PAUSE_IMAGE], `committing ${PAUSE_IMAGE}`);
  } finally {
    spawnSync('buildah', ['rm', c], { stdio: 'ignore' });
  }
}

/** The bases (built once per machine). */
export function ensureTestBases(): void {
  debianImage(TEST_BASES.debian, []);
  nodeImage();
  pythonImage();
  pauseImage();
}

/** The images the test cluster runs: every one but vLLM's (a GPU engine on a base of gigabytes, pulled, never offline). */
export const CLUSTER_IMAGES = ['operator', 'agent', 'trainer', 'nats'] as const satisfies readonly ImageName[];

/** Build arguments that put the project's Dockerfiles on the offline bases. */
export const OFFLINE_BUILD_ARGS: Partial<Record<ImageName, Record<string, string>>> = {
  operator: { BUILD_BASE: TEST_BASES.node, RUNTIME_BASE: TEST_BASES.node },
  agent: { BASE: TEST_BASES.node },
  trainer: { BASE: TEST_BASES.python, PIP_INSTALL: 'none' },
  nats: { BASE: TEST_BASES.debian },
};

/** An OCI (docker-archive) file of `ref` for `ctr images import`, written once per image ID. */
export function imageArchive(ref: string): string {
  const dir = path.join(toolchainHome(), 'images', 'archives');
  mkdirSync(dir, { recursive: true });
  const id = imageId(ref);
  const slug = ref.replace(/[^A-Za-z0-9.-]+/g, '_');
  const file = path.join(dir, `${slug}-${id.slice(0, 16)}.tar`);
  if (!existsSync(file)) {
    for (const f of readdirSync(dir)) if (f.startsWith(`${slug}-`)) rmSync(path.join(dir, f), { force: true });
    saveImage(ref, `${file}.tmp`);
    run('mv', [`${file}.tmp`, file], `moving ${file}`);
  }
  return file;
}

/**
 * Builds what the real node needs: the pause image, and the given project images on the offline bases (tagged as
 * users pull them: ghcr.io/rlkube/<name>:<version>). Returns the archives to import, pause first.
 */
export function testImageArchives(names: readonly ImageName[]): { archives: string[]; refs: Record<string, string> } {
  ensureTestBases();
  const refs: Record<string, string> = {};
  if (names.length > 0) {
    buildImages({ only: names, buildArgs: OFFLINE_BUILD_ARGS, stdio: 'pipe' });
    for (const n of names) refs[n] = imageRef(n);
  }
  return { archives: [imageArchive(PAUSE_IMAGE), ...Object.values(refs).map(imageArchive)], refs };
}
