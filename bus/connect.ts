// One way to connect to the bus: connects and reconnects forever, so a restarted nats-server costs time, not a
// process; or, for an address that may never answer (a job's own spec.nats.url), gives the first connect a deadline.
import { connect, credsAuthenticator, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import { readFileSync } from 'node:fs';
import { BusError } from './errors.js';

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
  /**
   * Give up on the first connect after this long (BusError 'Unreachable', naming the servers); once connected,
   * reconnect forever as usual. Absent: wait for the server however long it takes.
   */
  firstConnectDeadlineMs?: number;
}

/** Pause between first-connect attempts under a deadline (a refused port answers at once). */
const FIRST_CONNECT_RETRY_MS = 250;

export function connectBus(options: ConnectOptions): Promise<NatsConnection> {
  const settings: ConnectionOptions = {
    servers: options.servers,
    name: options.name ?? 'rlkube',
    maxReconnectAttempts: -1,
    // A process started while the server is away (restarting, being rescheduled) waits for it as well.
    waitOnFirstConnect: options.firstConnectDeadlineMs === undefined,
    reconnectTimeWait: 250,
    // A stack trace captured per request (every JetStream publish/ack is one) costs more than the publish
    // itself on the hot path; errors still carry their message and subject.
    noAsyncTraces: true,
    ...(options.credsFile ? { authenticator: credsAuthenticator(readFileSync(options.credsFile)) } : {}),
    ...(options.inboxPrefix ? { inboxPrefix: options.inboxPrefix } : {}),
  };
  return options.firstConnectDeadlineMs === undefined ? connect(settings) : connectWithin(settings, options.firstConnectDeadlineMs);
}

/** The servers as a message may show them: without user:password@. */
export const redactedServers = (servers: string | string[]) =>
  [servers].flat().map((s) => s.replace(/\/\/[^@/]*@/, '//')).join(',');

/**
 * Dials (each attempt tries every server once) until connected or the deadline passes. The race bounds the
 * attempt in flight, a name lookup that hangs included; a connection that comes up after it is closed at once.
 * Each dial's own limit is the whole deadline, not what is left: the connection keeps it for its reconnects.
 */
async function connectWithin(settings: ConnectionOptions, deadlineMs: number): Promise<NatsConnection> {
  const end = performance.now() + deadlineMs;
  const where = redactedServers(settings.servers ?? []);
  let lastError = 'no answer';
  for (;;) {
    const left = end - performance.now();
    const attempt = connect({ ...settings, timeout: deadlineMs });
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<'expired'>((resolve) => { timer = setTimeout(() => resolve('expired'), left); });
    try {
      const outcome = await Promise.race([attempt, expired]);
      if (outcome !== 'expired') return outcome;
      attempt.then((late) => late.close(), () => undefined);
      break;
    } catch (err) {
      lastError = String((err as Error).message ?? err);
    } finally {
      clearTimeout(timer);
    }
    if (end - performance.now() <= FIRST_CONNECT_RETRY_MS) break;
    await new Promise((resolve) => setTimeout(resolve, FIRST_CONNECT_RETRY_MS));
  }
  throw new BusError('Unreachable', `NATS at ${where} not reachable within ${deadlineMs / 1000}s: ${lastError}`);
}
