// The bench's HTTPS offload receiver (`v2c-gateway sink --offload-port`): takes the gateway's
// `PUT <base>/<vehicle_id>/batches/<batch_id>` over mutual TLS, lets a device upload only under its
// own vehicle id (certificate CN), and hands the batch to the sink, which checks and de-duplicates
// it together with what arrives over MQTT.
import { createServer, type Server } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { BATCH_CONTENT_TYPE } from '../proto/batch-packer.js';
import { headersToProperties } from '../proto/batch-headers.js';
import type { TelemetrySink } from './telemetry-sink.js';

export interface OffloadReceiverOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  basePath: string;
  /** Server certificate and key, and the CA that device certificates must chain to (PEM texts). */
  tls: { ca: string; cert: string; key: string };
  maxBodyBytes: number;
}

/** Bytes of an oversized body read (and dropped) after the 413, so the client can read the answer. */
const DRAIN_BYTES = 4 << 20;
const REQUEST_TIMEOUT_MS = 60_000;
/** After a 413 that ends the reading, the connection is dropped this long after the answer went out. */
const CLOSE_GRACE_MS = 2_000;
const HEADERS_TIMEOUT_MS = 20_000;

export class OffloadReceiver {
  readonly counts = { uploads: 0, accepted: 0, refused: 0 };

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(
    sink: TelemetrySink,
    o: OffloadReceiverOptions,
    log: (msg: string) => void,
  ): Promise<OffloadReceiver> {
    const pattern = new RegExp(
      `^${o.basePath.replace(/\/$/, '').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/([A-Za-z0-9_-]{1,64})/batches/([A-Za-z0-9_-]{1,128})$`,
    );
    let receiver: OffloadReceiver | null = null;
    const server = createServer(
      { ...o.tls, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2' },
      (req, res) => {
        const answer = (status: number, body: Record<string, unknown>): void => {
          if (receiver !== null) receiver.counts[status >= 200 && status < 300 ? 'accepted' : 'refused']++;
          res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
        };
        if (receiver !== null) receiver.counts.uploads++;
        const match = pattern.exec(req.url ?? '');
        if (req.method !== 'PUT') return answer(405, { error: 'PUT only' });
        if (match === null) return answer(404, { error: `expected ${o.basePath}/<vehicle_id>/batches/<batch_id>` });
        const [, vehicleId = '', batchId = ''] = match;
        const cn = (req.socket as TLSSocket).getPeerCertificate().subject?.CN;
        if (cn !== vehicleId) {
          log(`offload: SECURITY: certificate CN "${String(cn)}" tried to upload for vehicle ${vehicleId}`);
          return answer(403, { error: 'a device may upload only under its own vehicle id' });
        }
        if (req.headers['content-type'] !== BATCH_CONTENT_TYPE)
          return answer(415, { error: `expected ${BATCH_CONTENT_TYPE}` });
        const chunks: Buffer[] = [];
        let size = 0;
        let refused = false;
        // Too large: 413 at once. A little more of the body is drained so a client still writing
        // reads its 413 instead of a reset (the gateway splits on 413); past that, the connection goes.
        const tooLarge = (): void => {
          if (refused) return;
          refused = true;
          chunks.length = 0;
          res.setHeader('connection', 'close');
          answer(413, { error: `larger than ${o.maxBodyBytes} bytes` });
        };
        const drainLimit = o.maxBodyBytes + DRAIN_BYTES;
        // Reads no more: the 413 is on its way, the connection half-closed and dropped shortly after,
        // so the client reads its answer instead of a reset.
        let stopped = false;
        const stopReading = (): void => {
          if (stopped) return;
          stopped = true;
          req.pause();
          res.once('finish', () => {
            req.socket.end();
            setTimeout(() => req.socket.destroy(), CLOSE_GRACE_MS).unref();
          });
        };
        const declared = Number(req.headers['content-length'] ?? NaN);
        if (declared > o.maxBodyBytes) {
          tooLarge();
          if (declared > drainLimit) {
            stopReading();
            return;
          }
        }
        req.on('data', (c: Buffer) => {
          size += c.byteLength;
          if (size > o.maxBodyBytes) tooLarge();
          if (size > drainLimit) stopReading();
          else if (!refused) chunks.push(c);
        });
        req.on('end', () => {
          if (refused) return;
          sink.receiveUpload(vehicleId, batchId, Buffer.concat(chunks), headersToProperties(req.headers)).then(
            (problem) =>
              answer(problem === null ? 200 : 400, problem === null ? { batch_id: batchId } : { error: problem }),
            (err: unknown) => answer(500, { error: (err as Error).message }),
          );
        });
      },
    );
    // A client that declares a body and sends it slowly, or not at all, does not hold a socket for long.
    server.requestTimeout = REQUEST_TIMEOUT_MS;
    server.headersTimeout = HEADERS_TIMEOUT_MS;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.port, o.host, () => resolve());
    });
    const address = server.address();
    receiver = new OffloadReceiver(server, typeof address === 'object' && address !== null ? address.port : o.port);
    return receiver;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
