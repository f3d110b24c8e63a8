// One time domain per record (issue 11, items 3-5): a recorded trace keeps its recorded wall time
// (quality RECORDED, never "corrected" by this boot's clock), one absurd timestamp in a trace is
// contained, an absurd time reference is refused, and no record the receiver would refuse is stored.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { lastValueFrom, toArray } from 'rxjs';
import type { CanFrame } from '../drivers/can-frame.js';
import { MalformedLine } from '../drivers/can-frame.js';
import { RecordedTimeGuard } from '../drivers/recorded-time.js';
import { traceFrames } from '../drivers/trace-source.js';
import { systemClock } from '../core/clock.js';
import { referenceVehicleConfig } from '../core/config.js';
import { loadDecoder } from '../gateway/gateway.js';
import { projectRoot } from '../core/project-root.js';
import { newPipelineCounters, telemetryPipeline } from '../gateway/telemetry-pipeline.js';
import { SampleRecords } from '../bench/rig/sample-records.js';
import { validateRecord } from '../proto/record-validation.js';
import { SCHEMA_VERSION, TimeQuality, type VehicleTelemetry } from '../proto/telemetry-codec.js';
import { ClockCorrector } from '../sync/time/clock-corrector.js';
import { frame } from './helpers.js';
import { syncRig } from './sync-rig.js';

const DRIVE = join(projectRoot(), 'drivers', 'reference-vehicle', 'drive.log.gz');
const driveLines = gunzipSync(readFileSync(DRIVE)).toString('utf8').split('\n');
const DRIVE_START_MS = 1773474130_000;
const dir = mkdtempSync(join(tmpdir(), 'v2c-time-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

t.test('RecordedTimeGuard: outliers dropped, out-of-range refused, real gaps adopted without loss', async (t) => {
  const s = 1773474130;
  const rows: Array<{ name: string; times: number[]; released: number[]; counters: Record<string, number> }> = [
    {
      name: 'a steady trace',
      times: [s, s + 0.1, s + 0.2],
      released: [s, s + 0.1, s + 0.2],
      counters: { outOfRange: 0, outliers: 0, timelineChanges: 0 },
    },
    {
      name: 'one frame 256 years ahead',
      times: [s, 9773474150, s + 0.2, s + 0.3],
      released: [s, s + 0.2, s + 0.3],
      counters: { outOfRange: 1, outliers: 0, timelineChanges: 0 },
    },
    {
      name: 'Infinity and 0',
      times: [s, Infinity, 0, s + 0.3],
      released: [s, s + 0.3],
      counters: { outOfRange: 2, outliers: 0, timelineChanges: 0 },
    },
    {
      name: 'a flipped digit: 3 days ahead once',
      times: [s, s + 259_200, s + 0.2],
      released: [s, s + 0.2],
      counters: { outOfRange: 0, outliers: 1, timelineChanges: 0 },
    },
    {
      name: 'a step back of an hour once',
      times: [s, s - 3600, s + 0.2],
      released: [s, s + 0.2],
      counters: { outOfRange: 0, outliers: 1, timelineChanges: 0 },
    },
    {
      name: 'a real gap of 2 h: held, then released once 3 frames agree',
      times: [s, s + 7200, s + 7200.1, s + 7200.2, s + 7200.3],
      released: [s, s + 7200, s + 7200.1, s + 7200.2, s + 7200.3],
      counters: { outOfRange: 0, outliers: 0, timelineChanges: 1 },
    },
    {
      name: 'a gap at the end of the trace that nothing confirms',
      times: [s, s + 7200, s + 7200.1],
      released: [s],
      counters: { outOfRange: 0, outliers: 2, timelineChanges: 0 },
    },
    {
      name: 'small reordering is fine',
      times: [s, s + 0.5, s + 0.2],
      released: [s, s + 0.5, s + 0.2],
      counters: { outOfRange: 0, outliers: 0, timelineChanges: 0 },
    },
  ];
  for (const row of rows) {
    const guard = new RecordedTimeGuard(60_000, 3);
    const out = [
      ...row.times.flatMap((ts) => guard.push(frame(0x0c0, '00', { tsWall: ts, tsMono: ts * 1000 }))),
      ...guard.end(),
    ];
    const released = out.filter((f): f is CanFrame => !(f instanceof MalformedLine)).map((f) => f.tsWall);
    t.same(released, row.released, `${row.name}: released`);
    t.same(guard.counters, row.counters, `${row.name}: counted`);
    t.equal(out.length, row.times.length, `${row.name}: every frame accounted for (released or refused)`);
  }
});

/** Window records of a trace file through the real pipeline (1 s windows). */
async function recordsOf(path: string): Promise<{ records: VehicleTelemetry[]; malformed: number }> {
  const config = referenceVehicleConfig({ mqttUrl: 'mqtt://127.0.0.1:1', trace: path, storeDir: dir, windowMs: 1000 });
  const counters = newPipelineCounters();
  const decoder = loadDecoder(config.dbc);
  const records = await lastValueFrom(
    telemetryPipeline(traceFrames(path, 'candump', 0, systemClock), {
      config,
      decoder,
      clock: systemClock,
      counters,
      bootId: 'boot',
      firstSequence: 0,
      live: false,
    }).pipe(toArray()),
  );
  return { records, malformed: counters.malformed };
}

t.test('one absurd timestamp in the middle of a trace is contained: the windows after it are unchanged', async (t) => {
  const clean = join(dir, 'clean.log');
  const lines = driveLines.slice(0, 6000);
  writeFileSync(clean, `${lines.join('\n')}\n`);
  const hostile = join(dir, 'hostile.log');
  const bad = [...lines];
  bad[2000] = (bad[2000] as string).replace(/^\(\d+\.\d+\)/, '(9773474150.000000)');
  bad[4000] = (bad[4000] as string).replace(/^\(\d+\.\d+\)/, `(${'9'.repeat(309)}.000000)`);
  writeFileSync(hostile, `${bad.join('\n')}\n`);
  const expected = await recordsOf(clean);
  const got = await recordsOf(hostile);
  t.ok(expected.records.length >= 28, `the clean trace gives ${expected.records.length} records`);
  t.equal(got.records.length, expected.records.length, 'the same number of window records');
  t.same(
    got.records.map((r) => r.deviceTimeMs),
    expected.records.map((r) => r.deviceTimeMs),
    'with the same times',
  );
  t.equal(got.malformed, expected.malformed + 2, 'the two bad timestamps counted');
  t.same(
    got.records.map((r) => validateRecord(r, r.vehicleId, [SCHEMA_VERSION])).filter((p) => p !== null),
    [],
    'every record valid for the receiver',
  );
});

t.test(
  "a recorded trace keeps its recorded time, marked RECORDED, with the broker's time answer present",
  async (t) => {
    const trace = join(dir, 'recorded.log');
    writeFileSync(trace, `${driveLines.slice(0, 4000).join('\n')}\n`);
    const received = new Map<string, VehicleTelemetry>();
    const rig = await syncRig(t, {
      tune: (c) => {
        c.can.file = trace;
        c.pipeline.windowMs = 1000;
        c.clock.brokerTime = true;
      },
    });
    rig.sink.onRecord = (r) => received.set(r.messageId, r);
    await rig.gateway.sourceDone;
    await rig.waitFor('the broker time reference', () => rig.gateway.time.reference !== null);
    await rig.waitFor(
      'every record delivered',
      async () => (await rig.gateway.store.count()) === 0 && received.size === rig.gateway.stored(),
    );
    t.ok(received.size >= 18, `${received.size} records`);
    const records = [...received.values()];
    const end = DRIVE_START_MS + 25_000;
    t.ok(
      records.every((r) => r.correctedTimeMs >= DRIVE_START_MS && r.correctedTimeMs <= end),
      "corrected time is the recorded time (March 2026), not now + the recording's epoch",
    );
    t.ok(
      records.every((r) => r.correctedTimeMs === r.deviceTimeMs),
      "not shifted by this boot's reference",
    );
    t.ok(
      records.every((r) => r.timeQuality === TimeQuality.Recorded),
      'quality RECORDED',
    );
    t.equal(rig.sink.counts.rejected, 0, 'the sink accepts every record');
  },
);

t.test('absurd broker time (-1e15, 0) is refused and counted; records keep their device time', async (t) => {
  const rig = await syncRig(t, {
    tune: (c) => {
      c.clock.brokerTime = true;
      c.clock.brokerTimeIntervalMs = 200;
      c.clock.unsyncedHoldMs = 300;
    },
    beforeStart: (proxy) => {
      let n = 0;
      proxy.toClient = (packet) => {
        if (packet.cmd === 'publish' && packet.topic.endsWith('/time/response'))
          packet.payload = Buffer.from(JSON.stringify({ now_ms: n++ % 2 === 0 ? -1e15 : 0 }));
        return packet;
      };
    },
  });
  const received: VehicleTelemetry[] = [];
  rig.sink.onRecord = (r) => received.push(r);
  await rig.waitFor('two refusals', () => (rig.gateway.time.counters.refused.get('implausible') ?? 0) >= 2);
  t.equal(rig.gateway.time.reference, null, 'no reference adopted');
  await rig.insert(1, 5);
  await rig.waitFor('5 records', () => received.length === 5);
  t.ok(
    received.every((r) => r.timeQuality === TimeQuality.Unsynced && r.correctedTimeMs === r.deviceTimeMs),
    'sent with their device time, unsynced',
  );
  t.match(await rig.gateway.metrics.text(), /v2c_time_references_refused_total\{reason="implausible"\} [1-9]/);
  t.ok(
    rig.logs.some((l) => /clock: reference from broker refused: it says it is -1000000000000000 ms since 1970/.test(l)),
    'said in the log',
  );
});

t.test('the corrector refuses implausible references and one that disagrees with the reference held', async (t) => {
  let mono = 1_000_000;
  const now = Date.UTC(2026, 10, 30, 12);
  const clock = { monoMs: () => mono, wallMs: () => now, sleep: (ms: number) => systemClock.sleep(ms) };
  const c = new ClockCorrector('boot', clock, { driftPpm: 50, windowMs: 3_600_000 }, () => undefined);
  t.notOk(c.offer({ source: 'broker', wallMs: -1e15, monoMs: mono, errorMs: 5 }), '-1e15 refused');
  t.notOk(c.offer({ source: 'broker', wallMs: 0, monoMs: mono, errorMs: 5 }), '0 refused');
  t.notOk(c.offer({ source: 'broker', wallMs: Number.NaN, monoMs: mono, errorMs: 5 }), 'NaN refused');
  t.notOk(c.offer({ source: 'gps', wallMs: Date.UTC(2190, 0, 1), monoMs: mono, errorMs: 5 }), 'the year 2190 refused');
  t.ok(c.offer({ source: 'gps', wallMs: now + 10_000, monoMs: mono, errorMs: 1000 }), 'a plausible GPS time taken');
  mono += 1000;
  t.notOk(
    c.offer({ source: 'broker', wallMs: now + 10_000 + 1000 + 3_600_000, monoMs: mono, errorMs: 5 }),
    'a broker an hour away from GPS is refused',
  );
  t.ok(
    c.offer({ source: 'broker', wallMs: now + 10_000 + 1000 + 300, monoMs: mono, errorMs: 5 }),
    'one that agrees within the bounds is taken',
  );
  t.same(
    [...c.counters.refused],
    [
      ['implausible', 4],
      ['disagrees', 1],
    ],
  );
  const record = { ...new SampleRecords(2).record(1, 1), bootId: 'boot', monoTimeMs: mono };
  t.ok(
    Math.abs(c.correct(record).correctedTimeMs - (now + 11_300)) < 2,
    'records are corrected from the good reference',
  );
});
