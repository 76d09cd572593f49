// The bus's error type: a machine reason (the same word a rejection counter or condition uses) and a message.
export type RejectReason =
  | 'Malformed'
  | 'Oversized'
  | 'UnsupportedVersion'
  | 'WrongJob'
  | 'TokenOutOfRange'
  | 'UnknownTask'
  | 'Duplicate'
  | 'FutureVersion'
  | 'DigestMismatch'
  | 'RewardMismatch'
  | 'GroupSizeMismatch'
  // The group's signature is missing or not by the key registered for the worker it names (bus/signing.ts).
  | 'BadSignature'
  // The same completions as a group another worker published before, too unlikely to be drawn twice.
  | 'Copied'
  // Found by the trainer, which re-reads every token it trains on (see LearnerBus.commit).
  | 'LogprobMismatch'
  | 'InvalidTokens'
  | 'InvalidLogprobs'
  | 'PromptMismatch'
  | 'TextMismatch'
  | 'UnknownVersion';

export class BusError extends Error {
  constructor(
    // Unreachable: a connect with a deadline (a job's own NATS URL) found no server answering in time.
    readonly reason: RejectReason | 'Timeout' | 'NotFound' | 'Closed' | 'LeaseLost' | 'KeyConflict' | 'Unreachable',
    message: string,
  ) {
    super(message);
    this.name = 'BusError';
  }
}
