// J1939 through the gateway: DM1s folded into the vehicle's fault set, `dtc` events per SPN/FMI,
// the reference truck's recorded drive through the whole pipeline, and `decode --j1939`'s contract.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { from, lastValueFrom, toArray } from 'rxjs';
import { projectRoot } from '../core/project-root.js';
import { ConfigError, referenceVehicleConfig, referenceVehicleSettings, validateConfig } from '../core/config.js';
import { systemClock } from '../core/clock.js';
import { MalformedLine, type CanFrame } from '../drivers/can-frame.js';
import { parseCandumpLine } from '../drivers/candump.js';
import { EventDetector } from '../gateway/pipeline/aggregation.js';
import { DM1_SIGNALS, J1939Diagnostics } from '../gateway/pipeline/j1939-diagnostics.js';
import { CONSUMED } from '../gateway/pipeline/protocol-reader.js';
import { loadDecoder } from '../gateway/gateway.js';
import { newPipelineCounters, telemetryPipeline } from '../gateway/telemetry-pipeline.js';
import { TraceDecoder } from '../gateway/decode-command.js';
import { RecordKind } from '../proto/telemetry-codec.js';
import { frame } from './helpers.js';

const TRUCK = join(projectRoot(), 'drivers', 'reference-truck');
const truckLines = gunzipSync(readFileSync(join(TRUCK, 'drive.log.gz')))
  .toString('utf8')
  .trim()
  .split('\n');
const dm1 = (sa: number, hex: string, tsMono: number): CanFrame =>
  frame(0x18feca00 | sa, hex, { extended: true, tsMono });

t.test('DM1s of several ECUs make one fault set; an ECU silent for 5 s drops out', async (t) => {
  const j = new J1939Diagnostics();
  const engine = j.accept(dm1(0x00, '44FF 6E000001 FFFF', 0)); // MIL + amber, SPN 110 FMI 0
  t.same(engine !== null && engine !== CONSUMED && engine.diagnostics, {
    signal: DM1_SIGNALS.activeDtcs,
    milOn: true,
    dtcs: ['SPN110-FMI0'],
  });
  const both = j.accept(dm1(0x03, '04FF B1000001 FFFF', 1000)); // amber, SPN 177 FMI 0
  t.same(both !== null && both !== CONSUMED && [both.diagnostics, both.signals], [
    { signal: DM1_SIGNALS.activeDtcs, milOn: true, dtcs: ['SPN110-FMI0', 'SPN177-FMI0'] },
    {
      [DM1_SIGNALS.milOn]: 1,
      [DM1_SIGNALS.redStop]: 0,
      [DM1_SIGNALS.amberWarning]: 1,
      [DM1_SIGNALS.protect]: 0,
      [DM1_SIGNALS.activeDtcs]: 2,
    },
  ]);
  const later = j.accept(dm1(0x03, '04FF B1000001 FFFF', 6001));
  t.same(later !== null && later !== CONSUMED && later.diagnostics, {
    signal: DM1_SIGNALS.activeDtcs,
    milOn: false,
    dtcs: ['SPN177-FMI0'],
  });
  t.equal(j.accept(frame(0x0cf00400, '0000000000000000', { extended: true })), null, 'other PGNs: decoded as usual');
  t.equal(j.accept(dm1(0x0b, '04FF', 7000)), CONSUMED, 'a DM1 too short to read is consumed…');
  t.same(j.counters, { dm1: 3, dm1Errors: 1 }, '…and counted');
  // A three-fault DM1 from the brakes by BAM: the set changes on the last packet only.
  const bam = [
    frame(0x1cecff0b, '200E0002FFCAFE00', { extended: true, tsMono: 7100 }),
    frame(0x1cebff0b, '0104FF1503050316', { extended: true, tsMono: 7150 }),
    frame(0x1cebff0b, '020305031007 0E01', { extended: true, tsMono: 7200 }),
  ].map((f) => j.accept(f));
  t.same(bam.slice(0, 2), [CONSUMED, CONSUMED]);
  const last = bam[2];
  t.same(
    last !== undefined && last !== null && last !== CONSUMED && last.diagnostics?.dtcs,
    ['SPN177-FMI0', 'SPN789-FMI5', 'SPN790-FMI5', 'SPN1808-FMI14'],
    'by SPN',
  );
});

t.test('a dtc rule on the DM1 set fires once per SPN/FMI that appears, again after it cleared', async (t) => {
  const d = new EventDetector([{ kind: 'dtc', name: 'dtc_appeared', signal: DM1_SIGNALS.activeDtcs }]);
  const sets = [
    [],
    ['SPN110-FMI0'],
    ['SPN110-FMI0'],
    ['SPN100-FMI1', 'SPN110-FMI0'],
    ['SPN100-FMI1'],
    ['SPN100-FMI1', 'SPN110-FMI0'],
  ];
  t.same(
    sets.map((s) => d.checkDtcSet(DM1_SIGNALS.activeDtcs, s).map((e) => e.detail)),
    [[], ['DTC SPN110-FMI0 appeared'], [], ['DTC SPN100-FMI1 appeared'], [], ['DTC SPN110-FMI0 appeared']],
  );
  t.same(d.checkDtcSet('Other', ['SPN1-FMI1']), [], 'a set no rule watches');
});

t.test('the reference truck: J1939 records with the spec fields and its DM1 faults', async (t) => {
  const config = referenceVehicleConfig({ mqttUrl: 'mqtt://127.0.0.1:1', vehicle: 'truck' });
  const counters = newPipelineCounters();
  const frames = truckLines.map((l) => parseCandumpLine(l) as CanFrame | MalformedLine);
  const records = await lastValueFrom(
    telemetryPipeline(from(frames), {
      config,
      decoder: loadDecoder(config.dbc, { j1939: true }),
      clock: systemClock,
      counters,
      bootId: 'boot',
      firstSequence: 1,
      live: false,
    }).pipe(toArray()),
  );
  const windows = records.filter((r) => r.kind === RecordKind.Window);
  const events = records.filter((r) => r.kind === RecordKind.Event);
  t.equal(windows.length, 10, 'ten minutes, ten windows');
  for (const w of windows) {
    const filled = [w.speedKmh, w.engineRpm, w.batteryVoltageV, w.coolantTempC, w.fuelLevelPct, w.odometerKm];
    t.ok(
      filled.every((v) => typeof v === 'number' && Number.isFinite(v)),
      `window ${w.sequence}: spec fields filled`,
    );
  }
  t.ok((windows[2]?.speedKmh ?? 0) > 80, 'motorway speed in the third minute');
  t.ok((windows[0]?.odometerKm ?? 0) > 412_345, 'odometer from VDHR');
  // A window reports the fault set at its end (its last DM1s), as a "last" statistic.
  t.same(
    windows.slice(2, 5).map((w) => w.diagnostics),
    [
      { milOn: false, dtcs: [] },
      { milOn: false, dtcs: ['SPN110-FMI0'] },
      { milOn: false, dtcs: ['SPN100-FMI1'] },
    ],
    'minutes 3-5: none, then the coolant fault, then the oil pressure fault',
  );
  t.same(
    windows[9]?.diagnostics,
    { milOn: true, dtcs: ['SPN177-FMI0', 'SPN789-FMI5', 'SPN790-FMI5', 'SPN1808-FMI14', 'SPN3226-FMI2'] },
    'the last minute: engine (MIL), transmission and brakes',
  );
  const appeared = events.filter((e) => e.event?.rule === 'dtc_appeared').map((e) => e.event?.detail);
  t.same(appeared, [
    'DTC SPN110-FMI0 appeared',
    'DTC SPN100-FMI1 appeared',
    'DTC SPN177-FMI0 appeared',
    'DTC SPN789-FMI5 appeared',
    'DTC SPN790-FMI5 appeared',
    'DTC SPN1808-FMI14 appeared',
    'DTC SPN3226-FMI2 appeared',
  ]);
  t.ok(
    events.some((e) => e.event?.rule === 'coolant_over_temperature'),
    'the coolant threshold from ET1',
  );
  t.same(
    counters.j1939 && { ...counters.j1939.transport, dm1: counters.j1939.dm1.dm1 },
    {
      bam: 218,
      rtsCts: 1,
      aborted: 1,
      timedOut: 0,
      sequenceErrors: 1,
      badAnnouncements: 0,
      orphans: 0,
      replaced: 0,
      overflow: 0,
      shortFrames: 0,
      unknownControl: 0,
      dm1: 3 * 600 - 1,
    },
    'every DM1 read but the one whose BAM lost a packet',
  );
  t.same(counters.decodeErrors['unknown-id'], 2, "only the service tool's two requests are not in the DBC");
});

t.test('can.protocols names what it accepts', async (t) => {
  const settings = referenceVehicleSettings({ mqttUrl: 'mqtt://127.0.0.1:1', vehicle: 'truck' });
  const bad = { ...settings, can: { ...(settings.can as object), protocols: ['j1939', 'obd3'] } };
  t.throws(() => validateConfig(bad, 'truck.yaml'), ConfigError);
  t.throws(() => validateConfig(bad, 'truck.yaml'), /can\.protocols\.1.*j1939/);
});

t.test('decode --j1939: PGN, addresses, transport messages and DM1s', async (t) => {
  const lines = new TraceDecoder({ format: 'candump', decoder: null, j1939: true });
  const out = [
    '(1.000) can0 18FECA00#44FF6E000001FFFF',
    '(1.100) can0 1CECFF0B#200E0002FFCAFE00',
    '(1.150) can0 1CEBFF0B#0104FF1503050316',
    '(1.200) can0 1CEBFF0B#0203050310070E01',
    '(1.300) can0 123#00',
  ].flatMap((l) => lines.decode(l).map((j) => JSON.parse(j) as Record<string, unknown>));
  t.same(out[0], {
    t: 1,
    bus: 'can0',
    id: 0x18feca00,
    extended: true,
    rtr: false,
    fd: false,
    brs: false,
    data: '44FF6E000001FFFF',
    pgn: 65226,
    sa: 0,
    priority: 6,
    dm1: { lamps: { mil: true, red: false, amber: true, protect: false }, dtcs: [{ spn: 110, fmi: 0, oc: 1 }] },
  });
  t.match(out[1], { pgn: 0xec00, sa: 11, da: 255, priority: 7 }, 'a PDU1 frame has its destination');
  t.same(out[4], {
    t: 1.2,
    bus: 'can0',
    pgn: 65226,
    sa: 11,
    da: 255,
    transport: 'bam',
    length: 14,
    data: '04FF150305031603050310070E01',
    dm1: {
      lamps: { mil: false, red: false, amber: true, protect: false },
      dtcs: [
        { spn: 789, fmi: 5, oc: 3 },
        { spn: 790, fmi: 5, oc: 3 },
        { spn: 1808, fmi: 14, oc: 1 },
      ],
    },
  });
  t.equal(out.length, 6, 'the reassembled message is one more object after its last packet');
  t.notOk('pgn' in (out[5] ?? {}), 'an 11-bit frame is not J1939');
  const cli = join(projectRoot(), 'dist', 'app', 'cli.js');
  const dbc = join(TRUCK, 'v2c-reference-truck.dbc');
  const r = spawnSync(process.execPath, [cli, 'decode', '--j1939', '--dbc', dbc, join(TRUCK, 'drive.log.gz')], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  t.equal(r.status, 0, r.stderr);
  t.match(r.stderr, /decode: j1939 transport bam=218 rtsCts=1 aborted=1 timedOut=0 sequenceErrors=1/);
  const decoded = r.stdout.trim().split('\n');
  t.equal(decoded.length, truckLines.length + 219, 'every line, plus one per reassembled message');
  t.match(JSON.parse(decoded[1] ?? '{}'), { name: String, pgn: Number, sa: Number }, 'DBC messages matched by PGN');
  t.equal(decoded.filter((l) => l.includes('"error"')).length, 0, 'nothing the DBC and J1939 cannot read');
});
