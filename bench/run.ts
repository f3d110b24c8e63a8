// `npm run bench`: ingest throughput on the shipped drive (SLCAN lines → parse → decode → windows),
// with a baseline measured in the same run: an uncompiled decoder that walks each signal's bits
// per frame, as a straightforward implementation would. Then the storage section: our SQLite
// RxStorage against rxdb's memory storage, and bytes written per record (flash wear).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { gunzipSync } from 'node:zlib';
import { join } from 'node:path';
import { from, lastValueFrom, map, toArray } from 'rxjs';
import { parseCandumpLine } from '../drivers/candump.js';
import { parseSlcanLine, formatSlcanFrame } from '../drivers/slcan.js';
import { MalformedLine, type CanFrame } from '../drivers/can-frame.js';
import { DecodeError } from '../drivers/dbc/decoder.js';
import { signalBitPositions } from '../drivers/dbc/parser.js';
import type { DbcMessage } from '../drivers/dbc/model.js';
import { referenceVehicleConfig } from '../gateway/config.js';
import { loadDecoder } from '../gateway/gateway.js';
import { newPipelineCounters, telemetryPipeline } from '../gateway/telemetry-pipeline.js';
import { systemClock } from '../gateway/clock.js';
import { projectRoot } from '../gateway/project-root.js';
import type { StorageFigures } from './storage.js';

const SATURATED_1MBIT_FPS = 8000;
const ROUNDS = 5;

/** Best-of-ROUNDS rate of `fn` (which returns a check value so the work cannot be optimised away). */
async function measure(label: string, frames: number, fn: () => number | Promise<number>): Promise<number> {
  let best = Infinity;
  let check = 0;
  for (let i = 0; i < ROUNDS; i++) {
    const start = process.hrtime.bigint();
    check += await fn();
    best = Math.min(best, Number(process.hrtime.bigint() - start) / 1e9);
  }
  const fps = frames / best;
  console.log(`  ${label.padEnd(44)} ${Math.round(fps).toLocaleString('en-US').padStart(12)} frames/s  (best of ${ROUNDS}, check ${check})`);
  return fps;
}

/** The baseline decoder: per frame, per signal, per bit, straight from the DBC model. */
function naiveDecode(msg: DbcMessage, data: Uint8Array): Record<string, number> {
  const out: Record<string, number> = {};
  for (const sig of msg.signals) {
    const bits = signalBitPositions(sig);
    let raw = 0;
    for (let k = bits.length - 1; k >= 0; k--) {
      const pos = bits[k] as number;
      raw = raw * 2 + (((data[pos >> 3] as number) >> (pos & 7)) & 1);
    }
    if (sig.signed && raw >= 2 ** (sig.length - 1)) raw -= 2 ** sig.length;
    out[sig.name] = raw * sig.factor + sig.offset;
  }
  return out;
}

async function ingestSection(): Promise<void> {
  const config = referenceVehicleConfig({ mqttUrl: 'mqtt://127.0.0.1:1', windowMs: 60_000 });
  const decoder = loadDecoder(config.dbc);
  const log = gunzipSync(readFileSync(join(projectRoot(), 'drivers/reference-vehicle/drive.log.gz'))).toString('latin1').split('\n').filter((l) => l.length > 0);
  const slcanLines = log.map((l) => formatSlcanFrame(parseCandumpLine(l) as CanFrame).slice(0, -1));
  const n = slcanLines.length;
  console.log(`ingest benchmark: shipped drive, ${n.toLocaleString('en-US')} SLCAN lines (node ${process.version}, ${process.arch})`);

  const parseOnly = await measure('SLCAN parse', n, () => { let c = 0; for (let i = 0; i < n; i++) if (!(parseSlcanLine(slcanLines[i] as string, i) instanceof MalformedLine)) c++; return c; });
  const baseline = await measure('baseline: parse + uncompiled per-bit decode', n, () => {
    let c = 0;
    for (let i = 0; i < n; i++) {
      const f = parseSlcanLine(slcanLines[i] as string, i) as CanFrame;
      const msg = decoder.message(f.id, f.extended);
      if (msg !== undefined) c += Object.keys(naiveDecode(msg, f.data)).length;
    }
    return c;
  });
  const compiled = await measure('parse + compiled decode', n, () => {
    let c = 0;
    for (let i = 0; i < n; i++) {
      const d = decoder.decode(parseSlcanLine(slcanLines[i] as string, i) as CanFrame, false);
      if (!(d instanceof DecodeError)) c += Object.keys(d.signals).length;
    }
    return c;
  });
  // The whole ingest path as the gateway runs it: parse, decode, window, build records.
  // Frames are stamped at the drive's own pace (630 s / n) so windows close as in the car.
  const spacingMs = 630_000 / n;
  let records = 0;
  const full = await measure('parse + decode + aggregate (RxJS pipeline)', n, async () => {
    const counters = newPipelineCounters();
    const lines = from(slcanLines).pipe(map((l, i) => parseSlcanLine(l, i * spacingMs) as CanFrame));
    const out = await lastValueFrom(telemetryPipeline(lines, { config, decoder, clock: systemClock, counters, bootId: 'bench', firstSequence: 0, live: false }).pipe(toArray()));
    records = out.length;
    return counters.decoded;
  });
  const rssMiB = process.memoryUsage().rss / 2 ** 20;
  console.log(`  compiled vs baseline: ${(compiled / baseline).toFixed(2)}x; parse alone ${(parseOnly / 1000).toFixed(0)}k frames/s`);
  console.log(`  parse + decode + aggregate (RxJS pipeline): ${Math.round(full).toLocaleString('en-US')} frames/s, ${records} records, RSS ${rssMiB.toFixed(0)} MiB`);
  console.log(`  = ${(full / SATURATED_1MBIT_FPS).toFixed(1)}x a saturated 1 Mbit/s CAN bus (${SATURATED_1MBIT_FPS} frames/s)`);
}

await ingestSection();
await storageSection();

/** The storage section: each storage in its own process (so RSS is its own), side by side. */
async function storageSection(): Promise<void> {
  const records = Number(process.env.V2C_BENCH_RECORDS ?? 1_000_000);
  console.log(`\nstorage benchmark: the gateway's telemetry collection, realistic 2.8 KB records, up to ${records.toLocaleString('en-US')} stored`);
  const figures: StorageFigures[] = [];
  for (const kind of ['sqlite', 'memory']) {
    const dir = mkdtempSync(join(tmpdir(), `v2c-bench-${kind}-`));
    try {
      // The memory storage holds every record on the JS heap: give it room to reach the same count.
      const child = spawnSync(process.execPath, ['--expose-gc', '--max-old-space-size=16384', join(projectRoot(), 'dist', 'bench', 'storage.js'), kind, String(records), dir], { encoding: 'utf8', maxBuffer: 1 << 20 });
      if (child.status !== 0) throw new Error(`storage bench (${kind}) failed: ${child.stderr}`);
      figures.push(JSON.parse(child.stdout) as StorageFigures);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const [sqlite, memory] = figures as [StorageFigures, StorageFigures];
  const row = (label: string, a: string, b: string, ratio = ''): void => console.log(`  ${label.padEnd(46)} ${a.padStart(14)} ${b.padStart(14)}  ${ratio}`);
  const int = (v: number): string => Math.round(v).toLocaleString('en-US');
  row('', 'sqlite (ours)', 'rxdb memory');
  row('single inserts/s (gateway path, fsync each)', int(sqlite.singleInsertsPerS), int(memory.singleInsertsPerS), `${(sqlite.singleInsertsPerS / memory.singleInsertsPerS).toFixed(2)}x`);
  row('bulk inserts/s (1000 per bulkWrite)', int(sqlite.bulkInsertsPerS), int(memory.bulkInsertsPerS), `${(sqlite.bulkInsertsPerS / memory.bulkInsertsPerS).toFixed(2)}x`);
  for (const n of Object.keys(sqlite.outboxQueryMs)) {
    row(`oldest 50 pending of priority p, ${int(Number(n))} stored`, `${sqlite.outboxQueryMs[n]!.toFixed(3)} ms`, `${memory.outboxQueryMs[n]?.toFixed(3) ?? '-'} ms`, 'median of 60');
  }
  row(`RSS with ${int(sqlite.records)} records`, `${int(sqlite.rssMiBAtMax)} MiB`, `${int(memory.rssMiBAtMax)} MiB`, `${(memory.rssMiBAtMax / sqlite.rssMiBAtMax).toFixed(1)}x less for sqlite`);
  const perRecord = (sqlite.fileBytesAtMax ?? 0) / sqlite.records;
  row('database file per record / per million', `${int(perRecord)} B`, `${(perRecord * 1e6 / 2 ** 30).toFixed(2)} GiB`);
  if (sqlite.reopenMs) {
    const r = sqlite.reopenMs;
    row(`restart with ${int(sqlite.records)} stored: open`, `${int(r.open)} ms`, '-', `then count ${int(r.count)} ms, max sequence ${int(r.maxSequence)} ms`);
    row('  quick_check in the background (worker thread)', `${int(r.backgroundCheck)} ms`, '-');
  }
  const q = Object.values(sqlite.outboxQueryMs);
  console.log(`  outbox query latency from smallest to largest store: ${(q[q.length - 1]! / q[0]!).toFixed(2)}x (flat = an index range scan)`);
  console.log('  flash wear, bytes written per record (/proc/self/io write_bytes; 2,000 single inserts, fsync each):');
  console.log('    page size  WAL checkpoint   insert     insert+ack+purge   inserts/s');
  const baseline = sqlite.wear.find((w) => w.pageSize === 4096 && w.walPages === 1000);
  for (const w of sqlite.wear) {
    const vs = baseline ? ` (${(w.lifecycleBytes / baseline.lifecycleBytes).toFixed(2)}x SQLite's defaults)` : '';
    console.log(`    ${String(w.pageSize).padStart(9)}  ${`${w.walPages} pages`.padStart(14)}  ${`${int(w.insertBytes)} B`.padStart(9)}  ${`${int(w.lifecycleBytes)} B`.padStart(17)}   ${int(w.insertsPerS).padStart(9)}${vs}`);
  }
}
