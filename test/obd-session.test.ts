// OBD-II, active: the poller against the simulated ECUs (in process, then through a socat pty and
// the `simulate --obd` process as on the bench): discovery, VIN, polling rates against the global
// limit, backoff, refusals, the ignition, and records with the spec fields from a car with no DBC.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { Subject, from, lastValueFrom, toArray } from 'rxjs';
import { projectRoot } from '../core/project-root.js';
import { systemClock } from '../core/clock.js';
import { referenceVehicleConfig } from '../core/config.js';
import { MalformedLine, type CanFrame } from '../drivers/can-frame.js';
import { parseCandumpLine } from '../drivers/candump.js';
import { respondingEcu } from '../drivers/obd/addressing.js';
import { SimulatedObdVehicle } from '../drivers/obd/simulated-ecu.js';
import { SlcanSerialSource } from '../drivers/slcan-serial-source.js';
import { loadDecoder } from '../gateway/dbc-loader.js';
import { ObdPoller, type CanTransmitter, type ObdPollerOptions } from '../gateway/obd-poller.js';
import { newPipelineCounters, telemetryPipeline } from '../gateway/telemetry-pipeline.js';
import { RecordKind } from '../proto/telemetry-codec.js';
import { openPtyPair } from '../bench/rig/pty-pair.js';
import { spawnSimulator } from '../bench/rig/simulator-process.js';
import { waitUntil } from './helpers.js';

const REF = join(projectRoot(), 'drivers', 'reference-vehicle');
const drive = gunzipSync(readFileSync(join(REF, 'drive.log.gz')))
  .toString('utf8')
  .trim()
  .split('\n')
  .map((l) => parseCandumpLine(l))
  .filter((f): f is CanFrame => f !== null && !(f instanceof MalformedLine));
const carDecoder = loadDecoder(join(REF, 'v2c-reference.dbc'));
const VIN = 'V2CREF00000000001';

const options = (o: Partial<ObdPollerOptions> = {}): ObdPollerOptions => ({
  addressing: '11bit',
  pids: [
    { pid: 0x0c, intervalMs: 100 },
    { pid: 0x0d, intervalMs: 200 },
    { pid: 0x05, intervalMs: 400 },
    { pid: 0x5b, intervalMs: 100 },
  ],
  dtcIntervalMs: 1000,
  maxRequestsPerSecond: 20,
  responseTimeoutMs: 80,
  blockSize: 0,
  stMinMs: 0,
  ...o,
});

/**
 * The simulated ECUs in this process, on a "bus" that delivers their answers after their delays;
 * `mute` silences one ECU (it went to sleep). Requests are logged with their id and time.
 */
function inProcessBus(vehicle: SimulatedObdVehicle): {
  frames: Subject<CanFrame>;
  adapter: CanTransmitter;
  sent: Array<{ at: number; id: number; data: string }>;
  mute: Set<number>;
  close(): void;
} {
  const frames = new Subject<CanFrame>();
  const sent: Array<{ at: number; id: number; data: string }> = [];
  const mute = new Set<number>();
  const timers = new Set<NodeJS.Timeout>();
  const adapter: CanTransmitter = {
    send: (f) => {
      const frame: CanFrame = {
        ...f,
        bus: null,
        rtr: false,
        fd: false,
        brs: false,
        error: false,
        tsMono: performance.now(),
        tsWall: null,
      };
      sent.push({ at: frame.tsMono, id: f.id, data: Buffer.from(f.data).toString('hex') });
      for (const answer of vehicle.onFrame(frame)) {
        if (mute.has(respondingEcu(answer.id, answer.extended) ?? -1)) continue;
        const timer = setTimeout(() => {
          timers.delete(timer);
          frames.next({
            ...frame,
            id: answer.id,
            extended: answer.extended,
            data: answer.data,
            tsMono: performance.now(),
          });
        }, answer.atMs);
        timers.add(timer);
      }
      return true;
    },
  };
  return { frames, adapter, sent, mute, close: () => timers.forEach(clearTimeout) };
}

function carAt(frames: number): SimulatedObdVehicle {
  const vehicle = new SimulatedObdVehicle('11bit', carDecoder, VIN);
  for (const f of drive.slice(0, frames)) vehicle.observe(f);
  return vehicle;
}

t.test('poller: discovery, VIN, polling only what an ECU supports, never above the request rate', async (t) => {
  const bus = inProcessBus(carAt(drive.length));
  const logs: string[] = [];
  const poller = new ObdPoller(options({ vehicleId: 'WVWZZZ1JZXW000001' }), bus.adapter, systemClock, (m) =>
    logs.push(m),
  );
  t.teardown(() => {
    poller.stop();
    bus.close();
  });
  poller.start(bus.frames);
  await waitUntil('20 answers to PID 0x0C', () => (poller.counters.perPid.get(0x0c)?.answers ?? 0) >= 20, 10_000, logs);
  t.same(
    [...poller.supported.keys()].sort(),
    [0, 1],
    'the engine and the transmission answered the functional request',
  );
  t.ok(poller.supported.get(0)?.has(0xa6), 'bitmaps followed up to 0xA0 (0xA6 odometer)');
  t.equal(poller.vin, VIN, 'the VIN, through response pending and flow control');
  t.equal(poller.counters.negative[0x78], 1, 'one "response pending"');
  t.ok(poller.counters.flowControls >= 2, 'flow control for the VIN and for the 3-code pending DTC list');
  t.notOk(poller.counters.perPid.has(0x5b), 'PID 0x5B is supported by no ECU: never asked');
  t.match(logs.join('\n'), /not supported by any ECU, not polled: PIDs 0x5B/);
  t.match(
    logs.join('\n'),
    /VIN V2CREF00000000001 .*vehicle\.id WVWZZZ1JZXW000001/,
    'a VIN that is not vehicle.id is said',
  );
  // In any second, no more requests than the limit (20/s): the 21st is at least 1 s after the 1st.
  const at = bus.sent.filter((s) => s.data.startsWith('02') || s.data.startsWith('01')).map((s) => s.at);
  const tightest = Math.min(...at.slice(20).map((x, i) => x - (at[i] as number)));
  t.ok(tightest >= 999, `21 consecutive requests span ${tightest.toFixed(0)} ms (≥ 1,000)`);
  const c = poller.counters.perPid;
  const rpm = c.get(0x0c)?.requests ?? 0;
  const coolant = c.get(0x05)?.requests ?? 0;
  // More is asked than 20/s allows: each PID keeps a share that grows with its rate.
  t.ok(rpm >= 2 * coolant, `PID 0x0C (every 100 ms) asked ${rpm} times, 0x05 (every 400 ms) ${coolant}`);
  t.equal(poller.counters.timeouts, 0);
});

t.test('poller: an ECU that falls silent is backed off; refusals and the ignition are obeyed', async (t) => {
  const bus = inProcessBus(carAt(drive.length));
  const logs: string[] = [];
  let ignition: boolean | null = null;
  const poller = new ObdPoller(
    options({ pids: [{ pid: 0x0c, intervalMs: 100 }], maxRequestsPerSecond: 50, dtcIntervalMs: 60_000 }),
    bus.adapter,
    systemClock,
    (m) => logs.push(m),
    () => ignition,
  );
  t.teardown(() => {
    poller.stop();
    bus.close();
  });
  poller.start(bus.frames);
  await waitUntil('polling', () => (poller.counters.perPid.get(0x0c)?.answers ?? 0) >= 5, 10_000, logs);
  bus.mute.add(0);
  const mutedAt = performance.now();
  await waitUntil('5 timeouts of PID 0x0C', () => poller.counters.timeouts >= 5, 15_000, logs);
  // The silent ECU is asked after 100 ms, then 200, 400, 800, 1,600 ms (plus the 80 ms wait each).
  const asks = bus.sent.filter((s) => s.at >= mutedAt && s.data.startsWith('02010c')).map((s) => s.at);
  const gaps = asks.slice(1).map((x, i) => x - (asks[i] as number));
  t.ok(gaps.length >= 4, `${asks.length} requests while silent`);
  t.ok(
    gaps.slice(0, 4).every((g, i) => g >= 100 * 2 ** (i + 1) * 0.9),
    `gaps between requests to the silent ECU double: ${gaps.map((g) => g.toFixed(0)).join(', ')} ms`,
  );
  bus.mute.clear();
  await waitUntil(
    'answers again',
    () => poller.counters.timeouts >= 5 && (poller.counters.perPid.get(0x0c)?.answers ?? 0) >= 10,
    20_000,
    logs,
  );
  ignition = false;
  await waitUntil('paused', () => poller.phase === 'paused', 5000, logs);
  const paused = poller.counters.requests;
  await new Promise((r) => setTimeout(r, 400));
  t.equal(poller.counters.requests, paused, 'no request while the ignition is off');
  ignition = true;
  await waitUntil('resumed', () => poller.counters.requests > paused, 5000, logs);
  t.match(logs.join('\n'), /ignition off, polling paused[\s\S]*ignition on, polling resumed/);
});

t.test('the car through its OBD port, end to end: pty, simulated ECUs, poller and pipeline', async (t) => {
  const pty = await openPtyPair();
  t.teardown(() => pty.close());
  const speed = 42; // the 630 s drive in 15 s
  const simulator = await spawnSimulator(pty.adapterEnd, speed, systemClock, join(REF, 'drive.log.gz'), ['--obd']);
  t.teardown(() => simulator.stop());
  const config = referenceVehicleConfig({
    mqttUrl: 'mqtt://127.0.0.1:1',
    vehicle: 'obd',
    port: pty.gatewayEnd,
    windowMs: 2000,
  });
  t.equal(config.dbc, undefined, 'no DBC');
  const serial = new SlcanSerialSource(
    {
      path: pty.gatewayEnd,
      bitrate: 500000,
      baudRate: 115200,
      bus: 'can0',
      watchdogMs: 5000,
      reopenDelaysMs: [250],
      readIntervalMs: 5,
    },
    systemClock,
  );
  const logs: string[] = [];
  // ~16 requests/s asked, under the limit: each PID should get its rate.
  const pids = [
    { pid: 0x0d, intervalMs: 200 },
    { pid: 0x0c, intervalMs: 200 },
    { pid: 0x05, intervalMs: 500 },
    { pid: 0x2f, intervalMs: 1000 },
    { pid: 0x42, intervalMs: 500 },
    { pid: 0xa6, intervalMs: 1000 },
  ];
  const poller = new ObdPoller(
    { ...config.obd, pids, dtcIntervalMs: 3000, maxRequestsPerSecond: 40 },
    serial,
    systemClock,
    (m) => logs.push(m),
  );
  const counters = newPipelineCounters();
  const records = lastValueFrom(
    telemetryPipeline(serial.frames, {
      config,
      decoder: loadDecoder(undefined),
      clock: systemClock,
      counters,
      bootId: 'b',
      firstSequence: 1,
      live: true,
    }).pipe(toArray()),
  );
  serial.start();
  poller.start(serial.frames);
  t.teardown(async () => {
    poller.stop();
    await serial.stop();
  });
  const started = performance.now();
  const exit = await simulator.done;
  const seconds = (performance.now() - started) / 1000;
  poller.stop();
  await serial.stop();
  const out = await records;
  t.equal(exit, 0, simulator.log());
  t.equal(poller.vin, VIN);
  const windows = out.filter((r) => r.kind === RecordKind.Window);
  const filled = windows.filter((w) =>
    [w.speedKmh, w.engineRpm, w.coolantTempC, w.fuelLevelPct, w.odometerKm, w.batteryVoltageV].every(
      (v) => v !== undefined,
    ),
  );
  t.ok(
    filled.length >= windows.length - 2 && filled.length >= 4,
    `${filled.length} of ${windows.length} windows with every mapped field`,
  );
  t.ok(
    windows.some((w) => (w.speedKmh ?? 0) > 100),
    'the motorway part',
  );
  const dtc = out.find((r) => r.event?.rule === 'dtc_appeared');
  t.equal(dtc?.event?.detail, 'DTC P0217 appeared', 'the stored DTC, through service 03');
  t.ok(
    out.some((r) => r.diagnostics?.dtcs.includes('P0217') === true && r.diagnostics.milOn),
    'and the MIL from PID 01',
  );
  const rates = pids.map(({ pid, intervalMs }) => {
    const n = poller.counters.perPid.get(pid)?.answers ?? 0;
    return { pid, wanted: 1000 / intervalMs, got: n / seconds };
  });
  // Rates are for the bench (a loaded machine answers slower); here: never faster than asked,
  // every PID answered, and the faster PIDs answered more often.
  for (const r of rates)
    t.ok(
      r.got > 0 && r.got <= r.wanted * 1.05,
      `PID 0x${r.pid.toString(16)}: ${r.got.toFixed(2)}/s answered, ${r.wanted}/s asked`,
    );
  const answered = (pid: number): number => poller.counters.perPid.get(pid)?.answers ?? 0;
  t.ok(answered(0x0c) > answered(0x05) && answered(0x05) > answered(0xa6), 'answers follow the intervals');
  t.ok(
    poller.counters.requests / seconds <= 40.5,
    `${(poller.counters.requests / seconds).toFixed(1)} requests/s (limit 40)`,
  );
  t.equal(counters.obd?.errors, 0, 'every answer read');
  t.ok(
    poller.counters.flowControls >= 2,
    `${poller.counters.flowControls} flow controls: the VIN and the 3-code pending list`,
  );
  t.ok(
    out.some((r) => r.signals.OBD_PendingDtcs?.max === 3),
    'three pending DTCs, through a multi-frame answer',
  );
});

t.test('29-bit addressing: the same session on 0x18DB33F1 / 0x18DAnnF1 / 0x18DAF1nn', async (t) => {
  const vehicle = new SimulatedObdVehicle('29bit', carDecoder, VIN);
  for (const f of drive) vehicle.observe(f);
  const bus = inProcessBus(vehicle);
  const poller = new ObdPoller(options({ addressing: '29bit' }), bus.adapter, systemClock, () => undefined);
  t.teardown(() => {
    poller.stop();
    bus.close();
  });
  poller.start(bus.frames);
  await waitUntil('answers to PID 0x0C', () => (poller.counters.perPid.get(0x0c)?.answers ?? 0) >= 3, 10_000);
  t.equal(poller.vin, VIN);
  t.same([...poller.supported.keys()].sort(), [0, 1], 'ECUs by source address');
  const ids = new Set(bus.sent.map((r) => r.id.toString(16)));
  t.ok(ids.has('18db33f1') && ids.has('18da00f1'), `functional and physical 29-bit requests: ${[...ids].join(', ')}`);
});

t.test("passive: a scan tool's session in a recorded trace is read the same way", async (t) => {
  // A tester polling RPM and the stored DTCs, and an ECU answering, as candump -L wrote it.
  const trace = [
    '(1700000000.000) can0 7DF#02010C0000000000',
    '(1700000000.010) can0 7E8#04410C1AF8AAAAAA',
    '(1700000000.500) can0 7DF#0103000000000000',
    '(1700000000.510) can0 7E8#100A430402170128',
    '(1700000000.511) can0 7E0#3000000000000000',
    '(1700000000.520) can0 7E8#210116C158AAAAAA',
    '(1700000001.000) can0 7E0#0201050000000000',
    '(1700000001.010) can0 7E8#037F0131AAAAAAAA',
    '(1700000001.500) can0 7E8#2100000000000000',
  ].map((l) => parseCandumpLine(l) as CanFrame);
  const config = referenceVehicleConfig({ mqttUrl: 'mqtt://127.0.0.1:1', vehicle: 'obd', windowMs: 60_000 });
  const counters = newPipelineCounters();
  const out = await lastValueFrom(
    telemetryPipeline(from(trace), {
      config,
      decoder: loadDecoder(undefined),
      clock: systemClock,
      counters,
      bootId: 'b',
      firstSequence: 1,
      live: false,
    }).pipe(toArray()),
  );
  const window = out.find((r) => r.kind === RecordKind.Window);
  t.equal(window?.engineRpm, 1726, 'RPM from the answer');
  t.same(window?.diagnostics?.dtcs, ['P0116', 'P0128', 'P0217', 'U0158'], 'four stored DTCs from a two-frame answer');
  t.same(
    out.filter((r) => r.kind === RecordKind.Event).map((r) => r.event?.detail),
    ['DTC P0116 appeared', 'DTC P0128 appeared', 'DTC P0217 appeared', 'DTC U0158 appeared'],
  );
  t.same(counters.obd, { answers: 3, negative: 1, errors: 1 }, 'a refusal counted; a stray consecutive frame counted');
});
