// Which bus errors are retried: decided by the client's error classes and the server's codes, not by messages.
import { JetStreamApiError, JetStreamError } from '@nats-io/jetstream';
import { JetStreamStatusError, jserrors } from '@nats-io/jetstream/internal';
import { ClosedConnectionError, ConnectionError, NoRespondersError, PermissionViolationError, RequestError, TimeoutError } from '@nats-io/transport-node';
import { BusError } from '../../bus/index.js';
import { backoffMs, isTransient, withRetry } from '../../bus/retry.js';

const { JetStreamNotEnabled } = jserrors;
const api = (code: number, err_code: number, description = 'x') => new JetStreamApiError({ code, err_code, description });

describe('isTransient', () => {
  it.each([
    ['a request time-out', new TimeoutError(), true],
    ['no responders, wrapped in a request error', new RequestError('r', { cause: new NoRespondersError('s') }), true],
    ['a publish with no responders (leader change): JetStreamNotEnabled caused by no responders', new JetStreamNotEnabled('x', { cause: new RequestError('r', { cause: new NoRespondersError('s') }) }), true],
    ['a connection error', new ConnectionError('reset'), true],
    ['missed pull heartbeats (the client\'s bare JetStreamError)', new JetStreamError('heartbeats missed'), true],
    ['a pull cut by the server (409)', new JetStreamStatusError('leadership change', 409), true],
    ['a pull with no responders (503)', new JetStreamStatusError('no responders', 503), true],
    ['a full stream pushing back (503 10077)', api(503, 10077), true],
    ['JetStream temporarily unavailable (503 10008)', api(503, 10008), true],
    ['a cluster without a leader (500 10009)', api(500, 10009), true],
    ['a stream offline while its peers catch up (500 10118)', api(500, 10118), true],
    ['a bad pull request (400)', new JetStreamStatusError('bad request', 400), false],
    ['a message the stream refuses (400)', api(400, 10054), false],
    ['a stream that is gone (404)', api(404, 10059), false],
    ['JetStream not enabled for the account (503 10039)', new JetStreamNotEnabled('x', { cause: api(503, 10039) }), false],
    ['JetStream not enabled, no cause', new JetStreamNotEnabled('x'), false],
    ['a closed connection', new ClosedConnectionError(), false],
    ['a permission violation', new PermissionViolationError('denied', 'publish', 'x'), false],
    ['one of ours', new BusError('Malformed', 'timeout in the text'), false],
    ['a plain error whose message says timeout', new Error('timeout'), false],
    ['not an error', 'timeout', false],
  ])('%s', (_what, err, transient) => {
    expect(isTransient(err)).toBe(transient);
  });
});

describe('withRetry', () => {
  it('retries transient errors until the operation succeeds, and throws any other at once', async () => {
    let calls = 0;
    await expect(withRetry('op', async () => (++calls < 3 ? Promise.reject(new TimeoutError()) : 'ok'))).resolves.toBe('ok');
    expect(calls).toBe(3);
    calls = 0;
    await expect(withRetry('op', async () => { calls++; throw api(404, 10059); })).rejects.toBeInstanceOf(JetStreamApiError);
    expect(calls).toBe(1);
  });

  it('gives up with a Timeout reason past its deadline, and at once when aborted', async () => {
    await expect(withRetry('op', () => Promise.reject(new TimeoutError()), { deadlineMs: 300 })).rejects.toMatchObject({ reason: 'Timeout' });
    const controller = new AbortController();
    controller.abort();
    await expect(withRetry('op', () => Promise.reject(new TimeoutError()), { signal: controller.signal })).rejects.toBeInstanceOf(TimeoutError);
  });

  it('backs off from 50–100 ms to at most 2 s', () => {
    for (let attempt = 0; attempt < 12; attempt++) {
      const wait = backoffMs(attempt);
      expect(wait).toBeGreaterThanOrEqual(Math.min(2000, 100 * 2 ** attempt) / 2);
      expect(wait).toBeLessThanOrEqual(2000);
    }
  });
});
