// The gateway's store on SQLite: what is stored comes back after a restart, in outbox order.
import t from 'tap';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SampleRecords } from '../bench/rig/sample-records.js';
import { TelemetryStore } from '../sync/store/telemetry-store.js';

const dir = mkdtempSync(join(tmpdir(), 'v2c-store-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

t.test(
  'records survive a restart; pending() is priority then oldest; maxSequence() is the highest of any priority',
  async (t) => {
    const gen = new SampleRecords(21);
    const store = await TelemetryStore.open({ kind: 'sqlite', dir }, () => {});
    const priorities = [1, 2, 1, 0, 2, 1, 0, 1, 2, 2];
    const records = priorities.map((p, i) => gen.record(100 + i, p));
    for (const r of records) t.ok(await store.insert(r, 0), `record ${r.sequence} (P${r.priority}) stored`);
    await store.remove((await store.pending(100, new Set())).filter((s) => s.id === records[5]!.messageId));
    await store.close();

    const reopened = await TelemetryStore.open({ kind: 'sqlite', dir }, () => {});
    t.equal(reopened.counters.degraded, null, 'durable, not degraded');
    t.equal(await reopened.count(), 9, '9 records after the restart (one was acknowledged)');
    const pending = await reopened.pending(100, new Set());
    t.same(
      pending.map((r) => [r.priority, r.seq]),
      [
        [0, 103],
        [0, 106],
        [1, 100],
        [1, 102],
        [1, 107],
        [2, 101],
        [2, 104],
        [2, 108],
        [2, 109],
      ],
      'outbox order: P0 first, then oldest',
    );
    t.same(pending[0]!.record, records[3], 'the record comes back field for field');
    t.equal(await reopened.maxSequence(), 109, 'maxSequence over all priorities (the highest is P2)');
    t.same(
      (await reopened.pending(2, new Set([records[3]!.messageId]))).map((r) => r.seq),
      [106, 100],
      'pending() skips records in flight',
    );
    await reopened.close();
  },
);

t.test(
  'a record removed twice (an acknowledgement racing an eviction) is counted once; removal by id finds what pending handed out',
  async (t) => {
    const sub = join(dir, 'twice');
    const gen = new SampleRecords(23);
    const store = await TelemetryStore.open({ kind: 'sqlite', dir: sub }, () => {});
    for (let i = 0; i < 10; i++) await store.insert(gen.record(i, 1), 0);
    const first = await store.pending(4, new Set());
    const stale = await store.pending(4, new Set());
    await store.remove(first);
    t.equal(await store.count(), 6, 'four removed');
    await store.remove(stale);
    t.equal(await store.count(), 6, 'the same four again: a revision conflict in the storage, nothing counted twice');
    // Records that did not come from pending() (rebuilt from their fields) are found by id.
    const rest = await store.pending(10, new Set());
    await store.remove(rest.slice(0, 2).map((r) => ({ ...r })));
    t.equal(await store.count(), 4);
    t.same(
      (await store.pending(10, new Set())).map((r) => r.seq),
      rest.slice(2).map((r) => r.seq),
      'the right ones left',
    );
    await store.close();
  },
);

t.test('acknowledged records leave the file at once: no tombstones to purge', async (t) => {
  const sub = join(dir, 'purge');
  const gen = new SampleRecords(22);
  const store = await TelemetryStore.open({ kind: 'sqlite', dir: sub }, () => {});
  const records = Array.from({ length: 50 }, (_, i) => gen.record(i, 1));
  for (const r of records) await store.insert(r, 0);
  await store.remove((await store.pending(100, new Set())).slice(0, 40));
  const rows = (): { live: number; dead: number } => {
    const db = new Database(join(sub, 'v2c.sqlite'), { readonly: true });
    try {
      return db.prepare('SELECT sum(deleted = 0) AS live, sum(deleted = 1) AS dead FROM "telemetry-v0"').get() as {
        live: number;
        dead: number;
      };
    } finally {
      db.close();
    }
  };
  t.same(rows(), { live: 10, dead: 0 }, 'only the 10 pending records are rows');
  t.equal(await store.count(), 10);
  t.equal(await store.maxSequence(), 49, 'maxSequence unaffected');
  await store.close();
});

t.test(
  "byte quota per priority: a class over its quota drops its own oldest records, never another class's",
  async (t) => {
    const sub = join(dir, 'quota');
    const gen = new SampleRecords(23);
    const size = JSON.stringify(gen.record(0, 2)).length;
    const open = (): Promise<TelemetryStore> =>
      TelemetryStore.open({ kind: 'sqlite', dir: sub, quotaBytes: [undefined, undefined, size * 10.5] }, () => {});
    const store = await open();
    for (let i = 0; i < 5; i++) t.ok(await store.insert(gen.record(i, 0), 0));
    for (let i = 5; i < 25; i++) t.ok(await store.insert(gen.record(i, 2), 0), `P2 record ${i} stored`);
    t.equal(await store.count(2), 10, 'P2 held at its quota: 10 records');
    t.equal(await store.count(0), 5, 'P0 untouched by P2 pressure');
    t.same(
      (await store.pending(100, new Set(), 2)).map((r) => r.seq),
      [15, 16, 17, 18, 19, 20, 21, 22, 23, 24],
      'the newest P2 records stay',
    );
    t.equal(
      store.counters.dropped.get('2|quota'),
      10,
      'each drop counted as v2c_dropped_total{priority="2",reason="quota"}',
    );
    t.ok(Math.abs(store.bytesOf(2) - size * 10) < size, `P2 bytes tracked (${store.bytesOf(2)})`);
    await store.close();
    const again = await open();
    t.ok(Math.abs(again.bytesOf(2) - size * 10) < size, 'class bytes measured again at open');
    await again.remove(await again.pending(3, new Set(), 2));
    t.ok(await again.insert(gen.record(99, 2), 0));
    t.equal(await again.count(2), 8, 'room freed by acknowledgements is reused without drops');
    t.equal(again.counters.dropped.get('2|quota') ?? 0, 0);
    await again.close();
  },
);

for (const kind of ['sqlite', 'memory'] as const) {
  t.test(
    `${kind}: records removed as sent (without their content) leave the counts and class bytes right`,
    async (t) => {
      const gen = new SampleRecords(29);
      const store = await TelemetryStore.open(
        { kind, dir: join(dir, `sent-${kind}`), quotaBytes: [1e6, 1e6, 1e6] },
        () => {},
      );
      t.teardown(() => store.close());
      for (let i = 0; i < 8; i++) t.ok(await store.insert(gen.record(i, i < 2 ? 1 : 2), 0));
      const stored = store.bytesOf(2);
      const sent = store.asSent(await store.pending(6, new Set(), 2));
      t.same(
        sent.map((r) => Object.keys(r).sort()),
        Array.from({ length: 6 }, () => ['bytes', 'id', 'priority']),
        'a sent record is its id, priority and weight only',
      );
      t.equal(
        sent.reduce((sum, r) => sum + r.bytes, 0),
        stored,
        'and the six weigh what the class holds',
      );
      await store.remove(sent);
      t.equal(await store.count(2), 0, 'all six P2 records removed');
      t.equal(await store.count(1), 2, 'P1 untouched');
      t.equal(store.bytesOf(2), 0, "the class's bytes are back to none");
      t.same(await store.pending(10, new Set(), 2), [], 'and none of them is pending');
    },
  );
}

t.test(
  'count() is kept as the store changes and agrees with the index after inserts, removals, evictions, quota drops and a reopen',
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'v2c-count-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const options = { kind: 'sqlite' as const, dir, maxBytes: 2 << 20, quotaBytes: [undefined, undefined, 200_000] };
    const store = await TelemetryStore.open(options);
    const gen = new SampleRecords(21);
    const kept: string[] = [];
    for (let seq = 0; seq < 2500; seq++) {
      const r = gen.record(seq, seq % 50 === 0 ? 0 : seq % 2 === 0 ? 1 : 2);
      if (await store.insert(r, 0)) kept.push(r.messageId);
    }
    t.notOk(
      await store.insert(gen.record(2498, 1), 0),
      'a duplicate id (the newest P1 again) is not stored, and not counted',
    );
    const some = await store.pending(120, new Set());
    await store.remove(some);
    await store.remove(some.slice(0, 30));
    const actual = async (priority: number): Promise<number> =>
      (await store.pending(100_000, new Set(), priority)).length;
    for (const p of [0, 1, 2])
      t.equal(await store.count(p), await actual(p), `priority ${p}: ${await store.count(p)} counted = in the index`);
    t.equal(await store.count(), (await store.pending(100_000, new Set())).length, 'all priorities');
    t.ok(
      (store.counters.dropped.get('1|evicted') ?? 0) > 0 && (store.counters.dropped.get('2|quota') ?? 0) > 0,
      'evictions and quota drops happened',
    );
    const before = await store.count();
    await store.close();
    const reopened = await TelemetryStore.open(options);
    t.equal(await reopened.count(), before, 'the same count after a reopen');
    await reopened.close();
  },
);

t.test(
  'pending() skips the ids given, on SQLite (beside the query) as in memory (a $nin): same answers (table)',
  async (t) => {
    const gen = new SampleRecords(29);
    const stores = {
      sqlite: await TelemetryStore.open({ kind: 'sqlite', dir: join(dir, 'skips') }, () => {}),
      memory: await TelemetryStore.open({ kind: 'memory', dir: join(dir, 'skips-memory') }, () => {}),
    };
    t.teardown(async () => {
      for (const store of Object.values(stores)) await store.close();
    });
    const records = Array.from({ length: 30 }, (_, i) => gen.record(i, i % 3));
    for (const store of Object.values(stores)) for (const r of records) await store.insert(r, 0);
    const id = (seq: number): string => records[seq]!.messageId;
    const cases: Array<[limit: number, exclude: number[], priority: number | undefined, seqs: number[]]> = [
      [3, [], undefined, [0, 3, 6]],
      [3, [0, 3], undefined, [6, 9, 12]],
      [2, [1, 4, 7, 10, 13, 16, 19, 22, 25], 1, [28]],
      [4, [2, 5], 2, [8, 11, 14, 17]],
      [2, records.map((r) => r.sequence), undefined, []],
      [12, [0, 1, 2], undefined, [3, 6, 9, 12, 15, 18, 21, 24, 27, 4, 7, 10]],
    ];
    for (const [limit, exclude, priority, seqs] of cases)
      for (const [kind, store] of Object.entries(stores))
        t.same(
          (await store.pending(limit, new Set(exclude.map(id)), priority)).map((r) => r.seq),
          seqs,
          `${kind}: ${limit} of P${priority ?? 'any'} without ${exclude.length} ids`,
        );
  },
);
