// The local record store (RxDB). Records stay here until their PUBACK arrives.
import type { RxCollection, RxDatabase, RxDocumentData } from 'rxdb';
import { Subject, type Observable } from 'rxjs';
import {
  isStorageFull,
  StoreCapacity,
  type CapacityLimits,
  type DropReason,
  type EvictableRecords,
  weighsRecords,
} from './store-capacity.js';
import { openStoreDatabase, type OpenedStore, type StoreCounters, type StoreFileOptions } from './store-opener.js';
import { deleteDocuments, readPending } from './record-documents.js';
import { MAX_PRIORITY, type RecordRef, type SentRecord, type StoredRecord } from './stored-record.js';
import type { VehicleTelemetry } from '../../proto/telemetry-codec.js';
import { rateLimited, type Log } from '../../core/log.js';
import type { SqliteStorageInstance } from './sqlite-storage.js';

export interface TelemetryStoreOptions extends StoreFileOptions, CapacityLimits {
  /** How often acknowledged records' tombstones are purged from the file. */
  purgeIntervalMs?: number;
}

/** A record that left the store without being delivered. */
export interface RecordDrop {
  id: string;
  priority: number;
  reason: DropReason;
}

export class TelemetryStore {
  private readonly insertedSubject = new Subject<void>();
  private readonly dropsSubject = new Subject<RecordDrop>();
  private readonly capacity: StoreCapacity;
  private readonly db: RxDatabase;
  private readonly records: RxCollection<StoredRecord>;
  readonly counters: StoreCounters;
  private purgeTimer: NodeJS.Timeout | null = null;
  private readonly quietLog: Log;
  /** Records stored per priority (known once `counting` has resolved). */
  private readonly stored: number[] = new Array<number>(MAX_PRIORITY + 1).fill(0);
  /**
   * The stored document behind each record `pending` handed out (or `asSent` made), so its removal
   * need not read it again (a drain read and parsed every delivered record twice). A record changed
   * meanwhile is a revision conflict in the storage, as before. A sent record's is kept without the
   * record itself, which the outbox lets go of once it is packed (SentRecord); a handed-out record
   * holds its body anyway.
   */
  private readonly documents = new WeakMap<RecordRef, RxDocumentData<StoredRecord>>();
  private counting: Promise<void> | null = null;

  /**
   * Opens the store (see openStoreDatabase: a damaged file is moved aside, an unwritable one leaves
   * the gateway capturing in memory) and starts purging tombstones from a file on disk.
   */
  static async open(options: TelemetryStoreOptions, log: Log = () => {}): Promise<TelemetryStore> {
    const store = new TelemetryStore(await openStoreDatabase(options, weighsRecords(options), log), options, log);
    if (store.capacity.onDisk) store.startPurging(options.purgeIntervalMs ?? 60_000);
    return store;
  }

  private constructor(opened: OpenedStore, limits: CapacityLimits, log: Log) {
    this.db = opened.db;
    this.records = opened.records;
    this.counters = opened.counters;
    this.quietLog = rateLimited(log, 60_000);
    const evictable: EvictableRecords = {
      oldest: (priority, limit) =>
        this.records.find({ selector: { priority }, sort: [{ priority: 'asc' }, { seq: 'asc' }], limit }).exec(),
      removeIds: (ids) => this.removeIds(ids),
      purge: () => this.purge(),
    };
    const countDrop = (id: string, priority: number, reason: DropReason): void => this.countDrop(id, priority, reason);
    this.capacity = new StoreCapacity(evictable, opened.disk, limits, countDrop, log, opened.classBytes);
  }

  /** Bytes of stored records of one priority (tracked when quotas are configured, else 0). */
  bytesOf(priority: number): number {
    return this.capacity.bytesOf(priority);
  }

  /**
   * Counts what is stored per priority, once, before the first count or change: on disk the
   * storage's trigger-kept counts (instant), in memory a count query per priority.
   */
  private ensureCounted(): Promise<void> {
    const instance = this.records.internalStorageInstance as Partial<
      Pick<SqliteStorageInstance<StoredRecord>, 'countsBy'>
    >;
    this.counting ??= (async () => {
      const kept = instance.countsBy?.();
      for (let p = 0; p <= MAX_PRIORITY; p++)
        this.stored[p] =
          kept !== undefined ? (kept.get(p) ?? 0) : await this.records.count({ selector: { priority: p } }).exec();
    })().catch((err: unknown) => {
      // Counted again next time (a store that recovers is not stuck with a failed count).
      this.counting = null;
      throw err;
    });
    return this.counting;
  }

  /** Fires after each insert, so the sender can wake up. */
  get inserted(): Observable<void> {
    return this.insertedSubject.asObservable();
  }

  /**
   * Stores a record. When the database is at its size cap, older records of the same or lower
   * priority make room (counted as evicted); when nothing may go, the new record is dropped and
   * counted. A write error never escapes: capture must go on.
   */
  async insert(record: VehicleTelemetry, createdMs: number): Promise<boolean> {
    const doc: StoredRecord = {
      id: record.messageId,
      priority: record.priority,
      seq: record.sequence,
      createdMs,
      record,
    };
    const bytes = this.capacity.weigh(record);
    try {
      await this.ensureCounted();
      await this.capacity.makeRoomFor(record.priority, bytes);
      await this.capacity.write(record.priority, () => this.records.insert(doc));
    } catch (err) {
      // A full store is policy (counted as a drop), not a failed write.
      if (!isStorageFull(err)) this.counters.writeErrors++;
      this.countDrop(record.messageId, record.priority, isStorageFull(err) ? 'store_full' : 'store_error');
      this.quietLog(
        `store: record ${record.messageId} (priority ${record.priority}) not stored: ${storageMessage(err)}`,
      );
      return false;
    }
    this.stored[record.priority] = (this.stored[record.priority] ?? 0) + 1;
    this.capacity.stored(record.priority, bytes);
    this.insertedSubject.next();
    return true;
  }

  private countDrop(id: string, priority: number, reason: DropReason): void {
    this.counters.dropped.add(priority, reason);
    this.dropsSubject.next({ id, priority, reason });
  }

  /** Each record the store let go of by policy or failure (the counters say how many; this says which). */
  get drops(): Observable<RecordDrop> {
    return this.dropsSubject.asObservable();
  }

  /**
   * Removes tombstones (nothing replicates from this store). A file on disk has them only from
   * before deletions removed rows at once (`purgeDocuments`); the in-memory store has them always.
   */
  async purge(): Promise<void> {
    // A turn of the event loop between batches: live records are stored and sent meanwhile.
    while (!(await this.records.storageInstance.cleanup(0))) await new Promise((resolve) => setImmediate(resolve));
  }

  private startPurging(intervalMs: number): void {
    this.purgeTimer = setInterval(() => {
      this.purge().catch((err: unknown) => this.quietLog(`store: purge failed: ${storageMessage(err)}`));
      this.capacity.reclaimDisk();
    }, intervalMs);
    this.purgeTimer.unref();
  }

  /**
   * Pending records oldest first, highest priority (lowest number) first, or of one priority only;
   * skips `exclude`.
   */
  async pending(limit: number, exclude: ReadonlySet<string>, priority?: number): Promise<StoredRecord[]> {
    const documents = await readPending(this.records, limit, exclude, priority);
    return documents.map((doc) => {
      const { _meta, _rev, _attachments, _deleted, ...record } = doc;
      this.documents.set(record, doc);
      return record;
    });
  }

  /** What removing these records needs once they are sent, without the records (see SentRecord). */
  asSent(records: readonly StoredRecord[]): SentRecord[] {
    return records.map((r) => {
      const sent: SentRecord = { id: r.id, priority: r.priority, bytes: this.capacity.weigh(r.record) };
      const doc = this.documents.get(r);
      if (doc !== undefined) this.documents.set(sent, withoutRecord(doc));
      return sent;
    });
  }

  /** Removes delivered (or dead-lettered) records. */
  async remove(records: readonly RecordRef[]): Promise<void> {
    const known = records.map((r) => {
      const doc = this.documents.get(r);
      return doc === undefined ? undefined : { doc, bytes: 'bytes' in r ? r.bytes : this.capacity.weigh(r.record) };
    });
    if (known.every((k) => k !== undefined)) await this.removeDocuments(known);
    else await this.removeIds(records.map((r) => r.id));
  }

  /**
   * Records stored, of one priority or all. Kept as the store changes (counted from the index once,
   * see ensureCounted), so a metrics scrape or a status command costs nothing: counting reads a
   * whole index (2.9 s for a cold 100k store on this machine).
   */
  async count(priority?: number): Promise<number> {
    await this.ensureCounted();
    return priority !== undefined ? (this.stored[priority] ?? 0) : this.stored.reduce((a, b) => a + b, 0);
  }

  /** Removes by id (the records' stored documents read first). */
  private async removeIds(ids: string[]): Promise<void> {
    const docs = await this.records.storageInstance.findDocumentsById(ids, false);
    await this.removeDocuments(docs.map((doc) => ({ doc, bytes: this.capacity.weigh(doc.record) })));
  }

  /**
   * Removes stored documents (see deleteDocuments), each with what it weighed; the per-priority
   * count and bytes follow what was really removed.
   */
  private async removeDocuments(current: Array<{ doc: RxDocumentData<StoredRecord>; bytes: number }>): Promise<void> {
    await this.ensureCounted();
    if (current.length === 0) return;
    const notRemoved = await deleteDocuments(
      this.records,
      current.map((c) => c.doc),
    );
    for (const { doc, bytes } of current) {
      if (notRemoved.has(doc.id)) continue;
      this.stored[doc.priority] = Math.max(0, (this.stored[doc.priority] ?? 0) - 1);
      this.capacity.removed(doc.priority, bytes);
    }
  }

  /** Bytes the database uses (live pages), or null for the in-memory store. */
  usedBytes(): number | null {
    return this.capacity.usedBytes();
  }

  /**
   * The highest sequence stored. Per priority, the last entry of the [priority, seq] index: a count
   * and one offset read, where a descending sort would parse every stored record at start-up.
   */
  async maxSequence(): Promise<number> {
    await this.ensureCounted();
    let max = -1;
    for (let p = 0; p <= MAX_PRIORITY; p++) {
      const n = this.stored[p] ?? 0;
      if (n === 0) continue;
      const [last] = await this.records
        .find({ selector: { priority: p }, sort: [{ priority: 'asc' }, { seq: 'asc' }], skip: n - 1, limit: 1 })
        .exec();
      max = Math.max(max, last?.seq ?? -1);
    }
    return max;
  }

  async close(): Promise<void> {
    if (this.purgeTimer) clearInterval(this.purgeTimer);
    this.insertedSubject.complete();
    this.dropsSubject.complete();
    await this.db.close();
  }
}

function storageMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * The stored document less the record itself, the bulk of it. Removal reads only its id, revision
 * and priority (record-documents.ts), so it keeps the document's type.
 */
function withoutRecord(doc: RxDocumentData<StoredRecord>): RxDocumentData<StoredRecord> {
  const { record: _record, ...rest } = doc;
  return rest as RxDocumentData<StoredRecord>;
}
