// simulator → pty → gateway → Mosquitto → subscriber, checked against the trace's ground truth.
import t from 'tap';
import { waitUntil } from './helpers.js';
import { LiveReader } from '../receiver/live-reader.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { openPtyPair } from '../bench/rig/pty-pair.js';
import { spawnSimulator, waitUntilSteady } from '../bench/rig/simulator-process.js';
import { freePort, startLocalBroker } from '../bench/rig/local-broker.js';
import { referenceVehicleConfig } from '../core/config.js';
import { loadDecoder, startGateway } from '../gateway/gateway.js';
import { systemClock } from '../core/clock.js';
import { openTrace, readTrace } from '../drivers/trace-source.js';
import { DecodeError } from '../drivers/dbc/decoder.js';
import { MalformedLine } from '../drivers/can-frame.js';
import { RecordKind, type VehicleTelemetry } from '../proto/telemetry-codec.js';
import { projectRoot } from '../core/project-root.js';
import { benchBrokerTls, benchCloudTls, createDevPki } from '../provisioning/dev-pki.js';

const TRACE = join(projectRoot(), 'drivers', 'reference-vehicle', 'drive.log.gz');
const storeRoot = mkdtempSync(join(tmpdir(), 'v2c-spine-'));
t.teardown(() => rmSync(storeRoot, { recursive: true, force: true }));
// Mutual TLS, as in the field: the bench PKI's broker, device and cloud certificates.
const pki = await createDevPki(join(storeRoot, 'pki'));
const deviceTls = { ca: pki.ca.cert, ...pki.devices.valid };
let stores = 0;
const storeDir = (): string => join(storeRoot, `store-${stores++}`);

interface Truth {
  frames: number;
  count: Map<string, number>;
  min: Map<string, number>;
  max: Map<string, number>;
  last: Map<string, number>;
}

async function groundTruth(dbcPath: string): Promise<Truth> {
  const decoder = loadDecoder(dbcPath);
  const truth: Truth = { frames: 0, count: new Map(), min: new Map(), max: new Map(), last: new Map() };
  for await (const line of readTrace(openTrace(TRACE), 'candump', systemClock)) {
    const f = line.parsed;
    if (f === null || f instanceof MalformedLine) continue;
    truth.frames++;
    const d = decoder.decode(f, false);
    if (d instanceof DecodeError) continue;
    for (const [name, raw] of Object.entries(d.signals)) {
      const v = Number(raw);
      truth.count.set(name, (truth.count.get(name) ?? 0) + 1);
      truth.min.set(name, Math.min(truth.min.get(name) ?? Infinity, v));
      truth.max.set(name, Math.max(truth.max.get(name) ?? -Infinity, v));
      truth.last.set(name, v);
    }
  }
  return truth;
}

async function subscribe(
  url: string,
): Promise<{ received: Map<string, VehicleTelemetry>; close: () => Promise<void> }> {
  const received = new Map<string, VehicleTelemetry>();
  const client = await mqtt.connectAsync(url, {
    protocolVersion: 5,
    clientId: `test-sub-${process.pid}-${Math.random()}`,
    ...benchCloudTls(pki),
  });
  const reader = new LiveReader();
  client.on('message', (topic, payload) => {
    const r = reader.read(topic, payload);
    if (r !== null) received.set(r.messageId, r);
  });
  await client.subscribeAsync('v2c/v1/+/+/telemetry/#', { qos: 1 });
  return { received, close: () => client.endAsync() };
}

t.test('the recorded drive through the simulated USB adapter arrives complete and correct', async (t) => {
  const speed = 40;
  const broker = await startLocalBroker({ tls: benchBrokerTls(pki) });
  t.teardown(() => broker.stop());
  const pty = await openPtyPair();
  t.teardown(() => pty.close());
  const sub = await subscribe(broker.url);
  t.teardown(() => sub.close());

  const simulator = await spawnSimulator(pty.adapterEnd, speed, systemClock);
  const config = referenceVehicleConfig({
    mqttUrl: broker.url,
    port: pty.gatewayEnd,
    windowMs: Math.round(60_000 / speed),
    storeDir: storeDir(),
    tls: deviceTls,
  });
  t.equal(config.mqtt.url.slice(0, 8), 'mqtts://', 'over mutual TLS');
  const truthPromise = groundTruth(config.dbc as string);
  const gateway = await startGateway(config, systemClock, () => undefined);
  // Stopped whatever happens below (a second stop after the test's own is harmless).
  t.teardown(() => gateway.stop(0).catch(() => undefined));
  t.equal(await simulator.done, 0, simulator.log());
  await waitUntilSteady(() => gateway.pipeline.frames, systemClock);
  const result = await gateway.stop(20_000);
  t.equal(await gateway.stop(0), result, "a second stop does not run again: it returns the first's result");
  const truth = await truthPromise;
  await waitUntil(
    'every stored record at the subscriber',
    () => sub.received.size >= gateway.stored(),
    10_000,
    [],
    () => sub.received.size,
  );

  t.equal(gateway.pipeline.frames, truth.frames, 'every frame of the trace crossed the pty');
  t.equal(gateway.pipeline.malformed, 0);
  t.equal(gateway.pipeline.decoded, truth.frames, 'every frame decoded');
  t.ok(result.drained && result.pending === 0, 'store empty: every record acknowledged');
  t.equal(gateway.sender.counters.acked, gateway.stored());
  t.equal(sub.received.size, gateway.stored(), 'the subscriber saw every stored record');
  const records = [...sub.received.values()].sort((a, b) => a.sequence - b.sequence);
  const windows = records.filter((r) => r.kind === RecordKind.Window);
  const events = records.filter((r) => r.kind === RecordKind.Event);
  t.ok(windows.length >= 9, `${windows.length} windows`);
  t.same(
    records.map((r) => r.sequence),
    records.map((_, i) => i),
    'sequence has no gaps',
  );

  // Unmapped signals carry full statistics: counts add up exactly, extremes match.
  for (const name of ['ThrottlePosition', 'LongAccel', 'BatteryCurrent', 'TyreTempFL', 'Heading', 'TripDistance']) {
    const stats = windows.map((w) => w.signals[name]).filter((s) => s !== undefined);
    t.equal(
      stats.reduce((n, s) => n + s.count, 0),
      truth.count.get(name),
      `${name}: sample count`,
    );
    t.equal(Math.min(...stats.map((s) => s.min)), truth.min.get(name), `${name}: minimum`);
    t.equal(Math.max(...stats.map((s) => s.max)), truth.max.get(name), `${name}: maximum`);
  }
  const final = windows[windows.length - 1]!;
  t.equal(final.odometerKm, truth.last.get('Odometer'), 'final odometer');
  t.equal(final.fuelLevelPct, truth.last.get('FuelLevel'), 'final fuel level');
  t.equal(Math.max(...windows.map((w) => w.coolantTempC ?? -99)), truth.max.get('CoolantTemp'), 'peak coolant');
  t.ok(
    windows.every((w) => w.speedKmh! >= 0 && w.speedKmh! <= truth.max.get('VehicleSpeed')!),
    'window speeds within the drive',
  );
  t.ok(
    windows.every((w) => w.gear !== undefined && w.gear >= -1 && w.gear <= 7),
    'gears within the value table',
  );
  t.same(events.map((e) => e.event?.rule).sort(), ['coolant_over_temperature', 'dtc_appeared', 'low_12v_battery']);
  t.ok(events.every((e) => e.priority === 0) && windows.every((w) => w.priority === 1), 'events P0, windows P1');
  t.same(final.diagnostics, { milOn: true, dtcs: ['P0217'] });
});

t.test('broker down at start: records buffer in the store and all arrive once it is up', async (t) => {
  const port = await freePort();
  const url = `mqtts://127.0.0.1:${port}`;
  const config = referenceVehicleConfig({
    mqttUrl: url,
    windowMs: 60_000,
    speed: 0,
    storeDir: storeDir(),
    tls: deviceTls,
  });
  // Long enough that the test's subscriber is in place before the gateway's next attempt.
  config.mqtt.reconnect = { ...config.mqtt.reconnect, baseMs: 1500, jitter: 0 };
  const gateway = await startGateway(config, systemClock, () => undefined);
  t.teardown(() => gateway.stop(0).catch(() => undefined));
  await gateway.sourceDone;
  const stored = gateway.stored();
  t.ok(stored >= 10, `${stored} records captured while offline`);
  t.equal(await gateway.store.count(), stored, 'all still in the store');
  t.equal(gateway.sender.counters.acked, 0);
  const broker = await startLocalBroker({ port, tls: benchBrokerTls(pki) });
  t.teardown(() => broker.stop());
  const sub = await subscribe(broker.url);
  t.teardown(() => sub.close());
  const result = await gateway.stop(20_000);
  t.ok(result.drained, 'drained once the broker came up');
  t.equal(gateway.sender.counters.acked, stored);
  await waitUntil(
    'every record at the subscriber',
    () => sub.received.size >= stored,
    10_000,
    [],
    () => sub.received.size,
  );
  t.equal(sub.received.size, stored, 'nothing lost');
  t.ok(gateway.session.counters.attempts > 1, 'reconnect attempts were made');
});
