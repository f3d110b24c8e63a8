// Worker thread: reads every row and index entry of the database on its own read-only connection,
// a slice at a time with pauses, so a damaged medium is found while the gateway already captures
// (WAL lets the two run side by side). It replaced one `PRAGMA quick_check`, which read a large file
// in one call: minutes in which this thread used up the CPU quota the whole process shares whenever
// the event loop waited for an fsync, and live events then waited whole quota periods (issue 14).
// Reading finds what damage does to pages (malformed b-tree pages, broken overflow chains: SQLite
// refuses to read them); quick_check's free-list and page-accounting checks are left out.
import Database from 'better-sqlite3';
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { parentPort, workerData } from 'node:worker_threads';

export interface IntegrityCheckSettings {
  path: string;
  /** Rows or index entries read per slice. */
  sliceRows: number;
  /** Share of wall time this thread reads; it sleeps the rest. */
  busyShare: number;
}

const settings = workerData as IntegrityCheckSettings;
// This thread only (Linux: a thread id is a pid for setpriority), at the lowest priority. Where /proc
// or the call is not available the check still runs, at normal priority.
try {
  setPriority(Number(readlinkSync('/proc/thread-self').split('/').pop()), 19);
} catch {
  /* not Linux, or not permitted */
}

const quote = (identifier: string): string => `"${identifier.replace(/"/g, '""')}"`;

/**
 * One b-tree read in slices: `first` starts it, `next` continues after the key `resumeAfter` takes
 * from a slice's rows (null: that was the last slice). Both answer rows as arrays.
 */
interface SlicedScan {
  first: Database.Statement;
  next: Database.Statement | null;
  resumeAfter: (rows: unknown[][]) => unknown[] | null;
}

/** A b-tree read in one go (small tables, indexes this cannot page through). */
const whole = (statement: Database.Statement): SlicedScan => ({
  first: statement.raw(),
  next: null,
  resumeAfter: () => null,
});

interface SchemaEntry {
  type: 'table' | 'index';
  name: string;
  tbl_name: string;
  sql: string | null;
}

/** A table's rows in rowid order; every column's length, which reads each value whole (overflow pages too). */
function tableScan(db: Database.Database, entry: SchemaEntry): SlicedScan {
  const t = quote(entry.name);
  const columns = (db.pragma(`table_info(${t})`) as Array<{ name: string }>).map((c) => `length(${quote(c.name)})`);
  const bytes = columns.length > 0 ? columns.join(' + ') : '0';
  if (/WITHOUT\s+ROWID/i.test(entry.sql ?? '')) return whole(db.prepare(`SELECT total(${bytes}) FROM ${t}`));
  const slice = (where: string): Database.Statement =>
    db
      .prepare(
        `SELECT max(r), total(bytes) FROM (SELECT rowid AS r, ${bytes} AS bytes FROM ${t} ${where} ORDER BY rowid LIMIT ${settings.sliceRows})`,
      )
      .raw();
  // One aggregate row: the slice's last rowid, null when the slice was empty.
  const resumeAfter = (rows: unknown[][]): unknown[] | null => {
    const last = rows[0]?.[0];
    return last === null || last === undefined ? null : [last];
  };
  return { first: slice(''), next: slice('WHERE rowid > ?'), resumeAfter };
}

/**
 * An index's entries in its own order, read from the index alone (keyset over its columns and the
 * rowid). An index this cannot page through (expressions, descending or nullable columns) is read
 * in one go.
 */
function indexScan(db: Database.Database, entry: SchemaEntry): SlicedScan {
  const t = quote(entry.tbl_name);
  const i = quote(entry.name);
  const where = /\sWHERE\s([\s\S]*)$/i.exec(entry.sql ?? '')?.[1];
  const inOneGo = (): SlicedScan =>
    whole(db.prepare(`SELECT count(*) FROM ${t} INDEXED BY ${i}${where ? ` WHERE ${where}` : ''}`));
  const keys = (
    db.pragma(`index_xinfo(${i})`) as Array<{ cid: number; name: string | null; desc: number; key: number }>
  ).filter((k) => k.key === 1);
  const notNull = new Set(
    (db.pragma(`table_info(${t})`) as Array<{ name: string; notnull: number }>)
      .filter((c) => c.notnull === 1)
      .map((c) => c.name),
  );
  if (keys.some((k) => k.cid < 0 || k.desc === 1 || k.name === null || !notNull.has(k.name))) return inOneGo();
  const columns = [...keys.map((k) => quote(k.name as string)), 'rowid'];
  const list = columns.join(', ');
  const slice = (after: string): Database.Statement => {
    const conditions = [where, after].filter((c) => c !== undefined && c !== '').map((c) => `(${c})`);
    return db
      .prepare(
        `SELECT ${list} FROM ${t} INDEXED BY ${i} ${conditions.length > 0 ? `WHERE ${conditions.join(' AND ')}` : ''} ORDER BY ${list} LIMIT ${settings.sliceRows}`,
      )
      .raw();
  };
  try {
    return {
      first: slice(''),
      next: slice(`(${list}) > (${columns.map(() => '?').join(', ')})`),
      resumeAfter: (rows) => rows[rows.length - 1] ?? null,
    };
  } catch {
    return inOneGo();
  }
}

/** Reads one scan to its end, pausing after each slice so this thread reads `busyShare` of the time. */
async function read(scan: SlicedScan): Promise<void> {
  let statement = scan.first;
  let after: unknown[] = [];
  for (;;) {
    const started = performance.now();
    const rows = statement.all(...after) as unknown[][];
    await sleep(Math.max(1, (performance.now() - started) * (1 / settings.busyShare - 1)));
    const key = scan.resumeAfter(rows);
    if (scan.next === null || key === null) return;
    statement = scan.next;
    after = key;
  }
}

let verdict: string;
try {
  const db = new Database(settings.path, { readonly: true, fileMustExist: true });
  try {
    // One pass in order needs no cache; better-sqlite3's 16 MB one filled as the check read the file.
    db.pragma('cache_size = -256');
    const entries = db
      .prepare("SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE type IN ('table', 'index') ORDER BY rowid")
      .all() as SchemaEntry[];
    for (const entry of entries) await read(entry.type === 'table' ? tableScan(db, entry) : indexScan(db, entry));
    verdict = 'ok';
  } finally {
    db.close();
  }
} catch (err) {
  const code = (err as { code?: unknown }).code;
  // SQLite's word for a damaged page or file; anything else (the file gone, no memory) is no verdict.
  verdict =
    code === 'SQLITE_CORRUPT' || code === 'SQLITE_NOTADB'
      ? (err as Error).message
      : `cannot check: ${(err as Error).message}`;
}
parentPort?.postMessage(verdict);
