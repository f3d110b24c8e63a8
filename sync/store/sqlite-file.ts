// One SQLite database file: opened once per process, configured for power cuts, checked at open.
import Database from 'better-sqlite3';
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { restrictToOwner } from '../../core/private-files.js';
import { cpuAllowance } from '../../core/cpu-allowance.js';
import { Worker } from 'node:worker_threads';
import type { IntegrityCheckSettings } from './integrity-worker.js';
import { dirname } from 'node:path';
import { fromSqliteError, storageError, type StorageError } from './storage-errors.js';

export type SqliteSynchronous = 'OFF' | 'NORMAL' | 'FULL' | 'EXTRA';

/**
 * The connection's page cache, KiB: SQLite's own default. better-sqlite3 builds with 16 MB, which a
 * drain filled (a 40,000-record drain in the envelope: RSS 170 → 149 MiB at the same rate); the
 * kernel's page cache serves what falls out of it (issue 14).
 */
const PAGE_CACHE_KIB = 2000;

export interface SqliteFileOptions {
  /** FULL: a commit is on the medium before it returns (the outbox needs this to survive a power cut). */
  synchronous: SqliteSynchronous;
  /** Page size for a new file (an existing file keeps its own); see docs/decisions.md on flash wear. */
  pageSize: number;
  /** WAL pages after which SQLite copies the log back into the database. */
  walAutocheckpointPages: number;
  /** Hard cap on the database size; writes past it fail with STORAGE_FULL. */
  maxBytes?: number;
  /**
   * Files up to this size get `PRAGMA quick_check` at open, so a damaged file is found before it
   * is trusted. Larger ones (the check reads the whole file: ~50 s for 3.4 GB here) are checked in
   * the background with `checkInBackground`, so capture starts at once after a power cut.
   */
  checkOnOpenMaxBytes: number;
  /** Told when a damaged file was moved aside and a new one started. */
  onCorruptMovedAside?: (error: StorageError, movedTo: string) => void;
}

/** A shared connection; storage instances of the same file in one process use one connection. */
export interface SqliteFile {
  readonly path: string;
  readonly db: Database.Database;
  /** False when the file was too large to check at open: `checkInBackground` is for it. */
  readonly checkedAtOpen: boolean;
  /** Runs `fn` as one transaction; SQLite errors come back as typed StorageErrors. */
  transaction<T>(fn: () => T): T;
  /**
   * A transaction whose loss in a power cut is harmless (WAL, synchronous=NORMAL: not fsynced on
   * its own; the next durable commit syncs it). The outbox's removals: one lost means a record sent
   * twice, which the receiver de-duplicates, and its fsync no longer stalls the event loop.
   */
  lightTransaction<T>(fn: () => T): T;
  /** Runs `fn` and translates SQLite errors. */
  guard<T>(fn: () => T): T;
  release(): void;
}

interface Opened {
  db: Database.Database;
  checkedAtOpen: boolean;
}

interface OpenFile {
  file: SqliteFile;
  refs: number;
}

const openFiles = new Map<string, OpenFile>();

export function acquireSqliteFile(path: string, options: SqliteFileOptions): SqliteFile {
  const existing = openFiles.get(path);
  if (existing) {
    existing.refs++;
    return existing.file;
  }
  const { db, checkedAtOpen } = openConfigured(path, options);
  // Below FULL there is nothing to lighten; outside WAL, NORMAL would risk the file itself.
  const canLighten =
    (options.synchronous === 'FULL' || options.synchronous === 'EXTRA') &&
    db.pragma('journal_mode', { simple: true }) === 'wal';
  const guard = <T>(fn: () => T): T => {
    try {
      return fn();
    } catch (err) {
      throw fromSqliteError(err, path);
    }
  };
  const transaction = <T>(fn: () => T): T => guard(() => db.transaction(fn)());
  const entry: OpenFile = {
    refs: 1,
    file: {
      path,
      db,
      checkedAtOpen,
      guard,
      transaction,
      lightTransaction: (fn) => {
        if (!canLighten) return transaction(fn);
        db.pragma('synchronous = NORMAL');
        try {
          return transaction(fn);
        } finally {
          db.pragma(`synchronous = ${options.synchronous}`);
        }
      },
      release: () => {
        if (--entry.refs > 0) return;
        openFiles.delete(path);
        db.close();
      },
    },
  };
  openFiles.set(path, entry);
  return entry.file;
}

/** Whether an open file got its `quick_check` at open (false: too large, check it in the background). */
export function sqliteFileCheckedAtOpen(path: string): boolean {
  return openFiles.get(path)?.file.checkedAtOpen ?? false;
}

/** Bytes in live pages (free pages excluded) of an open file. */
export function sqliteFileUsedBytes(path: string): number {
  const entry = openFiles.get(path);
  if (!entry) return 0;
  const { db } = entry.file;
  const pageSize = db.pragma('page_size', { simple: true }) as number;
  const pages = db.pragma('page_count', { simple: true }) as number;
  const free = db.pragma('freelist_count', { simple: true }) as number;
  return (pages - free) * pageSize;
}

/** Bytes of the database file's pages, free ones included (0 if the file is not open here). */
export function sqliteFileBytes(path: string): number {
  const entry = openFiles.get(path);
  if (!entry) return 0;
  const { db } = entry.file;
  return (db.pragma('page_count', { simple: true }) as number) * (db.pragma('page_size', { simple: true }) as number);
}

/**
 * For a full filesystem: copies the WAL into the database, truncates it, and from now on
 * checkpoints every `walPages` pages and trims the WAL back to that size, so the log cannot grow
 * into room the database needs. False when the copy is impossible now.
 */
export function shrinkSqliteWal(path: string, walPages: number): boolean {
  const entry = openFiles.get(path);
  if (!entry) return false;
  const { db } = entry.file;
  try {
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    db.pragma(`wal_autocheckpoint = ${walPages}`);
    db.pragma(`journal_size_limit = ${walPages * pageSize}`);
    const [result] = db.pragma('wal_checkpoint(TRUNCATE)') as Array<{ busy: number }>;
    return result?.busy === 0;
  } catch {
    return false;
  }
}

/**
 * Runs `fn` (evictions) with the page cap lifted by an eighth: a deletion can itself need pages
 * (rebalancing the b-trees; RxDB's own deletions first wrote a whole tombstone), so a database at its
 * cap could not otherwise make room. The cap is put back after; SQLite keeps it at the file's size
 * if the bookkeeping grew the file.
 */
export async function withSqliteEvictionRoom<T>(path: string, fn: () => Promise<T>): Promise<T> {
  const db = openFiles.get(path)?.file.db;
  const cap = db?.pragma('max_page_count', { simple: true }) as number | undefined;
  if (db === undefined || cap === undefined) return fn();
  db.pragma(`max_page_count = ${cap + Math.max(16, Math.ceil(cap / 8))}`);
  try {
    return await fn();
  } finally {
    if (db.open) db.pragma(`max_page_count = ${cap}`);
  }
}

/**
 * The database is created owner-only (SQLite gives its -wal and -shm files the database's mode);
 * files from before are tightened. An empty file is a valid empty database.
 */
function createPrivately(path: string): void {
  try {
    closeSync(openSync(path, 'wx', 0o600));
    chmodSync(path, 0o600);
  } catch {
    // It exists already (or cannot be made: SQLite's own open says why).
    for (const file of [path, `${path}-wal`, `${path}-shm`]) restrictToOwner(file);
  }
}

function damagedMarker(path: string): string {
  return `${path}.damaged`;
}

/**
 * How the background check reads: 200 rows a slice, busy a tenth of the CPU the process may use (a
 * tenth of wall time in a 0.2-core quota was half of it: the drain pacer, which counts every thread,
 * then held batches back for the whole check; docs/decisions.md).
 */
export function backgroundCheckPace(): Omit<IntegrityCheckSettings, 'path'> {
  return { sliceRows: 200, busyShare: 0.1 * cpuAllowance().cores };
}

/**
 * Reads the whole file in a worker thread on its own read-only connection (integrity-worker.ts),
 * in slices of `sliceRows` with pauses, busy `busyShare` of the wall time. A damaged file is marked, so
 * the next start moves it aside (it cannot be swapped under the running store).
 */
export function checkInBackground(path: string, pace = backgroundCheckPace()): Promise<string> {
  return new Promise((resolve) => {
    const settings: IntegrityCheckSettings = { path, ...pace };
    const worker = new Worker(new URL('./integrity-worker.js', import.meta.url), { workerData: settings });
    worker.once('message', (raw: string) => {
      const verdict = raw.trim().split('\n').join('; ');
      try {
        if (verdict !== 'ok' && !verdict.startsWith('cannot check'))
          writeFileSync(damagedMarker(path), `${verdict}\n`, { mode: 0o600 });
        resolve(verdict);
      } catch (err) {
        // The marker could not be written (full or read-only disk): the verdict still counts, said once.
        resolve(`${verdict} (the damage marker could not be written: ${(err as Error).message})`);
      }
    });
    worker.once('error', (err) => resolve(`cannot check: ${err.message}`));
  });
}

export function isSqliteFileOpen(path: string): boolean {
  return openFiles.has(path);
}

function openConfigured(path: string, options: SqliteFileOptions): Opened {
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  } catch (err) {
    throw storageError('STORAGE_OPEN_FAILED', dirname(path), `cannot create the directory (${(err as Error).message})`);
  }
  createPrivately(path);
  try {
    return openAndCheck(path, options);
  } catch (err) {
    const error = fromSqliteError(err, path);
    if ((error as StorageError).code !== 'STORAGE_CORRUPT') throw error;
    // Never delete what the user had: keep the damaged file beside the new one.
    const movedTo = moveAside(path);
    options.onCorruptMovedAside?.(error as StorageError, movedTo);
    try {
      return openAndCheck(path, options);
    } catch (again) {
      throw fromSqliteError(again, path);
    }
  }
}

function openAndCheck(path: string, options: SqliteFileOptions): Opened {
  const db = new Database(path);
  try {
    // Only takes effect while the file is still empty, before WAL mode fixes the page size.
    db.pragma(`page_size = ${options.pageSize}`);
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${options.synchronous}`);
    db.pragma(`wal_autocheckpoint = ${options.walAutocheckpointPages}`);
    db.pragma(`cache_size = -${PAGE_CACHE_KIB}`);
    if (options.maxBytes !== undefined) {
      const pageSize = db.pragma('page_size', { simple: true }) as number;
      db.pragma(`max_page_count = ${Math.max(1, Math.floor(options.maxBytes / pageSize))}`);
    }
    if (existsSync(damagedMarker(path))) {
      throw storageError(
        'STORAGE_CORRUPT',
        path,
        `a background check found it damaged: ${readFileSync(damagedMarker(path), 'utf8').trim()}`,
      );
    }
    const checkedAtOpen = statSync(path).size <= options.checkOnOpenMaxBytes;
    if (checkedAtOpen) {
      const verdict = db.pragma('quick_check(1)', { simple: true });
      if (verdict !== 'ok') throw storageError('STORAGE_CORRUPT', path, `quick_check: ${String(verdict)}`);
    }
    // A write probe: a read-only file or filesystem fails here, at open, not at the first record.
    db.exec('BEGIN IMMEDIATE; COMMIT');
    return { db, checkedAtOpen };
  } catch (err) {
    db.close();
    throw err;
  }
}

function moveAside(path: string): string {
  const movedTo = `${path}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
  try {
    renameSync(path, movedTo);
    for (const suffix of ['-wal', '-shm', '.damaged']) {
      if (existsSync(path + suffix)) renameSync(path + suffix, movedTo + suffix);
    }
  } catch (err) {
    throw storageError('STORAGE_CORRUPT', path, `damaged, and it could not be moved aside (${(err as Error).message})`);
  }
  return movedTo;
}
