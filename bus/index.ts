// The trajectory bus: the one module both the operator (provisioning, progress) and the agents import.
export { connectBus, type ConnectOptions } from './connect.js';
export { ControlStore, watchLearnerProgress, type Watch } from './control.js';
export { BusError, type RejectReason } from './errors.js';
export { DEFAULT_LEASE_TTL_MS, LearnerLease, type Fence, type LeaseOptions } from './lease.js';
export { LearnerBus, taskIdOf, type Batch, type GroupVerifier, type LearnerBusOptions, type LearnerCounts, type SyncMode, type Verdict } from './learner.js';
export type { GroupCounts, Heartbeat, LearnerProgress, PolicyRecord, Task } from './messages.js';
export { jobNames, type JobRef } from './names.js';
export { defaultBusLimits, jobProvisioned, provisionJob, teardownJob, type BusLimits } from './provision.js';
export { decodeGroup, encodeGroup, type Completion, type TrajectoryGroup } from './trajectory.js';
export { digestOf } from './weights.js';
export { WorkerKey } from './signing.js';
export { WorkerBus, type ClaimedTask } from './worker.js';
