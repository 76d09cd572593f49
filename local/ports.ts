// Free loopback ports for local servers (embedded NATS, engines, trainers).
import { createServer } from 'node:net';

/**
 * Ports this process handed out already: the OS may offer a port again as soon as the probe closes it, before
 * the server it was meant for binds it (seen: the trainer and an engine given the same port).
 */
const handedOut = new Set<number>();

export async function freePort(): Promise<number> {
  for (;;) {
    const port = await probePort();
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

function probePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
