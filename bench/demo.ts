// `npm run demo`: the recorded drive through a simulated USB adapter (socat pty) into the gateway
// and a local Mosquitto, watched by the reference sink that verifies and counts what arrives.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openPtyPair } from './rig/pty-pair.js';
import { spawnSimulator, waitUntilSteady } from './rig/simulator-process.js';
import { startLocalBroker } from './rig/local-broker.js';
import {
  referenceVehicleConfig,
  referenceVehicleId,
  referenceVehicleTrace,
  type ReferenceVehicle,
} from '../core/config.js';
import { startGateway } from '../gateway/gateway.js';
import { systemClock } from '../core/clock.js';
import { RecordKind, TimeQuality, type VehicleTelemetry } from '../proto/telemetry-codec.js';
import { describeLink } from '../sync/link/link-controller.js';
import { sinkSummary, TelemetrySink } from '../receiver/telemetry-sink.js';
import { benchBrokerTls, benchCloudTls, createDevPki } from '../provisioning/dev-pki.js';

/** Length of each reference vehicle's recorded drive. */
const DRIVE_SECONDS: Record<ReferenceVehicle, number> = { car: 630, obd: 630, truck: 600 };

export interface DemoOptions {
  speed: number;
  vehicle: ReferenceVehicle;
}

function describe(r: VehicleTelemetry): string {
  const fmt = (v: number | undefined, digits: number, unit: string): string =>
    v === undefined ? '-' : `${v.toFixed(digits)}${unit === '' ? '' : ` ${unit}`}`;
  const when = new Date(r.deviceTimeMs).toISOString().slice(11, 19);
  if (r.kind === RecordKind.Event) return `  ${when} EVENT ${r.event?.rule}: ${r.event?.detail}`;
  return (
    `  ${when} speed ${fmt(r.speedKmh, 1, 'km/h')}, rpm ${fmt(r.engineRpm, 0, '')}, gear ${r.gear ?? '-'}, coolant max ${fmt(r.coolantTempC, 0, 'degC')}, ` +
    `battery ${fmt(r.batteryVoltageV, 2, 'V')}, fuel ${fmt(r.fuelLevelPct, 1, '%')}, odo ${fmt(r.odometerKm, 1, 'km')}, DTCs [${r.diagnostics?.dtcs.join(',') ?? ''}]`
  );
}

export async function runDemo(options: DemoOptions): Promise<number> {
  const speed = options.speed > 0 ? options.speed : 12;
  console.log(
    `v2c-gateway demo: ${DRIVE_SECONDS[options.vehicle]} s reference ${options.vehicle} drive${options.vehicle === 'truck' ? ' (J1939)' : options.vehicle === 'obd' ? ' read only through OBD-II requests' : ''} at ${speed}x through a simulated USB SLCAN adapter`,
  );
  // Undone in reverse order whatever happens, so a gateway that refuses to start (a certificate for
  // another vehicle, say) ends the demo with its message instead of leaving the broker and the
  // simulator running.
  const teardown: Array<() => unknown> = [];
  try {
    return await demo(options, speed, teardown);
  } finally {
    for (const undo of teardown.reverse()) await undo();
  }
}

async function demo(options: DemoOptions, speed: number, teardown: Array<() => unknown>): Promise<number> {
  const log = (m: string): void => {
    process.stderr.write(`  [gateway] ${m}\n`);
  };
  const windowMs = Math.max(1000, Math.round(60_000 / speed));
  // A bench PKI made for this run: the broker requires client certificates, like the fleet's.
  const pkiDir = mkdtempSync(join(tmpdir(), 'v2c-demo-pki-'));
  teardown.push(() => rmSync(pkiDir, { recursive: true, force: true }));
  const pki = await createDevPki(pkiDir, referenceVehicleId(options.vehicle));
  const broker = await startLocalBroker({ tls: benchBrokerTls(pki) });
  teardown.push(() => broker.stop());
  const pty = await openPtyPair();
  teardown.push(() => pty.close());
  console.log(
    `  broker: mosquitto on ${broker.url} (mutual TLS, bench PKI in ${pkiDir}); adapter: ${pty.gatewayEnd}; window ${windowMs} ms (= 60 s of drive)`,
  );

  const received = new Map<string, VehicleTelemetry>();
  const sinkDir = mkdtempSync(join(tmpdir(), 'v2c-demo-sink-'));
  teardown.push(() => rmSync(sinkDir, { recursive: true, force: true }));
  const sink = await TelemetrySink.start(
    {
      url: broker.url,
      clientId: 'v2c-demo-sink',
      deadLetterDir: sinkDir,
      dedupWindowMs: 300_000,
      tls: benchCloudTls(pki),
    },
    log,
  );
  teardown.push(() => sink.close());
  sink.onRecord = (r) => {
    received.set(r.messageId, r);
  };

  // A fresh database, so the figures below are this run's alone.
  const storeDir = mkdtempSync(join(tmpdir(), 'v2c-demo-'));
  teardown.push(() => rmSync(storeDir, { recursive: true, force: true }));
  const reference = referenceVehicleConfig({
    vehicle: options.vehicle,
    mqttUrl: broker.url,
    port: pty.gatewayEnd,
    windowMs,
    storeDir,
    tls: { ca: pki.ca.cert, ...pki.devices.valid },
  });
  // The drive plays `speed` times faster, so OBD-II polling does too (the simulated ECUs take it).
  const o = reference.obd;
  const config = {
    ...reference,
    obd: {
      ...o,
      pids: o.pids.map((p) => ({ ...p, intervalMs: Math.max(100, Math.round(p.intervalMs / speed)) })),
      dtcIntervalMs: Math.max(1000, Math.round(o.dtcIntervalMs / speed)),
      maxRequestsPerSecond: Math.min(50, o.maxRequestsPerSecond * speed),
    },
  };
  const simulator = await spawnSimulator(
    pty.adapterEnd,
    speed,
    systemClock,
    referenceVehicleTrace(options.vehicle),
    options.vehicle === 'obd' ? ['--obd'] : [],
  );
  teardown.push(() => simulator.stop());
  console.log(`  store: ${join(storeDir, 'v2c.sqlite')} (SQLite, WAL, synchronous=FULL)`);
  const gateway = await startGateway(config, systemClock, log);
  const started = Date.now();
  const progress = setInterval(() => {
    process.stdout.write(
      `  ... ${Math.round((Date.now() - started) / 1000)} s: frames ${gateway.pipeline.frames}, records ${gateway.stored()}, acked ${gateway.sender.counters.acked}\n`,
    );
  }, 10_000);
  const simulatorCode = await simulator.done;
  await waitUntilSteady(() => gateway.pipeline.frames, systemClock);
  clearInterval(progress);
  const result = await gateway.stop(30_000);
  const deadline = Date.now() + 5000;
  while (received.size < gateway.sender.counters.acked && Date.now() < deadline) await systemClock.sleep(50);

  const p = gateway.pipeline;
  const serial = gateway.serial;
  const records = gateway.stored();
  const acked = gateway.sender.counters.acked;
  const ordered = [...received.values()].sort((a, b) => a.sequence - b.sequence);
  const windows = ordered.filter((r) => r.kind === RecordKind.Window);
  const events = ordered.filter((r) => r.kind === RecordKind.Event);
  console.log(`\n  simulator: ${simulator.log().trim().split('\n').pop() ?? ''} (exit ${simulatorCode})`);
  console.log(
    `  adapter: reopens ${serial?.reopens ?? 0}, BEL errors ${serial?.adapterErrors ?? 0}; decode errors ${JSON.stringify(p.decodeErrors)}`,
  );
  const obd = gateway.obd;
  if (obd !== null) {
    const c = obd.counters;
    console.log(
      `  obd: VIN ${obd.vin ?? '-'}; requests ${c.requests}, answers ${c.answers}, timeouts ${c.timeouts}, refusals ${JSON.stringify(c.negative)}, flow controls ${c.flowControls}`,
    );
  }
  if (p.j1939 !== null)
    console.log(`  j1939: DM1s read ${p.j1939.dm1.dm1}; transport ${JSON.stringify(p.j1939.transport)}`);
  console.log(
    `  subscriber: ${received.size} records decoded (${windows.length} windows, ${events.length} events); ${sinkSummary(sink.counts)}`,
  );
  console.log('  first, middle and last windows:');
  for (const r of [windows[0], windows[Math.floor(windows.length / 2)], windows[windows.length - 1]])
    if (r !== undefined) console.log(describe(r));
  console.log('  events:');
  for (const r of events) console.log(describe(r));
  const ok =
    records > 0 &&
    result.drained &&
    result.pending === 0 &&
    acked === records &&
    received.size === records &&
    sink.counts.rejected === 0 &&
    simulatorCode === 0;
  if (!ok)
    console.log(
      `  NOT OK: drained=${result.drained} pending=${result.pending} received=${received.size} simulator exit=${simulatorCode}`,
    );
  const time = gateway.time;
  const quality = (q: TimeQuality): string => TimeQuality[q]?.toLowerCase() ?? String(q);
  const qualities = [...new Set(ordered.map((r) => quality(r.timeQuality)))].join('/');
  console.log(
    `  link: ${describeLink(gateway.link.link)} (${gateway.link.current.mode}: ${gateway.link.current.reason}); cellular bytes today ${gateway.link.budget.usedToday()}`,
  );
  console.log(
    `  time: ${time.reference === null ? 'no reference (records unsynced)' : `reference from ${time.reference.source} ±${time.reference.errorMs.toFixed(0)} ms, system clock off by ${((time.offsetMs() ?? 0) / 1000).toFixed(3)} s`}; records sent ${qualities || '-'}`,
  );
  const cert = gateway.certificate;
  console.log(
    `  certificate: ${cert?.facts.subject ?? 'none'}, ${cert === null ? '' : `${Math.floor(cert.daysToExpiry())} days to expiry, `}renewals ${cert?.counters.installed ?? 0}`,
  );
  console.log(
    `demo: frames=${p.frames} decoded=${p.decoded} malformed=${p.malformed} records=${records} messages=${gateway.sender.counters.singles + gateway.sender.counters.batches} acked=${acked} mqtt=${gateway.session.state === 'stopped' ? 'closed' : gateway.session.state} tls=${config.mqtt.tls !== undefined ? 'mutual' : 'none'} link=${gateway.link.link.kind} time=${qualities || '-'}`,
  );
  return ok ? 0 : 1;
}
