// Each stage of the telemetry pipeline on its own (gateway/pipeline/): what it passes on, in what
// order, and what it counts. The composed pipeline is tested in pipeline.test.ts.
import t from 'tap';
import { Subject, firstValueFrom, from, lastValueFrom, toArray, type OperatorFunction } from 'rxjs';
import { referenceVehicleConfig } from '../core/config.js';
import type { Clock } from '../core/clock.js';
import { MalformedLine, type CanFrame } from '../drivers/can-frame.js';
import { encodeMessage } from '../drivers/dbc/encoder.js';
import { loadDecoder } from '../gateway/gateway.js';
import { decodeFrames, type DecodedFrame } from '../gateway/pipeline/decode-stage.js';
import { detectEvents, type EventFired } from '../gateway/pipeline/event-stage.js';
import { buildRecords } from '../gateway/pipeline/record-stage.js';
import { windowSignals, type EventInWindow, type WindowClosed } from '../gateway/pipeline/window-stage.js';
import { newPipelineCounters } from '../gateway/telemetry-pipeline.js';
import { RecordKind, TimeQuality, type VehicleTelemetry } from '../proto/telemetry-codec.js';
import { frame } from './helpers.js';

const config = referenceVehicleConfig({ mqttUrl: 'mqtt://127.0.0.1:1', windowMs: 1000 });
const decoder = loadDecoder(config.dbc);
const message = (name: string) => {
  const m = decoder.db.messages.find((x) => x.name === name);
  if (m === undefined) throw new Error(`no ${name} in the reference DBC`);
  return m;
};
const canFrame = (name: string, values: Record<string, number>, opts: Partial<CanFrame> = {}): CanFrame =>
  frame(message(name).id, Buffer.from(encodeMessage(message(name), values)).toString('hex'), {
    extended: message(name).extended,
    ...opts,
  });
/** A decoded frame as stage 1 hands it on. */
const decoded = (name: string, values: Record<string, number>, tsMono: number): DecodedFrame => ({
  kind: 'frame',
  tsMono,
  wall: null,
  signals: values,
  message: message(name),
});
const run = <I, O>(input: I[], stage: OperatorFunction<I, O>): Promise<O[]> =>
  lastValueFrom(from(input).pipe(stage, toArray()));
const fixedClock = (mono: number, wall: number): Clock => ({
  monoMs: () => mono,
  wallMs: () => wall,
  sleep: () => Promise.resolve(),
});

t.test('decode stage: decodes, counts what it cannot, and carries the last known wall time forward', async (t) => {
  const counters = newPipelineCounters();
  const out = await run(
    [
      canFrame('ABS_WheelSpeeds', { VehicleSpeed: 42 }, { tsMono: 10, tsWall: 1_700_000_000.5 }),
      new MalformedLine('non-hex', 'test', 'x'),
      frame(0x7ff, '00', { tsMono: 11 }),
      frame(message('TCM_Transmission').id, '00', { tsMono: 12 }),
      canFrame('ABS_WheelSpeeds', { VehicleSpeed: 1 }, { tsMono: 13, error: true }),
      canFrame('ABS_WheelSpeeds', { VehicleSpeed: 1 }, { tsMono: 14, rtr: true }),
      canFrame('ECM_EngineStatus', { EngineSpeed: 900, CoolantTemp: 80 }, { tsMono: 20 }),
    ],
    decodeFrames(decoder, counters),
  );
  t.same(
    out.map((f) => [f.message.name, f.tsMono, f.wall]),
    [
      ['ABS_WheelSpeeds', 10, { mono: 10, wallMs: 1_700_000_000_500 }],
      ['ECM_EngineStatus', 20, { mono: 10, wallMs: 1_700_000_000_500 }],
    ],
    'a frame without a wall time keeps the anchor of the last one that had it',
  );
  t.equal(out[0]?.signals.VehicleSpeed, 42);
  t.same(out[1] && [out[1].signals.EngineSpeed, out[1].signals.CoolantTemp], [900, 80]);
  t.same(
    { ...counters, windows: undefined, events: undefined },
    {
      frames: 6,
      malformed: 1,
      decoded: 2,
      decodeErrors: { 'unknown-id': 1, 'wrong-length': 1, 'error-frame': 1, 'remote-frame': 1 },
      windows: undefined,
      events: undefined,
      j1939: null,
      obd: null,
    },
  );
});

t.test('event stage: each frame passes first, then the events it fired; unwatched values cost nothing', async (t) => {
  const counters = { events: 0 };
  const rules = config.pipeline.events;
  const coolant = [90, 107, 108, 99, 106].map((c, i) =>
    decoded('ECM_EngineStatus', { EngineSpeed: 1000, CoolantTemp: c }, i * 100),
  );
  const speed = decoded('ABS_WheelSpeeds', { VehicleSpeed: 200 }, 50);
  // A frame of a watched message without the watched signal (another mux value): nothing to check.
  const withoutCoolant = decoded('ECM_EngineStatus', { EngineSpeed: 1000 }, 150);
  const out = await run(
    [coolant[0]!, speed, coolant[1]!, withoutCoolant, ...coolant.slice(2)],
    detectEvents(rules, counters),
  );
  const view = (item: DecodedFrame | EventFired) =>
    item.kind === 'frame' ? `frame@${item.tsMono}` : `${item.event.rule}@${item.frame.tsMono}`;
  t.same(out.map(view), [
    'frame@0',
    'frame@50',
    'frame@100',
    'coolant_over_temperature@100',
    'frame@150',
    'frame@200',
    'frame@300',
    'frame@400',
    'coolant_over_temperature@400',
  ]);
  t.equal(counters.events, 2);
  const fired = out.find((x): x is EventFired => x.kind === 'event');
  t.equal(fired?.frame, coolant[1], 'an event carries the frame it fired on');
  t.same(fired?.event, {
    rule: 'coolant_over_temperature',
    signal: 'CoolantTemp',
    value: 107,
    threshold: 105,
    detail: 'CoolantTemp 107 above 105',
  });
});

t.test('window stage: closes on the first frame past a window, events leave with the open window', async (t) => {
  const counters = { windows: 0 };
  const walled = (f: DecodedFrame, wallMs: number): DecodedFrame => ({ ...f, wall: { mono: f.tsMono, wallMs } });
  const hot = walled(decoded('ECM_EngineStatus', { EngineSpeed: 3000, CoolantTemp: 110 }, 500), 9_000_500);
  const event: EventFired = {
    kind: 'event',
    event: { rule: 'r', signal: 'CoolantTemp', value: 110, threshold: 105, detail: '' },
    frame: hot,
  };
  const out = await run<DecodedFrame | EventFired, WindowClosed | EventInWindow>(
    [
      walled(decoded('ABS_WheelSpeeds', { VehicleSpeed: 10 }, 0), 9_000_000),
      decoded('ABS_WheelSpeeds', { VehicleSpeed: 30 }, 100),
      hot,
      event,
      walled(decoded('ABS_WheelSpeeds', { VehicleSpeed: 50 }, 1200), 9_001_200),
      decoded('ABS_WheelSpeeds', { VehicleSpeed: 70 }, 1300),
    ],
    windowSignals({ windowMs: 1000 }, counters),
  );
  t.same(
    out.map((x) => x.kind),
    ['event', 'window', 'window'],
  );
  const inWindow = out[0] as EventInWindow;
  t.same(
    Object.fromEntries(inWindow.latest),
    { VehicleSpeed: 30, EngineSpeed: 3000, CoolantTemp: 110 },
    "the open window's latest values, its own frame's included",
  );
  const [first, last] = [out[1] as WindowClosed, out[2] as WindowClosed];
  t.same([first.window.startMono, first.window.endMono], [0, 1000]);
  t.same(first.window.stats.get('VehicleSpeed'), { min: 10, max: 30, mean: 20, last: 30, count: 2 });
  t.same(first.wall, { mono: 1200, wallMs: 9_001_200 }, 'the wall time known when the window closed');
  t.same([last.window.startMono, last.window.endMono], [1000, 1300], 'the end of the input closes at the last sample');
  t.equal(last.window.stats.get('VehicleSpeed')?.count, 2);
  t.equal(counters.windows, 2);
});

t.test('window stage, live: a window closes after silence on the clock, not only on data', async (t) => {
  let mono = 0;
  const clock: Clock = { monoMs: () => mono, wallMs: () => 0, sleep: () => Promise.resolve() };
  const input = new Subject<DecodedFrame | EventFired>();
  const counters = { windows: 0 };
  const output = input.pipe(windowSignals({ windowMs: 1000, idleFlushMs: 50, clock }, counters));
  const closed = firstValueFrom(output);
  input.next(decoded('ABS_WheelSpeeds', { VehicleSpeed: 5 }, 100));
  mono = 1049;
  // Not yet: the window ended at 1000 and the silence must reach idleFlushMs past it.
  await new Promise((resolve) => setTimeout(resolve, 120));
  t.equal(counters.windows, 0, 'not closed before the silence');
  mono = 1050;
  const w = (await closed) as WindowClosed;
  t.same([w.kind, w.window.startMono, w.window.endMono], ['window', 0, 1000], 'the full window, closed by silence');
  input.complete();
});

t.test('record stage: sequence, wall time from the recording or the clock, fields from stats and events', async (t) => {
  const stats = new Map([
    ['VehicleSpeed', { min: 10, max: 30, mean: 20, last: 30, count: 2 }],
    ['CoolantTemp', { min: 80, max: 95, mean: 90, last: 95, count: 3 }],
    ['AliveCounter', { min: 0, max: 3, mean: 1.5, last: 3, count: 4 }],
    ['WheelSpeedFL', { min: 0, max: 0, mean: 0, last: 0, count: 2 }],
  ]);
  const window = { startMono: 0, endMono: 1000, lastMono: 900, stats };
  const hot = decoded('ECM_EngineStatus', { CoolantTemp: 110 }, 1500);
  const out = await run<WindowClosed | EventInWindow, VehicleTelemetry>(
    [
      { kind: 'window', window, wall: { mono: 500, wallMs: 1_700_000_000_000 }, diagnostics: null },
      {
        kind: 'window',
        window,
        wall: null,
        diagnostics: { signal: 'DM1_ActiveDtcs', milOn: true, dtcs: ['SPN110-FMI0', 'SPN190-FMI2'] },
      },
      {
        kind: 'event',
        event: { rule: 'hot', signal: 'CoolantTemp', value: 110, threshold: 105, detail: '' },
        frame: hot,
        latest: new Map([
          ['VehicleSpeed', 44],
          ['CoolantTemp', 110],
        ]),
        diagnostics: null,
      },
    ],
    buildRecords({
      vehicleId: 'V1',
      fields: config.pipeline.fields,
      exclude: config.pipeline.exclude,
      clock: fixedClock(10_000, 2_000_000),
      bootId: 'boot',
      firstSequence: 7,
    }),
  );
  const [recorded, live, event] = out;
  t.same(
    out.map((r) => [r.sequence, r.kind, r.priority]),
    [
      [7, RecordKind.Window, 1],
      [8, RecordKind.Window, 1],
      [9, RecordKind.Event, 0],
    ],
  );
  t.same([recorded?.deviceTimeMs, recorded?.timeQuality], [1_700_000_000_500, TimeQuality.Recorded]);
  t.same([live?.deviceTimeMs, live?.timeQuality], [2_000_000 - 9_000, TimeQuality.Unsynced], 'clock-mapped');
  t.same([recorded?.speedKmh, recorded?.coolantTempC], [20, 95], 'each field its configured statistic');
  t.same(Object.keys(recorded?.signals ?? {}), ['WheelSpeedFL'], 'mapped and excluded signals are not repeated');
  t.same([event?.speedKmh, event?.coolantTempC, event?.event?.rule], [44, 110, 'hot'], 'an event: latest values');
  t.equal(recorded?.diagnostics, undefined, 'no diagnostics where no signal or fault report gave any');
  t.same(
    live?.diagnostics,
    { milOn: true, dtcs: ['SPN110-FMI0', 'SPN190-FMI2'] },
    'a J1939 fault report: its lamp and its DTCs as SPN/FMI',
  );
  t.equal(new Set(out.map((r) => r.messageId)).size, 3, 'ids are unique');
});
