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
  // Found by the trainer, which re-reads every token it trains on (see LearnerBus.commit).
  | 'LogprobMismatch'
  | 'InvalidTokens'
  | 'InvalidLogprobs'
  | 'PromptMismatch'
  | 'TextMismatch';

export class BusError extends Error {
  constructor(
    readonly reason: RejectReason | 'Timeout' | 'NotFound' | 'Closed' | 'LeaseLost',
    message: string,
  ) {
    super(message);
    this.name = 'BusError';
  }
}
