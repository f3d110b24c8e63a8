// Sends one message the outbox picked: a record singly, a batch (split in halves while it exceeds
// the broker's packet limit), or an upload over HTTPS; on delivery the records leave the store, on
// failure the broker's answer becomes a hold (record-holds.ts).
import {
  BATCH_CONTENT_TYPE,
  batchProperties,
  compressBatch,
  encodeRecords,
  packBatch,
  type EncodedBatch,
  type PackedBatch,
  type PackOptions,
} from '../../proto/batch-packer.js';
import type { VehicleTelemetry } from '../../proto/telemetry-codec.js';
import type { IConnackPacket } from 'mqtt';
import { LiveEncoding, type LiveMessage } from './live-encoding.js';
import { publishPacketBytes, type PublishProperties } from '../session/mqtt-session.js';
import { UploadError, type BatchUploader } from '../offload/https-offload.js';
import type { RecordRef, SentRecord, StoredRecord } from '../store/stored-record.js';
import type { OutboxCollaborators, OutboxSettings, Route, SenderCounters } from './outbox-parts.js';
import type { RecordHolds } from './record-holds.js';
import { UnremovedRecords } from './unremoved-records.js';

const EMPTY = new Uint8Array(0);
/** An MQTT remaining length grows by at most 3 bytes (1 → 4) with the payload. */
const REMAINING_LENGTH_GROWTH = 3;

function batchPublishProperties(userProperties: Record<string, string>): PublishProperties {
  return { contentType: BATCH_CONTENT_TYPE, userProperties };
}

/** A batch that fits the broker's packet limit, and what removing its records needs. */
interface FittingBatch {
  sent: SentRecord[];
  packed: PackedBatch;
  properties: PublishProperties;
}

export class MessageDelivery {
  /** Records published at least once: a resend carries DUP. */
  private readonly sentBefore = new Set<string>();
  private readonly live: LiveEncoding;
  /** Layout PUBLISHes waiting for their PUBACK, by topic. */
  private readonly announcing = new Map<string, Promise<void>>();
  /** Layouts published without a PUBACK yet (by topic): publishing one again is a resend, with DUP. */
  private readonly unansweredLayouts = new Set<string>();
  /** The CONNACK the layouts were announced under: a new session at the broker may have lost them. */
  private connack: IConnackPacket | null = null;
  /** Records that left (delivered, dead-lettered) but are still stored: a failing disk. */
  readonly unremoved: UnremovedRecords;

  constructor(
    private readonly settings: OutboxSettings,
    private readonly parts: OutboxCollaborators,
    private readonly counters: SenderCounters,
    private readonly holds: RecordHolds,
    /** Records removed at a retry: the outbox may look again. */
    removedLater: () => void,
  ) {
    this.unremoved = new UnremovedRecords(parts.store, settings.retryDelayMs, parts.random, parts.log, removedLater);
    this.live = new LiveEncoding(
      {
        mode: settings.liveEncoding,
        vehicleTopic: settings.vehicleTopic,
        compactTopic: settings.compactTopic,
        layoutTopic: (key) => `${settings.layoutTopicPrefix}/${key}`,
        resolution: settings.resolution,
      },
      parts.clock,
    );
  }

  /** The records as a batch, each corrected as it leaves. */
  private pack(records: readonly StoredRecord[]): Promise<PackedBatch> {
    return packBatch(this.corrected(records), this.packOptions());
  }

  private corrected(records: readonly StoredRecord[]): VehicleTelemetry[] {
    return records.map((r) => this.parts.prepare(r.record));
  }

  private packOptions(): PackOptions {
    const s = this.settings;
    return {
      vehicleId: s.vehicleId,
      createdMs: this.parts.clock.wallMs(),
      resolution: s.resolution,
      zstdLevel: s.zstdLevel,
    };
  }

  /**
   * A bulk message is packed: its bytes before and after compression counted (the compression-ratio
   * metric), and the pacer told its burst of CPU is over.
   */
  private packed(packed: PackedBatch): void {
    this.parts.pacer?.note();
    this.counters.batchPlainBytes += packed.uncompressedBytes;
    this.counters.batchWireBytes += packed.payload.byteLength;
  }

  async sendUpload(records: readonly StoredRecord[], uploader: BatchUploader): Promise<void> {
    const packed = await this.pack(records);
    this.counters.uploads++;
    this.packed(packed);
    this.counters.bytesSent += packed.payload.byteLength;
    const sentAt = this.parts.clock.monoMs();
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
        this.parts.deadLetters.write(
          {
            reason: status === 413 ? 'exceeds_upload_limit' : 'refused_by_receiver',
            topic: `upload/${packed.batchId}`,
            detail: (err as Error).message,
            record: stored.record,
          },
          this.parts.clock.wallMs(),
        );
        this.parts.log(
          `outbox: the offload receiver refuses record ${stored.id} on its own (HTTP ${status}); moved to ${this.parts.deadLetters.path}`,
        );
        await this.unremoved.remove([stored], 'dead-lettered');
        return;
      }
      this.parts.log(
        `outbox: upload of ${records.length} records failed: ${(err as Error).message}; kept for the next cycle`,
      );
      this.holds.rest(records.map((r) => r.id));
      return;
    }
    await this.settle('upload', records, sentAt);
  }

  async sendSingle(stored: StoredRecord): Promise<void> {
    const connack = this.parts.session.connack;
    if (connack !== this.connack) {
      this.connack = connack;
      if (connack?.sessionPresent !== true) this.live.forgetLayouts();
    }
    const prepared = this.parts.prepare(stored.record);
    let { layout, record } = this.live.encode(prepared, connack?.properties?.retainAvailable !== false);
    // A layout over this broker's packet limit could never be learnt: the record goes row-wise.
    const max = this.parts.session.maxPacketBytes;
    const layoutBytes = layout === null ? 0 : publishPacketBytes(layout.topic, layout.payload, layout.properties);
    if (layoutBytes > max) ({ layout, record } = this.live.encode(prepared, false));
    const bytes = publishPacketBytes(record.topic, record.payload, record.properties);
    if (bytes > max) {
      await this.tooLarge(stored, record.topic, bytes);
      return;
    }
    if (layout !== null) {
      // The receiver must be able to have the layout before the record that needs it. Records
      // sent meanwhile wait for the same PUBLISH instead of making their own.
      let announcing = this.announcing.get(layout.topic);
      if (announcing === undefined) {
        announcing = this.publishLayout(layout, layoutBytes).finally(() => this.announcing.delete(layout.topic));
        this.announcing.set(layout.topic, announcing);
      }
      try {
        await announcing;
      } catch (err) {
        this.holds.failed(err, [stored], layout.topic);
        return;
      }
    }
    this.counters.singles++;
    await this.deliver('single', [stored], record.topic, record.payload, record.properties);
  }

  private async publishLayout(layout: LiveMessage, packetBytes: number): Promise<void> {
    this.parts.link.meter(packetBytes);
    this.counters.bytesSent += layout.payload.byteLength;
    const dup = this.unansweredLayouts.has(layout.topic);
    this.unansweredLayouts.add(layout.topic);
    await this.parts.session.publish(layout.topic, layout.payload, layout.properties, { retain: true, dup });
    this.unansweredLayouts.delete(layout.topic);
    this.live.layoutPublished(layout.topic);
  }

  /** A record the store let go of: a later record with its id is not a resend. */
  forget(id: string): void {
    this.sentBefore.delete(id);
    this.unremoved.forget(id);
  }

  stop(): void {
    this.unremoved.stop();
  }

  /** Records marked as sent before (a resend of one carries DUP). */
  get tracked(): number {
    return this.sentBefore.size;
  }

  /**
   * One batch, in halves (recursively) while it exceeds the broker's packet limit. Only what removal
   * needs waits for the PUBACK: the records are let go of once packed (see SentRecord).
   */
  sendBatch(records: readonly StoredRecord[]): Promise<void> {
    // Not an async function: one keeps its parameters until it returns, here until the PUBACK.
    return this.packToFit(records).then(async (batches) => {
      await Promise.all(
        batches.map(({ sent, packed, properties }) =>
          this.deliver('batch', sent, this.settings.batchTopic, packed.payload, properties),
        ),
      );
    });
  }

  /**
   * The records packed, split in halves while a batch exceeds the packet limit; a record that alone
   * does is set aside. A batch that fits even at zstd's bound (any broker not limited to a few KB)
   * lets go of its records before it is compressed; one that may not fit keeps them to split.
   * Not an async function, which would keep its parameters until it returns.
   */
  private packToFit(records: readonly StoredRecord[]): Promise<FittingBatch[]> {
    try {
      const options = this.packOptions();
      const encoded = encodeRecords(this.corrected(records), options);
      const mostBytes =
        publishPacketBytes(this.settings.batchTopic, EMPTY, batchPublishProperties(batchProperties(encoded))) +
        encoded.maxPayloadBytes +
        REMAINING_LENGTH_GROWTH;
      if (mostBytes > this.parts.session.maxPacketBytes) return this.packOrSplit(records, encoded, options);
      const sent = this.parts.store.asSent(records);
      return compressBatch(encoded, options).then((packed) => [this.fitting(sent, packed)]);
    } catch (err) {
      // A record that cannot be encoded (a damaged row) fails the send, as in an async function:
      // thrown here, it would end the outbox's loop with the message counted in flight for good.
      return Promise.reject(err);
    }
  }

  /** Compressed, then split in halves if it exceeds the broker's packet limit after all. */
  private async packOrSplit(
    records: readonly StoredRecord[],
    encoded: EncodedBatch,
    options: PackOptions,
  ): Promise<FittingBatch[]> {
    const topic = this.settings.batchTopic;
    const packed = await compressBatch(encoded, options);
    const bytes = publishPacketBytes(topic, packed.payload, batchPublishProperties(packed.userProperties));
    if (bytes <= this.parts.session.maxPacketBytes) return [this.fitting(this.parts.store.asSent(records), packed)];
    if (records.length === 1) {
      await this.tooLarge(records[0] as StoredRecord, topic, bytes);
      return [];
    }
    this.counters.splits++;
    const half = Math.ceil(records.length / 2);
    const halves = await Promise.all([this.packToFit(records.slice(0, half)), this.packToFit(records.slice(half))]);
    return halves.flat();
  }

  private fitting(sent: SentRecord[], packed: PackedBatch): FittingBatch {
    this.counters.batches++;
    this.packed(packed);
    return { sent, packed, properties: batchPublishProperties(packed.userProperties) };
  }

  private async deliver(
    route: Route,
    records: readonly RecordRef[],
    topic: string,
    payload: Uint8Array,
    properties: PublishProperties,
  ): Promise<void> {
    const sentAt = this.parts.clock.monoMs();
    this.parts.link.meter(publishPacketBytes(topic, payload, properties));
    const dup = records.some((r) => this.sentBefore.has(r.id));
    if (dup) this.counters.resends++;
    for (const r of records) this.sentBefore.add(r.id);
    this.counters.bytesSent += payload.byteLength;
    try {
      await this.parts.session.publish(topic, payload, properties, { dup });
    } catch (err) {
      this.holds.failed(err, records, topic);
      return;
    }
    await this.settle(route, records, sentAt);
  }

  /** Delivered (PUBACK or 2xx): the records leave the store (or wait for it, never sent again). */
  private async settle(route: Route, records: readonly RecordRef[], sentAt: number): Promise<void> {
    for (const r of records) this.sentBefore.delete(r.id);
    this.holds.delivered(records);
    this.counters.acked += records.length;
    if (route === 'batch') this.counters.batchAckedRecords += records.length;
    if (route === 'upload') this.counters.uploadedRecords += records.length;
    this.parts.onAck(route, (this.parts.clock.monoMs() - sentAt) / 1000);
    await this.unremoved.remove(records, 'delivered');
  }

  /**
   * Rows read from the store that are no records (see damageOf): moved to the dead-letter file and
   * removed. Unless the file takes them they stay, left alone until the retry, so the rest go on.
   */
  async setAsideDamaged(damaged: ReadonlyArray<{ stored: StoredRecord; damage: string }>): Promise<void> {
    const path = this.parts.deadLetters.path;
    try {
      for (const { stored, damage } of damaged)
        this.parts.deadLetters.write(
          { reason: 'damaged_in_store', topic: 'store', detail: damage, record: stored.record },
          this.parts.clock.wallMs(),
        );
    } catch (err) {
      this.parts.log(
        `outbox: ${damaged.length} damaged stored record(s) could not be kept in ${path}: ${(err as Error).message}; left in the store`,
      );
      this.holds.rest(damaged.map((d) => d.stored.id));
      return;
    }
    for (const { stored, damage } of damaged)
      this.parts.log(`outbox: stored record ${stored.id} is damaged (${damage}); moved to ${path}`);
    await this.unremoved.remove(
      damaged.map((d) => d.stored),
      'dead-lettered',
    );
  }

  /**
   * A record whose packet exceeds the broker's limit. Over our own maximum no broker will ever take
   * it: dead-letter file. Over only this broker's: parked in the store until a CONNACK allows it.
   */
  private async tooLarge(stored: StoredRecord, topic: string, packetBytes: number): Promise<void> {
    const own = this.parts.session.ownMaxPacketBytes;
    if (packetBytes <= own) {
      if (this.holds.keepOversize(stored.id))
        this.parts.log(
          `outbox: record ${stored.id} needs a ${packetBytes}-byte packet, more than this broker's maximum of ${this.parts.session.maxPacketBytes}; kept stored and tried again after the next connect (v2c_parked_records)`,
        );
      return;
    }
    const reason = 'exceeds_max_packet_size';
    this.parts.deadLetters.write(
      { reason, topic, packetBytes, maxPacketBytes: own, record: stored.record },
      this.parts.clock.wallMs(),
    );
    this.parts.log(
      `outbox: record ${stored.id} needs a ${packetBytes}-byte packet, more than any we send (${own}); moved to ${this.parts.deadLetters.path}`,
    );
    await this.unremoved.remove([stored], 'dead-lettered');
  }
}
