import type { ResolutionTable } from '../proto/record-columns.js';
import type { VehicleTelemetry } from '../proto/telemetry-codec.js';
import { setTimeout as sleep } from 'node:timers/promises';
import type { SampleRecords } from '../bench/rig/sample-records.js';
import type { TelemetryStore } from '../sync/store/telemetry-store.js';
import type { CanFrame } from '../drivers/can-frame.js';
import type { MqttSession } from '../sync/session/mqtt-session.js';

/** A frame from hex data, for table-driven tests. */
export function frame(id: number, hex: string, opts: Partial<CanFrame> = {}): CanFrame {
  const data = Uint8Array.from(Buffer.from(hex.replace(/\s+/g, ''), 'hex'));
  return {
    bus: null,
    id,
    extended: false,
    rtr: false,
    fd: false,
    brs: false,
    error: false,
    data,
    tsMono: 0,
    tsWall: null,
    ...opts,
  };
}

/** The fields of a frame worth comparing in a table (data as upper-case hex). */
export function frameView(f: CanFrame): Record<string, unknown> {
  return {
    id: f.id,
    extended: f.extended,
    rtr: f.rtr,
    fd: f.fd,
    brs: f.brs,
    error: f.error,
    data: Buffer.from(f.data).toString('hex').toUpperCase(),
    bus: f.bus,
    tsWall: f.tsWall,
  };
}

/**
 * Polls `predicate` every 20 ms; fails naming what it waited for and the last log lines once
 * `timeoutMs` pass without `progress()` changing (without it, after `timeoutMs`): on a slow board
 * a long wait that keeps moving is not a failure, a stall is.
 */
export async function waitUntil(
  what: string,
  predicate: () => boolean | Promise<boolean>,
  timeoutMs: number,
  logs: readonly string[] = [],
  progress: () => number = () => 0,
): Promise<void> {
  let deadline = Date.now() + timeoutMs;
  let last = progress();
  while (!(await predicate())) {
    const now = progress();
    if (now !== last) {
      last = now;
      deadline = Date.now() + timeoutMs;
    }
    if (Date.now() > deadline)
      throw new Error(
        `no progress for ${timeoutMs} ms waiting for ${what}; gateway log:\n  ${logs.slice(-15).join('\n  ')}`,
      );
    await sleep(20);
  }
}

/** Stores sample records `from`..`from+n-1` with the priority `priority(seq)` gives; the ids stored. */
export async function insertSamples(
  store: TelemetryStore,
  samples: SampleRecords,
  from: number,
  n: number,
  priority: (seq: number) => number,
): Promise<string[]> {
  const ids: string[] = [];
  for (let seq = from; seq < from + n; seq++) {
    const record = samples.record(seq, priority(seq));
    if (await store.insert(record, Date.now())) ids.push(record.messageId);
  }
  return ids;
}

/** Every scalar leaf of a record by its dotted path (what a round trip must keep). */
function leaves(value: unknown, prefix = '', out = new Map<string, unknown>()): Map<string, unknown> {
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Uint8Array)) {
    for (const [k, v] of Object.entries(value)) leaves(v, prefix === '' ? k : `${prefix}.${k}`, out);
  } else out.set(prefix, Array.isArray(value) ? JSON.stringify(value) : value);
  return out;
}

/** Differences between two records beyond each numeric field's resolution; `ignore` names paths left out. */
export function recordDifferences(
  a: VehicleTelemetry,
  b: VehicleTelemetry,
  resolution: ResolutionTable,
  ignore: ReadonlySet<string> = new Set(),
): string[] {
  const [la, lb] = [leaves(a), leaves(b)];
  const problems: string[] = [];
  for (const path of new Set([...la.keys(), ...lb.keys()])) {
    if (ignore.has(path)) continue;
    const [x, y] = [la.get(path), lb.get(path)];
    if (typeof x === 'number' && typeof y === 'number') {
      const step = resolution(path)?.scale ?? 0;
      if (Math.abs(x - y) > step / 2 + 1e-9 * Math.max(1, Math.abs(x))) problems.push(`${path}: ${x} → ${y}`);
    } else if (x !== y) problems.push(`${path}: ${String(x)} → ${String(y)}`);
  }
  return problems;
}

/** An MQTT session's settings for tests: short timeouts, no session kept at the broker. */
export function sessionSettings(url: string, clientId: string): ConstructorParameters<typeof MqttSession>[0] {
  return {
    url,
    clientId,
    keepaliveS: 60,
    sessionExpiryS: 0,
    receiveMaximum: 100,
    maximumPacketSize: 131072,
    maxOutgoingPacketBytes: 131072,
    connectTimeoutMs: 2000,
    pubackTimeoutMs: 1000,
    vehicleModel: 'test',
    firmwareVersion: 'test',
    reconnect: {
      baseMs: 100,
      capMs: 1000,
      jitter: 0.2,
      offlineAfterFailures: 5,
      offlineRetryMs: 60_000,
      quotaWaitMs: 500,
      quotaJitterMs: 200,
    },
  };
}
