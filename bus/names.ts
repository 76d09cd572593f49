// The only place that knows rlkube's subject, stream, consumer, bucket and key names.
export interface JobKey {
  namespace: string;
  name: string;
}

/** Namespaces and job names are DNS labels (no '_' or '.'), so '_' and '.' separate them unambiguously. */
export function jobNames(job: JobKey) {
  const id = `${job.namespace}_${job.name}`;
  const subject = `rlkube.${job.namespace}.${job.name}`;
  return {
    /** "<namespace>/<name>", the job field of every message. */
    key: `${job.namespace}/${job.name}`,
    tasksStream: `rlkube_${id}_tasks`,
    trajStream: `rlkube_${id}_traj`,
    tasksSubject: (version: number) => `${subject}.tasks.${version}`,
    tasksWildcard: `${subject}.tasks.>`,
    trajSubject: (version: number) => `${subject}.traj.${version}`,
    trajWildcard: `${subject}.traj.>`,
    /** Dead letters: tasks given up after too many failed deliveries (poison tasks), kept for a person to read. */
    deadStream: `rlkube_${id}_dead`,
    deadSubject: `${subject}.dead`,
    /** The one durable pull consumer the rollout agents share. */
    workersConsumer: 'workers',
    /** The learner's durable pull consumer on the trajectories. */
    learnerConsumer: 'learner',
    controlBucket: `rlkube_${id}`,
    /** The KV bucket's stream and subjects (the KV client's own layout). */
    controlStream: `KV_rlkube_${id}`,
    /** The subject a control KV key is stored under (fenced writes publish there with an expectation). */
    controlSubject: (key: string) => `$KV.rlkube_${id}.${key}`,
    controlWildcard: `$KV.rlkube_${id}.>`,
    weightsStore: `rlkube_${id}_weights`,
    /** The object store's stream and subjects, and the subject of one object's chunks (the store client's own layout). */
    weightsStream: `OBJ_rlkube_${id}_weights`,
    weightsChunks: (nuid: string) => `$O.rlkube_${id}_weights.C.${nuid}`,
    weightsWildcard: `$O.rlkube_${id}_weights.>`,
    /** Replies to this job's requests and pulls come here (its identity may subscribe to nothing else). */
    inboxPrefix: `_INBOX_${id}`,
  };
}

export const controlKeys = {
  policy: 'policy',
  policyVersion: (version: number) => `policy.v${version}`,
  learner: 'learner',
  learnerState: 'learner.state',
  /** Which learner agent drives the job (bus/lease.ts), and that holder's renewals. */
  learnerLease: 'learner.lease',
  learnerLeaseRenewal: 'learner.lease.renewal',
  worker: (workerId: string) => `worker.${workerId}`,
  /** A worker's public signing key (bus/signing.ts), registered once: outside worker.>, which holds heartbeats. */
  workerKey: (workerId: string) => `workerkey.${workerId}`,
  workerPrefix: 'worker.>',
};

export const weightsObjectName = (version: number) => `policy-v${version}`;
