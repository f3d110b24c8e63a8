// Live records end to end (issue 15): compact by default through Mosquitto, with the layout
// retained on the broker; row-wise when configured or when the broker keeps no retained
// messages; the sink decodes both and gets every field back at its resolution.
import t, { type Test } from 'tap';
import mqtt from 'mqtt';
import type { Packet } from 'mqtt-packet';
import { recordDifferences } from './helpers.js';
import { syncRig, type SyncRig } from './sync-rig.js';
import { SampleRecords } from '../bench/rig/sample-records.js';
import { loadDecoder } from '../gateway/gateway.js';
import { resolutionTable } from '../gateway/wire-resolution.js';
import { CompactEncoder } from '../proto/compact-record.js';
import { encodeLayout, type VehicleTelemetry } from '../proto/telemetry-codec.js';
import type { GatewayConfig } from '../core/config.js';

/** Set by the gateway's clock correction as a record leaves, not carried from the store. */
const CORRECTED = new Set(['correctedTimeMs', 'timeQuality', 'timeErrorMs', 'timeOutsideWindow']);
const priorities = (seq: number): number => (seq % 3 === 0 ? 0 : 1);

/** A rig whose live PUBLISH topics are recorded, and the records the sink accepted. */
async function liveRig(
  t: Test,
  tune: (c: GatewayConfig) => void = () => undefined,
  brokerConfig: string[] = [],
): Promise<{ rig: SyncRig; topics: string[]; accepted: Map<string, VehicleTelemetry> }> {
  const topics: string[] = [];
  const rig = await syncRig(t, {
    tune,
    broker: { extraConfig: brokerConfig },
    beforeStart: (proxy) => {
      proxy.toServer = (p: Packet, connection: number) => {
        if (p.cmd !== 'publish') return p;
        const topic = proxy.topicOf(p, connection);
        if (topic.includes('/telemetry/')) topics.push(topic);
        return p;
      };
    },
  });
  const accepted = new Map<string, VehicleTelemetry>();
  const seen = rig.sink.onRecord;
  rig.sink.onRecord = (r, duplicate) => {
    seen(r, duplicate);
    accepted.set(r.messageId, r);
  };
  await rig.waitFor('online', () => rig.gateway.session.isConnected);
  return { rig, topics, accepted };
}

/** Sends windows and events live and checks each arrived whole, at its resolution. */
async function sendAndCheck(
  t: Test,
  { rig, accepted }: { rig: SyncRig; accepted: Map<string, VehicleTelemetry> },
): Promise<void> {
  const ids = await rig.insert(1, 9, priorities);
  await rig.waitFor('all nine at the sink', () => ids.every((id) => accepted.has(id)));
  // The same seed and calls as the rig's own samples: the records as stored.
  const samples = new SampleRecords(7);
  const resolution = resolutionTable(loadDecoder(rig.config.dbc).db, rig.config.pipeline.fields);
  for (let seq = 1; seq <= 9; seq++) {
    const stored = samples.record(seq, priorities(seq));
    const got = accepted.get(stored.messageId) as VehicleTelemetry;
    t.same(recordDifferences(stored, got, resolution, CORRECTED), [], `record ${seq} (P${priorities(seq)})`);
  }
  t.equal(rig.sink.counts.rejected, 0);
}

t.test(
  'compact by default: layouts first and retained, then values only; every field back at its resolution',
  async (t) => {
    const live = await liveRig(t);
    await sendAndCheck(t, live);
    const layouts = live.topics.filter((topic) => topic.includes('/telemetry/layout/'));
    t.equal(new Set(layouts).size, 2, 'one layout for the windows, one for the events');
    t.equal(layouts.length, 2, 'each published once');
    const compact = live.topics.filter((topic) => topic.endsWith('/telemetry/compact')).length;
    t.ok(compact >= 3, `the events and live windows went compact (${compact})`);
    t.equal(compact, live.rig.gateway.sender.counters.singles, 'every record sent singly went compact');
    t.notOk(
      live.topics.some((topic) => topic.endsWith('/telemetry/vehicle')),
      'nothing row-wise',
    );
    // A receiver that starts later learns the layouts from the broker.
    const late = await mqtt.connectAsync(live.rig.broker.url, { protocolVersion: 5, clientId: `late-${process.pid}` });
    t.teardown(() => late.endAsync());
    const retained = new Set<string>();
    late.on('message', (topic, payload, packet) => {
      if (packet.retain && payload.byteLength > 0) retained.add(topic);
    });
    await late.subscribeAsync('v2c/v1/+/+/telemetry/layout/+', { qos: 1 });
    await live.rig.waitFor('the retained layouts', () => retained.size === 2);
    t.same([...retained].sort(), [...new Set(layouts)].sort());
  },
);

t.test('row-wise when configured, and when the broker keeps no retained messages', async (t) => {
  const cases: Array<[string, (c: GatewayConfig) => void, string[]]> = [
    ['mqtt.liveEncoding: row', (c) => (c.mqtt.liveEncoding = 'row'), []],
    ['a broker with retain_available false', () => undefined, ['retain_available false']],
  ];
  for (const [label, tune, brokerConfig] of cases)
    await t.test(label, async (t) => {
      const live = await liveRig(t, tune, brokerConfig);
      await sendAndCheck(t, live);
      t.ok(
        live.topics.every((topic) => topic.endsWith('/telemetry/vehicle') || topic.endsWith('/telemetry/batch')),
        `no layout, nothing compact (${[...new Set(live.topics)].join(', ')})`,
      );
    });
});

t.test('a compact record that comes before its layout waits at the sink and is taken in with it', async (t) => {
  const { rig, accepted } = await liveRig(t, (c) => (c.mqtt.liveEncoding = 'row'));
  const record = new SampleRecords(3).record(1, 1);
  const resolution = resolutionTable(loadDecoder(rig.config.dbc).db, rig.config.pipeline.fields);
  const { layout, key, payload } = new CompactEncoder(resolution).encode(record);
  const client = await mqtt.connectAsync(rig.broker.url, { protocolVersion: 5, clientId: `early-${process.pid}` });
  t.teardown(() => client.endAsync());
  const base = `v2c/v1/${rig.config.vehicle.region}/${rig.config.vehicle.id}/telemetry`;
  await client.publishAsync(`${base}/compact`, Buffer.from(payload), { qos: 1 });
  // Something the sink handles after it: the compact record has been read (and kept) by then.
  await client.publishAsync(`${base}/layout/${'0'.repeat(16)}`, Buffer.from('not a layout'), { qos: 1 });
  await rig.waitFor('the bad layout refused', () => rig.sink.counts.rejected === 1);
  t.notOk(accepted.has(record.messageId), 'not accepted without its layout');
  await client.publishAsync(`${base}/layout/${key}`, Buffer.from(encodeLayout(layout)), { qos: 1, retain: true });
  await rig.waitFor('accepted once its layout came', () => accepted.has(record.messageId));
  t.same(recordDifferences(record, accepted.get(record.messageId) as VehicleTelemetry, resolution), []);
  t.equal(rig.sink.counts.rejected, 1, 'only the bad layout was refused');
  // Clear the retained layout this test made, as a fleet operator would.
  await client.publishAsync(`${base}/layout/${key}`, Buffer.alloc(0), { qos: 1, retain: true });
});

t.test('a layout whose PUBACK is lost goes again on the next connection, with DUP, before its record', async (t) => {
  const sends: Array<{ topic: string; dup: boolean; connection: number }> = [];
  let dropLayoutPuback = true;
  const layoutIds = new Map<string, number>();
  const rig = await syncRig(t, {
    beforeStart: (proxy) => {
      proxy.toServer = (p: Packet, connection: number) => {
        if (p.cmd !== 'publish') return p;
        const topic = proxy.topicOf(p, connection);
        if (topic.includes('/telemetry/')) sends.push({ topic, dup: p.dup, connection });
        if (topic.includes('/telemetry/layout/')) layoutIds.set(`${connection}:${p.messageId}`, 1);
        return p;
      };
      proxy.toClient = (p: Packet, connection: number) => {
        // The first layout's PUBACK never arrives: the gateway closes the connection at its deadline.
        if (p.cmd === 'puback' && dropLayoutPuback && layoutIds.has(`${connection}:${p.messageId}`)) {
          dropLayoutPuback = false;
          return null;
        }
        return p;
      };
    },
  });
  await rig.waitFor('online', () => rig.gateway.session.isConnected);
  const [id] = await rig.insert(1, 1, () => 1);
  await rig.waitFor('the record at the sink', () => rig.seen.has(id as string));
  const layouts = sends.filter((s) => s.topic.includes('/telemetry/layout/'));
  t.same(
    layouts.map((s) => [s.connection, s.dup]),
    [
      [1, false],
      [2, true],
    ],
    'the layout on the first connection, again with DUP on the second',
  );
  const firstRecord = sends.findIndex((s) => s.topic.endsWith('/telemetry/compact'));
  t.ok(
    firstRecord > sends.indexOf(layouts[1] as (typeof sends)[number]),
    'the record only after the layout got through',
  );
  t.equal(rig.sink.counts.rejected, 0);
});
