// The composition root (DESIGN §1): builds each stage from the config, wires them, owns the lifecycle.
import { readFileSync } from 'node:fs';
import { concatMap, Subject, takeUntil, type Observable } from 'rxjs';
import type { CanFrame, MalformedLine } from '../drivers/can-frame.js';
import { DbcDecoder } from '../drivers/dbc/decoder.js';
import { DbcSyntaxError } from '../drivers/dbc/model.js';
import { parseDbc } from '../drivers/dbc/parser.js';
import { SlcanSerialSource, type SlcanSourceCounters } from '../drivers/slcan-serial-source.js';
import { traceFrames } from '../drivers/trace-source.js';
import { MqttTelemetryTransport } from '../sync/mqtt-transport.js';
import { OutboxSender } from '../sync/outbox-sender.js';
import { TelemetryStore } from '../sync/telemetry-store.js';
import type { Clock } from './clock.js';
import type { GatewayConfig } from './config.js';
import { GatewayMetrics } from './metrics.js';
import { newPipelineCounters, telemetryPipeline, type PipelineCounters } from './telemetry-pipeline.js';

export type Log = (msg: string) => void;

export interface GatewayHandle {
  pipeline: PipelineCounters;
  serial: SlcanSourceCounters | null;
  /** Records written to the store. */
  stored: () => number;
  sender: OutboxSender;
  transport: MqttTelemetryTransport;
  store: TelemetryStore;
  metrics: GatewayMetrics;
  metricsPort: number | null;
  /** Resolves when the frame source has ended and every record it produced is stored. */
  sourceDone: Promise<void>;
  /** Stops capture, flushes the open window, waits up to `drainTimeoutMs` for PUBACKs, closes. */
  stop(drainTimeoutMs: number): Promise<{ drained: boolean; pending: number }>;
}

/** A DBC that cannot be read, with the file named. */
export class DbcLoadError extends Error {
  readonly code = 'DBC_LOAD';
}

export function loadDecoder(path: string): DbcDecoder {
  let text: string;
  try {
    text = readFileSync(path, 'latin1');
  } catch (err) {
    throw new DbcLoadError(`cannot read DBC ${path}: ${(err as Error).message}`);
  }
  try {
    return new DbcDecoder(parseDbc(text, path));
  } catch (err) {
    if (err instanceof DbcSyntaxError) throw new DbcLoadError(err.message);
    throw err;
  }
}

export function readBootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'unknown-boot';
  }
}

export function telemetryTopic(config: GatewayConfig): string {
  return `v2c/v1/${config.vehicle.region}/${config.vehicle.id}/telemetry/vehicle`;
}

export async function startGateway(config: GatewayConfig, clock: Clock, log: Log): Promise<GatewayHandle> {
  const decoder = loadDecoder(config.dbc);
  for (const warning of decoder.db.warnings) log(`dbc: ${warning}`);
  const store = await TelemetryStore.open({ kind: config.store.storage, ...config.store }, log);
  const counters = newPipelineCounters();
  let stored = 0;

  let serial: SlcanSerialSource | null = null;
  let frames: Observable<CanFrame | MalformedLine>;
  if (config.can.source === 'slcan') {
    serial = new SlcanSerialSource({
      path: config.can.port as string, bitrate: config.can.bitrate, baudRate: config.can.baudRate, bus: config.can.bus,
      watchdogMs: config.can.watchdogMs, reopenDelaysMs: config.can.reopenDelaysMs,
    }, clock);
    serial.events.subscribe((e) => log(e.kind === 'open' ? `can: adapter open on ${config.can.port}` : e.kind === 'closed' ? `can: adapter closed: ${e.reason}` : `can: reopening in ${e.delayMs} ms`));
    frames = serial.frames;
  } else {
    frames = traceFrames(config.can.file as string, config.can.source === 'candump' ? 'candump' : 'slcan', config.can.speed, clock);
  }

  const transport = new MqttTelemetryTransport({
    url: config.mqtt.url, clientId: config.mqtt.clientId ?? config.vehicle.id, keepaliveS: config.mqtt.keepaliveS,
    sessionExpiryS: config.mqtt.sessionExpiryS, receiveMaximum: config.mqtt.receiveMaximum, maximumPacketSize: config.mqtt.maximumPacketSize,
    connectTimeoutMs: config.mqtt.connectTimeoutMs, reconnectMs: config.mqtt.reconnectMs, vehicleModel: config.vehicle.model, firmwareVersion: config.firmwareVersion,
  }, log);
  const sender = new OutboxSender(store, transport, { topic: telemetryTopic(config), inflight: config.mqtt.inflight, retryDelayMs: config.mqtt.reconnectMs }, clock, log);

  const metrics = new GatewayMetrics();
  registerMetrics(metrics, config, counters, serial?.counters ?? null, sender, transport, store, () => stored);
  sender.onAck = (s) => metrics.publishLatency.observe({ topic: 'individual' }, s);
  const metricsPort = config.metrics.port > 0 ? await metrics.listen(config.metrics.host, config.metrics.port) : null;
  if (metricsPort !== null) log(`metrics: http://${config.metrics.host}:${metricsPort}/metrics`);

  const firstSequence = (await store.maxSequence()) + 1;
  // Ends a trace replay on stop; the serial source ends with the adapter's own stop.
  const stopping = new Subject<void>();
  const sourceDone = new Promise<void>((resolve, reject) => {
    telemetryPipeline(frames.pipe(takeUntil(stopping)), { config, decoder, clock, counters, bootId: readBootId(), firstSequence, live: serial !== null })
      .pipe(concatMap(async (record) => {
        await store.insert(record, clock.wallMs());
        stored++;
      }))
      .subscribe({ error: reject, complete: resolve });
  });
  sender.start();
  serial?.start();

  return {
    pipeline: counters, serial: serial?.counters ?? null, stored: () => stored, sender, transport, store, metrics, metricsPort, sourceDone,
    async stop(drainTimeoutMs) {
      await serial?.stop();
      stopping.next();
      await sourceDone;
      const drained = await sender.drain(drainTimeoutMs);
      const pending = await store.count();
      sender.stop();
      await transport.close();
      await metrics.close();
      await store.close();
      return { drained, pending };
    },
  };
}

function registerMetrics(m: GatewayMetrics, config: GatewayConfig, p: PipelineCounters, serial: SlcanSourceCounters | null, sender: OutboxSender,
  transport: MqttTelemetryTransport, store: TelemetryStore, stored: () => number): void {
  const source = config.can.source;
  m.counter('v2c_can_frames_total', 'CAN frames received', ['source'], () => [[{ source }, p.frames]]);
  m.counter('v2c_can_malformed_lines_total', 'Input lines that were not valid frames', ['source'], () => [[{ source }, p.malformed]]);
  m.counter('v2c_can_decoded_frames_total', 'Frames decoded with the DBC', [], () => [[{}, p.decoded]]);
  m.counter('v2c_can_decode_errors_total', 'Frames the DBC could not decode', ['reason'], () => Object.entries(p.decodeErrors).map(([reason, n]) => [{ reason }, n]));
  if (serial !== null) {
    m.counter('v2c_serial_reopens_total', 'Adapter reopen attempts', ['cause'], () => [[{ cause: 'watchdog' }, serial.watchdogReopens], [{ cause: 'error' }, serial.reopens - serial.watchdogReopens]]);
    m.counter('v2c_serial_adapter_errors_total', 'BEL error replies from the adapter', [], () => [[{}, serial.adapterErrors]]);
  }
  m.counter('v2c_pipeline_records_total', 'Telemetry records built', ['kind'], () => [[{ kind: 'window' }, p.windows], [{ kind: 'event' }, p.events]]);
  m.counter('v2c_store_records_total', 'Records written to the local store', [], () => [[{}, stored()]]);
  m.counter('v2c_telemetry_publish_total', 'Telemetry publishes by outcome', ['region', 'topic', 'status'], () => [
    [{ region: config.vehicle.region, topic: 'individual', status: 'success' }, sender.counters.acked],
    [{ region: config.vehicle.region, topic: 'individual', status: 'failure' }, sender.counters.failed],
  ]);
  m.counter('v2c_connection_attempts_total', 'MQTT connection attempts', ['region', 'vehicle_model', 'result'], () => [
    [{ region: config.vehicle.region, vehicle_model: config.vehicle.model, result: 'success' }, transport.counters.successes],
    [{ region: config.vehicle.region, vehicle_model: config.vehicle.model, result: 'failure' }, Math.max(0, transport.counters.attempts - transport.counters.successes)],
  ]);
  m.gauge('v2c_mqtt_connected', '1 while the MQTT session is up', [], () => [[{}, transport.isConnected ? 1 : 0]]);
  m.gauge('v2c_local_buffer_depth', 'Records stored and not yet acknowledged', ['vehicle_id'], async () => [[{ vehicle_id: config.vehicle.id }, await store.count()]]);
  m.counter('v2c_dropped_total', 'Records dropped before delivery', ['priority', 'reason'], () =>
    [...store.counters.dropped].map(([key, n]) => { const [priority = '', reason = ''] = key.split('|'); return [{ priority, reason }, n]; }));
  m.counter('v2c_store_write_errors_total', 'Records the store could not write', [], () => [[{}, store.counters.writeErrors]]);
  m.gauge('v2c_store_degraded', '1 while records are kept in memory because the database cannot be used', ['reason'], () => [[{ reason: store.counters.degraded ?? 'none' }, store.counters.degraded === null ? 0 : 1]]);
  m.gauge('v2c_store_integrity', '1 for the state the database file check is in', ['state'], () => [[{ state: store.counters.integrity }, 1]]);
  m.gauge('v2c_store_used_bytes', 'Bytes of live pages in the local database', [], () => [[{}, store.usedBytes() ?? 0]]);
}
