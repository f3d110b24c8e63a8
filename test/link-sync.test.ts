// Link-aware sync through the real gateway, Mosquitto and the reference sink, with the bench link
// monitor, ignition and LED: a cellular budget that runs out, a depot WiFi draining a week of
// backlog that cellular would not, parking on an ordinary WiFi, and links flapping mid-upload.
import t from 'tap';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { systemClock } from '../core/clock.js';
import { BenchIgnition, BenchStatusLed } from '../gateway/gpio.js';
import { BenchLinkMonitor } from '../sync/link/link-monitor.js';
import { missing, sinkRejections, syncRig } from './sync-rig.js';

const metric = async (text: Promise<string>, name: string): Promise<number> =>
  Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(await text)?.[1]);

t.test('cellular: P0/P1 always, P2 in batches until the daily budget is used, then P2 waits', async (t) => {
  const link = new BenchLinkMonitor({ kind: 'cellular', iface: 'wwan0' });
  const led = new BenchStatusLed();
  const rig = await syncRig(t, {
    devices: { linkMonitor: link, ignition: new BenchIgnition(true, systemClock), led },
    tune: (c) => {
      c.link.dailyCellularBudgetBytes = 8000;
      c.link.allowedSsids = ['Depot'];
    },
  });
  await rig.waitFor('online', () => rig.gateway.session.isConnected);
  let seq = 1;
  const sent: string[] = [];
  // A drive's P2 history, 25 records at a time, until the budget is gone.
  for (let round = 0; round < 40 && rig.gateway.link.current.sendBulk; round++) {
    sent.push(...(await rig.insert(seq, 25, () => 2)));
    seq += 25;
    await rig.waitFor(
      'the batch',
      async () => (await rig.gateway.store.count()) === 0 || !rig.gateway.link.current.sendBulk,
      5000,
    );
  }
  const used = await metric(rig.gateway.metrics.text(), 'v2c_cellular_bytes_today');
  t.ok(used >= 8000, `budget used: ${used} bytes today`);
  t.equal(rig.gateway.link.current.sendBulk, false);
  t.ok(
    rig.logs.some((l) =>
      l.includes('link: cellular (wwan0) -> realtime: cellular: daily budget of 8000 bytes used; P2 waits'),
    ),
    'the switch is logged',
  );
  const waiting = await rig.insert(seq, 30, () => 2);
  seq += 30;
  const live = await rig.insert(seq, 10, (s) => (s % 5 === 0 ? 0 : 1));
  seq += 10;
  await rig.waitFor('P0/P1 over budget', () => live.every((id) => rig.seen.has(id)));
  await new Promise((resolve) => setTimeout(resolve, 600));
  t.same(
    waiting.filter((id) => rig.seen.has(id)),
    [],
    'no P2 record went after the budget ran out (3 batch ages later)',
  );
  t.equal(await rig.gateway.store.count(), 30, 'the P2 records wait in the store');
  t.same(missing(rig, sent.slice(0, 25)), [], 'the P2 sent within the budget arrived');
  t.equal(led.mode, 'online', 'LED steady on while online');

  const beforeWifi = await metric(rig.gateway.metrics.text(), 'v2c_cellular_bytes_today');
  t.ok(beforeWifi > used, 'the P0/P1 sent over budget were counted too');
  link.set({ kind: 'wifi', ssid: 'Depot' });
  await rig.waitFor('the depot offload', () => waiting.every((id) => rig.seen.has(id)));
  t.equal(
    await metric(rig.gateway.metrics.text(), 'v2c_cellular_bytes_today'),
    beforeWifi,
    'WiFi bytes do not count against the cellular budget',
  );
  t.match(await rig.gateway.metrics.text(), /v2c_link_mode\{mode="offload"\} 1/);
});

t.test('a week of backlog: cellular over budget keeps it, the depot WiFi drains it in large batches', async (t) => {
  const link = new BenchLinkMonitor({ kind: 'none' });
  const led = new BenchStatusLed();
  let storeDir = '';
  const rig = await syncRig(t, {
    devices: { linkMonitor: link, ignition: new BenchIgnition(false, systemClock), led },
    tune: (c) => {
      c.link.dailyCellularBudgetBytes = 100_000;
      c.link.allowedSsids = ['Depot'];
      c.link.parkedAfterMs = 3_600_000;
      storeDir = c.store.dir;
      // Today's budget was used on the road before this start.
      mkdirSync(storeDir, { recursive: true });
      writeFileSync(
        join(storeDir, 'cellular-budget.json'),
        JSON.stringify({ day: new Date().toISOString().slice(0, 10), bytes: 100_000 }),
      );
    },
  });
  // One record a minute for a week, all waiting.
  const week = await rig.insert(1, 10_080, () => 2);
  t.equal(await rig.gateway.store.count(), 10_080);
  link.set({ kind: 'cellular', iface: 'wwan0' });
  await new Promise((resolve) => setTimeout(resolve, 1000));
  t.equal(rig.sink.counts.unique, 0, "on cellular with the day's budget used, none of the backlog goes");
  t.equal(rig.gateway.link.current.reason, 'cellular: daily budget of 100000 bytes used; P2 waits');

  const batchesBefore = rig.gateway.sender.counters.batches;
  const failedBefore = rig.gateway.sender.counters.failed;
  const started = Date.now();
  link.set({ kind: 'wifi', ssid: 'Depot' });
  await rig.waitFor('the whole week', () => rig.sink.counts.unique === 10_080, 120_000);
  const seconds = (Date.now() - started) / 1000;
  t.same(missing(rig, week), []);
  // Batches whose publish failed (a PUBACK late on a loaded machine) are sent again: count the ones that went through.
  const failed = rig.gateway.sender.counters.failed - failedBefore;
  const batches = rig.gateway.sender.counters.batches - batchesBefore - failed;
  t.ok(
    batches <= 10_080 / 500 + 5,
    `offloaded in ${batches} acknowledged batches of up to 500 (${failed} attempts failed and were repeated)`,
  );
  t.comment(
    `offload over MQTT on loopback: 10,080 records in ${seconds.toFixed(1)} s = ${Math.round(10_080 / seconds)} records/s`,
  );
  await rig.waitFor('the store empty', async () => (await rig.gateway.store.count()) === 0, 10_000);
});

t.test('parked on an ordinary WiFi: offload starts once the ignition has been off for parkedAfterMs', async (t) => {
  const link = new BenchLinkMonitor({ kind: 'wifi', ssid: 'Cafe' });
  const ignition = new BenchIgnition(true, systemClock);
  const rig = await syncRig(t, {
    devices: { linkMonitor: link, ignition, led: null },
    tune: (c) => {
      c.link.dailyCellularBudgetBytes = 0;
      c.link.parkedAfterMs = 800;
    },
  });
  await rig.waitFor('online', () => rig.gateway.session.isConnected);
  const bulk = await rig.insert(1, 40, () => 2);
  await new Promise((resolve) => setTimeout(resolve, 500));
  t.equal(rig.sink.counts.unique, 0, 'driving on an untrusted WiFi with no budget: P2 waits');
  ignition.set(false);
  const off = Date.now();
  await rig.waitFor('offload once parked', () => bulk.every((id) => rig.seen.has(id)), 10_000);
  t.ok(Date.now() - off >= 700, `not before the parking time (${Date.now() - off} ms)`);
  t.ok(rig.logs.some((l) => l.includes('-> offload: parked on WiFi "Cafe"')));
  t.match(await rig.gateway.metrics.text(), /v2c_ignition_on 0/);
});

t.test('links flapping between WiFi, cellular and none mid-upload: nothing lost, duplicates only by id', async (t) => {
  const link = new BenchLinkMonitor({ kind: 'none' });
  const led = new BenchStatusLed();
  const rig = await syncRig(t, {
    devices: { linkMonitor: link, ignition: null, led },
    tune: (c) => {
      c.link.dailyCellularBudgetBytes = 0;
      c.link.allowedSsids = ['Depot'];
    },
  });
  const ids = await rig.insert(1, 3000, (s) => (s % 50 === 0 ? 0 : s % 3 === 0 ? 1 : 2));
  link.set({ kind: 'wifi', ssid: 'Depot' });
  const states = [{ kind: 'cellular', iface: 'wwan0' }, { kind: 'none' }, { kind: 'wifi', ssid: 'Depot' }] as const;
  for (let i = 0; i < 24; i++) {
    await new Promise((resolve) => setTimeout(resolve, 120));
    const next = states[i % states.length] ?? states[0];
    // Losing the link loses every socket with it (RST), whatever state the session is in: a
    // blackhole alone would cut a hole into a live TCP stream (mid-connect, or while mqtt.js replays
    // its store before 'connect'), which no real network does and which can splice two PUBLISHes.
    rig.proxy.blackhole = next.kind === 'none';
    if (next.kind === 'none') rig.proxy.resetAll();
    link.set(next);
  }
  rig.proxy.blackhole = false;
  link.set({ kind: 'wifi', ssid: 'Depot' });
  await rig.waitFor('every record', () => rig.sink.counts.unique === 3000, 60_000);
  t.same(missing(rig, ids), [], 'every id arrived');
  t.same(sinkRejections(rig), [], 'the sink refused nothing');
  t.comment(`duplicates at the sink: ${rig.sink.counts.duplicates}`);
  await rig.waitFor('the store empty', async () => (await rig.gateway.store.count()) === 0, 10_000);
  await rig.waitFor('online again', () => rig.gateway.session.isConnected, 10_000);
  t.ok(
    led.history.includes('offline') && led.mode === 'online',
    `LED went offline and back (${led.history.join(' -> ')})`,
  );
});
