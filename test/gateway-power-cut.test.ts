// The whole gateway cut off mid-drive: replay with the broker down, SIGKILL, restart with the broker
// up; every record that was in the store at the kill arrives.
import t from 'tap';
import Database from 'better-sqlite3';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startLocalBroker } from '../gateway/bench-rig/local-broker.js';
import { referenceVehicleConfig } from '../gateway/config.js';
import { projectRoot } from '../gateway/project-root.js';
import { systemClock } from '../gateway/clock.js';
import { TelemetrySink } from '../sync/telemetry-sink.js';

const CLI = join(projectRoot(), 'dist', 'gateway', 'cli.js');

function runGateway(configPath: string): { child: ChildProcess; log: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [CLI, 'run', '--config', configPath], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr!.on('data', (c: Buffer) => { log += c.toString(); });
  return { child, log: () => log, exited: new Promise((resolve) => child.on('exit', (code) => resolve(code))) };
}

/** Live records in the gateway's database, read beside the running process (WAL allows it). */
function storedRecords(path: string): Array<{ id: string; seq: number }> {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return db.prepare('SELECT id, json_extract(data, \'$.seq\') AS seq FROM "telemetry-v0" WHERE deleted = 0').all() as Array<{ id: string; seq: number }>;
  } finally {
    db.close();
  }
}

t.test('gateway killed mid-drive with the broker down: everything stored before the kill arrives after restart', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'v2c-gwcut-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  const storeDir = join(dir, 'data');
  const dbPath = join(storeDir, 'v2c.sqlite');
  // 2 s windows at 30x: a record about every 70 ms of wall time.
  const config = referenceVehicleConfig({ mqttUrl: `mqtt://127.0.0.1:${port}`, speed: 30, windowMs: 2000, storeDir });
  const configPath = join(dir, 'gateway.json');
  writeFileSync(configPath, JSON.stringify(config));

  const started = Date.now();
  const first = runGateway(configPath);
  let before: Array<{ id: string; seq: number }> = [];
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    await systemClock.sleep(100);
    try { before = storedRecords(dbPath); } catch { continue; }
    if (before.length >= 25) break;
  }
  t.comment(`start to ${before.length} stored records: ${Date.now() - started} ms`);
  first.child.kill('SIGKILL');
  t.equal(await first.exited, null, 'the gateway was killed, not stopped');
  const atKill = storedRecords(dbPath);
  t.ok(atKill.length >= 25, `${atKill.length} records in the store at the kill (broker down, none sent)`);
  const integrity = new Database(dbPath, { readonly: true });
  t.equal(integrity.pragma('integrity_check', { simple: true }), 'ok', 'integrity_check after the kill');
  integrity.close();

  const broker = await startLocalBroker({ port });
  t.teardown(() => broker.stop());
  const received = new Map<string, number>();
  // The reference sink: it decodes single records and batches (a restart's backlog goes in batches).
  const sink = await TelemetrySink.start({ url: broker.url, clientId: `gwcut-sink-${process.pid}`, deadLetterDir: join(dir, 'sink-dead-letter'), dedupWindowMs: 3_600_000 });
  t.teardown(() => sink.close());
  sink.onRecord = (r) => { received.set(r.messageId, r.sequence); };

  const restarted = Date.now();
  const second = runGateway(configPath);
  t.teardown(() => { if (second.child.exitCode === null) second.child.kill('SIGKILL'); });
  const wanted = new Set(atKill.map((r) => r.id));
  const until = Date.now() + 60_000;
  const fresh = (): number[] => [...received].filter(([id]) => !wanted.has(id)).map(([, seq]) => seq);
  // Until every stored record and a few records captured after the restart have arrived.
  while (([...wanted].some((id) => !received.has(id)) || fresh().length < 3) && Date.now() < until) await systemClock.sleep(100);
  t.comment(`restart to delivery: ${Date.now() - restarted} ms`);
  const missing = [...wanted].filter((id) => !received.has(id));
  t.same(missing, [], `all ${wanted.size} records stored before the kill arrived after the restart`);
  const maxBefore = Math.max(...atKill.map((r) => r.seq));
  const after = fresh();
  t.ok(after.length >= 3 && after.every((seq) => seq > maxBefore), `records captured after the restart continue the sequence (${after.length} new, all > ${maxBefore})`);
  second.child.kill('SIGTERM');
  await second.exited;
});
