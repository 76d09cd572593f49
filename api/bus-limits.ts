// The bus's size limits: one home for whoever sizes a stream (bus/provision.ts), decodes a group (the learner)
// or configures a nats-server (rlkube run, the chart's values).
export const BusLimits = {
  /** Largest trajectory group message (bytes). */
  maxGroupBytes: 8 * 1024 * 1024,
  /** Largest task (and dead-letter) message. */
  maxTaskBytes: 64 * 1024,
  /** A nats-server's max_payload: the largest group plus its headers. */
  serverMaxPayloadBytes: 9 * 1024 * 1024,
} as const;
