// The SQLite RxStorage answers like rxdb's memory storage: a differential run of random operations.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getRxStorageMemory } from 'rxdb/plugins/storage-memory';
import type { RxStorage } from 'rxdb';
import { getRxStorageSQLite } from '../sync/sqlite-storage.js';
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
      const res = await runDifferential(scenario, seed, opsPerRun, getRxStorageMemory() as RxStorage<unknown, unknown>, sqlite(), sqlite);
      total += res.ops;
      t.equal(res.mismatch, null, `${scenario.name} seed ${seed}: ${res.ops} operations give equal answers`);
      // The run must have exercised what it claims to compare.
      t.ok(res.conflicts > 20, `${scenario.name} seed ${seed}: conflicts exercised (${res.conflicts})`);
      t.ok(res.nonEmptyQueries > res.byKind.query / 4, `${scenario.name} seed ${seed}: queries with results (${res.nonEmptyQueries}/${res.byKind.query})`);
      t.ok(res.purged > 0, `${scenario.name} seed ${seed}: cleanup purged tombstones (${res.purged})`);
      t.ok(res.changeEvents > 100, `${scenario.name} seed ${seed}: change events compared (${res.changeEvents})`);
      const schemaIndexes = (scenario.schema.indexes ?? []).length;
      const used = Object.entries(res.indexesUsed).filter(([, n]) => n >= 10).map(([ix]) => ix);
      t.ok(used.length >= schemaIndexes + 1, `${scenario.name} seed ${seed}: queries ran over ${used.length} indexes: ${used.join(' | ')}`);
      t.ok(res.byKind.changedSince > 50 && res.byKind.staleUpdate > 10, `${scenario.name} seed ${seed}: change-since and stale writes ran`);
    }
  }
  t.comment(`differential operations this run: ${total}`);
  t.ok(total >= 10_000 || process.env.V2C_DIFF_SEED !== undefined, `at least 10,000 operations (${total})`);
});
