// The SQLite RxStorage answers like rxdb's memory storage: a differential run of random operations.
import t from 'tap';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getRxStorageMemory } from 'rxdb/plugins/storage-memory';
import { createRxDatabase, fillWithDefaultSettings, type RxJsonSchema, type RxStorage } from 'rxdb';
import {
  getRxStorageSQLite,
  type SqliteInstanceOptions,
  type SqliteStorageInstance,
} from '../sync/store/sqlite-storage.js';
import { runDifferential, scenarios } from './storage-differential.js';

const dir = mkdtempSync(join(tmpdir(), 'v2c-diff-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
// Replay one failure with V2C_DIFF_SEED=<seed>; by default the same seeds run every time.
const seeds = process.env.V2C_DIFF_SEED ? [Number(process.env.V2C_DIFF_SEED)] : [20261122, 4242];
const opsPerRun = Number(process.env.V2C_DIFF_OPS ?? 1800);

t.test('differential: SQLite storage vs rxdb memory storage', async (t) => {
  let total = 0;
  for (const scenario of scenarios) {
    for (const seed of seeds) {
      // synchronous OFF only speeds the comparison up; durability has its own test.
      const sqlite = () => getRxStorageSQLite({ directory: dir, synchronous: 'OFF' }) as RxStorage<unknown, unknown>;
      const res = await runDifferential(
        scenario,
        seed,
        opsPerRun,
        getRxStorageMemory() as RxStorage<unknown, unknown>,
        sqlite(),
        sqlite,
      );
      total += res.ops;
      t.equal(res.mismatch, null, `${scenario.name} seed ${seed}: ${res.ops} operations give equal answers`);
      // The run must have exercised what it claims to compare.
      t.ok(res.conflicts > 20, `${scenario.name} seed ${seed}: conflicts exercised (${res.conflicts})`);
      t.ok(
        res.nonEmptyQueries > res.byKind.query / 4,
        `${scenario.name} seed ${seed}: queries with results (${res.nonEmptyQueries}/${res.byKind.query})`,
      );
      t.ok(res.purged > 0, `${scenario.name} seed ${seed}: cleanup purged tombstones (${res.purged})`);
      t.ok(res.changeEvents > 100, `${scenario.name} seed ${seed}: change events compared (${res.changeEvents})`);
      const schemaIndexes = (scenario.schema.indexes ?? []).length;
      const used = Object.entries(res.indexesUsed)
        .filter(([, n]) => n >= 10)
        .map(([ix]) => ix);
      t.ok(
        used.length >= schemaIndexes + 1,
        `${scenario.name} seed ${seed}: queries ran over ${used.length} indexes: ${used.join(' | ')}`,
      );
      t.ok(
        res.byKind.changedSince > 50 && res.byKind.staleUpdate > 10,
        `${scenario.name} seed ${seed}: change-since and stale writes ran`,
      );
    }
  }
  t.comment(`differential operations this run: ${total}`);
  t.ok(total >= 10_000 || process.env.V2C_DIFF_SEED !== undefined, `at least 10,000 operations (${total})`);
});

const sqliteAt = (directory: string) => getRxStorageSQLite({ directory, synchronous: 'OFF' });
type Doc = { id: string; n: number };
const docSchema = (indexes: string[]): RxJsonSchema<Doc> => ({
  version: 0,
  primaryKey: 'id',
  type: 'object',
  properties: {
    id: { type: 'string', maxLength: 20 },
    n: { type: 'integer', minimum: 0, maximum: 1000, multipleOf: 1 },
  },
  required: ['id', 'n'],
  indexes,
});

t.test(
  'RxDB over the storage: remove() deletes the database file; attachments and changed indexes are refused with typed errors',
  async (t) => {
    const sub = join(dir, 'lifecycle');
    const db = await createRxDatabase({ name: 'life', storage: sqliteAt(sub), multiInstance: false });
    const { docs } = await db.addCollections({ docs: { schema: docSchema(['n']) } });
    await docs.bulkInsert([
      { id: 'a', n: 1 },
      { id: 'b', n: 2 },
    ]);
    await db.close();
    t.ok(existsSync(join(sub, 'life.sqlite')), 'the database file exists after close');

    // RxDB notices a changed schema itself (DB6); the storage checks too, for direct use.
    const changedParams = {
      databaseInstanceToken: 'c',
      databaseName: 'life',
      collectionName: 'docs',
      schema: fillWithDefaultSettings(docSchema([])),
      options: {},
      multiInstance: false,
      devMode: false,
    };
    await t.rejects(
      (sqliteAt(sub) as RxStorage<unknown, unknown>).createStorageInstance(changedParams),
      { code: 'STORAGE_SCHEMA_MISMATCH', message: /life\.sqlite: table docs-v0 has indexes .*bump the schema version/ },
      'same collection and version with other indexes: STORAGE_SCHEMA_MISMATCH',
    );

    const again = await createRxDatabase({ name: 'life', storage: sqliteAt(sub), multiInstance: false });
    const reopened = await again.addCollections({ docs: { schema: docSchema(['n']) } });
    t.equal(await reopened.docs.count().exec(), 2, 'the documents are there after reopening');
    await again.remove();
    t.notOk(existsSync(join(sub, 'life.sqlite')), 'remove() deleted the database file');

    const withAttachments = await createRxDatabase({ name: 'att', storage: sqliteAt(sub), multiInstance: false });
    await t.rejects(
      withAttachments.addCollections({ files: { schema: { ...docSchema([]), attachments: {} } } }),
      {
        code: 'STORAGE_ATTACHMENTS_UNSUPPORTED',
        message: /att\.sqlite: collection "files" declares attachments; this storage keeps no attachments/,
      },
      'attachments: STORAGE_ATTACHMENTS_UNSUPPORTED',
    );
    await withAttachments.close();
  },
);

t.test('storage instances: a shared change stream per table, and a closed instance refuses work', async (t) => {
  const sub = join(dir, 'instances');
  const schema = fillWithDefaultSettings(docSchema(['n']));
  const params = {
    databaseInstanceToken: 'i',
    databaseName: 'inst',
    collectionName: 'docs',
    schema,
    options: {},
    multiInstance: false,
    devMode: false,
  };
  const storage = sqliteAt(sub) as RxStorage<unknown, unknown>;
  const one = await storage.createStorageInstance<Doc>(params);
  const two = await storage.createStorageInstance<Doc>(params);
  const seen: string[] = [];
  const sub2 = two
    .changeStream()
    .subscribe((bulk) => seen.push(...bulk.events.map((e) => `${e.operation}:${e.documentId}`)));
  const doc = { id: 'x', n: 5, _deleted: false, _attachments: {}, _rev: '1-a', _meta: { lwt: Date.now() } };
  await one.bulkWrite([{ document: doc }], 'test');
  t.same(seen, ['INSERT:x'], 'a write through one instance is seen by the other');
  t.same(
    (await two.findDocumentsById(['x'], false)).map((d) => d.n),
    [5],
    'and read through it',
  );
  sub2.unsubscribe();
  await one.close();
  await t.rejects(one.findDocumentsById(['x'], true), { code: 'STORAGE_CLOSED' }, 'a closed instance: STORAGE_CLOSED');
  t.same((await two.findDocumentsById(['x'], true)).length, 1, 'the other instance keeps working');
  await two.close();
});

/** Creation parameters of a `docs` collection indexed by `n`. */
const instanceParams = (databaseName: string, options: SqliteInstanceOptions) => ({
  databaseInstanceToken: 'c',
  databaseName,
  collectionName: 'docs',
  schema: fillWithDefaultSettings(docSchema(['n'])),
  options,
  multiInstance: false,
  devMode: false,
});
const doc = (id: string, n: number, rev = '1-a', deleted = false) => ({
  id,
  n,
  _deleted: deleted,
  _attachments: {},
  _rev: rev,
  _meta: { lwt: Date.now() },
});

t.test('counts per value of a field are kept by triggers through inserts, changes, deletions and purges', async (t) => {
  const sub = join(dir, 'counts');
  const params = (options: SqliteInstanceOptions) => instanceParams('counts', options);
  const storage = sqliteAt(sub);
  // Rows written before the counts existed are counted once, when the counts are created (at open).
  const plain = await storage.createStorageInstance<Doc>(params({}));
  await plain.bulkWrite(
    [doc('a', 1), doc('b', 1), doc('c', 2)].map((document) => ({ document })),
    'test',
  );
  await plain.close();
  const counted = (await storage.createStorageInstance<Doc>(params({ countBy: 'n' }))) as SqliteStorageInstance<Doc>;
  const counts = () => Object.fromEntries([...counted.countsBy()].map(([v, n]) => [String(v), n]));
  t.same(counts(), { 1: 2, 2: 1 }, 'an existing table is counted when the counts are created');
  const steps: Array<[string, () => Promise<unknown>, Record<string, number>]> = [
    [
      'insert',
      () => counted.bulkWrite([{ document: doc('d', 3) }, { document: doc('e', 1) }], 'test'),
      { 1: 3, 2: 1, 3: 1 },
    ],
    [
      'a value changes',
      () => counted.bulkWrite([{ previous: doc('a', 1), document: doc('a', 2, '2-b') }], 'test'),
      { 1: 2, 2: 2, 3: 1 },
    ],
    [
      'deleted (a tombstone is not counted)',
      () => counted.bulkWrite([{ previous: doc('b', 1), document: doc('b', 1, '2-b', true) }], 'test'),
      { 1: 1, 2: 2, 3: 1 },
    ],
    ['tombstones purged', () => counted.cleanup(0), { 1: 1, 2: 2, 3: 1 }],
    [
      'a tombstone brought back',
      () => counted.bulkWrite([{ previous: doc('b', 1, '2-b', true), document: doc('b', 3, '3-c') }], 'test'),
      { 1: 1, 2: 2, 3: 2 },
    ],
  ];
  for (const [what, step, expected] of steps) {
    await step();
    t.same(counts(), expected, what);
    const queried: Record<string, number> = {};
    for (const d of await counted.findDocumentsById(['a', 'b', 'c', 'd', 'e'], false))
      queried[String(d.n)] = (queried[String(d.n)] ?? 0) + 1;
    t.same(counts(), queried, `${what}: as the documents say`);
  }
  await counted.close();
  const again = (await storage.createStorageInstance<Doc>(params({ countBy: 'n' }))) as SqliteStorageInstance<Doc>;
  t.same(
    Object.fromEntries(again.countsBy()),
    Object.fromEntries([
      [1, 1],
      [2, 2],
      [3, 2],
    ]),
    'kept across a reopen',
  );
  await again.close();
  await t.rejects(
    storage.createStorageInstance<Doc>({ ...params({ countBy: 'x; DROP TABLE docs' }), collectionName: 'other' }),
    { code: 'STORAGE_SCHEMA_MISMATCH', message: /countBy "x; DROP TABLE docs" is not a top-level field/ },
    'a field that is not in the schema is refused',
  );
});

t.test('purgeDocuments: rows go at once, only at the revision given; the deletions are announced', async (t) => {
  const sqlite = (await sqliteAt(join(dir, 'purge-documents')).createStorageInstance<Doc>(
    instanceParams('purge', { countBy: 'n' }),
  )) as SqliteStorageInstance<Doc>;
  t.teardown(() => sqlite.close());
  const events: string[] = [];
  const subscription = sqlite.changeStream().subscribe((bulk) => {
    for (const e of bulk.events)
      events.push(`${e.operation} ${e.documentId} ${String(e.documentData._deleted)} ${bulk.context}`);
  });
  t.teardown(() => subscription.unsubscribe());
  await sqlite.bulkWrite(
    [doc('a', 1), doc('b', 1), doc('c', 2), doc('d', 2), doc('e', 3)].map((document) => ({ document })),
    'test',
  );
  // A tombstone of the bulkWrite kind (an earlier version's file) is not purged by it.
  await sqlite.bulkWrite([{ previous: doc('e', 3), document: doc('e', 3, '2-e', true) }], 'test');
  const steps: Array<[string, ReturnType<typeof doc>[], string[]]> = [
    ['b', [doc('b', 1)], ['b']],
    ['c at a stale revision', [doc('c', 2, '0-x')], []],
    ['b again: gone already', [doc('b', 1)], []],
    ['the tombstone e', [doc('e', 3, '2-e', true)], []],
    ['a and d', [doc('a', 1), doc('d', 2)], ['a', 'd']],
  ];
  for (const [what, docs, expected] of steps) t.same([...sqlite.purgeDocuments(docs, 'ack')], expected, what);
  t.same(
    (await sqlite.findDocumentsById(['a', 'b', 'c', 'd', 'e'], true)).map((d) => `${d.id} ${d._deleted}`),
    ['c false', 'e true'],
    'c stays, and the old tombstone for cleanup()',
  );
  t.same(Object.fromEntries(sqlite.countsBy()), { 2: 1 }, 'the counts follow');
  const { n } = sqlite.internals.file.db.prepare('SELECT count(*) AS n FROM "docs-v0"').get() as { n: number };
  t.equal(n, 2, 'the purged rows are gone from the file');
  t.same(
    events.filter((e) => e.endsWith(' ack')),
    ['DELETE b true ack', 'DELETE a true ack', 'DELETE d true ack'],
    'each row purged is announced once, as a deletion',
  );
});

t.test("the connection's page cache is SQLite's 2 MB, not better-sqlite3's 16 MB (a drain filled it)", async (t) => {
  const sqlite = (await sqliteAt(join(dir, 'page-cache')).createStorageInstance<Doc>(
    instanceParams('cache', {}),
  )) as SqliteStorageInstance<Doc>;
  t.teardown(() => sqlite.close());
  t.equal(sqlite.internals.file.db.pragma('cache_size', { simple: true }), -2000, 'cache_size -2000 (KiB)');
});
