// TLS session resumption's ticket keeping (sync/session/tls-resumption.ts) against a real node:tls
// server with the bench PKI: a ticket is kept for the next connection, which then resumes; once
// forgotten (new credentials), a ticket that the earlier socket receives afterwards is not kept.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { once } from 'node:events';
import { createDevPki } from '../provisioning/dev-pki.js';
import { TlsResumption } from '../sync/session/tls-resumption.js';

t.test('tickets kept, resumed, and not kept once forgotten', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'v2c-tls-resume-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const pki = await createDevPki(join(dir, 'pki'));
  const read = (f: string): string => readFileSync(f, 'utf8');
  const server = createServer(
    { cert: read(pki.broker.cert), key: read(pki.broker.key), ca: read(pki.ca.cert), requestCert: true },
    (socket) => socket.end('hello'),
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  const port = (server.address() as { port: number }).port;
  const options: ConnectionOptions = {
    host: '127.0.0.1',
    port,
    ca: read(pki.ca.cert),
    cert: read(pki.devices.valid.cert),
    key: read(pki.devices.valid.key),
    servername: 'localhost',
    checkServerIdentity: () => undefined,
  };
  const resumption = new TlsResumption(options, true);
  /** One connection with the options as they are now, watched; resolves once the server has closed it. */
  const connection = async (beforeTickets: () => void = () => undefined): Promise<TLSSocket> => {
    const socket = connect(options);
    resumption.watch(socket);
    beforeTickets();
    socket.resume();
    await once(socket, 'close');
    return socket;
  };
  await connection();
  t.ok(Buffer.isBuffer((options as { session?: unknown }).session), 'a ticket kept from the first connection');
  await connection();
  t.same(resumption.counts, { full: 1, resumed: 1 }, 'the second connection resumed from it');
  t.equal(resumption.lastHandshake, 'TLSv1.3, resumed');
  // Credentials change while a connection is being made: its late tickets must not be offered next.
  resumption.forget();
  await connection(() => resumption.forget());
  t.equal((options as { session?: unknown }).session, undefined, 'no ticket kept after forget');
  t.same(resumption.counts, { full: 2, resumed: 1 }, 'and that connection shook hands in full');
});
