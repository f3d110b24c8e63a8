// The SQLite RxStorage answers like rxdb's memory storage: a differential run of random operations.
import t from 'tap';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getRxStorageMemory } from 'rxdb/plugins/storage-memory';
import { createRxDatabase, fillWithDefaultSettings, type RxJsonSchema, type RxStorage } from 'rxdb';
import { getRxStorageSQLite } from '../sync/store/sqlite-storage.js';
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
