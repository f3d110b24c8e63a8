// `npm run demo`: the recorded drive through a simulated USB adapter (socat pty) into the gateway
// and a local Mosquitto, watched by the reference sink that verifies and counts what arrives.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openPtyPair } from './rig/pty-pair.js';
import { spawnSimulator, waitUntilSteady } from './rig/simulator-process.js';
import { startLocalBroker } from './rig/local-broker.js';
import { referenceVehicleConfig } from '../core/config.js';
import { startGateway } from '../gateway/gateway.js';
import { systemClock } from '../core/clock.js';
import { RecordKind, TimeQuality, type VehicleTelemetry } from '../proto/telemetry-codec.js';
import { describeLink } from '../sync/link/link-controller.js';
import { sinkSummary, TelemetrySink } from '../receiver/telemetry-sink.js';
import { benchBrokerTls, benchCloudTls, createDevPki } from '../provisioning/dev-pki.js';

const DRIVE_SECONDS = 630;

export interface DemoOptions {
  speed: number;
}

function describe(r: VehicleTelemetry): string {
  const fmt = (v: number | undefined, digits: number, unit: string): string =>
    v === undefined ? '-' : `${v.toFixed(digits)}${unit === '' ? '' : ` ${unit}`}`;
  const when = new Date(r.deviceTimeMs).toISOString().slice(11, 19);
  if (r.kind === RecordKind.Event) return `  ${when} EVENT ${r.event?.rule}: ${r.event?.detail}`;
  return (
    `  ${when} speed ${fmt(r.speedKmh, 1, 'km/h')}, rpm ${fmt(r.engineRpm, 0, '')}, gear ${r.gear ?? '-'}, coolant max ${fmt(r.coolantTempC, 0, 'degC')}, ` +
    `12V ${fmt(r.batteryVoltageV, 2, 'V')}, fuel ${fmt(r.fuelLevelPct, 1, '%')}, odo ${fmt(r.odometerKm, 1, 'km')}, DTCs [${r.diagnostics?.dtcs.join(',') ?? ''}]`
  );
}

export async function runDemo(options: DemoOptions): Promise<number> {
  const log = (m: string): void => {
    process.stderr.write(`  [gateway] ${m}\n`);
  };
  const speed = options.speed > 0 ? options.speed : 12;
  const windowMs = Math.max(1000, Math.round(60_000 / speed));
  console.log(
    `v2c-gateway demo: ${DRIVE_SECONDS} s reference drive at ${speed}x through a simulated USB SLCAN adapter`,
  );
  // A bench PKI made for this run: the broker requires client certificates, like the fleet's.
  const pkiDir = mkdtempSync(join(tmpdir(), 'v2c-demo-pki-'));
  const pki = await createDevPki(pkiDir);
  const broker = await startLocalBroker({ tls: benchBrokerTls(pki) });
  const pty = await openPtyPair();
  console.log(
    `  broker: mosquitto on ${broker.url} (mutual TLS, bench PKI in ${pkiDir}); adapter: ${pty.gatewayEnd}; window ${windowMs} ms (= 60 s of drive)`,
  );

  const received = new Map<string, VehicleTelemetry>();
  const sinkDir = mkdtempSync(join(tmpdir(), 'v2c-demo-sink-'));
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
  sink.onRecord = (r) => {
    received.set(r.messageId, r);
  };

  const simulator = await spawnSimulator(pty.adapterEnd, speed, systemClock);
  // A fresh database, so the figures below are this run's alone.
  const storeDir = mkdtempSync(join(tmpdir(), 'v2c-demo-'));
  const config = referenceVehicleConfig({
    mqttUrl: broker.url,
    port: pty.gatewayEnd,
    windowMs,
    storeDir,
    tls: { ca: pki.ca.cert, ...pki.devices.valid },
  });
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
  await sink.close();
  rmSync(sinkDir, { recursive: true, force: true });
  await pty.close();
  await broker.stop();
  rmSync(storeDir, { recursive: true, force: true });
  rmSync(pkiDir, { recursive: true, force: true });

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
  console.log(
    `  subscriber: ${received.size} records decoded (${windows.length} windows, ${events.length} events); ${sinkSummary(sink.counts)}`,
  );
  console.log('  first, middle and last windows:');
  for (const r of [windows[0], windows[Math.floor(windows.length / 2)], windows[windows.length - 1]])
    if (r !== undefined) console.log(describe(r));
  console.log('  events:');
  for (const r of events) console.log(describe(r));
  const ok =
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
