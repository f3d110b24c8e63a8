// The sync engine against a real Mosquitto, one test per MQTT-side FMEA row (DESIGN §8): each
// injects its fault through the proxy or the broker's configuration and checks nothing is lost.
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import mqtt from 'mqtt';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Packet } from 'mqtt-packet';
import { missing, syncRig } from './sync-rig.js';
import { SampleRecords } from '../bench/rig/sample-records.js';
import type { StateChange } from '../sync/session/mqtt-session.js';

const priorities = (seq: number): number => (seq % 10 === 0 ? 0 : seq % 3 === 0 ? 2 : 1);

t.test(
  'happy path: P0/P1 singly on telemetry/vehicle, P2 and backlog as zstd batches on telemetry/batch',
  async (t) => {
    const rig = await syncRig(t);
    await rig.waitFor('online', () => rig.gateway.session.isConnected);
    const live = await rig.insert(1, 10, priorities);
    await rig.waitFor('10 live records', () => rig.sink.counts.unique === 10);
    t.equal(rig.gateway.sender.counters.batches, 1, 'the three P2 records went as one batch once maxAgeMs passed');
    t.equal(rig.gateway.sender.counters.singles, 7, 'P0 and P1 one by one');
    rig.proxy.blackhole = true;
    rig.gateway.session.dropConnection('test: outage');
    const backlog = await rig.insert(11, 200, () => 1);
    rig.proxy.blackhole = false;
    await rig.waitFor('the backlog', () => rig.sink.counts.unique === 210);
    t.ok(
      rig.gateway.sender.counters.batches >= 5,
      `a P1 backlog of 200 goes in batches (${rig.gateway.sender.counters.batches} batches)`,
    );
    t.same(missing(rig, [...live, ...backlog]), [], 'every record id arrived');
    t.equal(rig.sink.counts.rejected, 0);
    // The sink sees the last records before their PUBACKs have removed them from the store.
    await rig.waitFor(
      'the outbox empty once every PUBACK is in',
      async () => (await rig.gateway.store.count()) === 0,
      5_000,
    );
    t.equal(rig.gateway.sender.counters.acked, 210, 'every record acknowledged once');
  },
);

t.test(
  'FMEA network timeout (connection): backoff 1, 2, 4, 8, 16 x base with jitter, offline after 5 failures, records kept',
  async (t) => {
    const states: StateChange[] = [];
    const rig = await syncRig(t, {
      beforeStart: (proxy) => {
        proxy.blackhole = true;
      },
    });
    rig.gateway.session.states.subscribe((s) => states.push(s));
    const ids = await rig.insert(1, 30, priorities);
    await rig.waitFor('offline mode', () => rig.gateway.session.state === 'offline', 15_000);
    const waits = states.filter((s) => s.state === 'backoff').map((s) => s.delayMs);
    t.equal(waits.length, 5, 'five backoff waits before offline');
    [100, 200, 400, 800, 1000].forEach((nominal, i) => {
      const w = waits[i] as number;
      t.ok(
        w >= nominal * 0.8 - 1 && w <= Math.min(1000, nominal * 1.2) + 1,
        `wait ${i + 1}: ${w.toFixed(0)} ms within ±20 % of ${nominal} (cap 1000)`,
      );
    });
    t.equal(states.find((s) => s.state === 'offline')?.delayMs, 1500, 'offline: retry at offlineRetryMs');
    t.match(states.find((s) => s.state === 'backoff')?.reason ?? '', /network/);
    t.equal(await rig.gateway.store.count(), 30, 'everything still stored');
    rig.proxy.blackhole = false;
    await rig.waitFor('delivery after the outage', () => rig.sink.counts.unique === 30, 10_000);
    t.same(missing(rig, ids), []);
  },
);

t.test(
  'FMEA no PUBACK: the connection is closed, the next one carries the records again with DUP (never the live one), duplicates only by id',
  async (t) => {
    let dropped = 0;
    let dupPublishes = 0;
    /** Connection that first carried each payload, and DUP repeats seen on that same connection. */
    const firstConnection = new Map<string, number>();
    let resentOnLiveConnection = 0;
    const rig = await syncRig(t, {
      // Row-wise: the withheld PUBACKs are records' (compact would spend one on its layout first).
      tune: (c) => (c.mqtt.liveEncoding = 'row'),
      beforeStart: (proxy) => {
        proxy.toClient = (p: Packet) => (p.cmd === 'puback' && dropped++ < 4 ? null : p);
        proxy.toServer = (p: Packet, connection: number) => {
          if (p.cmd !== 'publish') return p;
          const key = p.payload.toString('base64');
          if (p.dup) {
            dupPublishes++;
            if (firstConnection.get(key) === connection) resentOnLiveConnection++;
          }
          if (!firstConnection.has(key)) firstConnection.set(key, connection);
          return p;
        };
      },
    });
    const ids = await rig.insert(1, 8, () => 1);
    await rig.waitFor('all acknowledged', async () => (await rig.gateway.store.count()) === 0);
    await rig.waitFor('sink', () => rig.sink.counts.unique === 8);
    t.equal(dropped >= 4, true, 'four PUBACKs withheld');
    const timeouts = rig.gateway.session.counters.pubackTimeouts;
    t.ok(timeouts >= 1, `PUBACK timeouts counted (${timeouts})`);
    // Several publishes can time out on one loop turn of a stalled machine: they close one connection.
    const closes = rig.logs.filter((l) => /closing the connection: no PUBACK/.test(l)).length;
    t.ok(closes >= 1 && closes <= timeouts, `the timeouts closed ${closes} connection(s), as the log says`);
    t.ok(
      rig.proxy.connections >= closes + 1,
      `each connection closed for a timeout was followed by a new one (${rig.proxy.connections} connections)`,
    );
    t.ok(dupPublishes >= 4, `resends carry DUP (${dupPublishes} seen by the broker side)`);
    t.equal(resentOnLiveConnection, 0, 'nothing was resent on the connection that first carried it (MQTT 5 §4.4)');
    t.ok(rig.sink.counts.duplicates >= 4, `the sink de-duplicates the resends (${rig.sink.counts.duplicates})`);
    t.same(missing(rig, ids), []);
  },
);

t.test('a drain keeps to its CPU share; events go out at once while it is held back', async (t) => {
  // A fifth of the CPU this process may use: the drain is still going when the events come.
  const rig = await syncRig(t, { tune: (c) => (c.batch.drainCpuShare = 0.2) });
  await rig.waitFor('online', () => rig.gateway.session.isConnected);
  const backlog = await rig.insert(1, 2_000, () => 2);
  rig.gateway.sender.flush();
  await rig.waitFor('the drain started', () => rig.sink.counts.unique > 0);
  const events = await rig.insert(10_001, 3, () => 0);
  await rig.waitFor('the events delivered', () => events.every((id) => rig.seen.has(id)));
  const waiting = backlog.filter((id) => !rig.seen.has(id)).length;
  t.ok(waiting > 0, `the events went out while ${waiting} backlog records still waited`);
  await rig.waitFor('the backlog delivered', () => backlog.every((id) => rig.seen.has(id)));
  t.ok(rig.gateway.pacer.counters.holds > 0, `batches were held back (${rig.gateway.pacer.counters.holds} times)`);
  t.equal(rig.sink.counts.duplicates, 0, 'pacing resends nothing');
});

t.test(
  'a drain reads a page and packs it on turns of the event loop of their own, so I/O runs between them',
  async (t) => {
    // No pacing: batches back to back, the case in which a live frame could wait for several steps;
    // four in flight, so a slot is free when the sender is stopped below; every page read is sent
    // (a page under minRecords is only looked at, and may be again in the same turn).
    const rig = await syncRig(t, {
      tune: (c) => Object.assign(c.batch, { drainCpuShare: 1, drainMaxCores: 1, inflight: 4, minRecords: 1 }),
    });
    await rig.waitFor('online', () => rig.gateway.session.isConnected);
    const store = rig.gateway.store;
    // Each step leaves an I/O callback behind; it must run before the next step starts.
    const steps: string[] = [];
    const step = (name: string) => {
      steps.push(name);
      setImmediate(() => steps.push('io'));
    };
    let stopAtRead = false;
    const pending = store.pending.bind(store);
    const asSent = store.asSent.bind(store);
    store.pending = async (limit, exclude, priority) => {
      const page = await pending(limit, exclude, priority);
      if (priority === 2 && page.length > 0) step('read');
      if (stopAtRead && page.length > 0) {
        stopAtRead = false;
        steps.push('stop');
        rig.gateway.sender.stop();
      }
      return page;
    };
    store.asSent = (records) => {
      step('pack');
      return asSent(records);
    };
    // Each batch packed tells the pacer its burst of CPU is over (the quota-period check counts from there).
    const pacer = rig.gateway.pacer;
    const note = pacer.note.bind(pacer);
    let notes = 0;
    pacer.note = () => {
      notes++;
      note();
    };
    t.teardown(() => {
      store.pending = pending;
      store.asSent = asSent;
      pacer.note = note;
    });
    const backlog = await rig.insert(1, 500, () => 2);
    // From here on: while the records went in, the sender looked at the P2 page after each insert.
    const from = steps.length;
    rig.gateway.sender.flush();
    await rig.waitFor('the backlog delivered', () => backlog.every((id) => rig.seen.has(id)));
    const drain = steps.slice(from);
    const adjacent = drain.filter((s, i) => s !== 'io' && i > 0 && drain[i - 1] !== 'io');
    t.ok(drain.filter((s) => s === 'pack').length >= 5, `batches packed (${drain.length} steps seen)`);
    t.same(adjacent, [], 'no read or pack ran straight after another without I/O between them');
    t.equal(notes, steps.filter((s) => s === 'pack').length, 'the pacer was told of each batch packed');
    // Stopped between a read and its packing: that batch goes out, no other page is read.
    const more = await rig.insert(1_001, 200, () => 2);
    stopAtRead = true;
    rig.gateway.sender.flush();
    await rig.waitFor('the batch read at the stop delivered', () => more.slice(0, 50).every((id) => rig.seen.has(id)));
    const afterStop = steps.slice(steps.indexOf('stop'));
    t.same(
      afterStop.filter((s) => s !== 'io'),
      ['stop', 'pack'],
      'after the stop: the batch read was packed and nothing more read',
    );
  },
);

t.test('P2 under the batch minimum: only the oldest record is read, to know when it is due', async (t) => {
  const rig = await syncRig(t, { tune: (c) => (c.batch.maxAgeMs = 3_600_000) });
  await rig.waitFor('online', () => rig.gateway.session.isConnected);
  const store = rig.gateway.store;
  const p2Reads: number[] = [];
  const pending = store.pending.bind(store);
  store.pending = (limit, exclude, priority) => {
    if (priority === 2) p2Reads.push(limit);
    return pending(limit, exclude, priority);
  };
  t.teardown(() => {
    store.pending = pending;
  });
  const first = await rig.insert(1, 24, () => 2);
  // Each insert woke the sender; one more look after the last, to be sure it has seen all 24.
  const seenBefore = p2Reads.length;
  rig.gateway.sender.kick();
  await rig.waitFor('the sender looked at P2', () => p2Reads.length > seenBefore);
  t.ok(p2Reads.length >= 2, `the sender looked ${p2Reads.length} times`);
  t.same([...new Set(p2Reads)], [1], 'each look read one record (the oldest), not the page');
  t.equal(rig.gateway.sender.counters.batches, 0, '24 records an hour from due: nothing sent');
  const last = await rig.insert(25, 1, () => 2);
  await rig.waitFor('the batch of 25', () => [...first, ...last].every((id) => rig.seen.has(id)));
  t.equal(rig.gateway.sender.counters.batches, 1, 'the 25th record made a batch');
  t.ok(p2Reads.includes(50), 'read as a page once there were enough');
});

t.test(
  'FMEA storage corruption: a stored row that is no record is set aside in the dead-letter file; its batch goes without it',
  async (t) => {
    const rig = await syncRig(t, {
      tune: (c) => Object.assign(c.batch, { minRecords: 30, maxRecords: 30, maxAgeMs: 3_600_000 }),
    });
    await rig.waitFor('online', () => rig.gateway.session.isConnected);
    const ids = await rig.insert(1, 29, () => 2);
    // Damaged rows (bit rot, a hand edit): a record that is null, and one whose id is not the row's.
    const db = new Database(join(rig.dir, 'store', 'v2c.sqlite'));
    const damage = db.prepare(`UPDATE "telemetry-v0" SET data = json_set(data, ?, json(?)) WHERE id = ?`);
    damage.run('$.record', 'null', ids[0]);
    damage.run('$.record.messageId', '"not-this-row"', ids[1]);
    db.close();
    const last = await rig.insert(30, 1, () => 2);
    const good = [...ids.slice(2), ...last];
    await rig.waitFor('the 28 good records delivered', () => good.every((id) => rig.seen.has(id)));
    await rig.waitFor('the store empty', async () => (await rig.gateway.store.count()) === 0);
    t.equal(rig.gateway.sender.counters.batches, 1, 'in one batch');
    const letters = readFileSync(rig.gateway.deadLetters.path, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { reason: string; detail: string; record: unknown });
    t.same(
      letters.map((l) => [l.reason, l.detail]),
      [
        ['damaged_in_store', 'its record is null, expected an object'],
        ['damaged_in_store', `its record's messageId "not-this-row" is not the row's id`],
      ],
      'both rows kept in the dead-letter file with what is wrong',
    );
    t.ok(
      rig.logs.some((l) => l.includes(`stored record ${ids[0] as string} is damaged`)),
      'the log names the record',
    );
  },
);

t.test(
  'FMEA network partition (split brain): the heartbeat PUBACK is missing, the socket is closed, the session comes back',
  async (t) => {
    const rig = await syncRig(t);
    await rig.waitFor('online', () => rig.gateway.session.isConnected);
    await rig.waitFor('a heartbeat acknowledged', () => rig.gateway.heartbeat.counters.acked > 0);
    const cutAt = Date.now();
    rig.proxy.blackhole = true;
    // Nothing else in flight: a record's own PUBACK timeout would notice the partition first.
    await rig.waitFor('the dead socket noticed', () => !rig.gateway.session.isConnected, 10_000);
    const detectedMs = Date.now() - cutAt;
    const ids = await rig.insert(1, 5, () => 1);
    t.comment(
      `split brain detected ${detectedMs} ms after the partition (heartbeat every 500 ms, PUBACK deadline 600 ms)`,
    );
    t.ok(detectedMs <= 500 + 600 + 400, `detected within interval + timeout (${detectedMs} ms)`);
    t.equal(rig.gateway.heartbeat.counters.missed, 1);
    rig.proxy.blackhole = false;
    await rig.waitFor('delivery after reconnecting', () => rig.sink.counts.unique === 5);
    t.same(missing(rig, ids), []);
  },
);

t.test(
  'heartbeats only when idle: none while PUBACKs keep coming, back when quiet; a partition right after traffic is noticed as fast',
  async (t) => {
    const rig = await syncRig(t);
    const beats = rig.gateway.heartbeat.counters;
    await rig.waitFor('online', () => rig.gateway.session.isConnected);
    await rig.waitFor('a heartbeat acknowledged', () => beats.acked > 0);
    // Steady traffic: the next record as soon as the last one is acknowledged, for several intervals.
    const [sentBefore, skippedBefore] = [beats.sent, beats.skipped];
    let seq = 1;
    // Bounded, so a heartbeat that never skips fails here instead of looping.
    while (beats.skipped - skippedBefore < 4 && seq <= 400) {
      const [id] = await rig.insert(seq, 1, () => 1);
      seq++;
      await rig.waitFor(`record ${seq - 1} acknowledged`, () => rig.seen.has(id as string));
    }
    t.ok(beats.skipped - skippedBefore >= 4, `${beats.skipped - skippedBefore} heartbeats skipped`);
    t.ok(
      beats.sent - sentBefore <= 1,
      `${beats.sent - sentBefore} heartbeats sent while ${seq - 1} records were acknowledged (${beats.skipped - skippedBefore} skipped; one may have been due as traffic began)`,
    );
    const sentWhileBusy = beats.sent;
    await rig.waitFor('a heartbeat once the traffic stopped', () => beats.sent > sentWhileBusy);

    // Partition right after a record's PUBACK (the heartbeat was last skipped for it): the beat is
    // due an interval after that PUBACK, so detection stays within interval + PUBACK deadline.
    const [last] = await rig.insert(seq, 1, () => 1);
    await rig.waitFor('the last record acknowledged', () => rig.seen.has(last as string));
    const cutAt = Date.now();
    rig.proxy.blackhole = true;
    await rig.waitFor('the dead socket noticed', () => !rig.gateway.session.isConnected, 10_000);
    const detectedMs = Date.now() - cutAt;
    t.comment(`split brain detected ${detectedMs} ms after a partition that followed a record's PUBACK`);
    t.ok(detectedMs <= 500 + 600 + 400, `detected within interval + timeout (${detectedMs} ms)`);
    rig.proxy.blackhole = false;
    await rig.waitFor('back online', () => rig.gateway.session.isConnected);
  },
);

t.test('no heartbeat while a record racing it waits for a PUBACK due as soon as the beat would be', async (t) => {
  const rig = await syncRig(t);
  const beats = rig.gateway.heartbeat.counters;
  const interval = rig.gateway.heartbeat.interval;
  await rig.waitFor('online', () => rig.gateway.session.isConnected);
  await rig.waitFor('a heartbeat acknowledged', () => beats.acked > 0);
  // 300 ms round trips: a record published shortly before the beat is due is still in flight then.
  rig.proxy.latencyMs = 150;
  const sentBefore = beats.sent;
  const sender = rig.gateway.sender.counters;
  for (let seq = 1; seq <= 6; seq++) {
    const acked = sender.acked;
    await rig.insert(seq, 1, () => 1);
    await rig.waitFor(`record ${seq} acknowledged`, () => sender.acked > acked);
    // The next record goes out 250 ms before the beat is due; its PUBACK comes 50 ms after.
    await sleep(interval - 250);
  }
  t.ok(beats.sent - sentBefore <= 1, `${beats.sent - sentBefore} heartbeats sent while 6 records raced them`);
  rig.proxy.latencyMs = 0;
});

t.test('FMEA connection reset / cut mid-packet / latency: nothing lost', async (t) => {
  const rig = await syncRig(t);
  await rig.waitFor('online', () => rig.gateway.session.isConnected);
  rig.proxy.latencyMs = 150;
  const first = await rig.insert(1, 100, priorities);
  await rig.waitFor('some acknowledged', () => rig.gateway.sender.counters.acked > 5);
  rig.proxy.resetAll();
  rig.proxy.latencyMs = 0;
  rig.proxy.cutAfterBytes = 2500;
  const second = await rig.insert(101, 100, priorities);
  await rig.waitFor('a cut connection', () => rig.proxy.connections >= 3);
  rig.proxy.cutAfterBytes = null;
  rig.gateway.sender.flush();
  await rig.waitFor('everything', () => rig.sink.counts.unique === 200, 30_000);
  t.same(missing(rig, [...first, ...second]), []);
  t.ok(
    rig.gateway.session.counters.attempts >= 3,
    `reconnected after the reset and the cut (${rig.gateway.session.counters.attempts} attempts)`,
  );
});

t.test(
  'FMEA message too large: batches split to the CONNACK maximum, a record too large for this broker is kept parked, never a 0x95 loop',
  async (t) => {
    const rig = await syncRig(t, { broker: { extraConfig: ['max_packet_size 6000'] } });
    await rig.waitFor('online', () => rig.gateway.session.isConnected);
    t.equal(rig.gateway.session.maxPacketBytes, 6000, 'the limit comes from the CONNACK');
    // Proof the fault is real: a plain mqtt.js client sending 7 KB is thrown out with 0x95.
    const naive = await mqtt.connectAsync(rig.broker.url, {
      protocolVersion: 5,
      clientId: 'naive',
      reconnectPeriod: 0,
    });
    const kicked = new Promise<number | undefined>((resolve) => naive.once('disconnect', (p) => resolve(p.reasonCode)));
    naive.publish('v2c/v1/x/y/telemetry/batch', Buffer.alloc(7000), { qos: 1 });
    t.equal(await kicked, 0x95, 'Mosquitto answers an oversized PUBLISH with DISCONNECT 0x95');
    naive.end(true);

    const samples = new SampleRecords(3);
    const huge = samples.record(1000, 2);
    for (let i = 0; i < 400; i++)
      huge.signals[`Extra${i}`] = { min: i, max: i + 0.5, mean: i + 0.25, last: i, count: 600 };
    t.ok(await rig.gateway.store.insert(huge, Date.now()));
    const ids = await rig.insert(1, 60, () => 2);
    await rig.waitFor('the 60 normal records', () => rig.sink.counts.unique === 60);
    await rig.waitFor('only the oversized record left', async () => (await rig.gateway.store.count()) === 1);
    t.ok(rig.gateway.sender.counters.splits >= 1, `batches split (${rig.gateway.sender.counters.splits})`);
    t.same(missing(rig, ids), []);
    t.notOk(rig.seen.has(huge.messageId), 'the oversized record was not sent');
    await rig.waitFor(
      'the oversized record parked until a broker allows larger packets',
      () => rig.gateway.sender.parkedRecords === 1,
    );
    t.equal(rig.gateway.deadLetters.counts.size, 0, 'nothing dead-lettered: another broker may take it');
    t.notOk(
      rig.gateway.session.counters.serverDisconnects.has(0x95),
      'the broker never had to DISCONNECT us with 0x95',
    );
  },
);

t.test(
  'FMEA unauthorised topic: PUBACK 0x87 parks the records, stops that topic, raises the security metric',
  async (t) => {
    const aclDir = mkdtempSync(join(tmpdir(), 'v2c-acl-'));
    const acl = join(aclDir, 'acl');
    t.teardown(() => rmSync(aclDir, { recursive: true, force: true }));
    // Anonymous clients may publish single records and heartbeats, not batches.
    writeFileSync(
      acl,
      [
        'topic write v2c/v1/+/+/telemetry/vehicle',
        'topic write v2c/v1/+/+/telemetry/compact',
        'topic write v2c/v1/+/+/telemetry/layout/+',
        'topic write v2c/v1/+/+/status/heartbeat',
        'topic read v2c/v1/+/+/telemetry/#',
        'topic read v2c/v1/+/+/command/request',
        '',
      ].join('\n'),
    );
    // Mosquitto drops root for its own user, which must be able to read the file.
    chmodSync(aclDir, 0o755);
    chmodSync(acl, 0o644);
    const rig = await syncRig(t, { broker: { extraConfig: [`acl_file ${acl}`] } });
    const parked = await rig.insert(1, 30, () => 2);
    await rig.waitFor('the refusal', () => rig.gateway.sender.counters.notAuthorised > 0);
    const batchTopic = 'v2c/v1/eu-central-1/V2CREF00000000001/telemetry/batch';
    t.ok(rig.gateway.sender.blockedTopics.has(batchTopic), 'the batch topic is blocked');
    t.equal(rig.gateway.sender.parkedRecords, 30, 'its records are parked');
    const later = await rig.insert(31, 5, () => 2);
    await rig.waitFor('later P2 records over the allowed topic', () => rig.sink.counts.unique === 5);
    t.same(missing(rig, later), []);
    // The sink sees a record before its PUBACK has removed it from the store: wait for the removals.
    await rig.waitFor('the later records removed on PUBACK', async () => (await rig.gateway.store.count()) === 30);
    t.equal(rig.gateway.sender.counters.notAuthorised, 1, 'no further attempt on the refused topic');
    t.equal(rig.gateway.sender.parkedRecords, 30, 'parked records stay in the store (not lost, not retried in a loop)');
    t.notOk(parked.some((id) => rig.seen.has(id)));
    t.ok(
      rig.logs.some((l) =>
        /SECURITY: the broker does not authorise publishing to .*telemetry\/batch \(PUBACK 0x87\)/.test(l),
      ),
      'logged as a security event',
    );
    t.match(await rig.gateway.metrics.text(), /v2c_security_events_total\{kind="publish_not_authorised"\} 1/);
  },
);

t.test(
  'a drain holds at most batch.inflight batches out at once, and a P0 event goes out during it, not after it',
  async (t) => {
    const BATCHES_OUT = 2;
    const batchType = 'application/x-protobuf+zstd';
    let out = 0;
    let peak = 0;
    const batchIds = new Set<string>();
    let eventAt: number | null = null;
    let batchesBeforeEvent = 0;
    let batchesPublished = 0;
    const rig = await syncRig(t, {
      beforeStart: (proxy) => {
        proxy.latencyMs = 30;
        proxy.toServer = (p: Packet, connection: number) => {
          if (p.cmd === 'publish' && p.properties?.contentType === batchType) {
            batchIds.add(`${connection}:${p.messageId}`);
            batchesPublished++;
            peak = Math.max(peak, ++out);
          } else if (
            p.cmd === 'publish' &&
            eventAt === null &&
            p.properties?.contentType === 'application/x-protobuf'
          ) {
            eventAt = Date.now();
            batchesBeforeEvent = batchesPublished;
          }
          return p;
        };
        proxy.toClient = (p: Packet, connection: number) => {
          if (p.cmd === 'puback' && batchIds.delete(`${connection}:${p.messageId}`)) out--;
          return p;
        };
      },
      tune: (c) => {
        c.batch.inflight = BATCHES_OUT;
      },
    });
    await rig.waitFor('online', () => rig.gateway.session.isConnected);
    rig.proxy.blackhole = true;
    rig.gateway.session.dropConnection('test: outage');
    const backlog = await rig.insert(1, 1000, () => 2);
    rig.proxy.blackhole = false;
    await rig.waitFor('the drain under way', () => rig.sink.counts.unique >= 100);
    const event = await rig.insert(5000, 1, () => 0);
    await rig.waitFor('the backlog and the event', () => rig.sink.counts.unique === 1001);
    t.same(missing(rig, [...backlog, ...event]), []);
    t.ok(
      peak >= 1 && peak <= BATCHES_OUT,
      `at most ${BATCHES_OUT} batches awaited their PUBACK at once (peak ${peak})`,
    );
    t.ok(
      eventAt !== null && batchesBeforeEvent < batchesPublished,
      `the P0 event was published while the drain went on (${batchesBeforeEvent} of ${batchesPublished} batches before it)`,
    );
  },
);
