// One way to connect to the bus: connects and reconnects forever, so a restarted nats-server costs time, not a process.
import { connect, credsAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { readFileSync } from 'node:fs';

export interface ConnectOptions {
  servers: string | string[];
  /** NATS credentials file (JWT + nkey seed); never logged. */
  credsFile?: string;
  name?: string;
  /**
   * Where replies to this connection's requests and pulls arrive (default `_INBOX`). A job's pods use
   * jobNames(job).inboxPrefix: with per-job credentials it is the only inbox they may subscribe to.
   */
  inboxPrefix?: string;
}

export function connectBus(options: ConnectOptions): Promise<NatsConnection> {
  return connect({
    servers: options.servers,
    name: options.name ?? 'rlkube',
    maxReconnectAttempts: -1,
    // A process started while the server is away (restarting, being rescheduled) waits for it as well.
    waitOnFirstConnect: true,
    reconnectTimeWait: 250,
    // A stack trace captured per request (every JetStream publish/ack is one) costs more than the publish
    // itself on the hot path; errors still carry their message and subject.
    noAsyncTraces: true,
    ...(options.credsFile ? { authenticator: credsAuthenticator(readFileSync(options.credsFile)) } : {}),
    ...(options.inboxPrefix ? { inboxPrefix: options.inboxPrefix } : {}),
  });
}
