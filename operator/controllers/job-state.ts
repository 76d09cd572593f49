// What a pool or learner asks of the job it serves: is it there and live, has it finished.
import type { RLJob } from '../../api/index.js';
import { isTrue } from './conditions.js';
import type { Caches } from './context.js';

/** The job a pool or learner serves, if it exists and is not being deleted. */
export function liveJob(caches: Caches, namespace: string, name: string): RLJob | undefined {
  const job = caches.jobs.get(namespace, name);
  return job && !job.metadata.deletionTimestamp ? job : undefined;
}

/** The job Succeeded or Failed. */
export const jobFinished = (job: RLJob) => isTrue(job.status?.conditions, 'Succeeded') || isTrue(job.status?.conditions, 'Failed');
