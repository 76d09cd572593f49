// The Python that runs rlkube's trainer, engines and environments: the venv `npm run setup` makes, with the
// python/ project installed in it (editable, so this checkout's code runs; console scripts on the venv's PATH).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { toolchainHome } from './toolchain.js';

/** This checkout's Python project. */
export const PYTHON_PROJECT = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'python');

export class PythonEnvError extends Error {
  constructor(readonly reason: 'NotSetUp' | 'OtherCheckout', message: string) {
    super(message);
    this.name = 'PythonEnvError';
  }
}

const venvDir = () => join(toolchainHome(), 'venv');

/**
 * The venv's python, checked to serve this checkout's python/ (one venv serves the checkout that last ran
 * `npm run setup`); throws PythonEnvError saying what to run otherwise.
 */
export function projectPython(): string {
  const python = join(venvDir(), 'bin', 'python');
  const installed = installedProject();
  if (!existsSync(python) || installed === undefined) {
    throw new PythonEnvError('NotSetUp', `rlkube's Python project is not installed in ${venvDir()}: run \`npm run setup\` first`);
  }
  if (installed !== pathToFileURL(PYTHON_PROJECT).href) {
    throw new PythonEnvError('OtherCheckout', `${venvDir()} serves ${installed}, not this checkout's ${PYTHON_PROJECT}: run \`npm run setup\` here`);
  }
  return python;
}

/** Where the venv's editable install of the `rlkube` project points (PEP 610 direct_url.json), if it has one. */
function installedProject(): string | undefined {
  const lib = join(venvDir(), 'lib');
  if (!existsSync(lib)) return undefined;
  for (const version of readdirSync(lib)) {
    const sitePackages = join(lib, version, 'site-packages');
    const distInfo = existsSync(sitePackages) ? readdirSync(sitePackages).find((d) => /^rlkube-[^-]+\.dist-info$/.test(d)) : undefined;
    const file = distInfo && join(sitePackages, distInfo, 'direct_url.json');
    if (file && existsSync(file)) return (JSON.parse(readFileSync(file, 'utf8')) as { url: string }).url;
  }
  return undefined;
}
