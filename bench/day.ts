// The cellular day: bytes one vehicle sends and receives per day at the default configuration
// (1-minute windows sent live as single records, heartbeat after 30 s without a PUBACK, broker time hourly), over
// mutual TLS, counted on the TCP connection by a relay in front of Mosquitto. A day of heartbeats
// cannot run in a bench's minutes, so each part is measured and the day is their sum.
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { referenceDriveRecords } from './rig/drive-records.js';
import { quiet, withCellularRig, type CellularRig } from './rig/cellular-rig.js';
import type { GatewayConfig } from '../core/config.js';
import type { GatewayHandle } from '../gateway/gateway.js';
import { recordId, traceIdOf } from '../proto/record-id.js';
import type { VehicleTelemetry } from '../proto/telemetry-codec.js';

/**
 * A gateway started on `config`: the bytes of its connection (TLS, CONNECT, SUBSCRIBEs, first time
 * exchange) and of 1,440 one-minute windows of the reference drive, each sent live as a gateway
 * does once a minute. The gateway is left running.
 */
async function liveDay(
  rig: CellularRig,
  config: GatewayConfig,
  drive: readonly VehicleTelemetry[],
): Promise<{ gateway: GatewayHandle; connectBytes: number; recordBytes: number }> {
  const { relay } = rig;
  const start = relay.bytes();
  const gateway = await rig.start(config);
  await quiet(relay);
  const connectBytes = relay.bytes() - start;
  const run = randomUUID();
  const before = relay.bytes();
  for (let i = 0; i < 1440; i++) {
    const template = drive[i % drive.length] as VehicleTelemetry;
    // Ids as the pipeline makes them: derived from the run and the sequence.
    const messageId = recordId(run, i + 1);
    const record = { ...template, correlationId: run, messageId, traceId: traceIdOf(messageId), sequence: i + 1 };
    await gateway.store.insert(record, Date.now());
    while ((await gateway.store.count()) > 0) await sleep(1);
  }
  await quiet(relay);
  return { gateway, connectBytes, recordBytes: relay.bytes() - before };
}

export async function daySection(): Promise<void> {
  console.log(
    '\nday: cellular bytes per vehicle per day at the default configuration (mutual TLS, counted on the TCP connection)',
  );
  const drive = (await referenceDriveRecords(60_000)).records.filter((r) => r.priority === 1);
  if (drive.length === 0) throw new Error('no windows in the reference drive');
  await withCellularRig('v2c-bench-day-', (rig) => measureDay(rig, drive));
}

async function measureDay(rig: CellularRig, drive: readonly VehicleTelemetry[]): Promise<void> {
  const { relay } = rig;
  const configFor = (liveEncoding: 'compact' | 'row', store: string): GatewayConfig => {
    const c = rig.config(store);
    c.mqtt.liveEncoding = liveEncoding;
    // The defaults, except a heartbeat long enough not to fall into the record measurement.
    c.mqtt.heartbeatS = 3600;
    return c;
  };
  // The baseline first, from the same run: row-wise protobuf records, as before issue 15.
  const rowWise = await liveDay(rig, configFor('row', 'store-row'), drive);
  await rig.stop(rowWise.gateway);
  const config = configFor('compact', 'store');
  const { gateway, connectBytes, recordBytes } = await liveDay(rig, config, drive);

  // Heartbeats and broker-time exchanges, a few of each.
  const hb0 = relay.bytes();
  const acked0 = gateway.heartbeat.counters.acked;
  gateway.heartbeat.setInterval(100);
  while (gateway.heartbeat.counters.acked < acked0 + 20) await sleep(20);
  gateway.heartbeat.setInterval(3_600_000);
  await quiet(relay);
  const perHeartbeat = (relay.bytes() - hb0) / (gateway.heartbeat.counters.acked - acked0);
  // How many heartbeats a day of live traffic leaves, at a hundredth of the time: a record every
  // 600 ms (a minute), the heartbeat every 300 ms (30 s). One goes out only when nothing else was
  // acknowledged for an interval (issue 15); before, every interval.
  const SCALED_MINUTES = 60;
  gateway.heartbeat.setInterval(300);
  const beats0 = gateway.heartbeat.counters.sent;
  for (let i = 0; i < SCALED_MINUTES; i++) {
    const template = drive[i % drive.length] as VehicleTelemetry;
    const messageId = recordId(template.correlationId, 5000 + i);
    const record = { ...template, messageId, traceId: traceIdOf(messageId), sequence: 5000 + i };
    await gateway.store.insert(record, Date.now());
    await sleep(600);
  }
  const beatsPerMinute = (gateway.heartbeat.counters.sent - beats0) / SCALED_MINUTES;
  gateway.heartbeat.setInterval(3_600_000);
  // The heartbeat as it was before issue 15 (the baseline): JSON status, content type.
  const old0 = relay.bytes();
  for (let i = 0; i < 20; i++)
    await gateway.session.publish(
      `v2c/v1/${config.vehicle.region}/${config.vehicle.id}/status/heartbeat`,
      Buffer.from(JSON.stringify({ time_ms: Date.now(), state: 'online', acked: 1440 + i })),
      { contentType: 'application/json', userProperties: {} },
    );
  await quiet(relay);
  const perOldHeartbeat = (relay.bytes() - old0) / 20;
  // Broker time: measured the same way through the session's own request.
  const t0 = relay.bytes();
  for (let i = 0; i < 5; i++) {
    await gateway.session.publish(
      `v2c/v1/${config.vehicle.region}/${config.vehicle.id}/time/request`,
      Buffer.from('{}'),
      {
        contentType: 'application/json',
        userProperties: {},
        responseTopic: `v2c/v1/${config.vehicle.region}/${config.vehicle.id}/time/response`,
        correlationData: Buffer.from([i]),
      },
    );
  }
  await quiet(relay);
  const perTime = (relay.bytes() - t0) / 5;
  await rig.stop(gateway);

  const heartbeatsPerDay = Math.round(1440 * beatsPerMinute);
  const day = {
    records: recordBytes,
    heartbeats: heartbeatsPerDay * perHeartbeat,
    time: 24 * perTime,
    connect: connectBytes,
  };
  const total = day.records + day.heartbeats + day.time + day.connect;
  const kb = (b: number): string => `${(b / 1024).toFixed(1).padStart(8)} KiB`;
  const line = (label: string, bytes: number): void => console.log(`    ${label.padEnd(86)} ${kb(bytes)}`);
  line(
    `1,440 P1 records, compact (measured: ${(recordBytes / 1440).toFixed(0)} B each with PUBACK and TLS)`,
    day.records,
  );
  line(
    `${heartbeatsPerDay.toLocaleString('en-US')} heartbeats (30 s with no other PUBACK, empty; ${perHeartbeat.toFixed(0)} B each measured)`,
    day.heartbeats,
  );
  line(`24 broker-time exchanges (hourly; ${perTime.toFixed(0)} B each measured)`, day.time);
  line('1 connection: TLS handshake, CONNECT, SUBSCRIBEs, first time exchange (measured)', day.connect);
  line(`total per vehicle per day = ${(total / 1e6).toFixed(2)} MB (events and P2 on top)`, total);
  const baseline = rowWise.recordBytes + 2880 * perOldHeartbeat + day.time + rowWise.connectBytes;
  console.log('  baseline, same run: records row-wise, a heartbeat every 30 s whatever else went (as before issue 15)');
  line(`1,440 P1 records, row-wise (measured: ${(rowWise.recordBytes / 1440).toFixed(0)} B each)`, rowWise.recordBytes);
  line(`2,880 heartbeats with a JSON status (${perOldHeartbeat.toFixed(0)} B each)`, 2880 * perOldHeartbeat);
  line(`total = ${(baseline / 1e6).toFixed(2)} MB; now ${((100 * total) / baseline).toFixed(0)} % of it`, baseline);
}
