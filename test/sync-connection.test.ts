// Connection-level FMEA rows against a real Mosquitto: refused CONNACKs (quota, credentials, server
// busy), PUBACK reason codes (quota, no matching subscribers), a server DISCONNECT, a broker killed
// with SIGKILL and restarted, and a full buffer while offline. Each injects its fault and checks
// the state the session enters, its timing, its metric, and that no record is lost.
import t from 'tap';
import type { Packet } from 'mqtt-packet';
import { missing, syncRig, type SyncRig } from './sync-rig.js';
import type { StateChange } from '../sync/session/mqtt-session.js';

/** A CONNACK rewrite that refuses the first `times` connections with `reasonCode`. */
function refuseConnack(reasonCode: number, times: number): (p: Packet) => Packet {
  let refused = 0;
  return (p) => (p.cmd === 'connack' && refused++ < times ? { ...p, reasonCode, sessionPresent: false } : p);
}

function recordStates(rig: SyncRig): StateChange[] {
  const states: StateChange[] = [];
  rig.gateway.session.states.subscribe((s) => states.push(s));
  return states;
}

t.test(
  'CONNACK 0x97 quota exceeded: waits quotaWaitMs plus jitter (not the fast backoff), then connects and delivers',
  async (t) => {
    const rig = await syncRig(t, {
      beforeStart: (proxy) => {
        proxy.toClient = refuseConnack(0x97, 2);
      },
    });
    const states = recordStates(rig);
    const ids = await rig.insert(1, 20, () => 1);
    await rig.waitFor('delivery', () => rig.sink.counts.unique === 20);
    const waits = states.filter((s) => s.state === 'quota-wait');
    // The first refusal happened before we subscribed: the state history holds the second one at least.
    t.ok(waits.length >= 1, `quota-wait entered (${waits.length} seen)`);
    for (const w of waits)
      t.ok(w.delayMs >= 500 && w.delayMs <= 700, `quota wait ${w.delayMs.toFixed(0)} ms within 500 + 0..200 ms`);
    t.notOk(
      states.some((s) => s.state === 'backoff'),
      'never the fast backoff for a quota refusal',
    );
    t.equal(rig.gateway.session.counters.connackRefusals.get(0x97), 2, 'both refusals counted');
    t.match(await rig.gateway.metrics.text(), /v2c_connack_refusals_total\{reason_code="0x97"\} 2/);
    t.same(missing(rig, ids), []);
  },
);

for (const [code, name] of [
  [0x86, 'bad user name or password'],
  [0x87, 'not authorised'],
] as const) {
  t.test(
    `CONNACK 0x${code.toString(16)} (${name}): no hot retry loop, certificate-renewal state and alert metric, recovers at the slow retry`,
    async (t) => {
      const rig = await syncRig(t, {
        beforeStart: (proxy) => {
          proxy.toClient = refuseConnack(code, 1);
        },
      });
      await rig.waitFor('certificate-renewal', () => rig.gateway.session.state === 'certificate-renewal', 5000);
      const attemptsAtRefusal = rig.gateway.session.counters.attempts;
      t.match(await rig.gateway.metrics.text(), /v2c_certificate_renewal_required 1/, 'alert metric raised');
      t.ok(
        rig.logs.some((l) => l.includes('refuses our credentials') && l.includes(`0x${code.toString(16)}`)),
        'the log names the refusal',
      );
      const ids = await rig.insert(1, 10, () => 0);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      t.equal(
        rig.gateway.session.counters.attempts,
        attemptsAtRefusal,
        'no new attempt within 1 s (slow retry is 1.5 s)',
      );
      t.equal(await rig.gateway.store.count(), 10, 'records kept meanwhile');
      await rig.waitFor('delivery after the slow retry', () => rig.sink.counts.unique === 10, 5000);
      t.match(await rig.gateway.metrics.text(), /v2c_certificate_renewal_required 0/, 'alert cleared once connected');
      t.same(missing(rig, ids), []);
    },
  );
}

for (const [code, name] of [
  [0x88, 'server unavailable'],
  [0x89, 'server busy'],
] as const) {
  t.test(`CONNACK 0x${code.toString(16)} (${name}): exponential backoff, then delivery`, async (t) => {
    const rig = await syncRig(t, {
      beforeStart: (proxy) => {
        proxy.toClient = refuseConnack(code, 3);
      },
    });
    const states = recordStates(rig);
    const ids = await rig.insert(1, 10, () => 1);
    await rig.waitFor('delivery', () => rig.sink.counts.unique === 10);
    const backoffs = states.filter((s) => s.state === 'backoff');
    t.ok(backoffs.length >= 2, `backoff entered after each refusal (${backoffs.length} seen)`);
    t.ok(
      backoffs.every((s) => s.reason === `connack 0x${code.toString(16)}`),
      'the reason names the CONNACK code',
    );
    const delays = backoffs.map((s) => s.delayMs);
    t.ok((delays.at(-1) ?? 0) > (delays[0] ?? 0), `the delay grows (${delays.map((d) => d.toFixed(0)).join(', ')} ms)`);
    t.same(missing(rig, ids), []);
  });
}

t.test('PUBACK 0x97 quota exceeded: publishing pauses, the records stay and go out after the pause', async (t) => {
  let quota = 3;
  const rig = await syncRig(t, {
    beforeStart: (proxy) => {
      proxy.toClient = (p) => (p.cmd === 'puback' && quota-- > 0 ? { ...p, reasonCode: 0x97 } : p);
    },
  });
  await rig.waitFor('online', () => rig.gateway.session.isConnected);
  const ids = await rig.insert(1, 10, () => 1);
  await rig.waitFor('a quota pause', () => rig.gateway.sender.counters.quotaPauses > 0);
  t.ok(
    rig.logs.some((l) => /quota is exceeded \(PUBACK 0x97\); publishing pauses for/.test(l)),
    'the pause is logged',
  );
  await rig.waitFor('delivery after the pause', async () => (await rig.gateway.store.count()) === 0);
  t.same(missing(rig, ids), [], 'every record arrived');
  t.equal(rig.gateway.session.state, 'online', 'the connection itself was never dropped');
});

t.test('PUBACK 0x10 no matching subscribers is success: the records leave the outbox', async (t) => {
  let rewritten = 0;
  const rig = await syncRig(t, {
    beforeStart: (proxy) => {
      proxy.toClient = (p) => {
        if (p.cmd !== 'puback') return p;
        rewritten++;
        return { ...p, reasonCode: 0x10 };
      };
    },
  });
  await rig.insert(1, 5, () => 1);
  await rig.waitFor('outbox empty', async () => (await rig.gateway.store.count()) === 0);
  t.ok(rewritten >= 5, `every PUBACK carried 0x10 (${rewritten})`);
  t.equal(rig.gateway.sender.counters.acked, 5, 'all five counted as acknowledged');
  t.equal(rig.gateway.sender.counters.failed, 0, 'none as failed');
});

// Mosquitto 2.0 closes a taken-over session without a DISCONNECT, so the proxy plays the broker here.
for (const [code, name, state] of [
  [0x8b, 'server shutting down', 'backoff'],
  [0x97, 'quota exceeded', 'quota-wait'],
] as const) {
  t.test(
    `server DISCONNECT 0x${code.toString(16)} (${name}): the reason is logged and counted, ${state}, the session comes back, nothing lost`,
    async (t) => {
      const rig = await syncRig(t);
      const states = recordStates(rig);
      await rig.waitFor('online', () => rig.gateway.session.isConnected);
      const first = await rig.insert(1, 10, () => 1);
      await rig.waitFor('first delivery', () => rig.sink.counts.unique === 10);
      rig.proxy.disconnectAll(code, `test: ${name}`);
      await rig.waitFor('the DISCONNECT', () => rig.gateway.session.counters.serverDisconnects.get(code) === 1);
      t.ok(
        rig.logs.some((l) => l.includes(`the broker sent DISCONNECT 0x${code.toString(16)} (test: ${name})`)),
        'logged with its reason code and reason string',
      );
      const second = await rig.insert(11, 10, () => 1);
      await rig.waitFor('delivery', () => rig.sink.counts.unique === 20);
      const after = states.find((s) => s.state !== 'online' && s.state !== 'connecting' && states.indexOf(s) > 0);
      t.equal(after?.state, state, `then ${state}`);
      t.equal(after?.reason, `server-disconnect 0x${code.toString(16)}`);
      t.same(missing(rig, [...first, ...second]), []);
      t.match(
        await rig.gateway.metrics.text(),
        new RegExp(`v2c_server_disconnects_total\\{reason_code="0x${code.toString(16)}"\\} 1`),
      );
    },
  );
}

t.test(
  'broker killed with SIGKILL mid-stream and restarted: in-flight records are resent (duplicates only), nothing lost',
  async (t) => {
    const rig = await syncRig(t);
    await rig.waitFor('online', () => rig.gateway.session.isConnected);
    // PUBACKs slowed down, so some publishes are in flight when the broker dies.
    rig.proxy.latencyMs = 100;
    const before = await rig.insert(1, 40, () => 1);
    await rig.waitFor('some delivered', () => rig.sink.counts.unique >= 5);
    // The proxy holds the gateway off until the sink has its subscription back on the new broker.
    rig.proxy.blackhole = true;
    const subscribed = rig.sink.subscribed;
    await rig.broker.restart('SIGKILL');
    t.ok(rig.gateway.session.counters.attempts >= 1);
    const during = await rig.insert(41, 20, () => 1);
    await rig.waitFor('the sink back', () => rig.sink.subscribed > subscribed);
    rig.proxy.latencyMs = 0;
    rig.proxy.resetAll();
    rig.proxy.blackhole = false;
    await rig.waitFor('delivery after the restart', () => rig.sink.counts.unique === 60, 30_000);
    t.same(missing(rig, [...before, ...during]), [], 'every record arrived');
    await rig.waitFor('outbox empty', async () => (await rig.gateway.store.count()) === 0);
    t.comment(`duplicates after the crash: ${rig.sink.counts.duplicates}`);
  },
);

t.test(
  'local buffer overflow while offline: P2 over its byte quota drops its own oldest (counted), P0 kept and sent first',
  async (t) => {
    const rig = await syncRig(t, {
      beforeStart: (proxy) => {
        proxy.blackhole = true;
      },
      tune: (c) => {
        c.store.quotaBytes = { p2: 20_000 };
      },
    });
    const p0 = await rig.insert(1, 10, () => 0);
    const p2 = await rig.insert(11, 40, () => 2);
    const droppedP2 = rig.gateway.store.counters.dropped.get('2|quota') ?? 0;
    t.ok(droppedP2 > 0 && droppedP2 < 40, `P2 beyond 20 kB dropped its oldest (${droppedP2} of 40)`);
    t.ok(rig.gateway.store.bytesOf(2) <= 20_000, `P2 within its quota (${rig.gateway.store.bytesOf(2)} bytes)`);
    t.equal(await rig.gateway.store.count(0), 10, 'every P0 kept');
    t.match(
      await rig.gateway.metrics.text(),
      new RegExp(`v2c_dropped_total\\{priority="2",reason="quota"\\} ${droppedP2}`),
    );
    const order: number[] = [];
    rig.sink.onRecord = (r) => {
      rig.seen.add(r.messageId);
      order.push(r.priority);
    };
    rig.proxy.blackhole = false;
    await rig.waitFor('delivery', () => rig.sink.counts.unique === 10 + 40 - droppedP2);
    t.same(missing(rig, [...p0, ...p2.slice(droppedP2)]), [], 'all P0 and every P2 kept arrived');
    t.same(order.slice(0, 10), new Array(10).fill(0), 'the ten P0 events arrived before any P2');
  },
);

t.test(
  'records sent, then dropped by the P2 quota before their PUBACK, leave nothing behind in the sender',
  async (t) => {
    let withhold = false;
    const rig = await syncRig(t, {
      beforeStart: (proxy) => {
        proxy.toClient = (p: Packet) => (withhold && p.cmd === 'puback' ? null : p);
      },
      tune: (c) => {
        c.store.quotaBytes = { p2: 40_000 };
      },
    });
    await rig.waitFor('online', () => rig.gateway.session.isConnected);
    const sender = rig.gateway.sender;
    const store = rig.gateway.store;
    withhold = true;
    await rig.insert(1, 10, () => 2);
    t.equal(store.counters.dropped.get('2|quota') ?? 0, 0, 'the first ten fit the quota');
    // Sent and never acknowledged: the sender marks them (a resend carries DUP) and counts their timeouts.
    await rig.waitFor('the ten sent and unanswered', () => sender.trackedRecords >= 10);
    // Then the quota drops the oldest P2, those ten among them, while they wait for a PUBACK.
    await rig.insert(11, 100, () => 2);
    const dropped = store.counters.dropped.get('2|quota') ?? 0;
    t.ok(dropped >= 10, `${dropped} dropped by the quota, the ten sent ones first`);
    withhold = false;
    await rig.waitFor('the outbox empty', async () => (await store.count()) === 0 && sender.inFlight === 0, 30_000);
    t.equal(sender.trackedRecords, 0, 'nothing kept about records that are gone');
  },
);

t.test(
  'a CONNACK lost on the way (connack timeout) still made a session: the next connection, "session present", subscribes again',
  async (t) => {
    let dropped = 0;
    const rig = await syncRig(t, {
      // The broker's first CONNACK never reaches the gateway: it gives up, while the broker keeps the session.
      beforeStart: (proxy) => {
        proxy.toClient = (p) => (p.cmd === 'connack' && dropped++ === 0 ? null : p);
      },
      tune: (c) => {
        c.clock.brokerTime = true;
      },
    });
    await rig.waitFor('connected', () => rig.gateway.session.isConnected, 20_000);
    t.ok(
      rig.logs.some((l) => l.includes('connack timeout')),
      'the first CONNACK was given up on',
    );
    t.ok(
      rig.logs.some((l) => l.includes('session present: true')),
      "and the broker kept that connection's session",
    );
    // The time answer comes on the response topic only if the gateway subscribed to it.
    await rig.waitFor('the broker time reference', () => rig.gateway.time.reference !== null, 20_000);
    t.ok(rig.gateway.time.reference !== null, 'the time answer arrived: the response topic is subscribed');
  },
);
