import t from 'tap';
import { from, lastValueFrom, toArray } from 'rxjs';
import { EventDetector, WindowAggregator } from '../gateway/pipeline/aggregation.js';
import { formatDtc } from '../drivers/obd/dtc.js';
import { referenceVehicleConfig, validateConfig } from '../core/config.js';
import { loadDecoder } from '../gateway/gateway.js';
import { newPipelineCounters, telemetryPipeline } from '../gateway/telemetry-pipeline.js';
import { systemClock } from '../core/clock.js';
import { MalformedLine } from '../drivers/can-frame.js';
import { encodeMessage } from '../drivers/dbc/encoder.js';
import { RecordKind, decodeTelemetry, encodeTelemetry } from '../proto/telemetry-codec.js';
import { frame } from './helpers.js';

t.test('WindowAggregator: aligned windows with min/max/mean/last/count', async (t) => {
  const w = new WindowAggregator(1000);
  t.equal(w.add(100, 'a', 2), null);
  t.equal(w.add(500, 'a', 4), null);
  t.equal(w.add(900, 'b', -1), null);
  t.equal(w.add(400, 'a', 9), null, 'a late sample counts in the open window');
  const closed = w.add(1000, 'a', 10);
  t.same(
    closed && { start: closed.startMono, end: closed.endMono, a: closed.stats.get('a'), b: closed.stats.get('b') },
    {
      start: 0,
      end: 1000,
      a: { min: 2, max: 9, mean: 5, last: 9, count: 3 },
      b: { min: -1, max: -1, mean: -1, last: -1, count: 1 },
    },
  );
  t.equal(w.last('a'), 10);
  t.notOk(w.expiredBy(1999));
  t.ok(w.expiredBy(2000));
  const partial = w.close(true);
  t.same(partial && { start: partial.startMono, end: partial.endMono, count: partial.stats.get('a')?.count }, {
    start: 1000,
    end: 1000,
    count: 1,
  });
  t.equal(w.close(true), null, 'nothing open after close');
});

t.test('EventDetector fires on crossing, re-arms past hysteresis; DTC on change to a new code', async (t) => {
  const d = new EventDetector([
    { kind: 'threshold', name: 'hot', signal: 'T', above: 100, hysteresis: 5 },
    { kind: 'threshold', name: 'low', signal: 'V', below: 11, hysteresis: 0.5 },
    { kind: 'dtc', name: 'dtc', signal: 'D' },
  ]);
  const fired = (s: string, v: number): string[] => d.check(s, v).map((e) => e.rule);
  t.same(
    [99, 101, 103, 97, 101, 94, 101].map((v) => fired('T', v).length),
    [0, 1, 0, 0, 0, 0, 1],
  );
  t.same(
    [12, 10.9, 10.5, 11.2, 10.8, 11.6, 10.9].map((v) => fired('V', v).length),
    [0, 1, 0, 0, 0, 0, 1],
  );
  t.same(
    [0, 0x217, 0x217, 0x300, 0, 0x300].map((v) => fired('D', v).length),
    [0, 1, 0, 1, 0, 1],
  );
  t.notOk(d.watches('X'));
  t.same(d.check('X', 1), []);
});

t.test('formatDtc (SAE J2012)', async (t) => {
  t.same([0x0217, 0x4123, 0x8abc, 0xc001, 0x1300].map(formatDtc), ['P0217', 'C0123', 'B0ABC', 'U0001', 'P1300']);
});

t.test('config errors name the field and what was expected', async (t) => {
  // Deliberately malformed configurations: any shape goes.
  /* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-member-access */
  const good = referenceVehicleConfig({ mqttUrl: 'mqtt://127.0.0.1:1883' });
  const cases: Array<[string, (c: Record<string, any>) => void, RegExp]> = [
    [
      'bad url',
      (c) => {
        c.mqtt.url = 'http://x';
      },
      /mqtt\.url: expected mqtt:\/\/host:port/,
    ],
    [
      'bad vin',
      (c) => {
        c.vehicle.id = 'has space';
      },
      /vehicle\.id: expected 1-64 letters/,
    ],
    [
      'slcan without port',
      (c) => {
        c.can = { source: 'slcan' };
      },
      /can\.port: required when can\.source is "slcan"/,
    ],
    [
      'bad window',
      (c) => {
        c.pipeline.windowMs = 5;
      },
      /pipeline\.windowMs: .*100/,
    ],
    [
      'unknown key',
      (c) => {
        c.mqtt.qos = 2;
      },
      /mqtt: Unrecognized key\(s\) in object: 'qos'/,
    ],
    [
      'rule with both bounds',
      (c) => {
        c.pipeline.events[0].below = 3;
      },
      /pipeline\.events\.0: expected exactly one of "above" or "below"/,
    ],
    [
      'bad stat',
      (c) => {
        c.pipeline.fields.speedKmh.stat = 'median';
      },
      /pipeline\.fields\.speedKmh\.stat/,
    ],
  ];
  for (const [label, mutate, message] of cases) {
    const raw = structuredClone(good) as Record<string, any>;
    mutate(raw);
    t.throws(() => validateConfig(raw, 'gateway.yaml'), { code: 'CONFIG_INVALID' }, label);
    try {
      validateConfig(raw, 'gateway.yaml');
    } catch (err) {
      t.match((err as Error).message, message, `${label}: ${(err as Error).message}`);
      t.match((err as Error).message, /^gateway\.yaml: /);
    }
  }
  /* eslint-enable @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-member-access */
});

t.test('pipeline: frames → window records and P0 events; malformed and undecodable counted', async (t) => {
  const config = referenceVehicleConfig({ mqttUrl: 'mqtt://127.0.0.1:1', windowMs: 1000 });
  const decoder = loadDecoder(config.dbc);
  const msg = (name: string) => decoder.db.messages.find((m) => m.name === name)!;
  const at = (ms: number, name: string, values: Record<string, number>) =>
    frame(msg(name).id, Buffer.from(encodeMessage(msg(name), values)).toString('hex'), {
      extended: msg(name).extended,
      tsMono: ms,
      tsWall: 1_700_000_000 + ms / 1000,
    });
  const input = [
    at(0, 'ABS_WheelSpeeds', { VehicleSpeed: 10 }),
    at(100, 'ABS_WheelSpeeds', { VehicleSpeed: 30 }),
    at(200, 'ECM_EngineStatus', { EngineSpeed: 1500, CoolantTemp: 90 }),
    at(300, 'ECM_EngineStatus', { EngineSpeed: 2500, CoolantTemp: 107 }), // crosses 105: event
    at(400, 'ECM_Diagnostics', { DtcCount: 1, ActiveDtc: 0x217, MilRequest: 1 }), // DTC appears: event
    at(500, 'TCM_Transmission', { GearPosition: -1 }),
    new MalformedLine('non-hex', 'test', 'x'),
    frame(0x7ff, '00'),
    frame(msg('TCM_Transmission').id, '0000000000000000', { tsMono: 600 }),
    at(1200, 'ABS_WheelSpeeds', { VehicleSpeed: 50 }),
  ];
  const counters = newPipelineCounters();
  const records = await lastValueFrom(
    telemetryPipeline(from(input), {
      config,
      decoder,
      clock: systemClock,
      counters,
      bootId: 'boot-1',
      firstSequence: 40,
      live: false,
    }).pipe(toArray()),
  );
  t.same(counters, {
    frames: 9,
    malformed: 1,
    decoded: 7,
    decodeErrors: { 'unknown-id': 1, 'wrong-length': 1, 'error-frame': 0, 'remote-frame': 0 },
    windows: 2,
    events: 2,
    j1939: null,
    obd: null,
  });
  t.same(
    records.map((r) => [r.kind, r.priority, r.sequence, r.event?.rule ?? null]),
    [
      [RecordKind.Event, 0, 40, 'coolant_over_temperature'],
      [RecordKind.Event, 0, 41, 'dtc_appeared'],
      [RecordKind.Window, 1, 42, null],
      [RecordKind.Window, 1, 43, null],
    ],
  );
  const w = records[2]!;
  t.equal(w.speedKmh, 20, 'speed is the window mean');
  t.equal(w.engineRpm, 2000);
  t.equal(w.coolantTempC, 107, 'coolant is the window maximum');
  t.equal(w.gear, -1);
  t.same(w.diagnostics, { milOn: false, dtcs: ['P0217'] });
  t.equal(w.deviceTimeMs, 1_700_000_001_000, 'device time of the window end, from the recorded clock');
  t.equal(w.windowMs, 1000);
  t.same(
    w.signals.WheelSpeedFL,
    { min: 0, max: 0, mean: 0, last: 0, count: 2 },
    'unmapped signals keep their statistics',
  );
  t.notOk('AliveCounter' in w.signals, 'excluded signals are left out');
  t.notOk('VehicleSpeed' in w.signals, 'mapped signals are not repeated');
  t.equal(records[0]!.coolantTempC, 107, 'an event carries the latest values');
  t.equal(records[3]!.speedKmh, 50, 'the final partial window is flushed on completion');
  const again = decodeTelemetry(encodeTelemetry(w));
  t.same(again, w, 'records survive the protobuf round trip unchanged');
});
