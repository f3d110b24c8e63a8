// WiFi offload over HTTPS (DESIGN §5): each batch is PUT to `<url>/<vehicle_id>/batches/<batch_id>`
// with mutual TLS (the device certificate), the zstd payload as body and the digests in headers.
// The batch id is derived from the record ids, so a retry of the same records is the same PUT and
// the receiver can treat it as idempotent. The response's Date header is a time reference.
import { Agent, request } from 'node:https';
import type { Clock } from '../../core/clock.js';
import type { PackedBatch } from '../../proto/batch-packer.js';
import { batchHeaders } from '../../proto/batch-headers.js';
import type { ClockCorrector } from '../time/clock-corrector.js';

export interface BatchUploader {
  /** PUTs in flight at most. */
  readonly concurrency: number;
  /** Resolves once the receiver answered 2xx; rejects with UploadError otherwise. */
  upload(batch: PackedBatch): Promise<void>;
}

export class UploadError extends Error {
  readonly code = 'UPLOAD_FAILED';
  constructor(
    message: string,
    /** HTTP status, or null when no response came (network, TLS, timeout). */
    readonly status: number | null,
  ) {
    super(message);
    this.name = 'UploadError';
  }
}

export interface HttpsOffloadSettings {
  /** https://host:port/path; the batch goes to `<url>/<vehicle_id>/batches/<batch_id>`. */
  url: string;
  vehicleId: string;
  concurrency: number;
  timeoutMs: number;
  tls: { ca: string; cert: string; key: string; minVersion: 'TLSv1.2' | 'TLSv1.3'; servername?: string };
}

export class HttpsOffloadUploader implements BatchUploader {
  private agent: Agent;
  private readonly base: URL;

  constructor(
    private readonly settings: HttpsOffloadSettings,
    private readonly corrector: ClockCorrector,
    private readonly clock: Clock,
  ) {
    this.base = new URL(settings.url);
    this.agent = this.makeAgent(settings.tls);
  }

  /** Kept-alive connections: one TLS handshake per socket, not per batch. */
  private makeAgent(t: HttpsOffloadSettings['tls']): Agent {
    return new Agent({
      keepAlive: true,
      maxSockets: this.settings.concurrency,
      ca: t.ca,
      cert: t.cert,
      key: t.key,
      minVersion: t.minVersion,
      rejectUnauthorized: true,
      ...(t.servername !== undefined ? { servername: t.servername } : {}),
    });
  }

  /** A renewed certificate: new connections present it; sockets of the old one are closed. */
  useCredentials(tls: HttpsOffloadSettings['tls']): void {
    const old = this.agent;
    this.agent = this.makeAgent(tls);
    old.destroy();
  }

  get concurrency(): number {
    return this.settings.concurrency;
  }

  upload(batch: PackedBatch): Promise<void> {
    const path = `${this.base.pathname.replace(/\/$/, '')}/${encodeURIComponent(this.settings.vehicleId)}/batches/${encodeURIComponent(batch.batchId)}`;
    const sentAt = this.clock.monoMs();
    return new Promise((resolve, reject) => {
      const req = request(
        {
          method: 'PUT',
          host: this.base.hostname,
          port: this.base.port === '' ? 443 : Number(this.base.port),
          path,
          agent: this.agent,
          headers: batchHeaders(batch),
          timeout: this.settings.timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => {
            if (chunks.length < 16) chunks.push(c);
          });
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            this.timeReference(res.headers.date, sentAt);
            if (status >= 200 && status < 300) resolve();
            else
              reject(
                new UploadError(
                  `PUT ${path}: HTTP ${status} ${Buffer.concat(chunks).toString('utf8').slice(0, 200).trim()}`,
                  status,
                ),
              );
          });
          res.on('error', (err) => reject(new UploadError(`PUT ${path}: ${err.message}`, null)));
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${this.settings.timeoutMs} ms`)));
      req.on('error', (err) => reject(new UploadError(`PUT ${path}: ${err.message}`, null)));
      req.end(batch.payload);
    });
  }

  close(): void {
    this.agent.destroy();
  }

  /** The Date header has whole seconds: true time was within [date, date + 1 s) when it was made. */
  private timeReference(date: string | undefined, sentAt: number): void {
    const wall = date === undefined ? NaN : Date.parse(date);
    if (!Number.isFinite(wall)) return;
    const halfRtt = (this.clock.monoMs() - sentAt) / 2;
    this.corrector.offer({ source: 'http-date', wallMs: wall + 500, monoMs: sentAt + halfRtt, errorMs: halfRtt + 500 });
  }
}
