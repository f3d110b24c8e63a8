// The cellular month (issue 15): bytes one vehicle sends and receives in 30 days on a flaky link,
// the link dropping every 10 minutes on average, with the reference drive's events on top of the
// 1-minute windows. A month cannot run in a bench's minutes, so the gateway runs at a hundredth
// of the time (a minute is 600 ms; heartbeat, broker time and reconnect waits scaled alike) over
// mutual TLS, counted on the TCP connection by a relay that also cuts it. The same hour runs
// twice, on a steady link and with drops; what a drop costs is the difference, whatever it
// consists of (handshake, CONNECT, broker time, topic names again, a PUBLISH sent twice).
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { referenceDriveRecords } from './rig/drive-records.js';
import { quiet, withCellularRig, type CellularRig } from './rig/cellular-rig.js';
import { SeededRandom } from './rig/seeded-random.js';
import type { GatewayConfig } from '../core/config.js';
import type { GatewayHandle } from '../gateway/gateway.js';
import { recordId, traceIdOf } from '../proto/record-id.js';
import type { VehicleTelemetry } from '../proto/telemetry-codec.js';

const SCALE = 100;
const MINUTE_MS = 60_000 / SCALE;
/** Scaled minutes per run. */
const MINUTES = 60;
/** Drops in the flaky run: one every 5 minutes, twice a month's rate, for a steadier figure per drop. */
const DROPS = 12;
const MONTH_MINUTES = 30 * 1440;
const MONTH_DROPS = MONTH_MINUTES / 10;
/** The gateway restarts once a day (a new TLS session, layouts published again). */
const MONTH_BOOTS = 30;
const IDLE_RECONNECTS = 5;

interface Encoding {
  label: string;
  liveEncoding: 'compact' | 'row';
  tlsResumption: boolean;
  tlsMaxVersion: 'TLSv1.2' | 'TLSv1.3';
}

interface Planned {
  atMs: number;
  template: VehicleTelemetry;
}

/** The drive's records in its order, each window a scaled minute after the last, each event half-way. */
function timeline(drive: readonly VehicleTelemetry[]): Planned[] {
  const plan: Planned[] = [];
  for (let i = 0, minute = 0; minute < MINUTES; i++) {
    const template = drive[i % drive.length] as VehicleTelemetry;
    if (template.priority === 0) plan.push({ atMs: (minute - 0.5) * MINUTE_MS, template });
    else plan.push({ atMs: minute++ * MINUTE_MS, template });
  }
  return plan.filter((p) => p.atMs >= 0);
}

interface RunFigures {
  bytes: number;
  records: number;
  events: number;
  /** Insert to the sink, ms, each record. */
  latencies: number[];
}

class Runner {
  private sequence = 0;

  constructor(
    private readonly rig: CellularRig,
    private readonly gateway: GatewayHandle,
    private readonly run: string,
  ) {}

  /** Inserts `template` as the pipeline would; resolves with the id once the sink has it. */
  insert(template: VehicleTelemetry): { id: string; insertedAt: number } {
    const sequence = ++this.sequence;
    const messageId = recordId(this.run, sequence);
    const record = { ...template, correlationId: this.run, messageId, traceId: traceIdOf(messageId), sequence };
    const insertedAt = performance.now();
    void this.gateway.store.insert(record, Date.now());
    return { id: messageId, insertedAt };
  }

  /** The scaled hour: the timeline's records, the link cut at `dropsAtMs`. Every record must arrive. */
  async hour(plan: readonly Planned[], dropsAtMs: readonly number[]): Promise<RunFigures> {
    const { relay, sink } = this.rig;
    const arrived = new Map<string, number>();
    sink.onRecord = (r) => {
      if (!arrived.has(r.messageId)) arrived.set(r.messageId, performance.now());
    };
    const before = relay.bytes();
    const start = performance.now();
    const sent: { id: string; insertedAt: number }[] = [];
    const drops = dropsAtMs.map((at) => setTimeout(() => relay.dropAll(), at));
    try {
      for (const p of plan) {
        const wait = start + p.atMs - performance.now();
        if (wait > 0) await sleep(wait);
        sent.push(this.insert(p.template));
      }
      await sleep(start + MINUTES * MINUTE_MS - performance.now());
      // Every record reaches the sink: waits for progress, gives up only when none is made.
      let last = -1;
      let stuckSince = performance.now();
      while (arrived.size < sent.length) {
        if (arrived.size !== last) [last, stuckSince] = [arrived.size, performance.now()];
        else if (performance.now() - stuckSince > 30_000)
          throw new Error(`month: ${sent.length - arrived.size} of ${sent.length} records never reached the sink`);
        await sleep(50);
      }
      await quiet(relay);
    } finally {
      drops.forEach(clearTimeout);
      sink.onRecord = () => undefined;
    }
    return {
      bytes: relay.bytes() - before,
      records: plan.filter((p) => p.template.priority !== 0).length,
      events: plan.filter((p) => p.template.priority === 0).length,
      latencies: sent.map((s) => (arrived.get(s.id) as number) - s.insertedAt),
    };
  }

  /** Bytes of a drop while nothing else is going on: the reconnect alone. */
  async idleReconnect(): Promise<number> {
    const { relay } = this.rig;
    const session = this.gateway.session;
    await quiet(relay);
    const before = relay.bytes();
    const connected = session.counters.successes;
    relay.dropAll();
    while (session.counters.successes === connected || !session.isConnected) await sleep(10);
    await quiet(relay);
    return relay.bytes() - before;
  }
}

interface EncodingFigures {
  connect: number;
  layouts: number;
  steady: RunFigures;
  flaky: RunFigures;
  perDrop: number;
  idleReconnect: number;
  handshakes: { full: number; resumed: number };
  month: number;
}

async function measureEncoding(
  rig: CellularRig,
  encoding: Encoding,
  drive: readonly VehicleTelemetry[],
  dropsAtMs: readonly number[],
): Promise<EncodingFigures> {
  const config: GatewayConfig = rig.config(`store-${encoding.liveEncoding}-${encoding.tlsMaxVersion}`);
  config.mqtt.liveEncoding = encoding.liveEncoding;
  if (config.mqtt.tls !== undefined)
    Object.assign(config.mqtt.tls, { sessionResumption: encoding.tlsResumption, maxVersion: encoding.tlsMaxVersion });
  config.mqtt.heartbeatS /= SCALE;
  config.clock.brokerTimeIntervalMs /= SCALE;
  Object.assign(config.mqtt.reconnect, {
    baseMs: config.mqtt.reconnect.baseMs / SCALE,
    capMs: config.mqtt.reconnect.capMs / SCALE,
  });
  const before = rig.relay.bytes();
  const gateway = await rig.start(config);
  await quiet(rig.relay);
  const connect = rig.relay.bytes() - before;
  const runner = new Runner(rig, gateway, randomUUID());
  // The first window and event publish their layouts; the second pair, the same records without.
  const firstWindow = drive.find((r) => r.priority !== 0) as VehicleTelemetry;
  const firstEvent = drive.find((r) => r.priority === 0) as VehicleTelemetry;
  const pair = async (): Promise<number> => {
    const b0 = rig.relay.bytes();
    const ids = [runner.insert(firstWindow).id, runner.insert(firstEvent).id];
    const seen = new Set<string>();
    rig.sink.onRecord = (r) => seen.add(r.messageId);
    while (!ids.every((id) => seen.has(id))) await sleep(10);
    await quiet(rig.relay);
    return rig.relay.bytes() - b0;
  };
  const layouts = (await pair()) - (await pair());
  const plan = timeline(drive);
  const steady = await runner.hour(plan, []);
  const flaky = await runner.hour(plan, dropsAtMs);
  let idle = 0;
  for (let i = 0; i < IDLE_RECONNECTS; i++) idle += await runner.idleReconnect();
  const handshakes = { ...gateway.session.counters.tlsHandshakes };
  await rig.stop(gateway);
  const perDrop = (flaky.bytes - steady.bytes) / dropsAtMs.length;
  const month = (steady.bytes / MINUTES) * MONTH_MINUTES + perDrop * MONTH_DROPS + MONTH_BOOTS * (connect + layouts);
  return { connect, layouts, steady, flaky, perDrop, idleReconnect: idle / IDLE_RECONNECTS, handshakes, month };
}

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

export async function monthSection(): Promise<void> {
  console.log(
    `\nmonth: cellular bytes per vehicle per month, a drop every 10 minutes on average, events included (a ${MINUTES}-minute hour at 1/${SCALE} of the time, twice: steady, then ${DROPS} drops)`,
  );
  const drive = (await referenceDriveRecords(60_000)).records;
  const random = new SeededRandom(15);
  // Drops at random instants, none in the hour's last minute (its records would wait for the next hour).
  const dropsAtMs = Array.from({ length: DROPS }, () => random.float() * (MINUTES - 1) * MINUTE_MS).sort(
    (a, b) => a - b,
  );
  const encodings: Encoding[] = [
    {
      label: 'baseline, same run: row-wise records, full TLS handshakes',
      liveEncoding: 'row',
      tlsResumption: false,
      tlsMaxVersion: 'TLSv1.3',
    },
    {
      label: 'compact records, TLS 1.3 resumption (the defaults)',
      liveEncoding: 'compact',
      tlsResumption: true,
      tlsMaxVersion: 'TLSv1.3',
    },
    {
      label: 'compact records, TLS 1.2 resumption (mqtt.tls.maxVersion: TLSv1.2)',
      liveEncoding: 'compact',
      tlsResumption: true,
      tlsMaxVersion: 'TLSv1.2',
    },
  ];
  const figures = await withCellularRig('v2c-bench-month-', async (rig) => {
    const out: EncodingFigures[] = [];
    for (const e of encodings) out.push(await measureEncoding(rig, e, drive, dropsAtMs));
    return out;
  });
  const kb = (b: number): string => `${(b / 1024).toFixed(1).padStart(9)} KiB`;
  const mb = (b: number): string => `${(b / 1e6).toFixed(2)} MB`;
  figures.forEach((f, i) => {
    const e = encodings[i] as Encoding;
    const line = (label: string, bytes: number): void => console.log(`    ${label.padEnd(92)} ${kb(bytes)}`);
    console.log(`  ${e.label}`);
    const records = `${f.steady.records} windows + ${f.steady.events} events`;
    line(
      `steady hour: ${records}, heartbeats, broker time (${(f.steady.bytes / MINUTES).toFixed(0)} B a minute) × ${MONTH_MINUTES.toLocaleString('en-US')} minutes`,
      (f.steady.bytes / MINUTES) * MONTH_MINUTES,
    );
    line(
      `${MONTH_DROPS.toLocaleString('en-US')} drops at ${f.perDrop.toFixed(0)} B each (the flaky hour's ${DROPS} drops: ${f.flaky.bytes - f.steady.bytes} B more; idle reconnect ${f.idleReconnect.toFixed(0)} B)`,
      f.perDrop * MONTH_DROPS,
    );
    line(
      `${MONTH_BOOTS} boots: connection ${f.connect} B, layouts ${f.layouts} B (published once a run and once a day)`,
      MONTH_BOOTS * (f.connect + f.layouts),
    );
    line(`total per vehicle per month = ${mb(f.month)}`, f.month);
    console.log(
      `    steady hour, insert to sink: P50 ${percentile(f.steady.latencies, 50).toFixed(0)} ms, P99 ${percentile(f.steady.latencies, 99).toFixed(0)} ms; TLS handshakes: ${f.handshakes.full} full, ${f.handshakes.resumed} resumed`,
    );
  });
  const [base, ...now] = figures as [EncodingFigures, ...EncodingFigures[]];
  for (const [i, f] of now.entries())
    console.log(
      `  ${(encodings[i + 1] as Encoding).label}: ${mb(f.month)} a month vs ${mb(base.month)} (${((100 * f.month) / base.month).toFixed(0)} %); a drop ${f.perDrop.toFixed(0)} B vs ${base.perDrop.toFixed(0)} B; an idle reconnect ${f.idleReconnect.toFixed(0)} B vs ${base.idleReconnect.toFixed(0)} B`,
    );
}
