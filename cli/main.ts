// The `rlkube` command line.
import { Command, InvalidArgumentError } from 'commander';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { pino } from 'pino';
import { ENVIRONMENT_NAMES, InvalidManifestError, parseRLJobManifest } from '../api/index.js';
import { RunError, runJob } from './run.js';
import { PythonEnvError, projectPython } from '../local/python.js';
import { makeTinyModel } from './tiny-model.js';
import { scoreFile } from './env-score.js';

const program = new Command('rlkube').description('RL post-training of language models: operator, agents and local runs');

program
  .command('run')
  .description('run an RLJob manifest on this machine, no cluster: embedded NATS, local engines, trainer and agents')
  .argument('<file>', 'RLJob manifest (YAML)')
  .option('--mode <mode>', 'override spec.sync.mode: SequentialPull | AsyncPushPull', (value) => {
    if (value !== 'SequentialPull' && value !== 'AsyncPushPull') throw new InvalidArgumentError('must be SequentialPull or AsyncPushPull');
    return value;
  })
  .option('--max-steps <n>', 'override spec.algorithm.maxSteps', (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer');
    return n;
  })
  .option('--seed <n>', 'override spec.algorithm.seed (the model init, sampling and task seeds)', (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('must be a non-negative integer');
    return n;
  })
  .option('--out <dir>', 'where summary.json, reward.svg, logs and checkpoints go (default runs/<job>-<time>)')
  .option('--init-weights <file>', 'start from this policy file (e.g. from python/scripts/warm_start.py) instead of a random init')
  .option('--ack-wait <ms>', "the bus's ack wait for tasks and groups: how soon a stalled or dead worker's task goes to another", (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1000) throw new InvalidArgumentError('must be an integer number of milliseconds >= 1000');
    return n;
  })
  .option('--python <path>', 'a Python with rlkube\'s python/ project installed (default: the venv of `npm run setup`)')
  .action(async (file: string, options: { mode?: 'SequentialPull' | 'AsyncPushPull'; maxSteps?: number; seed?: number; out?: string; python?: string; initWeights?: string; ackWait?: number }) => {
    const log = pino({ level: process.env.RLKUBE_LOG_LEVEL ?? 'warn' });
    let job;
    try {
      job = parseRLJobManifest(readFileSync(file, 'utf8'));
    } catch (err) {
      if (err instanceof InvalidManifestError || (err as NodeJS.ErrnoException).code === 'ENOENT') {
        console.error(`rlkube run: ${file}: ${(err as Error).message}`);
        process.exit(2);
      }
      throw err;
    }
    // A model folder named relative to the manifest (./models/…) is found from wherever rlkube runs.
    if (/^\.\.?\//.test(job.spec.model.name)) job.spec.model.name = resolve(dirname(file), job.spec.model.name);
    if (options.mode) job.spec.sync.mode = options.mode;
    if (options.maxSteps) job.spec.algorithm.maxSteps = options.maxSteps;
    if (options.seed !== undefined) job.spec.algorithm.seed = options.seed;
    const outDir = options.out ?? join('runs', `${job.metadata.name}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
    const controller = new AbortController();
    process.once('SIGINT', () => controller.abort());
    process.once('SIGTERM', () => controller.abort());
    console.error(`rlkube run: ${job.metadata.name} (${job.spec.sync.mode}, ${job.spec.algorithm.maxSteps} steps) → ${outDir}`);
    const summary = await runJob({
      job, outDir, python: pythonFor('run', options.python), log, signal: controller.signal,
      ...(options.initWeights ? { initWeights: options.initWeights } : {}),
      ...(options.ackWait ? { ackWaitMs: options.ackWait } : {}),
    }).catch((err: unknown) => {
      if (!(err instanceof RunError)) throw err;
      console.error(`rlkube run: ${file}: ${err.reason}: ${err.message}`);
      process.exit(2);
    });
    console.error(
      `rlkube run: ${summary.state} after ${summary.steps} steps in ${summary.wall_s} s; reward ${summary.reward.initial?.toFixed(3) ?? '—'} → ${summary.reward.final?.toFixed(3) ?? '—'}; ` +
        `groups accepted ${summary.groups.accepted} (off-policy ${summary.groups.offPolicy ?? 0}), stale ${summary.groups.stale}, rejected ${summary.groups.rejected}, left over ${summary.groups.leftOver ?? 0}, published ${summary.groups.published}; ` +
        `tasks dead-lettered ${summary.groups.deadLetteredTasks ?? 0}`,
    );
    console.error(`rlkube run: wrote ${join(outDir, 'summary.json')} and ${join(outDir, 'reward.svg')}`);
    process.exit(summary.state === 'Succeeded' ? 0 : 1);
  });

program
  .command('env')
  .description('environments (the environment server of python/rlkube_env)')
  .command('score')
  .description('score completions with an environment\'s grader: FILE has {"answer"|"seq", "completion"} per line; prints {"line", "reward"} per line')
  .argument('<environment>', `environment name (${ENVIRONMENT_NAMES.join(', ')})`)
  .argument('<file>', 'JSONL file (- for stdin)')
  .option('--args <k=v...>', 'environment.args entries (numbers stay numbers)')
  .option('--dataset <path-or-url>', 'environment.dataset (needed for {"seq"} lines of gsm8k and math)')
  .option('--seed <n>', 'algorithm.seed (which task a seq is)', (value) => Number(value), 1)
  .option('--python <path>', 'a Python with rlkube\'s python/ project installed (default: the venv of `npm run setup`)')
  .action((name: string, file: string, options: { args?: string[]; dataset?: string; seed: number; python: string }) => {
    const args: Record<string, string | number> = {};
    for (const entry of options.args ?? []) {
      const at = entry.indexOf('=');
      if (at < 1) throw new InvalidArgumentError(`--args ${entry}: expected key=value`);
      const value = entry.slice(at + 1);
      args[entry.slice(0, at)] = value.trim() !== '' && Number.isFinite(Number(value)) ? Number(value) : value;
    }
    process.exit(scoreFile(pythonFor('env score', options.python), { name, ...(Object.keys(args).length ? { args } : {}), ...(options.dataset ? { dataset: options.dataset } : {}) }, file, options.seed));
  });

program
  .command('make-tiny-model')
  .description('write the tiny Hugging Face model the HF examples train (random init, character tokenizer; made offline)')
  .argument('<dir>', 'the model folder to write (e.g. examples/models/tiny-qwen2)')
  .option('--seed <n>', 'init seed', (value) => Number(value), 1)
  .option('--format-for <alphabet:min-max>', 'teach the output format first: after each prompt (min–max letters), a string over the alphabet as long as it, then EOS (not the task)')
  .option('--python <path>', 'a Python with rlkube\'s python/ project installed (default: the venv of `npm run setup`)')
  .action((dir: string, options: { seed: number; formatFor?: string; python: string }) => {
    const path = makeTinyModel(pythonFor('make-tiny-model', options.python), dir, { seed: options.seed, ...(options.formatFor ? { formatFor: options.formatFor } : {}) });
    console.error(`rlkube make-tiny-model: ${path}`);
  });

/** --python, or the venv of `npm run setup` (checked to serve this checkout). */
function pythonFor(command: string, given: string | undefined): string {
  if (given) return given;
  try {
    return projectPython();
  } catch (err) {
    if (!(err instanceof PythonEnvError)) throw err;
    console.error(`rlkube ${command}: ${err.reason}: ${err.message}`);
    process.exit(2);
  }
}

await program.parseAsync(process.argv);
