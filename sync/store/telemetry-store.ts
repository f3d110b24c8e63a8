// The local record store (RxDB). Records stay here until their PUBACK arrives.
import {
  createRevision,
  createRxDatabase,
  normalizeMangoQuery,
  now,
  prepareQuery,
  type RxCollection,
  type RxDatabase,
  type RxDocumentData,
  type RxJsonSchema,
  type RxStorage,
} from 'rxdb';
import { getRxStorageMemory } from 'rxdb/plugins/storage-memory';
import { Subject, type Observable } from 'rxjs';
import type { VehicleTelemetry } from '../../proto/telemetry-codec.js';
import { DiskReserve } from './disk-reserve.js';
import {
  checkInBackground,
  shrinkSqliteWal,
  sqliteFileBytes,
  sqliteFileCheckedAtOpen,
  sqliteFileUsedBytes,
  withSqliteEvictionRoom,
  type SqliteSynchronous,
} from './sqlite-file.js';
import { databasePath, getRxStorageSQLite } from './sqlite-storage.js';
import { StorageError, storageError } from './storage-errors.js';
import { rateLimited, type Log } from '../../core/log.js';

export interface StoredRecord {
  id: string;
  priority: number;
  seq: number;
  createdMs: number;
  record: VehicleTelemetry;
}

export const telemetrySchema: RxJsonSchema<StoredRecord> = {
  version: 0,
  primaryKey: 'id',
  type: 'object',
  properties: {
    id: { type: 'string', maxLength: 40 },
    priority: { type: 'integer', minimum: 0, maximum: 9, multipleOf: 1 },
    seq: { type: 'integer', minimum: 0, maximum: 1e15, multipleOf: 1 },
    createdMs: { type: 'number' },
    record: { type: 'object' },
  },
  required: ['id', 'priority', 'seq', 'createdMs', 'record'],
  // The outbox reads "oldest first within the highest priority": one index range scan.
  indexes: [['priority', 'seq']],
};

export type StorageKind = 'sqlite' | 'memory';

export interface TelemetryStoreOptions {
  kind: StorageKind;
  /** Directory of the SQLite file (`<dir>/<name>.sqlite`). */
  dir: string;
  name?: string;
  synchronous?: SqliteSynchronous;
  walAutocheckpointPages?: number;
  pageSize?: number;
  /** Size cap of the database; past 90 % of it the oldest records of the lowest priority make room. */
  maxBytes?: number;
  /** How often acknowledged records' tombstones are purged from the file. */
  purgeIntervalMs?: number;
  /** Larger files are checked in the background instead of at open (see SqliteFileOptions). */
  checkOnOpenMaxBytes?: number;
  /** Ballast kept beside the database and given back when the filesystem fills up (0: none). */
  reserveBytes?: number;
  /**
   * Byte quota per priority (index = priority; undefined = no quota): a class over its quota
   * makes room by dropping its own oldest records, so bulk history cannot crowd out events.
   */
  quotaBytes?: ReadonlyArray<number | undefined>;
}

export type DropReason = 'evicted' | 'quota' | 'store_full' | 'store_error';

/** A record that left the store without being delivered. */
export interface RecordDrop {
  id: string;
  priority: number;
  reason: DropReason;
}

export interface StoreCounters {
  /** Records dropped, by priority and reason. */
  dropped: Map<string, number>;
  writeErrors: number;
  /** Why the store runs in memory instead of on disk; null while durable. */
  degraded: string | null;
  /** A damaged database file that was moved aside at open. */
  movedAside: string | null;
  /** `quick_check` of the file: at open, in the background for large files, or not applicable. */
  integrity: 'ok' | 'checking' | 'damaged' | 'not-checked';
}

interface DiskFile {
  path: string;
  usedBytes: () => number;
  reserve: DiskReserve;
}

/** Start evicting at this share of maxBytes and stop once usage is back under the low mark. */
const HIGH_WATER = 0.9;
const LOW_WATER = 0.8;
const EVICT_BATCH = 50;
const MAX_PRIORITY = 9;
const DEFAULT_RESERVE_BYTES = 4 * 1024 * 1024;
/** WAL size once the filesystem is full: small, so the log never takes the database's room. */
const FULL_DISK_WAL_PAGES = 100;
/** Less room than this on the filesystem when a write fails with SQLITE_FULL: the disk, not the cap, is full. */
const FILESYSTEM_FULL_BYTES = 1024 * 1024;
/** Room kept free on a full filesystem for the WAL (FULL_DISK_WAL_PAGES) and for recording deletions. */
const FULL_DISK_HEADROOM_BYTES = 2 * FILESYSTEM_FULL_BYTES;

let memoryInstances = 0;

export class TelemetryStore {
  private readonly insertedSubject = new Subject<void>();
  private readonly dropsSubject = new Subject<RecordDrop>();
  readonly counters: StoreCounters;
  private purgeTimer: NodeJS.Timeout | null = null;
  /** The size the filesystem allowed when it filled up; from then on the store keeps within it. */
  private diskFullAt: number | null = null;
  private readonly quietLog: Log;
  /** Bytes stored per priority (the records' JSON), kept only when quotas are configured. */
  private readonly classBytes: number[] = new Array<number>(MAX_PRIORITY + 1).fill(0);
  /** Records stored per priority (known once `counting` has resolved). */
  private readonly stored: number[] = new Array<number>(MAX_PRIORITY + 1).fill(0);
  /**
   * The stored document behind each record `pending` handed out, so its removal need not read it
   * again (a drain read and parsed every delivered record twice). A record changed meanwhile is a
   * revision conflict in the storage, as before.
   */
  private readonly documents = new WeakMap<StoredRecord, RxDocumentData<StoredRecord>>();
  private counting: Promise<void> | null = null;

  private constructor(
    private readonly db: RxDatabase,
    private readonly records: RxCollection<StoredRecord>,
    private readonly disk: DiskFile | null,
    private readonly maxBytes: number | undefined,
    private readonly quotaBytes: ReadonlyArray<number | undefined>,
    private readonly log: Log,
    counters: StoreCounters,
  ) {
    this.counters = counters;
    this.quietLog = rateLimited(log, 60_000);
  }

  /** Bytes of stored records of one priority (tracked when quotas are configured, else 0). */
  bytesOf(priority: number): number {
    return this.classBytes[priority] ?? 0;
  }

  private get tracksBytes(): boolean {
    return this.quotaBytes.some((q) => q !== undefined);
  }

  /**
   * Counts what is stored per priority, once, before the first count or change (not at open: a
   * large file opens at once and is checked in the background; this reads its whole index).
   */
  private ensureCounted(): Promise<void> {
    this.counting ??= (async () => {
      for (let p = 0; p <= MAX_PRIORITY; p++)
        this.stored[p] = await this.records.count({ selector: { priority: p } }).exec();
    })().catch((err: unknown) => {
      // Counted again next time (a store that recovers is not stuck with a failed count).
      this.counting = null;
      throw err;
    });
    return this.counting;
  }

  /** Sums what is stored per priority at open, one index page at a time. */
  private async measureClasses(): Promise<void> {
    for (let p = 0; p <= MAX_PRIORITY; p++) {
      for (let skip = 0; ; skip += 500) {
        const page = await this.records
          .find({ selector: { priority: p }, sort: [{ priority: 'asc' }, { seq: 'asc' }], skip, limit: 500 })
          .exec();
        for (const doc of page) this.classBytes[p] = (this.classBytes[p] ?? 0) + recordBytes(doc.record);
        if (page.length < 500) break;
      }
    }
  }

  /** Drops the oldest records of `priority` until `incoming` more bytes fit its quota. */
  private async keepQuota(priority: number, incoming: number): Promise<void> {
    const quota = this.quotaBytes[priority];
    if (quota === undefined) return;
    let dropped = 0;
    while ((this.classBytes[priority] ?? 0) + incoming > quota) {
      const victims = await this.records
        .find({ selector: { priority }, sort: [{ priority: 'asc' }, { seq: 'asc' }], limit: EVICT_BATCH })
        .exec();
      if (victims.length === 0) break;
      let freed = 0;
      const chosen: string[] = [];
      for (const v of victims) {
        if ((this.classBytes[priority] ?? 0) - freed + incoming <= quota) break;
        freed += recordBytes(v.record);
        chosen.push(v.id);
      }
      await this.removeIds(chosen);
      for (const id of chosen) this.countDrop(id, priority, 'quota');
      dropped += chosen.length;
    }
    if (dropped > 0)
      this.quietLog(`store: priority ${priority} is at its ${quota}-byte quota; dropped its ${dropped} oldest records`);
  }

  /**
   * Opens the durable store. A damaged file is moved aside and a new one started; a file that
   * cannot be written (read-only, no such directory) leaves the gateway capturing in memory, said
   * once in the log and in `counters.degraded`, instead of exiting and losing what arrives.
   */
  static async open(options: TelemetryStoreOptions, log: Log = () => {}): Promise<TelemetryStore> {
    const counters: StoreCounters = {
      dropped: new Map(),
      writeErrors: 0,
      degraded: null,
      movedAside: null,
      integrity: 'not-checked',
    };
    const name = options.name ?? 'v2c';
    if (options.kind === 'sqlite') {
      const path = databasePath(options.dir, name);
      const storage = getRxStorageSQLite({
        directory: options.dir,
        synchronous: options.synchronous ?? 'FULL',
        walAutocheckpointPages: options.walAutocheckpointPages,
        pageSize: options.pageSize,
        checkOnOpenMaxBytes: options.checkOnOpenMaxBytes,
        maxBytes: options.maxBytes,
        onCorruptMovedAside: (err, movedTo) => {
          counters.movedAside = movedTo;
          log(`store: ${err.problem}; moved it to ${movedTo} and started a new database`);
        },
      });
      const reserve = new DiskReserve(`${path}.reserve`, options.reserveBytes ?? DEFAULT_RESERVE_BYTES);
      try {
        const store = await TelemetryStore.create(
          storage,
          name,
          { path, usedBytes: () => sqliteFileUsedBytes(path), reserve },
          options,
          log,
          counters,
        );
        const checkedAtOpen = sqliteFileCheckedAtOpen(path);
        counters.integrity = checkedAtOpen ? 'ok' : 'checking';
        if (!checkedAtOpen) {
          void checkInBackground(path).then((verdict) => {
            counters.integrity =
              verdict === 'ok' ? 'ok' : verdict.startsWith('cannot check') ? 'not-checked' : 'damaged';
            if (verdict !== 'ok')
              log(
                `store: background check of ${path}: ${verdict}${counters.integrity === 'damaged' ? '; it will be moved aside at the next start, records not yet sent may be lost' : ''}`,
              );
          });
        }
        if (!reserve.ensure())
          log(
            `store: no room for the ${reserve.bytes}-byte reserve beside ${path}; a full disk will drop new records instead of evicting old ones`,
          );
        store.startPurging(options.purgeIntervalMs ?? 60_000);
        return store;
      } catch (err) {
        if (!(err instanceof StorageError)) throw err;
        counters.degraded = err.code;
        log(
          `store: ${err.message}. Capturing in memory until this is fixed and the gateway restarts; records in memory do not survive a power cut`,
        );
      }
    }
    // RxDB's memory storage is shared per name within a process; keep each store apart.
    const memoryName = `${name}-mem-${process.pid}-${memoryInstances++}`;
    return TelemetryStore.create(
      getRxStorageMemory() as RxStorage<unknown, unknown>,
      memoryName,
      null,
      options,
      log,
      counters,
    );
  }

  private static async create(
    storage: RxStorage<unknown, unknown>,
    name: string,
    disk: DiskFile | null,
    options: TelemetryStoreOptions,
    log: Log,
    counters: StoreCounters,
  ): Promise<TelemetryStore> {
    const db = await createRxDatabase({ name, storage, multiInstance: false, eventReduce: true });
    try {
      const collections = await db.addCollections({ telemetry: { schema: telemetrySchema } });
      const store = new TelemetryStore(
        db,
        collections.telemetry as RxCollection<StoredRecord>,
        disk,
        options.maxBytes,
        options.quotaBytes ?? [],
        log,
        counters,
      );
      if (store.tracksBytes) await store.measureClasses();
      return store;
    } catch (err) {
      await db.close();
      throw err;
    }
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
    const bytes = this.tracksBytes ? recordBytes(record) : 0;
    try {
      await this.ensureCounted();
      await this.keepQuota(record.priority, bytes);
      if (this.nearlyFull()) {
        await this.makeRoom(record.priority, LOW_WATER);
        // Nothing of this priority or lower left to evict: the headroom stays for higher priorities.
        if (this.nearlyFull())
          throw storageError(
            'STORAGE_FULL',
            this.disk?.path ?? '',
            `at its size cap with nothing of priority >= ${record.priority} to evict`,
          );
      }
      try {
        await this.records.insert(doc);
      } catch (err) {
        if (!isStorageFull(err)) throw err;
        // SQLITE_FULL means the configured cap (max_page_count) or a full filesystem: only the latter bounds the store anew.
        if (
          this.diskFullAt === null &&
          this.disk !== null &&
          this.disk.reserve.filesystemFreeBytes() < FILESYSTEM_FULL_BYTES
        ) {
          this.adoptDiskSize();
          // The reserve and the WAL gave room back: this record may fit without evicting anything.
          if (
            await this.records.insert(doc).then(
              () => true,
              (again: unknown) => {
                if (isStorageFull(again)) return false;
                throw again;
              },
            )
          )
            return this.wasStored(record, bytes);
        }
        // The cap was hit inside one write: free a batch and try once more.
        if ((await this.makeRoom(record.priority, LOW_WATER)) === 0) throw err;
        await this.records.insert(doc);
      }
      return this.wasStored(record, bytes);
    } catch (err) {
      // A full store is policy (counted as a drop), not a failed write.
      if (!isStorageFull(err)) this.counters.writeErrors++;
      this.countDrop(record.messageId, record.priority, isStorageFull(err) ? 'store_full' : 'store_error');
      this.quietLog(
        `store: record ${record.messageId} (priority ${record.priority}) not stored: ${storageMessage(err)}`,
      );
      return false;
    }
  }

  private wasStored(record: VehicleTelemetry, bytes: number): true {
    this.stored[record.priority] = (this.stored[record.priority] ?? 0) + 1;
    this.classBytes[record.priority] = (this.classBytes[record.priority] ?? 0) + bytes;
    this.insertedSubject.next();
    return true;
  }

  /** The smaller of the configured cap and what the filesystem held when it filled up. */
  private capBytes(): number {
    return Math.min(this.maxBytes ?? Infinity, this.diskFullAt ?? Infinity);
  }

  private nearlyFull(): boolean {
    // No cap and a disk with room: skip the page-count pragmas on every insert.
    const cap = this.capBytes();
    return this.disk !== null && cap !== Infinity && this.disk.usedBytes() > cap * HIGH_WATER;
  }

  /**
   * The filesystem is full: give back the reserve so SQLite can copy its WAL home and record
   * deletions, and from now on keep the database at the size it has reached.
   */
  private adoptDiskSize(): void {
    const disk = this.disk as DiskFile;
    const released = disk.reserve.release();
    shrinkSqliteWal(disk.path, FULL_DISK_WAL_PAGES);
    // What the filesystem holds now that the reserve and the WAL gave their room back: the file's
    // pages (free ones are reused first) plus the free room, less what the WAL and deletions need.
    // Never less than the data stored: a full disk stops growth, it does not shrink what is kept.
    const fileBytes = sqliteFileBytes(disk.path);
    this.diskFullAt = Math.max(
      disk.usedBytes(),
      fileBytes + disk.reserve.filesystemFreeBytes() - FULL_DISK_HEADROOM_BYTES,
    );
    this.log(
      `store: the filesystem holding ${disk.path} is full; keeping the database within ${(this.diskFullAt / 2 ** 20).toFixed(1)} MiB, oldest lowest-priority records make room${released ? ' (reserve released)' : ', and there was no reserve to release'}`,
    );
  }

  /**
   * Room came back on the filesystem: more than the reserve needs on top of what the database may
   * still grow into. (The room the store itself gave back when the disk filled does not count, or
   * re-creating the reserve would fill the disk again and every cycle would cost records.)
   */
  private roomCameBack(): boolean {
    const disk = this.disk;
    if (disk === null || this.diskFullAt === null) return false;
    const growth = Math.max(0, this.diskFullAt - sqliteFileBytes(disk.path));
    return disk.reserve.filesystemFreeBytes() >= disk.reserve.bytes + growth + FULL_DISK_HEADROOM_BYTES;
  }

  /** Evicts the oldest records whose priority number is >= `priority`, lowest priority first. */
  private async makeRoom(priority: number, target: number): Promise<number> {
    if (this.disk === null) return 0;
    return withSqliteEvictionRoom(this.disk.path, () => this.evict(priority, target));
  }

  private async evict(priority: number, target: number): Promise<number> {
    let evicted = 0;
    const limit = this.capBytes() * target;
    for (let p = MAX_PRIORITY; p >= priority && this.disk !== null && this.disk.usedBytes() > limit; p--) {
      for (;;) {
        // One priority at a time keeps this an index range scan on [priority, seq].
        const victims = await this.records
          .find({ selector: { priority: p }, sort: [{ priority: 'asc' }, { seq: 'asc' }], limit: EVICT_BATCH })
          .exec();
        if (victims.length === 0) break;
        await this.removeIds(victims.map((v) => v.id));
        for (const v of victims) this.countDrop(v.id, v.priority, 'evicted');
        evicted += victims.length;
        await this.purge();
        if (this.disk.usedBytes() <= limit) break;
      }
    }
    if (evicted > 0)
      this.quietLog(`store: at its size cap; evicted ${evicted} oldest records of priority >= ${priority}`);
    return evicted;
  }

  private countDrop(id: string, priority: number, reason: DropReason): void {
    const key = `${priority}|${reason}`;
    this.counters.dropped.set(key, (this.counters.dropped.get(key) ?? 0) + 1);
    this.dropsSubject.next({ id, priority, reason });
  }

  /** Each record the store let go of by policy or failure (the counters say how many; this says which). */
  get drops(): Observable<RecordDrop> {
    return this.dropsSubject.asObservable();
  }

  /** Removes acknowledged records' tombstones from the file (nothing replicates from this store). */
  async purge(): Promise<void> {
    // A turn of the event loop between batches: live records are stored and sent meanwhile.
    while (!(await this.records.storageInstance.cleanup(0))) await new Promise((resolve) => setImmediate(resolve));
  }

  private startPurging(intervalMs: number): void {
    this.purgeTimer = setInterval(() => {
      this.purge().catch((err: unknown) => this.quietLog(`store: purge failed: ${storageMessage(err)}`));
      // Room came back on the filesystem: the reserve first, then let the database grow again.
      if (this.roomCameBack() && this.disk?.reserve.ensure()) {
        this.diskFullAt = null;
        this.log(`store: the filesystem holding ${this.disk.path} has room again; the reserve is back`);
      }
    }, intervalMs);
    this.purgeTimer.unref();
  }

  /**
   * Pending records oldest first, highest priority (lowest number) first, or of one priority only;
   * skips `exclude`.
   */
  async pending(limit: number, exclude: ReadonlySet<string>, priority?: number): Promise<StoredRecord[]> {
    // Straight from the storage: the outbox needs plain records, not RxDocuments kept in the
    // collection's document and query caches (a drain asks for a new page every batch).
    const schema = this.records.schema.jsonSchema;
    // `$nin` on the id: the SQLite storage skips those rows before parsing them.
    const selector = {
      ...(priority !== undefined ? { priority } : {}),
      ...(exclude.size > 0 ? { id: { $nin: [...exclude] } } : {}),
    };
    const query = normalizeMangoQuery<StoredRecord>(schema, {
      selector,
      sort: [{ priority: 'asc' }, { seq: 'asc' }],
      limit,
    });
    // As RxDB's own find() does: deleted documents (acknowledged, not yet purged) are not records.
    (query.selector as Record<string, unknown>)._deleted = { $eq: false };
    const { documents } = await this.records.storageInstance.query(prepareQuery<StoredRecord>(schema, query));
    return documents.map((doc) => {
      const { _meta, _rev, _attachments, _deleted, ...record } = doc;
      this.documents.set(record, doc);
      return record;
    });
  }

  /** Removes delivered (or dead-lettered) records. */
  async remove(records: readonly StoredRecord[]): Promise<void> {
    const known = records.map((r) => this.documents.get(r));
    if (known.every((doc) => doc !== undefined)) await this.removeDocuments(known);
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
    await this.removeDocuments(await this.records.storageInstance.findDocumentsById(ids, false));
  }

  /**
   * Removes stored documents; the per-priority count and bytes follow what was really removed.
   * Straight in the storage, as `pending` reads: through the collection every removal made an
   * RxDocument, kept (with its record) in RxDB's document cache until a finalizer ran, and a
   * 100,000-record drain held ~240 MB of them live (OOM-killed in 192 MiB). RxDB still sees each
   * deletion through the storage's change stream.
   */
  private async removeDocuments(current: RxDocumentData<StoredRecord>[]): Promise<void> {
    await this.ensureCounted();
    const storage = this.records.storageInstance;
    if (current.length === 0) return;
    const token = this.records.database.token;
    const writes = current.map((previous) => ({
      previous,
      document: {
        ...previous,
        _deleted: true,
        _rev: createRevision(token, previous),
        _meta: { ...previous._meta, lwt: now() },
      },
    }));
    const { error } = await storage.bulkWrite(writes, 'telemetry-store-remove');
    // A conflict is a record removed meanwhile (an acknowledgement and an eviction at once).
    const notRemoved = new Set(error.map((e) => e.documentId));
    for (const doc of current) {
      if (notRemoved.has(doc.id)) continue;
      this.stored[doc.priority] = Math.max(0, (this.stored[doc.priority] ?? 0) - 1);
      if (this.tracksBytes)
        this.classBytes[doc.priority] = (this.classBytes[doc.priority] ?? 0) - recordBytes(doc.record);
    }
  }

  /** Bytes the database uses (live pages), or null for the in-memory store. */
  usedBytes(): number | null {
    return this.disk?.usedBytes() ?? null;
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

/** What a record weighs against its class quota: its stored JSON. */
function recordBytes(record: VehicleTelemetry): number {
  return JSON.stringify(record).length;
}

function isStorageFull(err: unknown): boolean {
  return err instanceof StorageError && err.code === 'STORAGE_FULL';
}

function storageMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
