// Chaos (issue 4 item 10): 10,000 records stored over at least 60 s while the proxy injects faults
// at random (blackholes, resets, latency, cuts mid-packet, withheld PUBACKs). The sink must see
// every record id; duplicates are allowed and counted, losses are not.
import t from 'tap';
import type { Packet } from 'mqtt-packet';
import { mulberry32 } from '../drivers/reference-vehicle/seeded-random.js';
import { missing, syncRig } from './sync-rig.js';

const RECORDS = 10_000;
const DURATION_MS = 60_000;
const SEED = Number(process.env.V2C_CHAOS_SEED ?? 20261123);

t.test(`chaos: ${RECORDS} records over ${DURATION_MS / 1000} s of random faults, nothing lost (seed ${SEED})`, async (t) => {
  const random = mulberry32(SEED);
  let pubackDropRate = 0;
  const rig = await syncRig(t, {
    beforeStart: (proxy) => { proxy.toClient = (p: Packet) => (p.cmd === 'puback' && random() < pubackDropRate ? null : p); },
  });
  const faults = new Map<string, number>();
  const injected = (kind: string): void => { faults.set(kind, (faults.get(kind) ?? 0) + 1); };
  const started = Date.now();
  let chaosOn = true;
  const chaos = (async () => {
    while (chaosOn) {
      await new Promise((resolve) => setTimeout(resolve, 300 + random() * 1500));
      if (!chaosOn) break;
      const pick = random();
      if (pick < 0.2) {
        injected('blackhole');
        rig.proxy.blackhole = true;
        await new Promise((resolve) => setTimeout(resolve, 300 + random() * 1500));
        rig.proxy.blackhole = false;
      } else if (pick < 0.4) {
        injected('reset');
        rig.proxy.resetAll();
      } else if (pick < 0.55) {
        injected('latency');
        rig.proxy.latencyMs = Math.round(20 + random() * 200);
      } else if (pick < 0.7) {
        injected('cut');
        rig.proxy.cutAfterBytes = Math.round(2000 + random() * 30_000);
      } else if (pick < 0.85) {
        injected('puback_loss');
        pubackDropRate = 0.02 + random() * 0.1;
      } else {
        injected('calm');
        rig.proxy.latencyMs = 0;
        rig.proxy.cutAfterBytes = null;
        pubackDropRate = 0;
      }
    }
  })();

  const ids: string[] = [];
  const perTick = Math.ceil(RECORDS / (DURATION_MS / 100));
  while (ids.length < RECORDS) {
    const tickEnd = Date.now() + 100;
    ids.push(...(await rig.insert(ids.length, Math.min(perTick, RECORDS - ids.length), (seq) => (seq % 50 === 0 ? 0 : seq % 4 === 0 ? 2 : 1))));
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, tickEnd - Date.now())));
  }
  while (Date.now() - started < DURATION_MS) await new Promise((resolve) => setTimeout(resolve, 100));
  chaosOn = false;
  await chaos;
  rig.proxy.blackhole = false;
  rig.proxy.latencyMs = 0;
  rig.proxy.cutAfterBytes = null;
  pubackDropRate = 0;
  rig.gateway.sender.flush();
  const faultSeconds = (Date.now() - started) / 1000;
  await rig.waitFor('every record at the sink', () => rig.sink.counts.unique >= RECORDS, 120_000);
  await rig.waitFor('the outbox empty', async () => (await rig.gateway.store.count()) === 0, 30_000);
  await rig.sink.settled();

  const lost = missing(rig, ids);
  const c = rig.sink.counts;
  t.comment(`faults over ${faultSeconds.toFixed(0)} s: ${[...faults].map(([k, n]) => `${k}=${n}`).join(' ')}; connections through the proxy: ${rig.proxy.connections}`);
  t.comment(`sent=${ids.length} received=${c.received} unique=${c.unique} duplicates=${c.duplicates} rejected=${c.rejected} lost=${lost.length}`);
  t.equal(ids.length, RECORDS, 'every record was stored');
  t.ok(faultSeconds >= DURATION_MS / 1000, 'faults were injected for the whole duration');
  t.ok(faults.size >= 5, `every kind of fault happened (${faults.size} kinds)`);
  t.ok(rig.proxy.connections > 3, 'the faults forced reconnections');
  t.same(lost, [], 'lost = 0: the sink saw every record id');
  t.equal(c.unique, RECORDS, 'unique = sent');
  t.equal(c.received, c.unique + c.duplicates, 'received = unique + duplicates');
  t.equal(c.rejected, 0, 'nothing rejected');
});
