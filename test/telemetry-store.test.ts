// The gateway's store on SQLite: what is stored comes back after a restart, in outbox order.
import t from 'tap';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SampleRecords } from '../gateway/bench-rig/sample-records.js';
import { TelemetryStore } from '../sync/telemetry-store.js';

const dir = mkdtempSync(join(tmpdir(), 'v2c-store-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

t.test('records survive a restart; pending() is priority then oldest; maxSequence() is the highest of any priority', async (t) => {
  const gen = new SampleRecords(21);
  const store = await TelemetryStore.open({ kind: 'sqlite', dir }, () => {});
  const priorities = [1, 2, 1, 0, 2, 1, 0, 1, 2, 2];
  const records = priorities.map((p, i) => gen.record(100 + i, p));
  for (const r of records) t.ok(await store.insert(r, 0), `record ${r.sequence} (P${r.priority}) stored`);
  await store.remove(records[5]!.messageId);
  await store.close();

  const reopened = await TelemetryStore.open({ kind: 'sqlite', dir }, () => {});
  t.equal(reopened.counters.degraded, null, 'durable, not degraded');
  t.equal(await reopened.count(), 9, '9 records after the restart (one was acknowledged)');
  const pending = await reopened.pending(100, new Set());
  t.same(pending.map((r) => [r.priority, r.seq]), [[0, 103], [0, 106], [1, 100], [1, 102], [1, 107], [2, 101], [2, 104], [2, 108], [2, 109]], 'outbox order: P0 first, then oldest');
  t.same(pending[0]!.record, records[3], 'the record comes back field for field');
  t.equal(await reopened.maxSequence(), 109, 'maxSequence over all priorities (the highest is P2)');
  t.same((await reopened.pending(2, new Set([records[3]!.messageId]))).map((r) => r.seq), [106, 100], 'pending() skips records in flight');
  await reopened.close();
});

t.test('acknowledged records leave the file: purge() removes their tombstones', async (t) => {
  const sub = join(dir, 'purge');
  const gen = new SampleRecords(22);
  const store = await TelemetryStore.open({ kind: 'sqlite', dir: sub }, () => {});
  const records = Array.from({ length: 50 }, (_, i) => gen.record(i, 1));
  for (const r of records) await store.insert(r, 0);
  for (const r of records.slice(0, 40)) await store.remove(r.messageId);
  const rows = (): { live: number; dead: number } => {
    const db = new Database(join(sub, 'v2c.sqlite'), { readonly: true });
    try {
      return db.prepare('SELECT sum(deleted = 0) AS live, sum(deleted = 1) AS dead FROM "telemetry-v0"').get() as { live: number; dead: number };
    } finally { db.close(); }
  };
  t.same(rows(), { live: 10, dead: 40 }, 'before: 40 tombstones in the file');
  await store.purge();
  t.same(rows(), { live: 10, dead: 0 }, 'after purge(): only the 10 pending records');
  t.equal(await store.maxSequence(), 49, 'maxSequence unaffected');
  await store.close();
});
