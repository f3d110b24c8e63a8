// `npm run bench`: ingest throughput on the shipped drive (SLCAN lines → parse → decode → windows),
// with a baseline measured in the same run: an uncompiled decoder that walks each signal's bits
// per frame, as a straightforward implementation would. Then the storage section: our SQLite
// RxStorage against rxdb's memory storage, and bytes written per record (flash wear).
import { daySection } from './day.js';
import { envelopeSection } from './envelope.js';
import { obdSection } from './obd.js';
import { monthSection } from './month.js';
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
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
import { referenceVehicleConfig } from '../core/config.js';
import { loadDecoder } from '../gateway/gateway.js';
import { newPipelineCounters, telemetryPipeline } from '../gateway/telemetry-pipeline.js';
import { systemClock } from '../core/clock.js';
import { projectRoot } from '../core/project-root.js';
import type { StorageFigures } from './storage.js';
import { referenceDriveRecords } from './rig/drive-records.js';
import { packBatch } from '../proto/batch-packer.js';
import { CompactEncoder } from '../proto/compact-record.js';
import { encodeBatch, encodeTelemetry, SCHEMA_VERSION } from '../proto/telemetry-codec.js';
import { zstdCompress } from '../proto/zstd.js';
import { publishPacketBytes, type PublishProperties } from '../sync/session/mqtt-session.js';

const SATURATED_1MBIT_FPS = 8000;
const ROUNDS = 5;
/** A batch id of UUID length for the row-wise baseline (its value does not matter, its length does). */
const BASELINE_BATCH_ID = '00000000-0000-4000-8000-000000000000';

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
  console.log(
    `  ${label.padEnd(44)} ${Math.round(fps).toLocaleString('en-US').padStart(12)} frames/s  (best of ${ROUNDS}, check ${check})`,
  );
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
  const log = gunzipSync(readFileSync(join(projectRoot(), 'drivers/reference-vehicle/drive.log.gz')))
    .toString('latin1')
    .split('\n')
    .filter((l) => l.length > 0);
  const slcanLines = log.map((l) => formatSlcanFrame(parseCandumpLine(l) as CanFrame).slice(0, -1));
  const n = slcanLines.length;
  console.log(
    `ingest benchmark: shipped drive, ${n.toLocaleString('en-US')} SLCAN lines (node ${process.version}, ${process.arch})`,
  );

  const parseOnly = await measure('SLCAN parse', n, () => {
    let c = 0;
    for (let i = 0; i < n; i++) if (!(parseSlcanLine(slcanLines[i] as string, i) instanceof MalformedLine)) c++;
    return c;
  });
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
    const out = await lastValueFrom(
      telemetryPipeline(lines, {
        config,
        decoder,
        clock: systemClock,
        counters,
        bootId: 'bench',
        firstSequence: 0,
        live: false,
      }).pipe(toArray()),
    );
    records = out.length;
    return counters.decoded;
  });
  const rssMiB = process.memoryUsage().rss / 2 ** 20;
  console.log(
    `  compiled vs baseline: ${(compiled / baseline).toFixed(2)}x; parse alone ${(parseOnly / 1000).toFixed(0)}k frames/s`,
  );
  console.log(
    `  parse + decode + aggregate (RxJS pipeline): ${Math.round(full).toLocaleString('en-US')} frames/s, ${records} records, RSS ${rssMiB.toFixed(0)} MiB`,
  );
  console.log(
    `  = ${(full / SATURATED_1MBIT_FPS).toFixed(1)}x a saturated 1 Mbit/s CAN bus (${SATURATED_1MBIT_FPS} frames/s)`,
  );
}

// `npm run bench -- wire` runs one section; no argument runs them all.
const sections: Record<string, () => Promise<void>> = {
  ingest: ingestSection,
  wire: wireSection,
  day: daySection,
  month: monthSection,
  storage: storageSection,
  envelope: envelopeSection,
  obd: obdSection,
};
const chosen = process.argv.slice(2);
for (const name of chosen)
  if (!(name in sections))
    throw new Error(`unknown bench section "${name}"; expected ${Object.keys(sections).join(', ')}`);
// The envelope runs the gateway for minutes in cgroups as root: only when asked for by name.
const onRequest = new Set(['envelope']);
for (const [name, run] of Object.entries(sections))
  if (chosen.length === 0 ? !onRequest.has(name) : chosen.includes(name)) await run();

/**
 * The wire section: bytes per record on the wire (PUBLISH payload plus MQTT 5 header, topic and
 * properties) for each encoding, with the topic name and with a topic alias. The baselines are
 * measured here too: JSON and single protobuf messages, and the spec's row-wise batch with zstd.
 */
async function wireSection(): Promise<void> {
  console.log('\nwire: bytes per record of P1 telemetry from the reference drive (10 s windows, 24 signals each)');
  const { records, resolution } = await referenceDriveRecords(10_000);
  const vehicle = 'V2CREF00000000001';
  const topic = (suffix: string): string => `v2c/v1/eu-central-1/${vehicle}/telemetry/${suffix}`;
  const single: PublishProperties = {
    contentType: 'application/x-protobuf',
    userProperties: { schema_version: SCHEMA_VERSION },
  };
  const json: PublishProperties = {
    contentType: 'application/json',
    userProperties: { schema_version: SCHEMA_VERSION },
  };
  for (const n of [25, 50]) {
    const batch = records.filter((r) => r.priority === 1).slice(0, n);
    if (batch.length < n) throw new Error(`the reference drive has only ${batch.length} P1 records at 10 s windows`);
    const rows: Array<[string, number, number, number]> = [];
    const perMessage = (label: string, payloads: Uint8Array[], t: string, props: PublishProperties): void => {
      const payload = payloads.reduce((sum, p) => sum + p.byteLength, 0);
      const wire = payloads.reduce((sum, p) => sum + publishPacketBytes(t, p, props), 0);
      const aliased = payloads.reduce((sum, p) => sum + publishPacketBytes(t, p, props, 1), 0);
      rows.push([label, payload / n, wire / n, aliased / n]);
    };
    perMessage(
      'JSON, one message per record',
      batch.map((r) => Buffer.from(JSON.stringify(r))),
      topic('vehicle'),
      json,
    );
    perMessage(
      'protobuf, one message per record (baseline)',
      batch.map((r) => encodeTelemetry(r)),
      topic('vehicle'),
      single,
    );
    // Live records since issue 15: values under a layout sent once (its bytes are not in this row).
    const compact = new CompactEncoder(resolution);
    perMessage(
      'compact, one message per record (ours, live)',
      batch.map((r) => compact.encode(r).payload),
      topic('compact'),
      { userProperties: {} },
    );
    const rowWise = encodeBatch({
      batchId: BASELINE_BATCH_ID,
      vehicleId: vehicle,
      schemaVersion: SCHEMA_VERSION,
      createdMs: 0,
      records: batch,
    });
    const batchProps = (extra: Record<string, string>): PublishProperties => ({
      contentType: 'application/x-protobuf+zstd',
      userProperties: { schema_version: SCHEMA_VERSION, message_count: String(n), ...extra },
    });
    perMessage(
      'batch protobuf, row-wise (uncompressed)',
      [rowWise],
      topic('batch'),
      batchProps({ compression: 'none' }),
    );
    perMessage(
      'batch protobuf, row-wise + zstd 19',
      [await zstdCompress(rowWise, 19)],
      topic('batch'),
      batchProps({ compression: 'zstd' }),
    );
    // The spec's messages carry a random UUID v4 each, which zstd cannot shrink.
    const specRows = encodeBatch({
      batchId: BASELINE_BATCH_ID,
      vehicleId: vehicle,
      schemaVersion: SCHEMA_VERSION,
      createdMs: 0,
      records: batch.map((r) => ({ ...r, messageId: randomUUID() })),
    });
    perMessage(
      'same, random UUID v4 message ids (the spec)',
      [await zstdCompress(specRows, 19)],
      topic('batch'),
      batchProps({ compression: 'zstd' }),
    );
    const packed = await packBatch(batch, { vehicleId: vehicle, createdMs: 0, resolution, zstdLevel: 19 });
    perMessage('batch, columns at DBC resolution + zstd 19 (ours)', [packed.payload], topic('batch'), {
      contentType: 'application/x-protobuf+zstd',
      userProperties: packed.userProperties,
    });
    const base = rows[1] as [string, number, number, number];
    console.log(`  ${n} records per batch:`);
    console.log(
      `    ${'encoding'.padEnd(50)} ${'payload'.padStart(9)} ${'wire'.padStart(9)} ${'wire+alias'.padStart(11)}  payload vs single protobuf`,
    );
    for (const [label, payload, wire, aliased] of rows) {
      console.log(
        `    ${label.padEnd(50)} ${payload.toFixed(0).padStart(7)} B ${wire.toFixed(0).padStart(7)} B ${aliased.toFixed(0).padStart(9)} B  ${payload <= base[1] ? `${((1 - payload / base[1]) * 100).toFixed(1).padStart(5)} % smaller` : `${(payload / base[1]).toFixed(2)}x larger`}`,
      );
    }
  }
}

/** The storage section: each storage in its own process (so RSS is its own), side by side. */
function storageSection(): Promise<void> {
  const records = Number(process.env.V2C_BENCH_RECORDS ?? 1_000_000);
  console.log(
    `\nstorage benchmark: the gateway's telemetry collection, realistic 2.8 KB records, up to ${records.toLocaleString('en-US')} stored`,
  );
  const figures: StorageFigures[] = [];
  for (const kind of ['sqlite', 'memory']) {
    const dir = mkdtempSync(join(tmpdir(), `v2c-bench-${kind}-`));
    try {
      // The memory storage holds every record on the JS heap: give it room to reach the same count.
      const child = spawnSync(
        process.execPath,
        [
          '--expose-gc',
          '--max-old-space-size=16384',
          join(projectRoot(), 'dist', 'bench', 'storage.js'),
          kind,
          String(records),
          dir,
        ],
        { encoding: 'utf8', maxBuffer: 1 << 20 },
      );
      if (child.status !== 0) throw new Error(`storage bench (${kind}) failed: ${child.stderr}`);
      figures.push(JSON.parse(child.stdout) as StorageFigures);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const [sqlite, memory] = figures as [StorageFigures, StorageFigures];
  const row = (label: string, a: string, b: string, ratio = ''): void =>
    console.log(`  ${label.padEnd(46)} ${a.padStart(14)} ${b.padStart(14)}  ${ratio}`);
  const int = (v: number): string => Math.round(v).toLocaleString('en-US');
  row('', 'sqlite (ours)', 'rxdb memory');
  row(
    'single inserts/s (gateway path, fsync each)',
    int(sqlite.singleInsertsPerS),
    int(memory.singleInsertsPerS),
    `${(sqlite.singleInsertsPerS / memory.singleInsertsPerS).toFixed(2)}x`,
  );
  row(
    'bulk inserts/s (1000 per bulkWrite)',
    int(sqlite.bulkInsertsPerS),
    int(memory.bulkInsertsPerS),
    `${(sqlite.bulkInsertsPerS / memory.bulkInsertsPerS).toFixed(2)}x`,
  );
  for (const n of Object.keys(sqlite.outboxQueryMs)) {
    row(
      `oldest 50 pending of priority p, ${int(Number(n))} stored`,
      `${sqlite.outboxQueryMs[n]!.toFixed(3)} ms`,
      `${memory.outboxQueryMs[n]?.toFixed(3) ?? '-'} ms`,
      'median of 60',
    );
  }
  row(
    `RSS with ${int(sqlite.records)} records`,
    `${int(sqlite.rssMiBAtMax)} MiB`,
    `${int(memory.rssMiBAtMax)} MiB`,
    `${(memory.rssMiBAtMax / sqlite.rssMiBAtMax).toFixed(1)}x less for sqlite`,
  );
  const perRecord = (sqlite.fileBytesAtMax ?? 0) / sqlite.records;
  row(
    'database file per record / per million',
    `${int(perRecord)} B`,
    `${((perRecord * 1e6) / 2 ** 30).toFixed(2)} GiB`,
  );
  if (sqlite.reopenMs) {
    const r = sqlite.reopenMs;
    row(
      `restart with ${int(sqlite.records)} stored: open`,
      `${int(r.open)} ms`,
      '-',
      `then count ${int(r.count)} ms, max sequence ${int(r.maxSequence)} ms`,
    );
    row('  background check, unpaced (worker thread)', `${int(r.backgroundCheck)} ms`, '-');
  }
  const q = Object.values(sqlite.outboxQueryMs);
  console.log(
    `  outbox query latency from smallest to largest store: ${(q[q.length - 1]! / q[0]!).toFixed(2)}x (flat = an index range scan)`,
  );
  console.log('  flash wear, bytes written per record (/proc/self/io write_bytes; 2,000 single inserts, fsync each):');
  console.log('    page size  WAL checkpoint   insert     insert+ack+purge   inserts/s');
  const baseline = sqlite.wear.find((w) => w.pageSize === 4096 && w.walPages === 1000);
  for (const w of sqlite.wear) {
    const vs = baseline ? ` (${(w.lifecycleBytes / baseline.lifecycleBytes).toFixed(2)}x SQLite's defaults)` : '';
    console.log(
      `    ${String(w.pageSize).padStart(9)}  ${`${w.walPages} pages`.padStart(14)}  ${`${int(w.insertBytes)} B`.padStart(9)}  ${`${int(w.lifecycleBytes)} B`.padStart(17)}   ${int(w.insertsPerS).padStart(9)}${vs}`,
    );
  }
  return Promise.resolve();
}
