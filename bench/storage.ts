// Storage section of `npm run bench`, run once per storage in its own process so RSS is its own:
//   node dist/bench/storage.js sqlite|memory RECORDS DIR
// Prints one JSON line of figures; bench/run.ts lays the two side by side.
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createRxDatabase, normalizeMangoQuery, prepareQuery, type RxCollection, type RxStorage } from 'rxdb';
import { getRxStorageMemory } from 'rxdb/plugins/storage-memory';
import { SampleRecords } from './rig/sample-records.js';
import { backgroundCheckPace, checkInBackground } from '../sync/store/sqlite-file.js';
import { getRxStorageSQLite } from '../sync/store/sqlite-storage.js';
import { telemetrySchema, type StoredRecord } from '../sync/store/stored-record.js';
import { TelemetryStore } from '../sync/store/telemetry-store.js';

export interface StorageFigures {
  kind: string;
  singleInsertsPerS: number;
  bulkInsertsPerS: number;
  /** Median latency (ms) of "oldest 50 pending of priority p" by stored record count. */
  outboxQueryMs: Record<string, number>;
  rssMiBAtMax: number;
  records: number;
  fileBytesAtMax: number | null;
  /** Start-up with the store full: open (incl. quick_check), count, highest sequence; ms. */
  reopenMs: { open: number; count: number; maxSequence: number; backgroundCheck: number } | null;
  /** Bytes written to disk per record by page size and WAL checkpoint policy (insert; insert + ack + purge). */
  wear: Array<{ pageSize: number; walPages: number; insertBytes: number; lifecycleBytes: number; insertsPerS: number }>;
}

function writeBytes(): number {
  const m = /write_bytes: (\d+)/.exec(readFileSync('/proc/self/io', 'utf8'));
  return m ? Number(m[1]) : NaN;
}

function storageFor(kind: string, dir: string): RxStorage<unknown, unknown> {
  return (
    kind === 'sqlite' ? getRxStorageSQLite({ directory: dir, synchronous: 'FULL' }) : getRxStorageMemory()
  ) as RxStorage<unknown, unknown>;
}

const PRIORITY_MIX = (i: number): number => (i % 50 === 0 ? 0 : i % 5 === 0 ? 2 : 1);

/** The gateway's own path: one record per write, each committed (fsync) before the next. */
async function singleInserts(
  kind: string,
  dir: string,
  n: number,
  policy: { pageSize?: number; walPages?: number },
  name: string,
): Promise<{ perS: number; insertBytes: number; lifecycleBytes: number }> {
  const store = await TelemetryStore.open({
    kind: kind === 'sqlite' ? 'sqlite' : 'memory',
    dir,
    name,
    pageSize: policy.pageSize,
    walAutocheckpointPages: policy.walPages,
    purgeIntervalMs: 3_600_000,
  });
  const gen = new SampleRecords(11);
  const records = Array.from({ length: n }, (_, i) => gen.record(i, PRIORITY_MIX(i)));
  const w0 = writeBytes();
  const t0 = process.hrtime.bigint();
  for (const r of records) await store.insert(r, 0);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const w1 = writeBytes();
  // The rest of a record's life: acknowledged (deleted), then its tombstone purged.
  for (const r of records)
    await store.remove([{ id: r.messageId, priority: r.priority, seq: r.sequence, createdMs: 0, record: r }]);
  await store.purge();
  await store.close();
  const w2 = writeBytes();
  return { perS: n / seconds, insertBytes: (w1 - w0) / n, lifecycleBytes: (w2 - w0) / n };
}

async function outboxQueryMs(collection: RxCollection<StoredRecord>, rounds: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const p = i % 3;
    // Straight to the storage: RxDB's query cache would otherwise answer repeats from memory.
    const q = prepareQuery(
      collection.schema.jsonSchema,
      normalizeMangoQuery(collection.schema.jsonSchema, {
        selector: { priority: p, _deleted: { $eq: false } } as never,
        sort: [{ priority: 'asc' }, { seq: 'asc' }],
        limit: 50,
      }),
    );
    const t0 = process.hrtime.bigint();
    const res = await collection.storageInstance.query(q);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (res.documents.length !== 50) throw new Error(`outbox query returned ${res.documents.length}`);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

/** What a gateway restart costs with `stored` records waiting: open, count, max sequence, the background check. */
async function reopen(dir: string, stored: number): Promise<StorageFigures['reopenMs']> {
  const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;
  let t0 = process.hrtime.bigint();
  const store = await TelemetryStore.open({ kind: 'sqlite', dir, name: 'bulk' });
  const open = ms(t0);
  t0 = process.hrtime.bigint();
  const n = await store.count();
  const count = ms(t0);
  t0 = process.hrtime.bigint();
  const max = await store.maxSequence();
  const maxSequence = ms(t0);
  t0 = process.hrtime.bigint();
  // Unpaced: the work itself (the gateway spreads it out, busy a tenth of the CPU it may use).
  const verdict = await checkInBackground(join(dir, 'bulk.sqlite'), { ...backgroundCheckPace(), busyShare: 1 });
  const backgroundCheck = ms(t0);
  await store.close();
  if (verdict !== 'ok') throw new Error(`background check: ${verdict}`);
  if (n !== stored || max !== stored - 1)
    throw new Error(`reopened store: count ${n}, max sequence ${max}, expected ${stored}, ${stored - 1}`);
  return { open, count, maxSequence, backgroundCheck };
}

export async function storageBench(kind: string, maxRecords: number, dir: string): Promise<StorageFigures> {
  const wear: StorageFigures['wear'] = [];
  // The gateway's defaults first; for SQLite then the other page sizes and checkpoint policies.
  const single = await singleInserts(kind, dir, 2000, {}, 'single-default');
  if (kind === 'sqlite') {
    for (const pageSize of [1024, 4096]) {
      for (const walPages of [100, 1000, 10_000]) {
        const r = await singleInserts(kind, dir, 2000, { pageSize, walPages }, `single-${pageSize}-${walPages}`);
        wear.push({
          pageSize,
          walPages,
          insertBytes: r.insertBytes,
          lifecycleBytes: r.lifecycleBytes,
          insertsPerS: r.perS,
        });
      }
    }
  }

  const db = await createRxDatabase({ name: 'bulk', storage: storageFor(kind, dir), multiInstance: false });
  const { telemetry } = await db.addCollections({ telemetry: { schema: telemetrySchema } });
  const collection = telemetry as RxCollection<StoredRecord>;
  const gen = new SampleRecords(12);
  const outboxQuery: Record<string, number> = {};
  const checkpoints = [10_000, 100_000, 1_000_000].filter((c) => c <= maxRecords);
  if (!checkpoints.includes(maxRecords)) checkpoints.push(maxRecords);
  let stored = 0;
  let bulkSeconds = 0;
  const BULK = 1000;
  for (const target of checkpoints) {
    while (stored < target) {
      const docs: StoredRecord[] = [];
      for (let i = 0; i < BULK && stored + i < target; i++) {
        const record = gen.record(stored + i, PRIORITY_MIX(stored + i));
        docs.push({ id: record.messageId, priority: record.priority, seq: record.sequence, createdMs: 0, record });
      }
      const t0 = process.hrtime.bigint();
      await collection.bulkInsert(docs);
      bulkSeconds += Number(process.hrtime.bigint() - t0) / 1e9;
      stored += docs.length;
    }
    outboxQuery[String(target)] = await outboxQueryMs(collection, 60);
  }
  // RxDB drops cached documents from FinalizationRegistry callbacks, which run after a GC, later.
  for (let i = 0; i < 3; i++) {
    global.gc?.();
    await new Promise((r) => setTimeout(r, 200));
  }
  const rssMiBAtMax = process.memoryUsage().rss / 2 ** 20;
  if (process.env.V2C_BENCH_DEBUG) process.stderr.write(`${JSON.stringify(process.memoryUsage())}\n`);
  await db.close();
  const fileBytesAtMax = kind === 'sqlite' ? statSync(join(dir, 'bulk.sqlite')).size : null;
  const reopenMs = kind === 'sqlite' ? await reopen(dir, stored) : null;
  return {
    reopenMs,
    kind,
    singleInsertsPerS: single.perS,
    bulkInsertsPerS: stored / bulkSeconds,
    outboxQueryMs: outboxQuery,
    rssMiBAtMax,
    records: stored,
    fileBytesAtMax,
    wear,
  };
}

if (process.argv[1]?.endsWith('storage.js') && process.argv.length >= 5) {
  const [kind, records, dir] = process.argv.slice(2) as [string, string, string];
  process.stdout.write(`${JSON.stringify(await storageBench(kind, Number(records), dir))}\n`);
}
