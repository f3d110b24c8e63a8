// Chaos (issue 12 §2): 10,000 records stored over at least 60 s while every fault of the FMEA hits
// the sync engine in random order: the proxy's network faults, refused CONNACKs and PUBACKs, a
// strict broker's Receive Maximum and Maximum Packet Size, a broker SIGKILL, a full local buffer.
// Each kind must be seen to take effect; the sink must see every record that was not dropped by the
// P2 quota (and only P2 may be); every resend carries DUP; a record whose PUBACK never comes is resent
// only on new connections (MQTT 5 §4.4) and rests after its 3rd resend. Live records go compact (the
// default), so layouts are lost, resent and re-announced under the same faults.
import t from 'tap';
import { createHash } from 'node:crypto';
import type { IConnackPacket, IPublishPacket, Packet } from 'mqtt-packet';
import { mulberry32 } from '../bench/rig/seeded-random.js';
import { LiveReader } from '../receiver/live-reader.js';
import type { FaultProxy, LinkControl } from '../bench/rig/fault-proxy.js';
import { packetBytes } from './strict-broker.js';
import { missing, syncRig, type SyncRig } from './sync-rig.js';

const RECORDS = 10_000;
const DURATION_MS = 60_000;
/** Rounds (every kind once, shuffled) after which a kind never seen to take effect fails the test. */
const MAX_ROUNDS = 6;
const SEED = Number(process.env.V2C_CHAOS_SEED ?? 20261123);
const P2_QUOTA_BYTES = 1_000_000;
const STRICT_RECEIVE_MAXIMUM = 2;
const STRICT_MAX_PACKET = 2400;

interface Send {
  atMs: number;
  dup: boolean;
  connection: number;
  messageId: number;
  /** The gateway had the PUBACK of this payload's previous send: this one is a new publication (a layout announced again). */
  afterPuback: boolean;
}

/** What the fault proxy's rewrites inject and what they see, for one gateway connection after another. */
class ChaosNet {
  pubackDropRate = 0;
  pubacksDropped = 0;
  pubacksDelayed = 0;
  /** Applied to the next CONNACK that passes: a refusal, or limits a strict broker would enforce. */
  nextConnack: { reasonCode: number } | { receiveMaximum?: number; maximumPacketSize?: number } | null = null;
  /** Answers the next eligible QoS 1 PUBLISH with this PUBACK reason code instead of the broker. */
  refusePublishWith: number | null = null;
  /** PUBACKs withheld for one P0 single (by payload digest), and how many so far. */
  withheld: { digest: string | null; recordId: string | null; drops: number } | null = null;
  /** Each payload digest's sends as the broker side saw them. */
  readonly sends = new Map<string, Send[]>();
  /** Limits and in-flight packet ids of the connections that got strict limits. */
  readonly strict = new Map<
    number,
    { receiveMaximum?: number; maximumPacketSize?: number; inflight: Set<number>; publishes: number }
  >();
  readonly violations: string[] = [];
  readonly refusedPublishes = new Map<number, number>();
  private readonly digests = new Map<string, string>();
  /** Payloads whose last send's PUBACK reached the gateway. */
  private readonly answered = new Set<string>();
  /** Reads the gateway's live records as a receiver would, layouts learnt as they pass. */
  private readonly live = new LiveReader();
  /** Topics of the layouts published, and how many times one was. */
  readonly layoutTopics = new Set<string>();
  layoutSends = 0;
  /** Layout sends after the gateway had the previous one's PUBACK: the broker began a new session. */
  layoutsAnnouncedAgain = 0;

  constructor(
    private readonly random: () => number,
    private readonly latencyMs: () => number,
    private readonly topicOf: (p: IPublishPacket, connection: number) => string,
  ) {}

  toServer(p: Packet, connection: number, link: LinkControl): Packet | null {
    if (p.cmd !== 'publish' || p.qos !== 1) return p;
    const digest = createHash('sha256')
      .update(p.payload as Buffer)
      .digest('hex')
      .slice(0, 24);
    const sends = this.sends.get(digest) ?? [];
    // Heartbeats are empty: each is a new message, though every payload is the same.
    if ((p.payload as Buffer).byteLength > 0) {
      const afterPuback = this.answered.delete(digest);
      sends.push({ atMs: Date.now(), dup: p.dup, connection, messageId: p.messageId as number, afterPuback });
      this.sends.set(digest, sends);
    }
    const topic = this.topicOf(p, connection);
    if (topic.includes('/telemetry/layout/')) {
      this.layoutSends++;
      if (sends.at(-1)?.afterPuback === true) this.layoutsAnnouncedAgain++;
      this.layoutTopics.add(topic);
      this.live.read(topic, p.payload as Buffer);
    }
    const id = p.messageId as number;
    const strict = this.strict.get(connection);
    if (strict !== undefined) {
      strict.publishes++;
      if (strict.maximumPacketSize !== undefined && packetBytes(p) > strict.maximumPacketSize)
        return this.violate(
          link,
          0x95,
          `a ${packetBytes(p)}-byte PUBLISH over the CONNACK's ${strict.maximumPacketSize}`,
        );
      strict.inflight.add(id);
      if (strict.receiveMaximum !== undefined && strict.inflight.size > strict.receiveMaximum)
        return this.violate(
          link,
          0x93,
          `${strict.inflight.size} QoS 1 PUBLISHes in flight over the CONNACK's Receive Maximum ${strict.receiveMaximum}`,
        );
    }
    // A PUBLISH that sets up a topic alias must reach the broker, or later ones using it would not resolve.
    const setsAlias = p.topic !== '' && p.properties?.topicAlias !== undefined;
    if (this.refusePublishWith !== null && !setsAlias) {
      const reasonCode = this.refusePublishWith;
      this.refusePublishWith = null;
      this.refusedPublishes.set(reasonCode, (this.refusedPublishes.get(reasonCode) ?? 0) + 1);
      strict?.inflight.delete(id);
      link.answer({ cmd: 'puback', messageId: id, reasonCode });
      return null;
    }
    if (this.withheld !== null && this.withheld.digest === null && sends.length === 1 && topic.endsWith('/compact')) {
      // A record whose layout the net has not seen (a refused layout PUBLISH) is not picked.
      const record = (() => {
        try {
          return this.live.read(topic, p.payload as Buffer);
        } catch {
          return null;
        }
      })();
      if (record?.priority === 0) Object.assign(this.withheld, { digest, recordId: record.messageId });
    }
    this.digests.set(`${connection}:${id}`, digest);
    return p;
  }

  toClient(p: Packet, connection: number): Packet | null {
    if (p.cmd === 'connack') return this.connack(p, connection);
    if (p.cmd !== 'puback') return p;
    const key = `${connection}:${p.messageId as number}`;
    const digest = this.digests.get(key);
    this.digests.delete(key);
    // The broker has taken it: it no longer counts against the broker's Receive Maximum.
    this.strict.get(connection)?.inflight.delete(p.messageId as number);
    if (this.withheld !== null && digest !== undefined && digest === this.withheld.digest && this.withheld.drops < 4) {
      this.withheld.drops++;
      return null;
    }
    if (this.random() < this.pubackDropRate) {
      this.pubacksDropped++;
      return null;
    }
    if (this.latencyMs() > 0) this.pubacksDelayed++;
    if (digest !== undefined) this.answered.add(digest);
    return p;
  }

  calm(rig: SyncRig): void {
    rig.proxy.latencyMs = 0;
    rig.proxy.cutAfterBytes = null;
    this.pubackDropRate = 0;
  }

  private connack(p: IConnackPacket, connection: number): Packet {
    const next = this.nextConnack;
    this.nextConnack = null;
    if (next === null || p.reasonCode !== 0) return p;
    if ('reasonCode' in next) return { ...p, reasonCode: next.reasonCode, sessionPresent: false };
    this.strict.set(connection, { ...next, inflight: new Set(), publishes: 0 });
    return { ...p, properties: { ...p.properties, ...next } };
  }

  private violate(link: LinkControl, reasonCode: number, what: string): null {
    this.violations.push(what);
    link.answer({ cmd: 'disconnect', reasonCode, properties: { reasonString: what } });
    link.close();
    return null;
  }
}

/** Polls until `predicate` holds (true) or `maxMs` pass (false): a fault whose effect was not seen this time. */
async function observe(predicate: () => boolean | Promise<boolean>, maxMs = 20_000): Promise<boolean> {
  const until = Date.now() + maxMs;
  while (!(await predicate())) {
    if (Date.now() > until) return false;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return true;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

t.test(
  `chaos: ${RECORDS} records over ${DURATION_MS / 1000}+ s of every FMEA fault at random, nothing lost (seed ${SEED})`,
  async (t) => {
    const random = mulberry32(SEED);
    let rigRef: SyncRig | null = null;
    let proxyRef: FaultProxy | null = null;
    /** When the gateway gave up on a record after its resends (by record id): its rest starts then. */
    const gaveUpAt = new Map<string, number>();
    const net = new ChaosNet(
      random,
      () => rigRef?.proxy.latencyMs ?? 0,
      (p, connection) => (proxyRef as FaultProxy).topicOf(p, connection),
    );
    const rig = await syncRig(t, {
      tune: (c) => {
        c.store.quotaBytes = { p2: P2_QUOTA_BYTES };
      },
      onLog: (line) => {
        const gaveUp = /^outbox: record (\S+) not acknowledged after 3 resends, each on a new connection/.exec(line);
        if (gaveUp !== null) gaveUpAt.set(gaveUp[1] as string, Date.now());
      },
      beforeStart: (proxy) => {
        proxyRef = proxy;
        proxy.toServer = (p, connection, link) => net.toServer(p, connection, link);
        proxy.toClient = (p, connection) => net.toClient(p, connection);
      },
    });
    rigRef = rig;
    const { proxy, gateway, sink } = rig;
    const sender = gateway.sender;
    const session = gateway.session;
    const priorityOf = new Map<string, number>();
    const ids: string[] = [];
    let nextSeq = 0;
    const store = async (n: number, priority: (seq: number) => number): Promise<void> => {
      const from = nextSeq;
      nextSeq += n;
      const stored = await rig.insert(from, n, priority);
      stored.forEach((id, i) => priorityOf.set(id, priority(from + i)));
      ids.push(...stored);
    };
    const quotaDrops = (): number => gateway.store.counters.dropped.get('2|quota') ?? 0;
    const dropped = new Map<string, string>();
    gateway.store.drops.subscribe((d) => dropped.set(d.id, `P${d.priority} ${d.reason}`));
    const refuseConnack = (reasonCode: number) => async (): Promise<boolean> => {
      const before = session.counters.connackRefusals.get(reasonCode) ?? 0;
      net.nextConnack = { reasonCode };
      proxy.resetAll();
      const seen = await observe(() => (session.counters.connackRefusals.get(reasonCode) ?? 0) > before);
      net.nextConnack = null;
      return seen;
    };
    const refusePublish = (reasonCode: number, seen: () => number) => async (): Promise<boolean> => {
      const before = seen();
      net.refusePublishWith = reasonCode;
      const seenIt = await observe(() => seen() > before);
      net.refusePublishWith = null;
      return seenIt;
    };
    const strictConnection =
      (limits: { receiveMaximum?: number; maximumPacketSize?: number }, effect: () => Promise<boolean>) =>
      async (): Promise<boolean> => {
        const connections = proxy.connections;
        net.nextConnack = limits;
        proxy.resetAll();
        if (!(await observe(() => [...net.strict.keys()].some((c) => c > connections)))) return false;
        return effect();
      };
    const withheldSequences: { recordId: string; sends: Send[] }[] = [];

    // Each returns whether its effect was seen: a fault that never takes effect proves nothing.
    const faults: Record<string, () => Promise<boolean>> = {
      blackhole: async () => {
        const before = proxy.blackholedBytes;
        proxy.blackhole = true;
        await sleep(300 + random() * 1500);
        proxy.blackhole = false;
        return proxy.blackholedBytes > before;
      },
      reset: async () => {
        const before = proxy.connections;
        proxy.resetAll();
        return observe(() => proxy.connections > before);
      },
      latency: async () => {
        const before = net.pubacksDelayed;
        proxy.latencyMs = Math.round(20 + random() * 200);
        return observe(() => net.pubacksDelayed > before);
      },
      cut: async () => {
        const before = proxy.cuts;
        proxy.cutAfterBytes = Math.round(2000 + random() * 30_000);
        return observe(() => proxy.cuts > before);
      },
      puback_loss: async () => {
        const before = net.pubacksDropped;
        net.pubackDropRate = 0.02 + random() * 0.1;
        return observe(() => net.pubacksDropped > before);
      },
      // Every PUBACK of one P0 record withheld: the original and its 3 resends, then it must rest.
      puback_withheld: async () => {
        net.calm(rig);
        net.withheld = { digest: null, recordId: null, drops: 0 };
        await store(1, () => 0);
        const sentAfterRest = (): boolean => {
          const { digest, recordId } = net.withheld ?? { digest: null, recordId: null };
          const gaveUp = recordId !== null ? gaveUpAt.get(recordId) : undefined;
          return digest !== null && gaveUp !== undefined && (net.sends.get(digest) ?? []).some((s) => s.atMs >= gaveUp);
        };
        const rested = await observe(sentAfterRest);
        const { digest, recordId } = net.withheld ?? { digest: null, recordId: null };
        net.withheld = null;
        const sends = digest !== null ? (net.sends.get(digest) ?? []) : [];
        const gaveUp = recordId !== null ? gaveUpAt.get(recordId) : undefined;
        // Only a sequence no other fault touched (exactly the four withheld sends before the gateway gave up) shows the rest.
        if (!rested || recordId === null || gaveUp === undefined || sends.filter((s) => s.atMs < gaveUp).length !== 4)
          return false;
        withheldSequences.push({ recordId, sends });
        return true;
      },
      connack_0x86: refuseConnack(0x86),
      connack_0x87: refuseConnack(0x87),
      connack_0x8c: refuseConnack(0x8c),
      connack_0x97: refuseConnack(0x97),
      puback_0x87: refusePublish(0x87, () => sender.counters.notAuthorised),
      puback_0x97: refusePublish(0x97, () => sender.counters.quotaPauses),
      // A broker with a small Maximum Packet Size: batches over it must be split, never sent.
      over_max_packet: strictConnection({ maximumPacketSize: STRICT_MAX_PACKET }, async () => {
        const splits = sender.counters.splits;
        await store(120, () => 2);
        return observe(() => sender.counters.splits > splits);
      }),
      receive_maximum: strictConnection({ receiveMaximum: STRICT_RECEIVE_MAXIMUM }, async () => {
        const limited = [...net.strict.values()].at(-1);
        await store(30, () => 1);
        return observe(() => (limited?.publishes ?? 0) >= 10);
      }),
      // The broker crashes. The gateway is held off (blackhole) until the sink has subscribed again,
      // and the crash comes once the sink has what the broker had: Mosquitto without persistence
      // loses what it holds, and that loss is the broker's, not the one under test.
      broker_sigkill: async () => {
        net.calm(rig);
        proxy.blackhole = true;
        let last = sink.counts.received;
        let quietSince = Date.now();
        await observe(() => {
          if (sink.counts.received !== last) [last, quietSince] = [sink.counts.received, Date.now()];
          return Date.now() - quietSince > 500;
        }, 60_000);
        const subscribed = sink.subscribed;
        await rig.broker.restart('SIGKILL');
        const back = await observe(() => sink.subscribed > subscribed, 60_000);
        const connections = proxy.connections;
        proxy.resetAll();
        proxy.blackhole = false;
        return back && (await observe(() => proxy.connections > connections && session.isConnected));
      },
      // Offline with P2 arriving faster than it can be kept: P2 over its byte quota drops its oldest.
      buffer_overflow: async () => {
        const before = quotaDrops();
        proxy.blackhole = true;
        for (let i = 0; i < 40 && quotaDrops() === before; i++) await store(50, () => 2);
        proxy.blackhole = false;
        return quotaDrops() > before;
      },
    };
    const kinds = Object.keys(faults);
    const injected = new Map<string, number>(kinds.map((k) => [k, 0]));
    const effective = new Map<string, number>(kinds.map((k) => [k, 0]));

    const started = Date.now();
    const chaos = (async () => {
      for (let round = 0; round < MAX_ROUNDS; round++) {
        // Past the duration, rounds go on only while some kind has not been seen to work.
        if (Date.now() - started >= DURATION_MS && kinds.every((k) => (effective.get(k) ?? 0) > 0)) break;
        const order = [...kinds].sort(() => random() - 0.5);
        for (const kind of order) {
          await sleep(300 + random() * 1200);
          injected.set(kind, (injected.get(kind) ?? 0) + 1);
          if (await (faults[kind] as () => Promise<boolean>)()) effective.set(kind, (effective.get(kind) ?? 0) + 1);
        }
      }
    })();

    const perTick = Math.ceil(RECORDS / (DURATION_MS / 100));
    let regular = 0;
    while (regular < RECORDS) {
      const tickEnd = Date.now() + 100;
      const n = Math.min(perTick, RECORDS - regular);
      regular += n;
      await store(n, (seq) => (seq % 50 === 0 ? 0 : seq % 4 === 0 ? 2 : 1));
      await sleep(Math.max(0, tickEnd - Date.now()));
    }
    await chaos;
    net.calm(rig);
    proxy.blackhole = false;
    // The operator fixes the policy behind the last refusals: the next connection takes what is parked.
    proxy.resetAll();
    sender.flush();
    const faultSeconds = (Date.now() - started) / 1000;
    const kept = async (): Promise<number> => gateway.store.count();
    await rig.waitFor('the outbox empty', async () => (await kept()) === 0 && sender.inFlight === 0, 30_000);
    await sink.settled();

    const lost = missing(rig, ids);
    const c = sink.counts;
    t.comment(
      `faults over ${faultSeconds.toFixed(0)} s, injected/took effect: ${kinds.map((k) => `${k}=${injected.get(k)}/${effective.get(k)}`).join(' ')}`,
    );
    t.comment(
      `stored=${ids.length} received=${c.received} unique=${c.unique} duplicates=${c.duplicates} rejected=${c.rejected} dropped by the P2 quota=${dropped.size} lost=${lost.filter((id) => !dropped.has(id)).length} connections=${proxy.connections} resends=${sender.counters.resends}`,
    );
    for (const kind of kinds)
      t.ok(
        (effective.get(kind) ?? 0) > 0,
        `${kind}: took effect ${effective.get(kind)} of ${injected.get(kind)} times`,
      );
    t.same(net.violations, [], "the gateway never exceeded a strict broker's Receive Maximum or Maximum Packet Size");
    t.same(
      lost.filter((id) => !dropped.has(id)),
      [],
      'lost = 0: the sink saw every record the store did not drop',
    );
    t.same([...new Set(dropped.values())], ['P2 quota'], 'the store dropped only P2 records, by their quota');
    t.equal(c.rejected, 0, 'nothing rejected by the sink');

    const resends = [...net.sends.values()].flatMap((sends) => sends.slice(1).filter((s) => !s.afterPuback));
    t.ok(resends.length > 0, `${resends.length} resends seen at the broker side`);
    t.ok(
      net.layoutSends > net.layoutTopics.size,
      `layouts sent again under the faults: ${net.layoutSends} sends of ${net.layoutTopics.size} layouts, ${net.layoutsAnnouncedAgain} announced again after their PUBACK`,
    );
    t.same(resends.filter((s) => !s.dup).length, 0, 'every resend of a payload carries DUP');
    // The proxy runs in this process: it may see a send late (a stalled event loop), never early. So
    // the gap from the gateway giving up (its own log line) to the next send seen is a lower bound
    // that load cannot break; without a rest the send would follow at once.
    const { retryDelayMs } = rig.config.mqtt;
    for (const { recordId, sends } of withheldSequences) {
      t.same(
        sends.slice(1, 4).map((s) => s.dup),
        [true, true, true],
        `record ${recordId}: its 3 resends carry DUP`,
      );
      t.ok(
        sends.slice(1, 4).every((s, i) => s.connection > (sends[i] as Send).connection),
        `record ${recordId}: each resend on a new connection, never the live one (connections ${sends
          .slice(0, 4)
          .map((s) => s.connection)
          .join(', ')})`,
      );
      const gaveUp = gaveUpAt.get(recordId);
      t.ok(gaveUp !== undefined, `record ${recordId}: the gateway gave up after 3 resends (log line)`);
      const next = sends[4];
      t.ok(
        next !== undefined && next.atMs - (gaveUp as number) >= retryDelayMs - 1,
        `record ${recordId} rested: sent again ${next === undefined ? 'never' : `${next.atMs - (gaveUp as number)} ms`} after it was given up (retry delay ${retryDelayMs} ms)`,
      );
    }
  },
);
