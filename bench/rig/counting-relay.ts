// A TCP relay in front of the broker that counts the bytes each way (what a cellular modem bills)
// and can cut every connection through it at once (a cellular drop: no FIN reaches either side
// in time, both sockets just end).
import { createServer, connect, type Server, type Socket } from 'node:net';

export interface CountingRelay {
  port: number;
  /** Bytes both ways since the relay started. */
  bytes(): number;
  /** Ends every connection through the relay; returns how many there were. */
  dropAll(): number;
  close(): Promise<void>;
}

export async function countingRelay(targetPort: number): Promise<CountingRelay> {
  let total = 0;
  const open = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    open.add(client);
    client.on('data', (d: Buffer) => {
      total += d.byteLength;
      upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => {
      total += d.byteLength;
      client.write(d);
    });
    client.on('close', () => {
      open.delete(client);
      upstream.destroy();
    });
    upstream.on('close', () => client.destroy());
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return {
    port: typeof address === 'object' && address !== null ? address.port : 0,
    bytes: () => total,
    dropAll: () => {
      const n = open.size;
      for (const socket of open) socket.destroy();
      return n;
    },
    close: () =>
      new Promise((resolve) => {
        for (const socket of open) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
