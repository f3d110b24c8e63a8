// How much the store may hold, and what leaves when it is full: per-priority byte quotas, the
// size cap (oldest, lowest-priority records evicted first) and a filesystem that fills up.
import type { DiskReserve } from './disk-reserve.js';
import { shrinkSqliteWal, sqliteFileBytes, withSqliteEvictionRoom } from './sqlite-file.js';
import { StorageError, storageError } from './storage-errors.js';
import { MAX_PRIORITY, recordBytes, type StoredRecord } from './stored-record.js';
import { rateLimited, type Log } from '../../core/log.js';
import type { VehicleTelemetry } from '../../proto/telemetry-codec.js';

export type DropReason = 'evicted' | 'quota' | 'store_full' | 'store_error';

/** The database file, for a store on disk. */
export interface DiskFile {
  path: string;
  usedBytes: () => number;
  reserve: DiskReserve;
}

/** What capacity needs of the store to make room. */
export interface EvictableRecords {
  /** The oldest records of one priority. */
  oldest(priority: number, limit: number): Promise<StoredRecord[]>;
  /** Removes records by id (their bytes come back through `removed`). */
  removeIds(ids: string[]): Promise<void>;
  /** Purges tombstones, so the file's used pages shrink. */
  purge(): Promise<void>;
}

export interface CapacityLimits {
  /** Size cap of the database; past 90 % of it the oldest records of the lowest priority make room. */
  maxBytes?: number;
  /** Byte quota per priority (index = priority; undefined = no quota). */
  quotaBytes?: ReadonlyArray<number | undefined>;
}

/** Start evicting at this share of the cap and stop once usage is back under the low mark. */
const HIGH_WATER = 0.9;
const LOW_WATER = 0.8;
const EVICT_BATCH = 50;
/** WAL size once the filesystem is full: small, so the log never takes the database's room. */
const FULL_DISK_WAL_PAGES = 100;
/** Less room than this on the filesystem when a write fails with SQLITE_FULL: the disk, not the cap, is full. */
const FILESYSTEM_FULL_BYTES = 1024 * 1024;
/** Room kept free on a full filesystem for the WAL (FULL_DISK_WAL_PAGES) and for recording deletions. */
const FULL_DISK_HEADROOM_BYTES = 2 * FILESYSTEM_FULL_BYTES;

/** Quotas are byte counts of stored JSON: only with one configured is each record weighed. */
export function weighsRecords(limits: CapacityLimits): boolean {
  return (limits.quotaBytes ?? []).some((q) => q !== undefined);
}

export class StoreCapacity {
  /** Bytes stored per priority (the records' JSON), kept only when quotas are configured. */
  private readonly classBytes: number[];
  /** The size the filesystem allowed when it filled up; from then on the store keeps within it. */
  private diskFullAt: number | null = null;
  private readonly quotaBytes: ReadonlyArray<number | undefined>;
  /** Whether records are weighed at all (weighsRecords). */
  private readonly tracksBytes: boolean;
  private readonly maxBytes: number | undefined;
  private readonly quietLog: Log;

  constructor(
    private readonly records: EvictableRecords,
    private readonly disk: DiskFile | null,
    limits: CapacityLimits,
    private readonly onDrop: (id: string, priority: number, reason: DropReason) => void,
    private readonly log: Log,
    classBytes: readonly number[] = [],
  ) {
    this.quotaBytes = limits.quotaBytes ?? [];
    this.tracksBytes = weighsRecords(limits);
    this.maxBytes = limits.maxBytes;
    this.classBytes = Array.from({ length: MAX_PRIORITY + 1 }, (_, p) => classBytes[p] ?? 0);
    this.quietLog = rateLimited(log, 60_000);
  }

  /** What `record` weighs against its quota (0 when there are no quotas). */
  weigh(record: VehicleTelemetry): number {
    return this.tracksBytes ? recordBytes(record) : 0;
  }

  get onDisk(): boolean {
    return this.disk !== null;
  }

  /** Bytes the database uses (live pages), or null in memory. */
  usedBytes(): number | null {
    return this.disk?.usedBytes() ?? null;
  }

  bytesOf(priority: number): number {
    return this.classBytes[priority] ?? 0;
  }

  stored(priority: number, bytes: number): void {
    this.classBytes[priority] = (this.classBytes[priority] ?? 0) + bytes;
  }

  /** A record of `priority` that weighed `bytes` (see weigh) left. */
  removed(priority: number, bytes: number): void {
    this.classBytes[priority] = (this.classBytes[priority] ?? 0) - bytes;
  }

  /**
   * Makes room for a record of `priority` weighing `bytes`: its class's oldest records go past the
   * quota, lower-priority ones past the cap. Throws STORAGE_FULL when nothing may go.
   */
  async makeRoomFor(priority: number, bytes: number): Promise<void> {
    await this.keepQuota(priority, bytes);
    if (!this.nearlyFull()) return;
    await this.makeRoom(priority);
    // Nothing of this priority or lower left to evict: the headroom stays for higher priorities.
    if (this.nearlyFull())
      throw storageError(
        'STORAGE_FULL',
        this.disk?.path ?? '',
        `at its size cap with nothing of priority >= ${priority} to evict`,
      );
  }

  /**
   * Runs a write that SQLite may refuse as full: the configured cap (max_page_count) or a full
   * filesystem. Only the latter bounds the store anew; either way one batch is freed and the write
   * tried once more.
   */
  async write(priority: number, attempt: () => Promise<unknown>): Promise<void> {
    try {
      await attempt();
      return;
    } catch (err) {
      if (!isStorageFull(err)) throw err;
      if (
        this.diskFullAt === null &&
        this.disk !== null &&
        this.disk.reserve.filesystemFreeBytes() < FILESYSTEM_FULL_BYTES
      ) {
        this.adoptDiskSize(this.disk);
        // The reserve and the WAL gave room back: this record may fit without evicting anything.
        const fitted = await attempt().then(
          () => true,
          (again: unknown) => {
            if (isStorageFull(again)) return false;
            throw again;
          },
        );
        if (fitted) return;
      }
      // The cap was hit inside one write: free a batch and try once more.
      if ((await this.makeRoom(priority)) === 0) throw err;
      await attempt();
    }
  }

  /**
   * Room came back on the filesystem: the reserve first, then the database may grow again. (The
   * room the store itself gave back when the disk filled does not count, or re-creating the reserve
   * would fill the disk again and every cycle would cost records.)
   */
  reclaimDisk(): void {
    const disk = this.disk;
    if (disk === null || this.diskFullAt === null) return;
    const growth = Math.max(0, this.diskFullAt - sqliteFileBytes(disk.path));
    if (disk.reserve.filesystemFreeBytes() < disk.reserve.bytes + growth + FULL_DISK_HEADROOM_BYTES) return;
    if (!disk.reserve.ensure()) return;
    this.diskFullAt = null;
    this.log(`store: the filesystem holding ${disk.path} has room again; the reserve is back`);
  }

  /** Drops the oldest records of `priority` until `incoming` more bytes fit its quota. */
  private async keepQuota(priority: number, incoming: number): Promise<void> {
    const quota = this.quotaBytes[priority];
    if (quota === undefined) return;
    let dropped = 0;
    while (this.bytesOf(priority) + incoming > quota) {
      const victims = await this.records.oldest(priority, EVICT_BATCH);
      if (victims.length === 0) break;
      let freed = 0;
      const chosen: string[] = [];
      for (const v of victims) {
        if (this.bytesOf(priority) - freed + incoming <= quota) break;
        freed += recordBytes(v.record);
        chosen.push(v.id);
      }
      await this.records.removeIds(chosen);
      for (const id of chosen) this.onDrop(id, priority, 'quota');
      dropped += chosen.length;
    }
    if (dropped > 0)
      this.quietLog(`store: priority ${priority} is at its ${quota}-byte quota; dropped its ${dropped} oldest records`);
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
  private adoptDiskSize(disk: DiskFile): void {
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

  /** Evicts the oldest records whose priority number is >= `priority`, lowest priority first. */
  private async makeRoom(priority: number): Promise<number> {
    const disk = this.disk;
    if (disk === null) return 0;
    return withSqliteEvictionRoom(disk.path, () => this.evict(disk, priority, this.capBytes() * LOW_WATER));
  }

  private async evict(disk: DiskFile, priority: number, limit: number): Promise<number> {
    let evicted = 0;
    for (let p = MAX_PRIORITY; p >= priority && disk.usedBytes() > limit; p--) {
      for (;;) {
        const victims = await this.records.oldest(p, EVICT_BATCH);
        if (victims.length === 0) break;
        await this.records.removeIds(victims.map((v) => v.id));
        for (const v of victims) this.onDrop(v.id, v.priority, 'evicted');
        evicted += victims.length;
        await this.records.purge();
        if (disk.usedBytes() <= limit) break;
      }
    }
    if (evicted > 0)
      this.quietLog(`store: at its size cap; evicted ${evicted} oldest records of priority >= ${priority}`);
    return evicted;
  }
}

export function isStorageFull(err: unknown): boolean {
  return err instanceof StorageError && err.code === 'STORAGE_FULL';
}
