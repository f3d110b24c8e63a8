// The sync engine's test rig: a real Mosquitto, the fault proxy in front of it, the gateway (the
// real composition root, fed by an empty trace so records come only from the test), and the
// reference sink subscribed straight to the broker.
import type { Test } from 'tap';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLocalBroker, type LocalBroker, type BrokerOptions } from '../bench/rig/local-broker.js';
import { SampleRecords } from '../bench/rig/sample-records.js';
import { systemClock, type Clock } from '../core/clock.js';
import { referenceVehicleConfig, type GatewayConfig } from '../core/config.js';
import { startGateway, type GatewayDevices, type GatewayHandle } from '../gateway/gateway.js';
import { TelemetrySink } from '../receiver/telemetry-sink.js';
import { FaultProxy } from '../bench/rig/fault-proxy.js';
import { insertSamples, waitUntil } from './helpers.js';

export interface SyncRig {
  broker: LocalBroker;
  proxy: FaultProxy;
  sink: TelemetrySink;
  gateway: GatewayHandle;
  config: GatewayConfig;
  dir: string;
  logs: string[];
  /** Stores records `from`..`from+n-1` with the priority `priority(seq)` gives. */
  insert(from: number, n: number, priority?: (seq: number) => number): Promise<string[]>;
  waitFor(what: string, predicate: () => boolean | Promise<boolean>, timeoutMs?: number): Promise<void>;
  /** Ids the sink has seen (valid records). */
  seen: Set<string>;
}

export interface RigOptions {
  broker?: BrokerOptions;
  tune?: (config: GatewayConfig) => void;
  /** Called before the gateway starts (set proxy rewrites for its first connection here). */
  beforeStart?: (proxy: FaultProxy) => void;
  /** Bench link monitor, ignition and LED instead of the machine's. */
  devices?: GatewayDevices;
  /** The gateway's clock (a skewed one for the clock-correction tests). */
  clock?: Clock;
  /** Sees each gateway log line as it is written. */
  onLog?: (line: string) => void;
}

/** Settings that make every timer of the engine run in milliseconds instead of seconds. */
export function fastTimers(config: GatewayConfig): void {
  Object.assign(config.mqtt, {
    keepaliveS: 10,
    connectTimeoutMs: 600,
    pubackTimeoutMs: 400,
    resends: 3,
    retryDelayMs: 300,
    heartbeatS: 0.5,
    heartbeatTimeoutMs: 600,
    reconnect: {
      baseMs: 100,
      capMs: 1000,
      jitter: 0.2,
      offlineAfterFailures: 5,
      offlineRetryMs: 1500,
      quotaWaitMs: 500,
      quotaJitterMs: 200,
    },
  });
  Object.assign(config.batch, { minRecords: 25, maxRecords: 50, maxAgeMs: 200, quotaBackoffMs: 300 });
  // The FMEA faults act on every PUBLISH/PUBACK; time requests would take some of them. The clock
  // tests turn broker time back on.
  Object.assign(config.clock, { brokerTime: false, ntp: false });
}

export async function syncRig(t: Test, options: RigOptions = {}): Promise<SyncRig> {
  const dir = mkdtempSync(join(tmpdir(), 'v2c-sync-'));
  const broker = await startLocalBroker({
    ...options.broker,
    extraConfig: ['max_queued_messages 100000', ...(options.broker?.extraConfig ?? [])],
  });
  const proxy = await FaultProxy.start(broker.port);
  const sink = await TelemetrySink.start({
    url: broker.url,
    clientId: `sink-${process.pid}-${Date.now()}`,
    deadLetterDir: join(dir, 'sink-dead-letter'),
    dedupWindowMs: 3_600_000,
  });
  const seen = new Set<string>();
  sink.onRecord = (r) => seen.add(r.messageId);
  const emptyTrace = join(dir, 'empty.log');
  writeFileSync(emptyTrace, '');
  const config = referenceVehicleConfig({ mqttUrl: proxy.url, trace: emptyTrace, storeDir: join(dir, 'store') });
  fastTimers(config);
  options.tune?.(config);
  options.beforeStart?.(proxy);
  const logs: string[] = [];
  const gateway = await startGateway(
    config,
    options.clock ?? systemClock,
    (m) => {
      logs.push(m);
      options.onLog?.(m);
    },
    options.devices,
  );
  t.teardown(async () => {
    await gateway.stop(0).catch(() => undefined);
    await sink.close().catch(() => undefined);
    await proxy.close();
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const samples = new SampleRecords(7);
  return {
    broker,
    proxy,
    sink,
    gateway,
    config,
    dir,
    logs,
    seen,
    insert: (from, n, priority = () => 1) => insertSamples(gateway.store, samples, from, n, priority),
    // Deliveries count as progress (records at the sink, PUBACKs at the gateway); retries do not.
    waitFor: (what, predicate, timeoutMs = 20_000) =>
      waitUntil(what, predicate, timeoutMs, logs, () => sink.counts.received + gateway.sender.counters.acked),
  };
}

/** Why the sink refused what it refused: reason and detail of each file in its dead-letter directory. */
export function sinkRejections(rig: SyncRig): string[] {
  const dir = join(rig.dir, 'sink-dead-letter');
  if (!existsSync(dir)) return [];
  return readdirSync(dir).map((f) => {
    const letter = JSON.parse(readFileSync(join(dir, f), 'utf8')) as { reason: string; detail: string; topic: string };
    return `${letter.reason} on ${letter.topic}: ${letter.detail}`;
  });
}

/** Every id in `ids` seen by the sink (the "nothing lost" check). */
export function missing(rig: SyncRig, ids: readonly string[]): string[] {
  return ids.filter((id) => !rig.seen.has(id));
}
