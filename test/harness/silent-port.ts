// A loopback port that accepts connections and never says a word (no NATS INFO): a dial there hangs rather than
// fails, the hardest unreachable NATS URL (unit and e2e tests of the operator's per-job connect deadline).
import net from 'node:net';

export interface SilentPort { port: number; close(): Promise<void> }

export async function silentPort(): Promise<SilentPort> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => { sockets.add(socket); });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => new Promise<void>((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()); }),
  };
}
