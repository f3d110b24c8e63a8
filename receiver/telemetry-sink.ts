// The reference receiver (`v2c-gateway sink`): does the spec's validator job on what the gateway
// publishes, so tests and bench runs can prove "nothing lost". Batches are checked (payload digest
// before decompressing, batch digest after), records validated and de-duplicated by id within a
// window; whatever is refused is written, with its reason, to a dead-letter directory.
import mqtt, { type IPublishPacket, type MqttClient } from 'mqtt';
import { writeFileSync } from 'node:fs';
import { makePrivateDir } from '../core/private-files.js';
import { join } from 'node:path';
import { BatchRejectedError, sha256Hex, unpackBatch } from '../proto/batch-packer.js';
import { validateRecord } from '../proto/record-validation.js';
import { CompactRecordError, decodeCompactRecord } from '../proto/compact-record.js';
import { RecordColumnsError } from '../proto/record-columns.js';
import { LayoutCache } from './layout-cache.js';
import {
  decodeTelemetry,
  SCHEMA_VERSION,
  TelemetryDecodeError,
  type TelemetryBatch,
  type VehicleTelemetry,
} from '../proto/telemetry-codec.js';

export interface SinkOptions {
  url: string;
  clientId: string;
  deadLetterDir: string;
  /** A record id seen again within this window is a duplicate (the spec's 5-minute window). */
  dedupWindowMs: number;
  acceptedSchemaVersions?: readonly string[];
  filter?: string;
  maxUncompressedBytes?: number;
  /** Bytes of dead letters written per run at most (default 64 MiB). */
  maxDeadLetterBytes?: number;
  /** Client certificate, key and CA bundle (PEM texts) for an mqtts:// broker with mutual TLS. */
  tls?: { ca: string; cert: string; key: string };
}

export interface SinkCounts {
  /** Records that arrived (each record of a batch counts), plus messages refused whole. */
  received: number;
  unique: number;
  duplicates: number;
  rejected: number;
}

/** Of a refused payload, this much is kept in its dead letter. */
const DEAD_LETTER_PAYLOAD_BYTES = 1 << 20;
const DEFAULT_MAX_DEAD_LETTER_BYTES = 64 << 20;

const TOPIC = /^v2c\/v1\/([a-z0-9-]+)\/([A-Za-z0-9_-]+)\/telemetry\/(vehicle|batch|compact|layout\/([0-9a-f]{16}))$/;

const TIME_REQUEST = /^v2c\/v1\/[^/]+\/[^/]+\/time\/request$/;

export function sinkSummary(c: SinkCounts): string {
  return `sink: received=${c.received} unique=${c.unique} duplicates=${c.duplicates} rejected=${c.rejected}`;
}

export class TelemetrySink {
  readonly counts: SinkCounts = { received: 0, unique: 0, duplicates: 0, rejected: 0 };
  /** Called for every valid record, with whether it was a duplicate. */
  onRecord: (record: VehicleTelemetry, duplicate: boolean) => void = () => undefined;
  /** Record id → when it was first seen; insertion order is time order, so expiry trims the front. */
  private readonly seen = new Map<string, number>();
  private queue: Promise<void> = Promise.resolve();
  private rejects = 0;
  private deadLetterBytes = 0;
  /** Refusals counted but not written (the directory at its limit, or a write that failed). */
  deadLettersNotKept = 0;
  private lastMessageAt = Date.now();
  /** Layouts of compact records, and the records that came before their layout. */
  private readonly layouts = new LayoutCache<{ topic: string; payload: Buffer; packet: IPublishPacket }>();
  /** Subscriptions made: 1 at start, one more after each reconnect to a broker that had lost the session. */
  subscribed = 0;

  private constructor(
    private readonly client: MqttClient,
    private readonly options: SinkOptions,
    private readonly log: (msg: string) => void,
  ) {}

  /** Connects with a persistent session (nothing is missed across a reconnect) and subscribes. */
  static async start(options: SinkOptions, log: (msg: string) => void = () => undefined): Promise<TelemetrySink> {
    makePrivateDir(options.deadLetterDir);
    const client = await mqtt.connectAsync(options.url, {
      protocolVersion: 5,
      clientId: options.clientId,
      clean: false,
      reconnectPeriod: 500,
      properties: { sessionExpiryInterval: 3600 },
      ...(options.tls !== undefined ? { ...options.tls, minVersion: 'TLSv1.2', rejectUnauthorized: true } : {}),
    });
    const sink = new TelemetrySink(client, options, log);
    client.on('message', (topic, payload, packet) => {
      if (TIME_REQUEST.test(topic)) {
        sink.answerTime(packet);
        return;
      }
      sink.lastMessageAt = Date.now();
      sink.queue = sink.queue
        .then(() => sink.handle(topic, payload, packet))
        .catch((err: unknown) => log(`sink: ${(err as Error).message}`));
    });
    const filter = options.filter ?? 'v2c/v1/+/+/telemetry/#';
    // The cloud's time service as well: vehicles correct their clocks from its answers.
    const filters = [filter, 'v2c/v1/+/+/time/request'];
    await client.subscribeAsync(filters, { qos: 1 });
    sink.subscribed++;
    // A broker that lost our session (restarted without persistence, session expired) lost the subscription too.
    client.on('connect', (connack) => {
      if (connack.sessionPresent) return;
      client.subscribeAsync(filters, { qos: 1 }).then(
        () => {
          sink.subscribed++;
        },
        (err: unknown) => log(`sink: cannot subscribe again: ${(err as Error).message}`),
      );
    });
    return sink;
  }

  /** Time requests answered (the broker time reference of the vehicles). */
  timeAnswers = 0;
  /** Time requests whose response topic was not the requester's own. */
  refusedTimeRequests = 0;

  /** Answers a vehicle's time request on its response topic: `{"now_ms"}` with the request's correlation data. */
  private answerTime(packet: IPublishPacket): void {
    const { responseTopic, correlationData } = packet.properties ?? {};
    if (responseTopic === undefined) return;
    // Only the requesting vehicle's own response topic: with the cloud's rights, publishing where a
    // requester asks would let vehicle 001 write into vehicle 002's command topic (confused deputy).
    if (responseTopic !== packet.topic.replace(/\/time\/request$/, '/time/response')) {
      this.refusedTimeRequests++;
      this.log(`sink: SECURITY: a time request on ${packet.topic} asks for its answer on ${responseTopic}; refused`);
      return;
    }
    this.timeAnswers++;
    this.client.publish(responseTopic, JSON.stringify({ now_ms: Date.now() }), {
      qos: 1,
      properties: { contentType: 'application/json', ...(correlationData !== undefined ? { correlationData } : {}) },
    });
  }

  get idleMs(): number {
    return Date.now() - this.lastMessageAt;
  }

  /** Resolves once every message received so far has been handled. */
  settled(): Promise<void> {
    return this.queue;
  }

  async close(): Promise<void> {
    await this.queue;
    await this.client.endAsync();
  }

  private async handle(topic: string, payload: Buffer, packet: IPublishPacket): Promise<void> {
    const props = (packet.properties?.userProperties ?? {}) as Record<string, string | string[]>;
    const match = TOPIC.exec(topic);
    if (match === null) return this.reject(topic, payload, props, 'topic', `not a telemetry topic: ${topic}`);
    const vehicleId = match[2] as string;
    for (const late of this.layouts.expired(Date.now()))
      this.reject(late.item.topic, late.item.payload, {}, 'unknown_layout', `no layout ${late.key} arrived`);
    let records: VehicleTelemetry[];
    if (match[4] !== undefined) {
      await this.learnLayout(topic, match[4], payload, props);
      return;
    } else if (match[3] === 'compact') {
      const record = this.decodeCompact(topic, payload, packet, props);
      if (record === null) return;
      records = [record];
    } else if (match[3] === 'batch') {
      const batch = await this.unpack(topic, payload, props);
      if (batch === null) return;
      records = batch.records;
    } else {
      try {
        records = [decodeTelemetry(payload)];
      } catch (err) {
        if (err instanceof TelemetryDecodeError) return this.reject(topic, payload, props, 'decode', err.message);
        throw err;
      }
    }
    this.accept(topic, vehicleId, records, props);
  }

  /** A layout (retained on the broker): learnt, then the records that waited for it are taken in. */
  private async learnLayout(
    topic: string,
    key: string,
    payload: Buffer,
    props: Record<string, string | string[]>,
  ): Promise<void> {
    // An empty retained message clears a layout at the broker; it is not a layout.
    if (payload.byteLength === 0) return;
    let waiting;
    try {
      waiting = this.layouts.learn(key, payload);
    } catch (err) {
      if (err instanceof CompactRecordError || err instanceof TelemetryDecodeError)
        return this.reject(topic, payload, props, 'layout', err.message);
      throw err;
    }
    for (const w of waiting) await this.handle(w.topic, w.payload, w.packet);
  }

  /** A compact record; null when refused or kept until its layout arrives. */
  private decodeCompact(
    topic: string,
    payload: Buffer,
    packet: IPublishPacket,
    props: Record<string, string | string[]>,
  ): VehicleTelemetry | null {
    try {
      return decodeCompactRecord(payload, this.layouts.get);
    } catch (err) {
      if (err instanceof CompactRecordError && err.code === 'COMPACT_UNKNOWN_LAYOUT') {
        if (this.layouts.park(err.layoutKey as string, { topic, payload, packet }, Date.now())) return null;
        this.reject(topic, payload, props, 'unknown_layout', `${err.message}, and too many records wait for theirs`);
        return null;
      }
      if (
        err instanceof CompactRecordError ||
        err instanceof TelemetryDecodeError ||
        err instanceof RecordColumnsError
      ) {
        this.reject(topic, payload, props, 'decode', err.message);
        return null;
      }
      throw err;
    }
  }

  /**
   * A batch uploaded over HTTPS (WiFi offload): the batch topic's checks, and the same
   * de-duplication, so records that came by either path count once. Null when accepted, else why not.
   */
  receiveUpload(
    vehicleId: string,
    batchId: string,
    payload: Buffer,
    props: Record<string, string>,
  ): Promise<string | null> {
    const where = `https:${vehicleId}/batches/${batchId}`;
    const result = this.queue.then(async () => {
      this.lastMessageAt = Date.now();
      const batch = await this.unpack(where, payload, props);
      if (batch === null) return 'the batch failed its checks (see the dead-letter directory)';
      if (batch.batchId !== batchId) {
        this.reject(
          where,
          payload,
          props,
          'batch_id',
          `the path names batch ${batchId}, the batch is ${batch.batchId}`,
        );
        return `batch_id ${batchId} does not match the batch (${batch.batchId})`;
      }
      this.accept(where, vehicleId, batch.records, props);
      return null;
    });
    this.queue = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  private get acceptedVersions(): readonly string[] {
    return this.options.acceptedSchemaVersions ?? [SCHEMA_VERSION];
  }

  private async unpack(
    where: string,
    payload: Buffer,
    props: Record<string, string | string[]>,
  ): Promise<TelemetryBatch | null> {
    try {
      return await unpackBatch(payload, props, {
        maxUncompressedBytes: this.options.maxUncompressedBytes ?? 16 << 20,
        acceptedSchemaVersions: this.acceptedVersions,
      });
    } catch (err) {
      if (!(err instanceof BatchRejectedError)) throw err;
      this.reject(where, payload, props, err.reason, err.message);
      return null;
    }
  }

  private accept(
    topic: string,
    vehicleId: string,
    records: readonly VehicleTelemetry[],
    props: Record<string, string | string[]>,
  ): void {
    const accepted = this.acceptedVersions;
    const now = Date.now();
    this.expire(now);
    for (const r of records) {
      this.counts.received++;
      const problem = validateRecord(r, vehicleId, accepted);
      if (problem !== null) {
        this.counts.received--;
        this.reject(topic, Buffer.from(JSON.stringify(r)), props, 'invalid', problem);
        continue;
      }
      const duplicate = this.seen.has(r.messageId);
      if (duplicate) this.counts.duplicates++;
      else {
        this.counts.unique++;
        this.seen.set(r.messageId, now);
      }
      this.onRecord(r, duplicate);
    }
  }

  private expire(now: number): void {
    for (const [id, at] of this.seen) {
      if (now - at <= this.options.dedupWindowMs) break;
      this.seen.delete(id);
    }
  }

  /**
   * Counts a refusal and keeps it for inspection. Bounded: a payload is kept up to
   * DEAD_LETTER_PAYLOAD_BYTES (with its size and digest), and the directory up to
   * `maxDeadLetterBytes` per run; past that only the count and a log line remain.
   */
  private reject(
    topic: string,
    payload: Buffer,
    props: Record<string, string | string[]>,
    reason: string,
    detail: string,
  ): void {
    this.counts.received++;
    this.counts.rejected++;
    const kept = payload.subarray(0, DEAD_LETTER_PAYLOAD_BYTES);
    const letter = JSON.stringify(
      {
        reason,
        detail,
        topic,
        userProperties: props,
        payloadBytes: payload.byteLength,
        payloadSha256: sha256Hex(payload),
        ...(kept.byteLength < payload.byteLength ? { payloadTruncated: true } : {}),
        payloadBase64: kept.toString('base64'),
      },
      null,
      1,
    );
    if (this.deadLetterBytes + letter.length > (this.options.maxDeadLetterBytes ?? DEFAULT_MAX_DEAD_LETTER_BYTES)) {
      this.deadLettersNotKept++;
      this.log(
        `sink: rejected (${reason}): ${detail}; not kept (the dead-letter directory is at its ${this.options.maxDeadLetterBytes ?? DEFAULT_MAX_DEAD_LETTER_BYTES}-byte limit)`,
      );
      return;
    }
    const file = join(
      this.options.deadLetterDir,
      `${new Date().toISOString().replaceAll(':', '-')}-${++this.rejects}-${reason}.json`,
    );
    try {
      writeFileSync(file, letter, { mode: 0o600 });
      this.deadLetterBytes += letter.length;
      this.log(`sink: rejected (${reason}): ${detail}; kept in ${file}`);
    } catch (err) {
      this.deadLettersNotKept++;
      this.log(`sink: rejected (${reason}): ${detail}; cannot keep it in ${file}: ${(err as Error).message}`);
    }
  }
}
