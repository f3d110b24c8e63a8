// Bad disks: full, read-only and corrupt database files give typed errors naming the file and what
// to do; the store keeps capturing where it can and never deletes the user's file.
import t from 'tap';
import Database from 'better-sqlite3';
import { waitUntil } from './helpers.js';
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fillWithDefaultSettings, type RxStorageInstance } from 'rxdb';
import { SampleRecords } from '../bench/rig/sample-records.js';
import { projectRoot } from '../core/project-root.js';
import { checkInBackground } from '../sync/store/sqlite-file.js';
import { getRxStorageSQLite } from '../sync/store/sqlite-storage.js';
import { StorageError, fromSqliteError } from '../sync/store/storage-errors.js';
import { TelemetryStore } from '../sync/store/telemetry-store.js';

const root = mkdtempSync(join(tmpdir(), 'v2c-baddisk-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
let dirs = 0;
const freshDir = (): string => {
  const d = join(root, `d${dirs++}`);
  mkdirSync(d);
  return d;
};
const PROBE = join(projectRoot(), 'dist', 'test', 'store-open-probe.js');

t.test('SQLite result codes map to typed errors with the path and a hint', async (t) => {
  const rows: Array<[string, string]> = [
    ['SQLITE_FULL', 'STORAGE_FULL'],
    ['SQLITE_READONLY', 'STORAGE_READ_ONLY'],
    ['SQLITE_READONLY_DIRECTORY', 'STORAGE_READ_ONLY'],
    ['SQLITE_CORRUPT', 'STORAGE_CORRUPT'],
    ['SQLITE_NOTADB', 'STORAGE_CORRUPT'],
    ['SQLITE_IOERR_FSYNC', 'STORAGE_IO'],
    ['SQLITE_CANTOPEN', 'STORAGE_OPEN_FAILED'],
  ];
  for (const [sqliteCode, code] of rows) {
    const err = fromSqliteError(Object.assign(new Error('boom'), { code: sqliteCode }), '/data/v2c.sqlite');
    t.ok(err instanceof StorageError, `${sqliteCode} is a StorageError`);
    t.equal((err as StorageError).code, code, `${sqliteCode} → ${code}`);
    t.match(err.message, /^\/data\/v2c\.sqlite: .*; \w+/, `${sqliteCode}: message names the file and what to do`);
  }
  const other = new Error('logic');
  t.equal(fromSqliteError(other, '/x'), other, 'errors that are not SQLite errors pass through');
});

const tinySchema = fillWithDefaultSettings({
  version: 0,
  primaryKey: 'id',
  type: 'object',
  properties: { id: { type: 'string', maxLength: 20 }, blob: { type: 'string' } },
  required: ['id', 'blob'],
});

t.test('disk full: the write fails with STORAGE_FULL as one transaction, and the file stays usable', async (t) => {
  const dir = freshDir();
  const storage = getRxStorageSQLite({ directory: dir, maxBytes: 256 * 1024 });
  const inst = (await storage.createStorageInstance({
    databaseInstanceToken: 'x',
    databaseName: 'full',
    collectionName: 'c',
    schema: tinySchema,
    options: {},
    multiInstance: false,
    devMode: false,
  })) as RxStorageInstance<{ id: string; blob: string }, unknown, unknown>;
  const doc = (id: string) => ({
    id,
    blob: 'x'.repeat(8000),
    _deleted: false,
    _attachments: {},
    _rev: '1-a',
    _meta: { lwt: Date.now() },
  });
  let written = 0;
  let error: unknown = null;
  for (let i = 0; i < 200 && error === null; i++) {
    try {
      await inst.bulkWrite([{ document: doc(`a${i}`) }, { document: doc(`b${i}`) }], 'fill');
      written += 2;
    } catch (err) {
      error = err;
    }
  }
  t.ok(error instanceof StorageError && error.code === 'STORAGE_FULL', `write ${written + 1} failed with STORAGE_FULL`);
  t.match(
    (error as Error).message,
    new RegExp(`${join(dir, 'full.sqlite').replace(/[/.]/g, '\\$&')}: database or disk is full.*maxBytes`),
    'the message names the file and what to do',
  );
  const found = await inst.findDocumentsById(
    Array.from({ length: written / 2 + 1 }, (_, i) => [`a${i}`, `b${i}`]).flat(),
    true,
  );
  t.equal(found.length, written, 'the failed bulk left nothing behind (one transaction), earlier writes are all there');
  await inst.close();
});

t.test('store at its size cap: the oldest of the lowest priority make room, P0 is never evicted for P1', async (t) => {
  const dir = freshDir();
  const log: string[] = [];
  const maxBytes = 2 * 1024 * 1024;
  const store = await TelemetryStore.open({ kind: 'sqlite', dir, maxBytes }, (m) => log.push(m));
  const gen = new SampleRecords(3);
  const p0: string[] = [];
  let seq = 0;
  for (; seq < 40; seq++) {
    const r = gen.record(seq, 0);
    p0.push(r.messageId);
    t.ok(await store.insert(r, 0), `P0 ${seq} stored`);
  }
  const p1: string[] = [];
  for (; seq < 3000; seq++) {
    const r = gen.record(seq, 1);
    p1.push(r.messageId);
    await store.insert(r, 0);
  }
  const used = store.usedBytes() ?? Infinity;
  t.ok(used <= maxBytes, `database stays within its cap: ${used} <= ${maxBytes} bytes`);
  const evicted = store.counters.dropped.get('1|evicted') ?? 0;
  t.ok(evicted > 1000, `${evicted} P1 records evicted`);
  t.equal(store.counters.dropped.get('0|evicted') ?? 0, 0, 'no P0 evicted');
  const pending = await store.pending(10_000, new Set());
  const ids = new Set(pending.map((r) => r.id));
  t.ok(
    p0.every((id) => ids.has(id)),
    'all 40 P0 events still stored',
  );
  t.ok(ids.has(p1[p1.length - 1]!) && !ids.has(p1[0]!), 'the newest P1 kept, the oldest evicted');
  const seqs = pending.filter((r) => r.priority === 1).map((r) => r.seq);
  t.equal(seqs.length, p1.length - evicted, 'stored + evicted = captured');
  t.ok(
    seqs.every((s, i) => i === 0 || s === seqs[i - 1]! + 1),
    'what was kept is one contiguous, most recent run',
  );
  t.match(log.join('\n'), /at its size cap; evicted \d+ oldest records of priority >= 1/, 'evictions are logged');
  await store.close();
});

t.test(
  'store full of P0: a P1 record is dropped and counted, a new P0 replaces the oldest P0, P1 then cycle among themselves',
  async (t) => {
    const dir = freshDir();
    const maxBytes = 1024 * 1024;
    const store = await TelemetryStore.open({ kind: 'sqlite', dir, maxBytes }, () => {});
    const gen = new SampleRecords(4);
    const dropped = (key: string): number => store.counters.dropped.get(key) ?? 0;
    let seq = 0;
    while ((store.usedBytes() ?? 0) <= 0.9 * maxBytes && seq < 5000) await store.insert(gen.record(seq++, 0), 0);
    t.ok(seq < 5000 && dropped('0|evicted') === 0, `${seq} P0 records filled the store past 90 % of its cap`);
    t.equal(await store.insert(gen.record(seq++, 1), 0), false, 'a P1 record finds no room: not stored');
    t.equal(dropped('1|store_full'), 1, 'and is counted as dropped (store_full)');
    t.equal(dropped('0|evicted'), 0, 'no P0 evicted to make room for P1');
    t.ok(await store.insert(gen.record(seq++, 0), 0), 'a new P0 event is stored');
    const p0Evicted = dropped('0|evicted');
    t.ok(p0Evicted > 0, `it replaced the oldest P0 (${p0Evicted} evicted)`);
    let p1Stored = 0;
    for (let i = 0; i < 300; i++) if (await store.insert(gen.record(seq++, 1), 0)) p1Stored++;
    t.equal(p1Stored, 300, 'then 300 P1 records are all stored');
    t.ok(dropped('1|evicted') > 0, `P1 records then make room among themselves (${dropped('1|evicted')} evicted)`);
    t.equal(dropped('0|evicted'), p0Evicted, 'without touching P0');
    t.ok((store.usedBytes() ?? Infinity) <= maxBytes, 'within the cap throughout');
    await store.close();
  },
);

t.test(
  'a cap so small that one record crosses it: SQLITE_FULL inside the write is handled, nothing thrown, all counted',
  async (t) => {
    const dir = freshDir();
    const log: string[] = [];
    const store = await TelemetryStore.open({ kind: 'sqlite', dir, maxBytes: 48 * 1024 }, (m) => log.push(m));
    const gen = new SampleRecords(9);
    let stored = 0;
    for (let seq = 0; seq < 200; seq++) if (await store.insert(gen.record(seq, 1), 0)) stored++;
    const evicted = store.counters.dropped.get('1|evicted') ?? 0;
    const full = store.counters.dropped.get('1|store_full') ?? 0;
    t.ok(stored > 100, `${stored} of 200 stored, the oldest making room`);
    t.equal(await store.count(), stored - evicted, 'in the store: stored minus evicted');
    t.equal(stored + full, 200, `every record stored or counted as dropped (${full} store_full)`);
    t.ok((store.usedBytes() ?? Infinity) <= 48 * 1024, 'within the cap');
    await store.close();
  },
);

// A real full filesystem: a 4 MiB tmpfs (needs root or CAP_SYS_ADMIN; skipped where mount is refused).
const tmpfs = join(root, 'tmpfs');
mkdirSync(tmpfs);
const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', tmpfs]).status === 0;
if (mounted)
  t.teardown(() => {
    spawnSync('umount', [tmpfs]);
  });

t.test(
  'a full filesystem: the reserve is given back, the WAL shrinks, the oldest records make room',
  { skip: mounted ? false : 'cannot mount a tmpfs here (needs root)' },
  async (t) => {
    const dir = join(tmpfs, 'data');
    const log: string[] = [];
    const store = await TelemetryStore.open({ kind: 'sqlite', dir, reserveBytes: 1 << 20 }, (m) => log.push(m));
    t.ok(existsSync(join(dir, 'v2c.sqlite.reserve')), 'a 1 MiB reserve beside the database');
    const gen = new SampleRecords(10);
    const ids: string[] = [];
    let stored = 0;
    for (let seq = 0; seq < 3000; seq++) {
      const r = gen.record(seq, seq % 100 === 0 ? 0 : 1);
      ids.push(r.messageId);
      if (await store.insert(r, 0)) stored++;
    }
    t.equal(stored, 3000, 'all 3,000 records stored (about 11 MB) on a 4 MiB filesystem');
    t.match(
      log.join('\n'),
      /filesystem holding .*v2c\.sqlite is full; keeping the database within [\d.]+ MiB, oldest lowest-priority records make room \(reserve released\)/,
      'the log says the disk filled and what the store does',
    );
    const pending = await store.pending(10_000, new Set());
    t.equal(pending.filter((r) => r.priority === 0).length, 30, 'all 30 P0 events kept');
    t.ok(
      pending.some((r) => r.record.messageId === ids[2999]),
      'the newest record is there',
    );
    t.equal(
      store.counters.dropped.get('1|evicted'),
      3000 - 30 - pending.filter((r) => r.priority === 1).length,
      'every P1 not kept is counted as evicted',
    );
    t.equal(store.counters.dropped.get('1|store_full') ?? 0, 0, 'none dropped for want of room');
    t.ok(log.length < 20, `the log stays short (${log.length} lines)`);
    await store.close();
  },
);

t.test('corrupt database file: moved aside with a timestamp, logged, a new one started', async (t) => {
  const dir = freshDir();
  const garbage = Buffer.from('this is not an SQLite database. '.repeat(512));
  writeFileSync(join(dir, 'v2c.sqlite'), garbage);
  const log: string[] = [];
  const store = await TelemetryStore.open({ kind: 'sqlite', dir }, (m) => log.push(m));
  t.equal(store.counters.degraded, null, 'the store is durable (a new file)');
  t.ok(await store.insert(new SampleRecords(5).record(0), 0), 'and stores records');
  const moved = store.counters.movedAside;
  t.match(moved, /v2c\.sqlite\.corrupt-\d{4}-\d\d-\d\dT/, `moved to ${moved}`);
  t.ok(moved !== null && readFileSync(moved).equals(garbage), "the moved file is the user's file, byte for byte");
  t.match(
    log.join('\n'),
    /store: not a valid database .*moved it to .*v2c\.sqlite\.corrupt-/,
    'one log line says what happened',
  );
  await store.close();
});

/** A store of 300 records, closed, with the byte range `range(fileSize)` overwritten by noise. */
async function damagedDatabase(
  seed: number,
  range: (size: number) => [number, number],
): Promise<{ dir: string; path: string }> {
  const dir = freshDir();
  const store = await TelemetryStore.open({ kind: 'sqlite', dir }, () => {});
  const gen = new SampleRecords(seed);
  for (let seq = 0; seq < 300; seq++) await store.insert(gen.record(seq, 1), 0);
  await store.close();
  const path = join(dir, 'v2c.sqlite');
  const bytes = readFileSync(path);
  const [from, to] = range(bytes.length);
  for (let i = from; i < to; i++) bytes[i] = (i * 131) & 0xff;
  writeFileSync(path, bytes);
  return { dir, path };
}

t.test('damaged pages in a real database: found by quick_check at open and moved aside', async (t) => {
  // Bytes 16-36 KiB: b-tree pages past the schema; the header stays intact.
  const { dir } = await damagedDatabase(6, () => [16 * 1024, 36 * 1024]);
  const log: string[] = [];
  const reopened = await TelemetryStore.open({ kind: 'sqlite', dir }, (m) => log.push(m));
  t.ok(
    reopened.counters.movedAside !== null && existsSync(reopened.counters.movedAside),
    `damaged file kept at ${reopened.counters.movedAside}`,
  );
  t.equal(await reopened.count(), 0, 'the new database starts empty');
  t.match(log.join('\n'), /quick_check|malformed|not a valid database/, 'the log says why');
  t.equal(
    readdirSync(dir).filter((f) => f.includes('.corrupt-') && !f.endsWith('-wal') && !f.endsWith('-shm')).length,
    1,
    'one moved-aside file, nothing deleted',
  );
  await reopened.close();
});

t.test(
  'the background check reads every b-tree: one damaged page deep in a table, an index or a value is found',
  async (t) => {
    // Small slices, no pauses: the damaged page lies several slices in.
    const pace = { sliceRows: 20, busyShare: 1 };
    const sound = await damagedDatabase(7, () => [0, 0]);
    t.equal(await checkInBackground(sound.path, pace), 'ok', 'a sound file passes');
    const targets: Array<[string, string]> = [
      ['a leaf page of the records table', "name = 'telemetry-v0' AND pagetype = 'leaf'"],
      ['an overflow page of a record', "name = 'telemetry-v0' AND pagetype = 'overflow'"],
      ['a leaf page of its primary-key index', "name = 'sqlite_autoindex_telemetry-v0_1' AND pagetype = 'leaf'"],
      ['a leaf page of the priority/sequence index', "name = 'telemetry-v0__ix0' AND pagetype = 'leaf'"],
    ];
    for (const [what, where] of targets) {
      const { path } = await damagedDatabase(7, () => [0, 0]);
      const db = new Database(path, { readonly: true });
      const pages = db.prepare(`SELECT pageno FROM dbstat WHERE ${where} ORDER BY pageno`).pluck().all() as number[];
      const pageSize = db.pragma('page_size', { simple: true }) as number;
      db.close();
      const page = pages[Math.floor(pages.length / 2)] as number;
      const bytes = readFileSync(path);
      bytes.fill(0xff, (page - 1) * pageSize, page * pageSize);
      writeFileSync(path, bytes);
      t.match(await checkInBackground(path, pace), /malformed|corrupt/i, `${what} (page ${page}, of ${pages.length})`);
    }
  },
);

// Root writes through file modes, so as root the probe runs as "nobody", for whom the file is read-only.
const asRoot = process.getuid?.() === 0;
const unprivileged = asRoot ? { uid: 65534, gid: 65534 } : {};
const probeRuns =
  spawnSync(
    process.execPath,
    ['-e', `require('fs').accessSync(${JSON.stringify(PROBE)}, require('fs').constants.R_OK)`],
    unprivileged,
  ).status === 0;

t.test(
  'a large database is checked in the background; a damaged one is marked and moved aside at the next start',
  async (t) => {
    // Damage the last pages (records, not the schema), so the file still opens.
    const { dir, path } = await damagedDatabase(16, (size) => [size - 40 * 1024, size - 20 * 1024]);
    const log: string[] = [];
    // checkOnOpenMaxBytes 0: every file counts as large.
    const running = await TelemetryStore.open({ kind: 'sqlite', dir, checkOnOpenMaxBytes: 0 }, (m) => log.push(m));
    t.equal(running.counters.integrity, 'checking', 'opened at once, the check runs in a worker thread');
    // A worker thread's check has no progress to watch: a slow board gets a generous bound.
    await waitUntil('the background check', () => running.counters.integrity !== 'checking', 120_000).catch(
      () => undefined,
    );
    t.equal(running.counters.integrity, 'damaged', 'the background check finds the damage');
    t.match(
      log.join('\n'),
      /background check of .*v2c\.sqlite: .*moved aside at the next start/,
      'and says so in the log',
    );
    t.ok(existsSync(`${path}.damaged`), 'the file is marked');
    await running.close();
    const next = await TelemetryStore.open({ kind: 'sqlite', dir, checkOnOpenMaxBytes: 0 }, () => {});
    t.ok(
      next.counters.movedAside !== null &&
        existsSync(next.counters.movedAside) &&
        existsSync(`${next.counters.movedAside}.damaged`),
      `next start: moved aside with its marker (${next.counters.movedAside})`,
    );
    t.equal(await next.count(), 0, 'and a new database started');
    await next.close();
  },
);

t.test(
  'read-only database file: STORAGE_READ_ONLY with the chmod/mount hint; capture goes on in memory',
  { skip: probeRuns ? false : 'the project is not readable by an unprivileged user here' },
  async (t) => {
    const dir = freshDir();
    const seed = await TelemetryStore.open({ kind: 'sqlite', dir }, () => {});
    await seed.insert(new SampleRecords(8).record(0), 0);
    await seed.close();
    chmodSync(root, 0o755);
    chmodSync(dir, 0o555);
    chmodSync(join(dir, 'v2c.sqlite'), 0o444);
    t.teardown(() => {
      chmodSync(dir, 0o755);
    });
    const before = readFileSync(join(dir, 'v2c.sqlite'));
    const probe = spawnSync(process.execPath, [PROBE, dir], { encoding: 'utf8', ...unprivileged });
    if (probe.status !== 0) t.comment(probe.stderr);
    t.equal(probe.status, 0, 'the probe exits cleanly');
    const result = JSON.parse(probe.stdout) as {
      degraded: string | null;
      stored: boolean;
      count: number;
      log: string[];
    };
    t.equal(result.degraded, 'STORAGE_READ_ONLY', 'typed error: STORAGE_READ_ONLY');
    t.match(
      result.log[0] ?? '',
      new RegExp(
        `${join(dir, 'v2c.sqlite').replace(/[/.]/g, '\\$&')}: cannot write .*writable by the gateway user.*mounted read-write`,
      ),
      'the log line names the file and what to do',
    );
    t.equal(result.log.length, 1, 'said once');
    t.ok(result.stored && result.count === 1, 'records are still captured (in memory)');
    t.ok(readFileSync(join(dir, 'v2c.sqlite')).equals(before), 'the read-only file is untouched');
  },
);
