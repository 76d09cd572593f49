// The trajectory bus: the one module both the operator (provisioning, progress) and the agents import.
export { connectBus, redactedServers, type ConnectOptions } from './connect.js';
export { ControlStore, controlDecodeFailures, watchLearnerProgress, type ControlOptions, type Watch } from './control.js';
export { BusError, type RejectReason } from './errors.js';
export { DEFAULT_LEASE_TTL_MS, LearnerLease, type Fence, type LeaseOptions } from './lease.js';
export { GroupJudge, UsedTasks, taskIdOf, type GroupCheck, type Judgement, type Verdict } from './judge.js';
export { LearnerBus, type Batch, type LearnerBusOptions, type SyncMode } from './learner.js';
export { Ledger, Settlement, emptyLearnerState, type LearnerCounts, type TrainedStep } from './settlement.js';
export { AsyncPushPull, SequentialPull, syncPolicyFor, type SyncPolicy, type TaskState } from './sync-policy.js';
export { WIRE_VERSION } from './messages.js';
export type { BatchRecord, GroupCounts, Heartbeat, LearnerProgress, LearnerState, PolicyRecord, Task, WorkerTally } from './messages.js';
export { jobNames, type JobKey } from './names.js';
export { defaultBusLimits, jobProvisioned, provisionJob, teardownJob, type BusLimits } from './provision.js';
export { decodeGroup, encodeGroup, type Completion, type TrajectoryGroup } from './trajectory.js';
export { digestOf } from './weights.js';
export { WorkerKey } from './signing.js';
export { WorkerBus, type ClaimedTask } from './worker.js';
