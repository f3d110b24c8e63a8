// Opens the store's database: SQLite on disk, a damaged file moved aside, a large file checked in
// the background, the disk reserve laid down; memory when the disk cannot be written.
import { createRxDatabase, type RxCollection, type RxDatabase, type RxStorage } from 'rxdb';
import { getRxStorageMemory } from 'rxdb/plugins/storage-memory';
import { DiskReserve } from './disk-reserve.js';
import {
  checkInBackground,
  sqliteFileCheckedAtOpen,
  sqliteFileUsedBytes,
  type SqliteSynchronous,
} from './sqlite-file.js';
import { databasePath, getRxStorageSQLite } from './sqlite-storage.js';
import type { DiskFile } from './store-capacity.js';
import { StorageError } from './storage-errors.js';
import { MAX_PRIORITY, recordBytes, telemetrySchema, type StoredRecord } from './stored-record.js';
import type { Log } from '../../core/log.js';
import { PairCounts } from '../../core/metrics-registry.js';

export type StorageKind = 'sqlite' | 'memory';

export interface StoreFileOptions {
  kind: StorageKind;
  /** Directory of the SQLite file (`<dir>/<name>.sqlite`). */
  dir: string;
  name?: string;
  synchronous?: SqliteSynchronous;
  walAutocheckpointPages?: number;
  pageSize?: number;
  /** Size cap of the database (SQLite's max_page_count). */
  maxBytes?: number;
  /** Larger files are checked in the background instead of at open (see SqliteFileOptions). */
  checkOnOpenMaxBytes?: number;
  /** Ballast kept beside the database and given back when the filesystem fills up (0: none). */
  reserveBytes?: number;
}

export interface StoreCounters {
  /** Records dropped, by priority and reason. */
  dropped: PairCounts;
  writeErrors: number;
  /** Why the store runs in memory instead of on disk; null while durable. */
  degraded: string | null;
  /** A damaged database file that was moved aside at open. */
  movedAside: string | null;
  /** `quick_check` of the file: at open, in the background for large files, or not applicable. */
  integrity: 'ok' | 'checking' | 'damaged' | 'not-checked';
}

export interface OpenedStore {
  db: RxDatabase;
  records: RxCollection<StoredRecord>;
  /** Null for the in-memory store. */
  disk: DiskFile | null;
  /** Bytes stored per priority when asked to weigh them (quotas), else empty. */
  classBytes: number[];
  counters: StoreCounters;
}

const DEFAULT_RESERVE_BYTES = 4 * 1024 * 1024;
const MEASURE_PAGE = 500;

let memoryInstances = 0;

/**
 * Opens the durable store. A damaged file is moved aside and a new one started; a file that
 * cannot be written (read-only, no such directory) leaves the gateway capturing in memory, said
 * once in the log and in `counters.degraded`, instead of exiting and losing what arrives.
 */
export async function openStoreDatabase(
  options: StoreFileOptions,
  weighClasses: boolean,
  log: Log,
): Promise<OpenedStore> {
  const counters: StoreCounters = {
    dropped: new PairCounts(),
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
      const disk = { path, usedBytes: () => sqliteFileUsedBytes(path), reserve };
      const opened = await openCollection(storage, name, disk, weighClasses, counters);
      watchIntegrity(path, counters, log);
      if (!reserve.ensure())
        log(
          `store: no room for the ${reserve.bytes}-byte reserve beside ${path}; a full disk will drop new records instead of evicting old ones`,
        );
      return opened;
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
  return openCollection(getRxStorageMemory() as RxStorage<unknown, unknown>, memoryName, null, weighClasses, counters);
}

async function openCollection(
  storage: RxStorage<unknown, unknown>,
  name: string,
  disk: DiskFile | null,
  weighClasses: boolean,
  counters: StoreCounters,
): Promise<OpenedStore> {
  const db = await createRxDatabase({ name, storage, multiInstance: false, eventReduce: true });
  try {
    // On disk, the storage keeps the records per priority counted (TelemetryStore.ensureCounted).
    const instanceCreationOptions = disk === null ? undefined : { countBy: 'priority' };
    const collections = await db.addCollections({ telemetry: { schema: telemetrySchema, instanceCreationOptions } });
    const records = collections.telemetry as RxCollection<StoredRecord>;
    const classBytes = weighClasses ? await measureClasses(records) : [];
    return { db, records, disk, classBytes, counters };
  } catch (err) {
    await db.close();
    throw err;
  }
}

/** A file checked at open is known good; a larger one is checked in the background meanwhile. */
function watchIntegrity(path: string, counters: StoreCounters, log: Log): void {
  const checkedAtOpen = sqliteFileCheckedAtOpen(path);
  counters.integrity = checkedAtOpen ? 'ok' : 'checking';
  if (checkedAtOpen) return;
  void checkInBackground(path).then((verdict) => {
    counters.integrity = verdict === 'ok' ? 'ok' : verdict.startsWith('cannot check') ? 'not-checked' : 'damaged';
    if (verdict !== 'ok')
      log(
        `store: background check of ${path}: ${verdict}${counters.integrity === 'damaged' ? '; it will be moved aside at the next start, records not yet sent may be lost' : ''}`,
      );
  });
}

/** Sums what is stored per priority, one index page at a time. */
async function measureClasses(records: RxCollection<StoredRecord>): Promise<number[]> {
  const bytes = new Array<number>(MAX_PRIORITY + 1).fill(0);
  for (let p = 0; p <= MAX_PRIORITY; p++) {
    for (let skip = 0; ; skip += MEASURE_PAGE) {
      const page = await records
        .find({ selector: { priority: p }, sort: [{ priority: 'asc' }, { seq: 'asc' }], skip, limit: MEASURE_PAGE })
        .exec();
      for (const doc of page) bytes[p] = (bytes[p] ?? 0) + recordBytes(doc.record);
      if (page.length < MEASURE_PAGE) break;
    }
  }
  return bytes;
}
