// Test harness: a real nats-server (JetStream, file storage) per suite on a free loopback port.
export { startNatsServer as startNats, type NatsServer } from '../../local/nats-server.js';
