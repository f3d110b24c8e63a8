// Power cuts: a writer killed with SIGKILL at random moments loses nothing it reported as committed,
// shows nothing half-written, and leaves a database that passes integrity_check.
import t from 'tap';
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRxDatabase } from 'rxdb';
import { SeededRandom } from '../drivers/reference-vehicle/seeded-random.js';
import { getRxStorageSQLite } from '../sync/sqlite-storage.js';
import { digest, powerCutSchema, type PowerCutDoc } from './power-cut-writer.js';
import { projectRoot } from '../gateway/project-root.js';
import { systemClock } from '../gateway/clock.js';

const WRITER = join(projectRoot(), 'dist', 'test', 'power-cut-writer.js');
const KILLS = Number(process.env.V2C_KILLS ?? 25);

interface Reported { batches: Map<string, number>; versions: Map<string, number> }

/** Starts a writer and SIGKILLs it after `killAfterMs` (counted from its first commit when `afterReady`). */
async function killWriterAt(dir: string, generation: number, seed: number, killAfterMs: number, afterReady: boolean, reported: Reported): Promise<{ lines: number; signal: string | null }> {
  const child = spawn(process.execPath, [WRITER, dir, String(generation), String(seed)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let buffer = '';
  let lines = 0;
  let stderr = '';
  let armed = false;
  const arm = () => { if (!armed) { armed = true; setTimeout(() => child.kill('SIGKILL'), killAfterMs); } };
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
  child.stdout.on('data', (c: Buffer) => {
    buffer += c.toString();
    let nl: number;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const [what, id, n] = buffer.slice(0, nl).split(' ');
      buffer = buffer.slice(nl + 1);
      lines++;
      if (what === 'committed') { reported.batches.set(id!, Number(n)); arm(); }
      else if (what === 'updated') reported.versions.set(id!, Math.max(reported.versions.get(id!) ?? 0, Number(n)));
    }
  });
  if (!afterReady) arm();
  const signal = await new Promise<string | null>((resolve) => child.on('exit', (_code, sig) => resolve(sig)));
  if (signal !== 'SIGKILL') throw new Error(`writer ended by itself: ${stderr}`);
  return { lines, signal };
}

function verify(path: string, reported: Reported): { rows: number; failures: string[] } {
  const db = new Database(path);
  const failures: string[] = [];
  try {
    const integrity = db.pragma('integrity_check', { simple: true });
    if (integrity !== 'ok') failures.push(`integrity_check: ${String(integrity)}`);
    const rows = db.prepare('SELECT id, deleted, data FROM "docs-v0"').all() as { id: string; deleted: number; data: string }[];
    const byId = new Map<string, PowerCutDoc>();
    const perBatch = new Map<string, number>();
    for (const row of rows) {
      const doc = JSON.parse(row.data) as PowerCutDoc;
      byId.set(row.id, doc);
      if (doc.sha !== digest(doc.payload)) failures.push(`${row.id}: payload does not match its checksum (half-written)`);
      perBatch.set(doc.batch, (perBatch.get(doc.batch) ?? 0) + 1);
    }
    for (const [batch, n] of perBatch) {
      const size = byId.get(`${batch}-0`)?.batchSize;
      if (size !== n) failures.push(`batch ${batch}: ${n} of ${size ?? '?'} documents visible (a transaction was split)`);
    }
    for (const [batch, size] of reported.batches) {
      for (let i = 0; i < size; i++) if (!byId.has(`${batch}-${i}`)) failures.push(`${batch}-${i}: reported committed, missing`);
    }
    for (const [id, version] of reported.versions) {
      const v = byId.get(id)?.version ?? -1;
      if (v < version) failures.push(`${id}: reported version ${version}, found ${v}`);
    }
    return { rows: rows.length, failures };
  } finally {
    db.close();
  }
}

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
    t.same(failures, [], `kill ${g + 1} (${afterReady ? `${delay} ms after the first commit` : `${delay} ms after start`}): ${rows} rows, ${reported.batches.size} batches reported, all present and whole`);
  }
  t.equal(kills, KILLS, `${kills} kills`);
  t.ok(reported.batches.size > KILLS * 3 && reported.versions.size > KILLS, `the writers committed ${reported.batches.size} batches and ${reported.versions.size} updates between kills`);

  // And the storage itself reopens the file and finds every reported document.
  const db = await createRxDatabase({ name: 'powercut', storage: getRxStorageSQLite({ directory: dir }), multiInstance: false });
  const { docs } = await db.addCollections({ docs: { schema: powerCutSchema } });
  const expected = [...reported.batches].reduce((s, [, n]) => s + n, 0);
  const found = await docs.count({ selector: { batch: { $in: [...reported.batches.keys()] } } }).exec();
  t.equal(found, expected, `RxDB over the reopened file finds all ${expected} reported documents`);
  await db.close();
});
