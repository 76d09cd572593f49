// Environments end to end through the CLI: the graders agree with math-verify on pairs of our own, a bad
// environment is refused before anything starts (naming the field), and `rlkube run` trains a reasoning-gym
// task and a verifiers environment (real nats-server, tiny policy, trainer and environment servers).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parse, stringify } from 'yaml';
import { agentJobSpec, formatAgentEnv, parseRLJobManifest, trainerServerArgs, type AgentConfig } from '../../api/index.js';
import { connectBus, provisionJob, watchLearnerProgress, type LearnerProgress } from '../../bus/index.js';
import { projectPython } from '../../local/python.js';
import { freePort } from '../../local/ports.js';
import { startEnvironmentServer } from '../harness/environment.js';
import { waitFor } from '../harness/groups.js';
import { startNats } from '../harness/nats.js';
import { countsAddUp, startRun } from '../harness/run.js';

const rlkube = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  spawnSync(process.execPath, ['--import', 'tsx', 'cli/main.ts', ...args], { encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 64 << 20 });

/** examples/reverse-cpu.yaml with another environment (and small batches: these runs show it works, not that it learns). */
function manifest(environment: object, small = false): string {
  const job = parse(readFileSync('examples/reverse-cpu.yaml', 'utf8'));
  job.spec.environment = environment;
  if (small) {
    Object.assign(job.spec.algorithm, { groupSize: 4, batchSize: 4 });
    job.spec.rollout.pools[0].replicas = 1;
  }
  const path = join(mkdtempSync(join(tmpdir(), 'rlkube-env-')), 'job.yaml');
  writeFileSync(path, stringify(job));
  return path;
}

describe('rlkube env score', () => {
  it.each(['math', 'gsm8k'])('agrees with math-verify on the %s pairs of test/fixtures/grading', (environment) => {
    const file = `test/fixtures/grading/${environment}-pairs.jsonl`;
    const pairs = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { label: number });
    const result = rlkube(['env', 'score', environment, file]);
    expect(result.status).toBe(0);
    const scored = result.stdout.trim().split('\n').map((l) => JSON.parse(l) as { line: number; reward: number });
    expect(scored).toHaveLength(pairs.length);
    const agreed = scored.filter((s, i) => s.reward === pairs[i]!.label).length;
    console.log(`rlkube env score ${environment}: ${agreed}/${pairs.length} agree with math-verify (${((100 * agreed) / pairs.length).toFixed(1)} %)`);
    expect(agreed / pairs.length).toBeGreaterThanOrEqual(0.98);
  });

  it('scores {"seq"} lines of a procedural environment with its args', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'rlkube-env-')), 'lines.jsonl');
    writeFileSync(file, '{"answer": "cba", "completion": "cbx"}\n{"seq": 0, "completion": ""}\n');
    const result = rlkube(['env', 'score', 'reverse', file, '--args', 'minLength=3', 'maxLength=3']);
    expect(result.status).toBe(0);
    expect(result.stdout.trim().split('\n').map((l) => JSON.parse(l).reward)).toEqual([2 / 3, 0]);
  });
});

describe('a bad environment is refused by rlkube run before anything starts', () => {
  const notADataset = join(mkdtempSync(join(tmpdir(), 'rlkube-env-')), 'notes.txt');
  writeFileSync(notADataset, 'these are my notes, not a dataset\n');
  it.each<[string, object, string]>([
    ['reverse minLength above maxLength', { name: 'reverse', args: { minLength: 5, maxLength: 3 } }, 'environment.args.minLength'],
    ['an empty alphabet', { name: 'reverse', args: { alphabet: '' } }, 'environment.args.alphabet'],
    ['a dataset that is not a dataset', { name: 'gsm8k', dataset: notADataset }, 'environment.dataset'],
    ['an unknown reasoning-gym task', { name: 'reasoning-gym', args: { task: 'no_such_task' } }, 'environment.args.task'],
  ])('%s', (_name, environment, field) => {
    const out = mkdtempSync(join(tmpdir(), 'rlkube-run-'));
    const result = rlkube(['run', manifest(environment), '--out', out]);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain(`${field}: `);
    expect(existsSync(join(out, 'run.json'))).toBe(false); // no bus, no process was started
  });
});

describe('rlkube run trains plug-in environments', () => {
  it('a reasoning-gym task by name', async () => {
    const environment = { name: 'reasoning-gym', args: { task: 'number_sequence', min_terms: 4, max_terms: 4, max_value: 9, max_complexity: 1 } };
    const run = startRun(['--max-steps', '3'], manifest(environment, true));
    expect(await run.exited).toBe(0);
    const summary = run.summary();
    expect(summary.state).toBe('Succeeded');
    expect(summary.steps).toBe(3);
    expect(summary.groups.accepted).toBeGreaterThanOrEqual(12);
    countsAddUp(summary);
  });

  it('a verifiers environment module (load_environment)', async () => {
    const environment = { name: 'verifiers', args: { module: 'vf_reverse_env', alphabet: 'abc', length: 3 } };
    // Run from the folder that holds the module, as a user would: Python servers started with `-m` import from there.
    const run = startRun(['--max-steps', '3'], manifest(environment, true), { cwd: resolve('python/tests') });
    expect(await run.exited).toBe(0);
    const summary = run.summary();
    expect(summary.state).toBe('Succeeded');
    expect(summary.steps).toBe(3);
    expect(summary.groups.accepted).toBeGreaterThanOrEqual(12);
    countsAddUp(summary);
  });
});

describe('an agent that finds its environment unusable (what a cluster cannot check before the pods run)', () => {
  it('the learner fails the job with the reason and the field, and neither agent exits into a restart loop', async () => {
    const notADataset = join(mkdtempSync(join(tmpdir(), 'rlkube-env-')), 'notes.txt');
    writeFileSync(notADataset, 'these are my notes, not a dataset\n');
    const job = parseRLJobManifest(readFileSync(manifest({ name: 'gsm8k', dataset: notADataset }), 'utf8'));
    const nats = await startNats({});
    const nc = await connectBus({ servers: nats.url });
    const ref = { namespace: 'local', name: job.metadata.name };
    await provisionJob(nc, ref);
    let latest: LearnerProgress | undefined;
    const watch = await watchLearnerProgress(nc, ref, (p) => (latest = p));
    const environment = await startEnvironmentServer(job.spec.environment, job.spec.algorithm.seed);
    const trainerPort = await freePort();
    const checkpoints = mkdtempSync(join(tmpdir(), 'rlkube-ckpt-'));
    const children: ChildProcess[] = [spawn(projectPython(), trainerServerArgs(job.spec, { ...job.spec.learner, gpusPerNode: 0 }, { host: '127.0.0.1', port: trainerPort, checkpointDir: checkpoints }), {
      env: { ...process.env, OMP_NUM_THREADS: '1' }, stdio: 'ignore',
    })];
    const common = { natsServers: [nats.url], namespace: ref.namespace, job: ref.name, metricsPort: 0, environmentUrl: environment.url };
    const agents: AgentConfig[] = [
      { ...common, role: 'learner', workerId: 'learner-0', trainerUrl: `http://127.0.0.1:${trainerPort}`, jobSpec: agentJobSpec(job.spec, 'learner') },
      { ...common, role: 'rollout', workerId: 'rollout-0', pool: 'cpu', engineUrl: 'http://127.0.0.1:9', engineKind: 'tiny', jobSpec: agentJobSpec(job.spec, 'rollout') },
    ];
    const logs: string[] = ['', ''];
    for (const [i, config] of agents.entries()) {
      const child = spawn(process.execPath, ['--import', 'tsx', 'agent/main.ts'], { env: { ...process.env, ...formatAgentEnv(config) }, stdio: ['ignore', 'pipe', 'inherit'] });
      child.stdout!.on('data', (d: Buffer) => (logs[i] += d.toString()));
      children.push(child);
    }
    try {
      const failed = await waitFor('the job to fail', () => (latest?.state === 'Failed' ? latest : undefined), 120_000);
      expect(failed.message).toMatch(/^DatasetUnreadable: environment\.dataset: /);
      await waitFor('the rollout agent to report it', () => logs[1]!.includes('environment unusable') || undefined, 60_000);
      await waitFor('the learner agent to report it', () => logs[0]!.includes('environment unusable') || undefined, 60_000);
      // Both said why and still run: a pod would not restart them over and over.
      expect(children.slice(1).map((c) => c.exitCode)).toEqual([null, null]);
    } finally {
      for (const child of children) child.kill('SIGTERM');
      await Promise.all(children.map((c) => (c.exitCode !== null ? undefined : new Promise((r) => c.once('exit', r)))));
      await watch.stop();
      await nc.close();
      await environment.stop();
      await nats.stop();
    }
    // Stopped on SIGTERM, they exit cleanly.
    expect(children.slice(1).map((c) => c.exitCode)).toEqual([0, 0]);
  });
});
