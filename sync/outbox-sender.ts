// Drains the outbox into the MQTT session. P0 and live P1 go out one by one on the vehicle topic;
// P2 and any P1 backlog (after an outage) go out as compressed batches on the batch topic. A record
// leaves the store only when the PUBACK of the message carrying it arrives (DESIGN §5, issue 4).
import { Subscription } from 'rxjs';
import { BATCH_CONTENT_TYPE, packBatch, type PackedBatch } from '../proto/batch-packer.js';
import type { ResolutionTable } from '../proto/record-columns.js';
import { encodeTelemetry, SCHEMA_VERSION, type VehicleTelemetry } from '../proto/telemetry-codec.js';
import type { Clock } from '../core/clock.js';
import { rateLimited } from '../core/log.js';
import type { DeadLetterFile } from './store/dead-letter.js';
import { publishPacketBytes, PublishError, type MqttSession, type PublishProperties } from './session/mqtt-session.js';
import type { LinkDecision } from './link/link-policy.js';
import { UploadError, type BatchUploader } from './offload/https-offload.js';
import type { StoredRecord, TelemetryStore } from './store/telemetry-store.js';
import type { DrainPacer } from './drain-pacer.js';

export interface OutboxSettings {
  vehicleId: string;
  vehicleTopic: string;
  batchTopic: string;
  /** Messages (single records or batches) waiting for their PUBACK at most. */
  inflight: number;
  /** A P1 backlog longer than this goes out in batches; P2 waits until it has this many... */
  batchMinRecords: number;
  batchMaxRecords: number;
  /** Batches in flight at most (part of `inflight`): what a drain holds in memory and compresses at once. */
  batchInflight: number;
  /** ...or until its oldest record is this old. */
  batchMaxAgeMs: number;
  /** Rest for records whose publish failed (PUBACK timeout, error), so failures cannot loop hot. */
  retryDelayMs: number;
  /** Times a record unanswered by a PUBACK is sent again (each on a new connection) before it rests. */
  resends: number;
  /** PUBACK 0x97 (quota exceeded): publishing pauses this long, plus up to half of it at random. */
  quotaBackoffMs: number;
  zstdLevel: number;
  resolution: ResolutionTable;
}

export interface SenderCounters {
  /** Messages published, by path. */
  singles: number;
  batches: number;
  /** Records acknowledged. */
  acked: number;
  batchAckedRecords: number;
  failed: number;
  bytesSent: number;
  /** Batches split because they exceeded the broker's maximum packet size. */
  splits: number;
  /** PUBACK 0x87 (not authorised): security events. */
  notAuthorised: number;
  quotaPauses: number;
  /** Publishes of records sent before (with DUP): after a lost connection or a PUBACK timeout. */
  resends: number;
  /** Uncompressed / compressed bytes of the batches sent. */
  batchPlainBytes: number;
  batchWireBytes: number;
  /** Batches uploaded over HTTPS (WiFi offload) and the records they carried. */
  uploads: number;
  uploadedRecords: number;
}

export type Route = 'single' | 'batch' | 'upload';

/** What the sender needs of the store: the records waiting, their removal once delivered. */
export type OutboxStore = Pick<TelemetryStore, 'inserted' | 'pending' | 'remove' | 'count'>;
/** What it needs of the MQTT session. */
export type PublishChannel = Pick<
  MqttSession,
  'connected' | 'isConnected' | 'sendQuota' | 'publish' | 'maxPacketBytes' | 'ownMaxPacketBytes'
>;
export type DeadLetterSink = Pick<DeadLetterFile, 'write' | 'path'>;
/** What the link allows now (link-controller.ts), and the meter for what a metered link carries. */
export interface LinkView {
  readonly current: LinkDecision;
  meter(bytes: number): void;
}

/** The sender's collaborators; all but the first five are optional. */
export interface OutboxParts {
  store: OutboxStore;
  session: PublishChannel;
  deadLetters: DeadLetterSink;
  clock: Clock;
  log: (msg: string) => void;
  /** Without one, everything goes and nothing is metered. */
  link?: LinkView;
  /** Applied to each record as it is encoded: the clock-skew correction (clock-corrector.ts). */
  prepare?: (record: VehicleTelemetry) => VehicleTelemetry;
  /** HTTPS offload; when set, an offload decision sends every batch through it instead of MQTT. */
  uploader?: BatchUploader | null;
  /** How long P1/P2 wait for a time reference (so they go out corrected); 0 = send now. P0 never waits. */
  timeHoldMs?: () => number;
  /** Publish → PUBACK latency in seconds by path, for the metrics histogram. */
  onAck?: (route: Route, latencyS: number) => void;
  /** Holds bulk messages back while the process uses its CPU share (a drain never starves live records). */
  pacer?: DrainPacer | null;
  random?: () => number;
}

export class OutboxSender {
  readonly counters: SenderCounters = {
    singles: 0,
    batches: 0,
    acked: 0,
    batchAckedRecords: 0,
    failed: 0,
    bytesSent: 0,
    splits: 0,
    notAuthorised: 0,
    quotaPauses: 0,
    resends: 0,
    batchPlainBytes: 0,
    batchWireBytes: 0,
    uploads: 0,
    uploadedRecords: 0,
  };
  /**
   * Topics the broker said we may not publish to (PUBACK 0x87) on this connection; their records
   * are parked. A new connection tries each once more: a fixed policy is picked up then.
   */
  readonly blockedTopics = new Set<string>();
  private readonly inflightIds = new Set<string>();
  private inflightMessages = 0;
  private inflightBatches = 0;
  /** Records whose publish failed: left alone until the retry timer. */
  private readonly resting = new Set<string>();
  /** Records whose topic is not authorised: kept in the store, not sent again by this process. */
  private readonly parked = new Set<string>();
  /** Records too large for this broker's Maximum Packet Size: kept, tried again after the next CONNACK. */
  private readonly oversize = new Set<string>();
  private oversizeLogged = false;
  /** Records published at least once: a resend carries DUP. */
  private readonly sentBefore = new Set<string>();
  /** PUBACK timeouts in a row, by record: past `resends` the record rests. */
  private readonly unanswered = new Map<string, number>();
  private pausedUntil = 0;
  private flushRequested = false;
  private running = false;
  private stopped = false;
  private again = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private wakeTimer: NodeJS.Timeout | null = null;
  private readonly subscriptions = new Subscription();
  private idleWaiters: Array<() => void> = [];
  private readonly failureLog: (msg: string) => void;

  private readonly store: OutboxStore;
  private readonly session: PublishChannel;
  private readonly deadLetters: DeadLetterSink;
  private readonly clock: Clock;
  private readonly log: (msg: string) => void;
  private readonly link: LinkView;
  private readonly prepare: (record: VehicleTelemetry) => VehicleTelemetry;
  private readonly uploader: BatchUploader | null;
  private readonly timeHoldMs: () => number;
  private readonly onAck: (route: Route, latencyS: number) => void;
  private readonly pacer: DrainPacer | null;
  private readonly random: () => number;

  constructor(
    private readonly settings: OutboxSettings,
    parts: OutboxParts,
  ) {
    this.store = parts.store;
    this.session = parts.session;
    this.deadLetters = parts.deadLetters;
    this.clock = parts.clock;
    this.log = parts.log;
    this.failureLog = rateLimited(parts.log, 60_000);
    this.link = parts.link ?? {
      current: {
        mode: 'realtime',
        sendBulk: true,
        metered: false,
        batchMaxRecords: settings.batchMaxRecords,
        drainAll: false,
        reason: 'no link policy',
      },
      meter: () => undefined,
    };
    this.prepare = parts.prepare ?? ((record) => record);
    this.uploader = parts.uploader ?? null;
    this.timeHoldMs = parts.timeHoldMs ?? (() => 0);
    this.onAck = parts.onAck ?? (() => undefined);
    this.pacer = parts.pacer ?? null;
    this.random = parts.random ?? Math.random;
  }

  start(): void {
    this.subscriptions.add(this.store.inserted.subscribe(() => this.kick()));
    this.subscriptions.add(
      this.session.connected.subscribe((up) => {
        if (!up) return;
        // A new CONNACK may allow larger packets, or come after a policy fix: what the last
        // connection could not take is tried again, once per connection.
        this.oversize.clear();
        this.oversizeLogged = false;
        this.blockedTopics.clear();
        this.parked.clear();
        this.kick();
      }),
    );
  }

  stop(): void {
    this.stopped = true;
    this.subscriptions.unsubscribe();
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    if (this.wakeTimer !== null) clearTimeout(this.wakeTimer);
  }

  get inFlight(): number {
    return this.inflightIds.size;
  }

  /** Records kept but not sent now: their topic is not authorised, or they exceed this broker's packet limit. */
  get parkedRecords(): number {
    return this.parked.size + this.oversize.size;
  }

  get parkedByReason(): { notAuthorised: number; exceedsBrokerPacketSize: number } {
    return { notAuthorised: this.parked.size, exceedsBrokerPacketSize: this.oversize.size };
  }

  /** Sends P2 now, whatever its age or count (the `flush` command, a drain at stop). */
  flush(): void {
    this.flushRequested = true;
    this.kick();
  }

  /** Resolves true once the store holds nothing sendable and nothing is in flight, false at the deadline. */
  async drain(timeoutMs: number): Promise<boolean> {
    const deadline = this.clock.monoMs() + timeoutMs;
    this.flush();
    while ((await this.store.count()) > this.parkedRecords || this.inflightIds.size > 0) {
      const left = deadline - this.clock.monoMs();
      if (left <= 0) return false;
      this.flushRequested = true;
      await Promise.race([
        new Promise<void>((resolve) => this.idleWaiters.push(resolve)),
        this.clock.sleep(Math.min(left, 250)),
      ]);
    }
    return true;
  }

  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void this.fill()
      .catch((err: unknown) => this.log(`outbox: ${(err as Error).message}`))
      .finally(() => {
        this.running = false;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  private routeFor(preferred: Route): Route | null {
    const topic = (r: Route): string => (r === 'single' ? this.settings.vehicleTopic : this.settings.batchTopic);
    if (!this.blockedTopics.has(topic(preferred))) return preferred;
    const other: Route = preferred === 'single' ? 'batch' : 'single';
    return this.blockedTopics.has(topic(other)) ? null : other;
  }

  private async fill(): Promise<void> {
    // Timers may fire a little before the monotonic clock reaches the end of a pause: look again then.
    const pausedForMs = this.pausedUntil - this.clock.monoMs();
    if (pausedForMs > 0) {
      this.wakeIn(pausedForMs + 1);
      return;
    }
    for (;;) {
      const uploader = this.link.current.mode === 'offload' ? this.uploader : null;
      // Uploads need no broker connection, only the receiver; they have their own concurrency.
      if (
        uploader === null
          ? !this.session.isConnected || this.inflightMessages >= this.mqttInflightCap()
          : this.inflightMessages >= uploader.concurrency
      )
        break;
      const exclude = new Set([...this.inflightIds, ...this.resting, ...this.parked, ...this.oversize]);
      const next = uploader === null ? await this.nextMessage(exclude) : await this.nextUpload(exclude);
      if (next === null) break;
      for (const r of next.records) this.inflightIds.add(r.id);
      this.inflightMessages++;
      const isBatch = next.route === 'batch';
      if (isBatch) this.inflightBatches++;
      const done =
        next.route === 'single'
          ? this.sendSingle(next.records[0] as StoredRecord)
          : isBatch
            ? this.sendBatch(next.records)
            : this.sendUpload(next.records, uploader as BatchUploader);
      void done
        .catch((err: unknown) => this.unexpected(err, next.records))
        .finally(() => {
          this.inflightMessages--;
          if (isBatch) this.inflightBatches--;
          for (const r of next.records) this.inflightIds.delete(r.id);
          for (const wake of this.idleWaiters.splice(0)) wake();
          // On the next turn of the event loop: a publish that fails at once must not spin in microtasks.
          setImmediate(() => this.kick());
        });
    }
    this.flushRequested = false;
  }

  /**
   * Messages of ours in flight at most: our setting, within the server's Receive Maximum less one
   * slot for heartbeats, time requests and replies (the session queues anything beyond it).
   */
  private mqttInflightCap(): number {
    const serverMax = this.session.sendQuota.limit;
    return Math.min(this.settings.inflight, serverMax > 1 ? serverMax - 1 : 1);
  }

  /**
   * The next message to send: P0 singly, P1 singly unless backlogged, P2 as batches when due. While
   * `batchInflight` batches are out, or while the pacer holds bulk back, only P0 goes (a drain never
   * delays an event; a live P1 waits for the pacer as a batch would, a fraction of a second).
   */
  private async nextMessage(exclude: ReadonlySet<string>): Promise<{ route: Route; records: StoredRecord[] } | null> {
    const s = this.settings;
    const link = this.link.current;
    if (link.mode === 'store') return null;
    const batchMax = link.batchMaxRecords;
    const batchSlot = this.inflightBatches < s.batchInflight;
    const [event] = await this.store.pending(1, exclude, 0);
    if (event !== undefined) {
      const route = this.routeFor('single');
      if (route === 'single' || (route === 'batch' && batchSlot)) return { route, records: [event] };
    }
    if (!batchSlot || this.paced()) return null;
    const holdMs = this.timeHoldMs();
    if (holdMs > 0) {
      this.wakeIn(holdMs);
      return null;
    }
    const p1 = await this.store.pending(batchMax, exclude, 1);
    if (p1.length > 0) {
      // Offloading sends any backlog as batches; otherwise a backlog longer than batchMinRecords.
      const route = this.routeFor(p1.length > (link.drainAll ? 1 : s.batchMinRecords) ? 'batch' : 'single');
      if (route !== null) return { route, records: route === 'batch' ? p1 : p1.slice(0, 1) };
    }
    // P2 waits while the link forbids bulk (cellular budget used up); a `flush` command overrides.
    if (!link.sendBulk && !this.flushRequested) return null;
    const bulk = await this.store.pending(batchMax, exclude, 2);
    const oldest = bulk[0];
    if (oldest === undefined) return null;
    const dueInMs = oldest.createdMs + s.batchMaxAgeMs - this.clock.wallMs();
    if (this.flushRequested || link.drainAll || bulk.length >= s.batchMinRecords || dueInMs <= 0) {
      const route = this.routeFor('batch');
      if (route !== null) return { route, records: route === 'batch' ? bulk : bulk.slice(0, 1) };
    } else {
      this.wakeIn(dueInMs);
    }
    return null;
  }

  /** True when the pacer holds bulk sending back for now; the sender looks again when it allows. */
  private paced(): boolean {
    const delayMs = this.pacer?.delayMs() ?? 0;
    if (delayMs > 0) this.wakeIn(delayMs);
    return delayMs > 0;
  }

  /** Offloading over HTTPS: the oldest records of the highest priority waiting, as one large batch. */
  private async nextUpload(exclude: ReadonlySet<string>): Promise<{ route: Route; records: StoredRecord[] } | null> {
    for (const priority of [0, 1, 2]) {
      if (priority > 0 && this.paced()) return null;
      const records = await this.store.pending(this.link.current.batchMaxRecords, exclude, priority);
      if (records.length > 0) return { route: 'upload', records };
    }
    return null;
  }

  /** The records as a batch, each corrected as it leaves. */
  private pack(records: readonly StoredRecord[]): Promise<PackedBatch> {
    const s = this.settings;
    return packBatch(
      records.map((r) => this.prepare(r.record)),
      { vehicleId: s.vehicleId, createdMs: this.clock.wallMs(), resolution: s.resolution, zstdLevel: s.zstdLevel },
    );
  }

  /** A batch that goes out: its bytes before and after compression, for the compression-ratio metric. */
  private countBatch(packed: PackedBatch): void {
    this.counters.batchPlainBytes += packed.uncompressedBytes;
    this.counters.batchWireBytes += packed.payload.byteLength;
  }

  private async sendUpload(records: readonly StoredRecord[], uploader: BatchUploader): Promise<void> {
    const packed = await this.pack(records);
    this.counters.uploads++;
    this.countBatch(packed);
    this.counters.bytesSent += packed.payload.byteLength;
    const sentAt = this.clock.monoMs();
    try {
      await uploader.upload(packed);
    } catch (err) {
      this.counters.failed++;
      // 413 (too large) and 400 (refused content) answer the same way every time: split to find what
      // fits, or the one record refused, instead of retrying the same PUT forever.
      const status = err instanceof UploadError ? err.status : null;
      if ((status === 413 || status === 400) && records.length > 1) {
        this.counters.splits++;
        const half = Math.ceil(records.length / 2);
        await Promise.all([
          this.sendUpload(records.slice(0, half), uploader),
          this.sendUpload(records.slice(half), uploader),
        ]);
        return;
      }
      if (status === 413 || status === 400) {
        const stored = records[0] as StoredRecord;
        this.deadLetters.write(
          {
            reason: status === 413 ? 'exceeds_upload_limit' : 'refused_by_receiver',
            topic: `upload/${packed.batchId}`,
            detail: (err as Error).message,
            record: stored.record,
          },
          this.clock.wallMs(),
        );
        await this.store.remove([stored]);
        this.log(
          `outbox: the offload receiver refuses record ${stored.id} on its own (HTTP ${status}); moved to ${this.deadLetters.path}`,
        );
        return;
      }
      this.log(
        `outbox: upload of ${records.length} records failed: ${(err as Error).message}; kept for the next cycle`,
      );
      this.rest(records);
      return;
    }
    await this.settle('upload', records, sentAt);
  }

  private async sendSingle(stored: StoredRecord): Promise<void> {
    const payload = encodeTelemetry(this.prepare(stored.record));
    const properties: PublishProperties = {
      contentType: 'application/x-protobuf',
      userProperties: { schema_version: SCHEMA_VERSION },
    };
    const bytes = publishPacketBytes(this.settings.vehicleTopic, payload, properties);
    if (bytes > this.session.maxPacketBytes) {
      await this.tooLarge(stored, this.settings.vehicleTopic, bytes);
      return;
    }
    this.counters.singles++;
    await this.deliver('single', [stored], this.settings.vehicleTopic, payload, properties);
  }

  /** One batch, split in halves (recursively) until each half fits the broker's packet limit. */
  private async sendBatch(records: readonly StoredRecord[]): Promise<void> {
    const s = this.settings;
    const packed = await this.pack(records);
    const properties: PublishProperties = { contentType: BATCH_CONTENT_TYPE, userProperties: packed.userProperties };
    const bytes = publishPacketBytes(s.batchTopic, packed.payload, properties);
    if (bytes > this.session.maxPacketBytes) {
      if (records.length === 1) {
        await this.tooLarge(records[0] as StoredRecord, s.batchTopic, bytes);
        return;
      }
      this.counters.splits++;
      const half = Math.ceil(records.length / 2);
      await Promise.all([this.sendBatch(records.slice(0, half)), this.sendBatch(records.slice(half))]);
      return;
    }
    this.counters.batches++;
    this.countBatch(packed);
    await this.deliver('batch', records, s.batchTopic, packed.payload, properties);
  }

  private async deliver(
    route: Route,
    records: readonly StoredRecord[],
    topic: string,
    payload: Uint8Array,
    properties: PublishProperties,
  ): Promise<void> {
    const sentAt = this.clock.monoMs();
    this.link.meter(publishPacketBytes(topic, payload, properties));
    const dup = records.some((r) => this.sentBefore.has(r.id));
    if (dup) this.counters.resends++;
    for (const r of records) this.sentBefore.add(r.id);
    this.counters.bytesSent += payload.byteLength;
    try {
      await this.session.publish(topic, payload, properties, { dup });
    } catch (err) {
      this.failed(err, records, topic);
      return;
    }
    await this.settle(route, records, sentAt);
  }

  /** Delivered (PUBACK or 2xx): the records leave the store. */
  private async settle(route: Route, records: readonly StoredRecord[], sentAt: number): Promise<void> {
    try {
      await this.store.remove(records);
    } catch (err) {
      // Delivered but still stored: it goes out again and the receiver counts a duplicate.
      this.log(
        `outbox: ${records.length} delivered records could not be removed from the store: ${(err as Error).message}`,
      );
      return;
    }
    for (const r of records) {
      this.sentBefore.delete(r.id);
      this.unanswered.delete(r.id);
    }
    this.counters.acked += records.length;
    if (route === 'batch') this.counters.batchAckedRecords += records.length;
    if (route === 'upload') this.counters.uploadedRecords += records.length;
    this.onAck(route, (this.clock.monoMs() - sentAt) / 1000);
  }

  private failed(err: unknown, records: readonly StoredRecord[], topic: string): void {
    if (!(err instanceof PublishError)) throw err;
    this.counters.failed++;
    const ids = records.map((r) => r.id);
    const what = ids.length === 1 ? `record ${ids[0]}` : `${ids.length} records`;
    if (err.code === 'PUBACK_ERROR' && err.reasonCode === 0x87) {
      this.counters.notAuthorised++;
      if (!this.blockedTopics.has(topic))
        this.log(
          `outbox: SECURITY: the broker does not authorise publishing to ${topic} (PUBACK 0x87); no more attempts on it until the next connection, its records stay stored`,
        );
      this.blockedTopics.add(topic);
      for (const id of ids) this.parked.add(id);
      return;
    }
    if (err.code === 'PUBACK_ERROR' && err.reasonCode === 0x97) {
      this.counters.quotaPauses++;
      const pauseMs = this.settings.quotaBackoffMs * (1 + this.random() / 2);
      this.pausedUntil = this.clock.monoMs() + pauseMs;
      this.log(
        `outbox: the broker's quota is exceeded (PUBACK 0x97); publishing pauses for ${(pauseMs / 1000).toFixed(1)} s`,
      );
      this.wakeIn(pauseMs);
      return;
    }
    // A lost connection: sent again (with DUP) as soon as the session is back.
    if (err.code === 'CONNECTION_LOST' || err.code === 'NOT_CONNECTED') return;
    if (err.code === 'PUBACK_TIMEOUT') {
      // The session closed the connection: the next one carries the record again, up to `resends` times.
      const timeouts = Math.max(
        ...records.map((r) => {
          const n = (this.unanswered.get(r.id) ?? 0) + 1;
          this.unanswered.set(r.id, n);
          return n;
        }),
      );
      if (timeouts <= this.settings.resends) return;
      for (const id of ids) this.unanswered.delete(id);
      this.log(
        `outbox: ${what} not acknowledged after ${this.settings.resends} resends, each on a new connection (${err.message}); kept for the next cycle`,
      );
      this.rest(records);
      return;
    }
    const reason = err.reasonCode !== null ? ` (reason 0x${err.reasonCode.toString(16)})` : '';
    this.log(`outbox: ${what} not acknowledged${reason}: ${err.message}; kept for the next cycle`);
    this.rest(records);
  }

  /**
   * A record whose packet exceeds the broker's limit. Over our own maximum no broker will ever take
   * it: dead-letter file. Over only this broker's: parked in the store until a CONNACK allows it.
   */
  private async tooLarge(stored: StoredRecord, topic: string, packetBytes: number): Promise<void> {
    const own = this.session.ownMaxPacketBytes;
    if (packetBytes <= own) {
      this.oversize.add(stored.id);
      if (!this.oversizeLogged) {
        this.oversizeLogged = true;
        this.log(
          `outbox: record ${stored.id} needs a ${packetBytes}-byte packet, more than this broker's maximum of ${this.session.maxPacketBytes}; kept stored and tried again after the next connect (v2c_parked_records)`,
        );
      }
      return;
    }
    const reason = 'exceeds_max_packet_size';
    this.deadLetters.write(
      { reason, topic, packetBytes, maxPacketBytes: own, record: stored.record },
      this.clock.wallMs(),
    );
    await this.store.remove([stored]);
    this.log(
      `outbox: record ${stored.id} needs a ${packetBytes}-byte packet, more than any we send (${own}); moved to ${this.deadLetters.path}`,
    );
  }

  /**
   * A failure that is not the broker's answer (the store, the dead-letter file, packing): the records
   * stay stored and rest until the retry timer, so a fault that repeats cannot loop hot.
   */
  private unexpected(err: unknown, records: readonly StoredRecord[]): void {
    this.counters.failed++;
    this.failureLog(
      `outbox: ${records.length} record(s) not sent: ${(err as Error).message ?? String(err)}; kept for the next cycle`,
    );
    this.rest(records);
  }

  /** Leaves records alone until the retry timer, so a failure that repeats cannot loop hot. */
  private rest(records: readonly StoredRecord[]): void {
    for (const r of records) this.resting.add(r.id);
    this.scheduleRetry(this.settings.retryDelayMs);
  }

  /** Looks again after a pause, or once the oldest waiting P2 record is due, even if nothing else happens meanwhile. */
  private wakeIn(delayMs: number): void {
    if (this.wakeTimer !== null) clearTimeout(this.wakeTimer);
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = null;
      this.kick();
    }, delayMs);
    this.wakeTimer.unref();
  }

  private scheduleRetry(delayMs: number): void {
    if (this.retryTimer !== null) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.resting.clear();
      this.kick();
    }, delayMs);
  }
}
