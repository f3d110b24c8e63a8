// Brokers that follow MQTT 5 to the letter (issue 11, items 1-2): the server's Receive Maximum
// bounds every kind of QoS 1 publish we have in flight, and a record too large for *this* broker's
// Maximum Packet Size stays stored until a broker takes it; only one over our own maximum is
// dead-lettered.
import t, { type Test } from 'tap';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import Database from 'better-sqlite3';
import { runInNewContext } from 'node:vm';
import { SampleRecords } from '../bench/rig/sample-records.js';
import { systemClock } from '../core/clock.js';
import { referenceVehicleConfig, type GatewayConfig } from '../core/config.js';
import { startGateway, type GatewayHandle } from '../gateway/gateway.js';
import { BATCH_CONTENT_TYPE, unpackBatch } from '../proto/batch-packer.js';
import { decodeTelemetry, SCHEMA_VERSION } from '../proto/telemetry-codec.js';
import { SendQuota } from '../sync/session/send-quota.js';
import { insertSamples, waitUntil } from './helpers.js';
import { LiveReader } from '../receiver/live-reader.js';
import { StrictBroker } from './strict-broker.js';
import { fastTimers, missing, syncRig } from './sync-rig.js';

t.test('SendQuota: slots in arrival order, the limit of the current connection, stale releases ignored', async (t) => {
  const q = new SendQuota(2);
  const order: string[] = [];
  const a = await q.acquire();
  const b = await q.acquire();
  const c = q.acquire().then((s) => {
    order.push('c');
    return s;
  });
  const d = q.acquire().then((s) => {
    order.push('d');
    return s;
  });
  await Promise.resolve();
  t.equal(q.used, 2);
  t.equal(q.waiting, 2, 'two wait for a slot');
  q.release(a);
  const cs = await c;
  t.same(order, ['c'], 'the first waiter gets the first free slot');
  q.reset(1);
  t.equal(q.used, 1, 'a new connection: the waiter is granted within the new limit of 1');
  await d;
  t.same(order, ['c', 'd']);
  q.release(b);
  q.release(cs);
  t.equal(q.used, 1, 'releases of slots from the old connection do not free slots of the new one');
  const e = q.acquire();
  q.close('closing');
  await t.rejects(e, { code: 'SEND_QUOTA_CLOSED' }, 'closing refuses whoever waits');
});

interface Harness {
  gateway: GatewayHandle;
  storeDir: string;
  logs: string[];
  insert(from: number, n: number, priority: (seq: number) => number): Promise<string[]>;
}

async function gatewayOn(t: Test, url: string, tune: (c: GatewayConfig) => void = () => undefined): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'v2c-strict-'));
  const trace = join(dir, 'empty.log');
  writeFileSync(trace, '');
  const storeDir = join(dir, 'store');
  const config = referenceVehicleConfig({ mqttUrl: url, trace, storeDir });
  fastTimers(config);
  tune(config);
  const logs: string[] = [];
  const gateway = await startGateway(config, systemClock, (m) => logs.push(m));
  t.teardown(async () => {
    await gateway.stop(0).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });
  const samples = new SampleRecords(11);
  return {
    gateway,
    storeDir,
    logs,
    insert: (from, n, priority) => insertSamples(gateway.store, samples, from, n, priority),
  };
}

/** A strict broker whose first QoS 1 PUBLISH is acknowledged only after `stallMs`; closed when `t` ends. */
async function stallingBroker(t: Test, receiveMaximum: number, stallMs: number): Promise<StrictBroker> {
  const broker = await StrictBroker.start({
    receiveMaximum,
    pubackDelayMs: 15,
    stalledPubacks: { count: 1, delayMs: stallMs },
  });
  t.teardown(() => broker.close());
  return broker;
}

/** Record ids in what the strict broker accepted (single records and batches). */
async function acceptedIds(broker: StrictBroker): Promise<Set<string>> {
  const ids = new Set<string>();
  const live = new LiveReader();
  for (const p of broker.accepted) {
    if (p.properties?.contentType === BATCH_CONTENT_TYPE) {
      const batch = await unpackBatch(p.payload, p.properties.userProperties ?? {}, {
        maxUncompressedBytes: 16 << 20,
        acceptedSchemaVersions: [SCHEMA_VERSION],
      });
      for (const r of batch.records) ids.add(r.messageId);
    } else {
      const record = live.read(p.topic, p.payload);
      if (record !== null) ids.add(record.messageId);
    }
  }
  return ids;
}

for (const receiveMaximum of [1, 3]) {
  t.test(
    `a broker advertising and enforcing Receive Maximum ${receiveMaximum}: records, batches, heartbeats and time requests stay within it`,
    async (t) => {
      const broker = await StrictBroker.start({ receiveMaximum, pubackDelayMs: 15 });
      t.teardown(() => broker.close());
      // A loaded machine must not time a PUBACK out here (that closes the connection): this test is about the window.
      const h = await gatewayOn(t, broker.url, (c) => {
        c.clock.brokerTime = true;
        // Longer than the heartbeat's interval: a heartbeat goes only after a quiet interval.
        c.clock.brokerTimeIntervalMs = 2 * c.mqtt.heartbeatS * 1000;
        c.mqtt.pubackTimeoutMs = 60_000;
        c.mqtt.heartbeatTimeoutMs = 60_000;
      });
      await waitUntil('online', () => h.gateway.session.isConnected, 20_000, h.logs);
      // P0 events singly, a P1 backlog and P2 as batches: every route at once.
      const ids = await h.insert(1, 106, (seq) => (seq % 10 === 0 ? 0 : seq % 3 === 0 ? 2 : 1));
      h.gateway.sender.flush();
      await waitUntil(
        'all 106 records acknowledged',
        async () => (await h.gateway.store.count()) === 0,
        60_000,
        h.logs,
      );
      await waitUntil('a heartbeat acknowledged', () => h.gateway.heartbeat.counters.acked > 0, 20_000, h.logs);
      t.equal(h.gateway.session.sendQuota.limit, receiveMaximum, 'the limit comes from the CONNACK');
      t.same([...broker.counts.disconnects], [], 'the broker never had to DISCONNECT us (0x93)');
      t.equal(broker.counts.connects, 1, 'one connection did it all');
      t.ok(
        broker.counts.peakInflight <= receiveMaximum,
        `at most ${receiveMaximum} unacknowledged at once (peak ${broker.counts.peakInflight})`,
      );
      if (receiveMaximum > 1) t.ok(broker.counts.peakInflight > 1, 'and the window is used, not one at a time');
      const seen = await acceptedIds(broker);
      t.same(
        ids.filter((id) => !seen.has(id)),
        [],
        'every record arrived',
      );
      t.ok(
        broker.accepted.some((p) => p.topic.endsWith('/time/request')),
        'time requests went through the same window',
      );
    },
  );
}

t.test(
  'a PUBACK that does not come, under Receive Maximum 1: never resent on the live connection; the connection is closed and the next one carries it with DUP',
  async (t) => {
    // The broker holds its first PUBACK far past the gateway's timeout: it still counts that PUBLISH
    // against its Receive Maximum, so a second one on the same connection would be DISCONNECT 0x93,
    // and the same one again (DUP) on the same connection 0x82.
    const broker = await stallingBroker(t, 1, 30_000);
    const h = await gatewayOn(t, broker.url, (c) => {
      c.mqtt.heartbeatS = 3600;
      // Row-wise, so the first PUBLISH (the stalled one) is a record: compact sends its layout first.
      c.mqtt.liveEncoding = 'row';
    });
    await waitUntil('online', () => h.gateway.session.isConnected, 20_000, h.logs);
    const ids = await h.insert(1, 5, () => 0);
    h.gateway.sender.flush();
    await waitUntil('all 5 records acknowledged', async () => (await h.gateway.store.count()) === 0, 60_000, h.logs);
    t.same([...broker.counts.disconnects], [], 'the broker never had to DISCONNECT us (no 0x93, no 0x82)');
    t.ok(
      h.gateway.session.counters.pubackTimeouts >= 1,
      `the missing PUBACK timed out (${h.gateway.session.counters.pubackTimeouts})`,
    );
    t.ok(broker.counts.connects >= 2, `and closed the connection: ${broker.counts.connects} connections`);
    t.equal(broker.counts.stalled, 0, 'the stalled PUBACK was never sent: its connection was gone first');
    const first = decodeTelemetry(broker.accepted[0]?.payload ?? Buffer.alloc(0)).messageId;
    t.equal(first, ids[0], 'the first record accepted is the one whose PUBACK was stalled');
    t.ok(
      broker.accepted[0]?.dup === true && (broker.accepted[0]?.connection ?? 0) >= 2,
      'it was accepted as a resend (DUP) on a later connection',
    );
    t.same(
      ids.filter((id) => !broker.accepted.some((p) => decodeTelemetry(p.payload).messageId === id)),
      [],
      'every record arrived',
    );
    t.ok(
      h.logs.some((l) => /no PUBACK within \d+ ms for a PUBLISH to .*MQTT 5 resends only on a new connection/.test(l)),
      'the log says why the connection was closed',
    );
  },
);

t.test(
  'a batch waiting for its PUBACK holds none of its records, only what removes them; they are removed when it comes (issue 14)',
  async (t) => {
    // The broker holds the batch's PUBACK; meanwhile every record the store handed out must be
    // collectable. Kept until the PUBACK, each was promoted to the old generation on a Pi.
    const broker = await stallingBroker(t, 10, 15_000);
    const h = await gatewayOn(t, broker.url, (c) => {
      c.mqtt.heartbeatS = 3600;
      c.mqtt.pubackTimeoutMs = 120_000;
      c.mqtt.heartbeatTimeoutMs = 120_000;
      // One batch of all 40, sent once the last is stored.
      Object.assign(c.batch, { minRecords: 40, maxRecords: 40, maxAgeMs: 3_600_000 });
    });
    await waitUntil('online', () => h.gateway.session.isConnected, 20_000, h.logs);
    const store = h.gateway.store;
    const read: Array<WeakRef<object>> = [];
    const pending = store.pending.bind(store);
    store.pending = async (...args) => {
      const records = await pending(...args);
      for (const r of records) read.push(new WeakRef(r.record));
      return records;
    };
    await h.insert(1, 40, () => 2);
    await waitUntil('the batch published, its PUBACK held', () => broker.pending === 1, 60_000, h.logs);
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    gc();
    await new Promise((resolve) => setImmediate(resolve));
    gc();
    t.equal(h.gateway.sender.inFlight, 40, 'still in flight: all 40 records wait for the one PUBACK');
    t.ok(broker.pending === 1 && broker.counts.stalled === 0, 'and the broker still holds its PUBACK');
    t.ok(read.length >= 40, `the store handed out ${read.length} records`);
    t.equal(read.filter((r) => r.deref() !== undefined).length, 0, 'none of them is still held');
    await waitUntil('all 40 removed after the PUBACK', async () => (await store.count()) === 0, 60_000, h.logs);
    t.equal(broker.counts.connects, 1, 'on the one connection');
    t.equal(broker.accepted.length, 1, 'as one batch');
  },
);

t.test(
  'a stored record that cannot be encoded fails its batch, not the outbox: nothing stays in flight and other records still go',
  async (t) => {
    const broker = await StrictBroker.start({ receiveMaximum: 10, pubackDelayMs: 15 });
    t.teardown(() => broker.close());
    const h = await gatewayOn(t, broker.url, (c) => {
      Object.assign(c.batch, { minRecords: 30, maxRecords: 30, maxAgeMs: 3_600_000 });
    });
    await waitUntil('online', () => h.gateway.session.isConnected, 20_000, h.logs);
    const ids = await h.insert(1, 29, () => 2);
    // A damaged row (bit rot, a bad migration): a signal with no statistics, which encoding cannot take.
    const db = new Database(join(h.storeDir, 'v2c.sqlite'));
    db.prepare(
      `UPDATE "telemetry-v0" SET data = json_set(data, '$.record.signals', json('{"X": null}')) WHERE id = ?`,
    ).run(ids[0]);
    db.close();
    await h.insert(30, 1, () => 2);
    await waitUntil(
      'the batch fails to pack',
      () => h.logs.some((l) => /outbox: 30 record\(s\) not sent: /.test(l)),
      60_000,
      h.logs,
    );
    await waitUntil('nothing left in flight', () => h.gateway.sender.inFlight === 0, 60_000, h.logs);
    const [event] = await h.insert(31, 1, () => 0);
    await waitUntil(
      'a P0 event still delivered',
      async () => (await acceptedIds(broker)).has(event as string),
      60_000,
      h.logs,
    );
    t.equal(await h.gateway.store.count(2), 30, 'the 30 P2 records stay stored');
  },
);

t.test(
  'a record too large for this broker stays stored and goes once a broker takes it (real Mosquitto, max_packet_size 1000)',
  async (t) => {
    const rig = await syncRig(t, { broker: { extraConfig: ['max_packet_size 1000'] } });
    await rig.waitFor('online', () => rig.gateway.session.isConnected);
    t.equal(rig.gateway.session.maxPacketBytes, 1000, 'the limit comes from the CONNACK');
    const ids = await rig.insert(1, 107, (seq) => (seq % 20 === 0 ? 0 : 1));
    rig.gateway.sender.flush();
    await rig.waitFor('every record parked', () => rig.gateway.sender.parkedRecords === 107);
    t.equal(await rig.gateway.store.count(), 107, 'all 107 still in the store');
    t.notOk(existsSync(rig.gateway.deadLetters.path), 'nothing in the dead-letter file');
    t.equal(
      rig.logs.filter((l) => /more than this broker's maximum of 1000; kept stored/.test(l)).length,
      1,
      'one log line',
    );
    t.match(
      await rig.gateway.metrics.text(),
      /v2c_parked_records\{reason="exceeds_broker_packet_size"\} 107/,
      'and the metric',
    );
    t.notOk(rig.gateway.session.counters.serverDisconnects.has(0x95), 'never a 0x95');
    // The operator raises the limit and restarts the broker.
    const conf = join(rig.broker.dir, 'mosquitto.conf');
    writeFileSync(conf, readFileSync(conf, 'utf8').replace('max_packet_size 1000', ''));
    // The gateway is held off until the sink has subscribed again to the restarted broker.
    rig.proxy.blackhole = true;
    await rig.broker.restart('SIGTERM');
    await rig.waitFor('the sink subscribed again', () => rig.sink.subscribed >= 2);
    rig.proxy.blackhole = false;
    rig.proxy.resetAll();
    await rig.waitFor(
      'the store empty after the new CONNACK',
      async () => (await rig.gateway.store.count()) === 0,
      60_000,
    );
    await rig.waitFor('all 107 at the sink', () => rig.sink.counts.unique === 107);
    t.same(missing(rig, ids), []);
    t.equal(rig.gateway.sender.parkedRecords, 0, 'nothing parked any more');
  },
);

t.test('a record over our own maximum packet size is dead-lettered: no broker could take it', async (t) => {
  const rig = await syncRig(t, {
    tune: (c) => {
      c.mqtt.maxOutgoingPacketBytes = 6000;
    },
  });
  await rig.waitFor('online', () => rig.gateway.session.isConnected);
  const huge = new SampleRecords(3).record(1000, 2);
  for (let i = 0; i < 400; i++)
    huge.signals[`Extra${i}`] = { min: i, max: i + 0.5, mean: i + 0.25, last: i, count: 600 };
  t.ok(await rig.gateway.store.insert(huge, Date.now()));
  const ids = await rig.insert(1, 60, () => 2);
  await rig.waitFor('the 60 normal records', () => rig.sink.counts.unique === 60);
  await rig.waitFor('the outbox empty', async () => (await rig.gateway.store.count()) === 0);
  t.same(missing(rig, ids), []);
  const letters = readFileSync(rig.gateway.deadLetters.path, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { reason: string; record: { messageId: string }; maxPacketBytes: number });
  t.same(
    letters.map((l) => [l.reason, l.record.messageId, l.maxPacketBytes]),
    [['exceeds_max_packet_size', huge.messageId, 6000]],
    'dead-lettered with its reason and our limit',
  );
});

t.test('a stall of our own (a CPU-starved board) is not taken for a missing PUBACK', async (t) => {
  const broker = await StrictBroker.start({ receiveMaximum: 10, pubackDelayMs: 30 });
  t.teardown(() => broker.close());
  const h = await gatewayOn(t, broker.url, (c) => {
    c.mqtt.heartbeatS = 3600;
  });
  await waitUntil('online', () => h.gateway.session.isConnected, 20_000, h.logs);
  const session = h.gateway.session;
  for (let i = 0; i < 5; i++) {
    const acked = session.publish(
      'v2c/v1/eu-central-1/V2CREF00000000001/status/heartbeat',
      Buffer.from('{}'),
      { contentType: 'application/json', userProperties: {} },
      { timeoutMs: 100 },
    );
    // Once the PUBLISH is on the wire, the event loop is blocked three times the PUBACK deadline;
    // the PUBACK (30 ms later) arrives meanwhile and waits unread in the socket.
    const sent = broker.accepted.length;
    await waitUntil('the PUBLISH at the broker', () => broker.pending > 0 || broker.accepted.length > sent, 10_000);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300);
    t.equal(await acked, 0, `publish ${i}: acknowledged, not timed out`);
  }
  t.equal(session.counters.pubackTimeouts, 0, 'no PUBACK timeout counted');
  t.equal(broker.counts.connects, 1, 'the connection was never dropped');
  const max = Number(/v2c_event_loop_delay_seconds\{stat="max"\} (\S+)/.exec(await h.gateway.metrics.text())?.[1]);
  // The monitor ticks every 100 ms: a 300 ms stall shows as at least 300 - 100 ms of delay.
  t.ok(max >= 0.19, `the stalls show in v2c_event_loop_delay_seconds (max ${max} s)`);
});
