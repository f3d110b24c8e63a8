// Power cuts: a writer killed with SIGKILL at random moments loses nothing it reported as committed,
// shows nothing half-written, and leaves a database that passes integrity_check.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRxDatabase } from 'rxdb';
import { SeededRandom } from '../bench/rig/seeded-random.js';
import { getRxStorageSQLite } from '../sync/store/sqlite-storage.js';
import { powerCutSchema } from './power-cut-writer.js';
import { killWriterAt, verify, type Reported } from './power-cut-check.js';

const KILLS = Number(process.env.V2C_KILLS ?? 25);

t.test(`SIGKILL at random moments, ${KILLS} times: committed writes survive, nothing half-written`, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'v2c-powercut-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const seed = Number(process.env.V2C_KILL_SEED ?? 1122);
  const r = new SeededRandom(seed);
  const reported: Reported = { batches: new Map(), versions: new Map() };
  let kills = 0;
  for (let g = 0; g < KILLS; g++) {
    // Most kills land mid-write; some during start-up, while the file is being opened and recovered.
    const afterReady = g % 8 !== 3;
    const delay = afterReady ? r.int(0, 400) : r.int(0, 250);
    await killWriterAt(dir, g, seed + g, delay, afterReady, reported);
    kills++;
    const { rows, failures } = verify(join(dir, 'powercut.sqlite'), reported);
    t.same(
      failures,
      [],
      `kill ${g + 1} (${afterReady ? `${delay} ms after the first commit` : `${delay} ms after start`}): ${rows} rows, ${reported.batches.size} batches reported, all present and whole`,
    );
  }
  t.equal(kills, KILLS, `${kills} kills`);
  t.ok(
    reported.batches.size > KILLS * 3 && reported.versions.size > KILLS,
    `the writers committed ${reported.batches.size} batches and ${reported.versions.size} updates between kills`,
  );

  // And the storage itself reopens the file and finds every reported document.
  const db = await createRxDatabase({
    name: 'powercut',
    storage: getRxStorageSQLite({ directory: dir }),
    multiInstance: false,
  });
  const { docs } = await db.addCollections({ docs: { schema: powerCutSchema } });
  const expected = [...reported.batches].reduce((s, [, n]) => s + n, 0);
  const found = await docs.count({ selector: { batch: { $in: [...reported.batches.keys()] } } }).exec();
  t.equal(found, expected, `RxDB over the reopened file finds all ${expected} reported documents`);
  await db.close();
});
