// Child process for the power-cut test: writes into the SQLite storage through RxDB without pause
// and reports each write on stdout only after it has committed. The parent kills it with SIGKILL.
//   node power-cut-writer.js DIR GENERATION SEED [SYNCHRONOUS]   (FULL by default; OFF for the mutation check)
import { createHash } from 'node:crypto';
import { writeSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createRxDatabase, type RxCollection, type RxJsonSchema } from 'rxdb';
import { SeededRandom } from '../bench/rig/seeded-random.js';
import { getRxStorageSQLite } from '../sync/store/sqlite-storage.js';

export interface PowerCutDoc {
  id: string;
  batch: string;
  batchSize: number;
  version: number;
  payload: string;
  sha: string;
}

export const powerCutSchema: RxJsonSchema<PowerCutDoc> = {
  version: 0,
  primaryKey: 'id',
  type: 'object',
  properties: {
    id: { type: 'string', maxLength: 40 },
    batch: { type: 'string', maxLength: 40 },
    batchSize: { type: 'integer' },
    version: { type: 'integer', minimum: 0, maximum: 1e9, multipleOf: 1 },
    payload: { type: 'string' },
    sha: { type: 'string' },
  },
  required: ['id', 'batch', 'batchSize', 'version', 'payload', 'sha'],
  indexes: ['batch', 'version'],
};

export function digest(payload: string): string {
  return createHash('sha256').update(payload).digest('hex');
}

/** One line per committed write; the parent trusts nothing that was not reported. */
function report(line: string): void {
  writeSync(1, `${line}\n`);
}

async function main(): Promise<void> {
  const [dir, generation, seed, synchronous = 'FULL'] = process.argv.slice(2);
  if (!dir || !generation || !seed) throw new Error('usage: power-cut-writer DIR GENERATION SEED');
  const r = new SeededRandom(Number(seed));
  const db = await createRxDatabase({
    name: 'powercut',
    storage: getRxStorageSQLite({ directory: dir, synchronous: synchronous as 'FULL' | 'OFF' }),
    multiInstance: false,
  });
  const docs = (await db.addCollections({ docs: { schema: powerCutSchema } })).docs as RxCollection<PowerCutDoc>;
  report('ready');
  const mine: string[] = [];
  for (let n = 0; ; n++) {
    if (mine.length > 10 && r.chance(0.3)) {
      // Update one earlier document: its new version counts only once reported.
      const doc = await docs.findOne(r.pick(mine)).exec();
      if (!doc) continue;
      const payload = 'u'.repeat(r.int(10, 1500)) + n;
      await doc.incrementalPatch({ version: doc.version + 1, payload, sha: digest(payload) });
      report(`updated ${doc.id} ${doc.version + 1}`);
      continue;
    }
    // A batch of 1-20 documents in one bulkWrite: one transaction, all or nothing.
    const batch = `g${generation}-b${n}`;
    const size = r.int(1, 20);
    const rows: PowerCutDoc[] = Array.from({ length: size }, (_, i) => {
      const payload = String.fromCharCode(97 + (i % 26)).repeat(r.int(10, 1500));
      return { id: `${batch}-${i}`, batch, batchSize: size, version: 0, payload, sha: digest(payload) };
    });
    const res = await docs.bulkInsert(rows);
    if (res.error.length > 0) throw new Error(`insert failed: ${JSON.stringify(res.error[0])}`);
    for (const row of rows) mine.push(row.id);
    report(`committed ${batch} ${size}`);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    process.stderr.write(`power-cut-writer: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
