// Clock-skew correction: NMEA time sentences (table), the corrector with a controlled clock
// (table), a serial GPS on a pty, and a cold boot with the clock 3 days behind through the real
// gateway, Mosquitto and the sink answering time requests.
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { openPtyPair } from '../bench/rig/pty-pair.js';
import { SampleRecords } from '../bench/rig/sample-records.js';
import { systemClock, type Clock } from '../core/clock.js';
import { NmeaError, parseNmeaTime } from '../drivers/nmea.js';
import { TimeQuality, type VehicleTelemetry } from '../proto/telemetry-codec.js';
import { ClockCorrector } from '../sync/time/clock-corrector.js';
import { GnssReceiver } from '../sync/time/time-sources.js';
import { waitUntil } from './helpers.js';
import { syncRig } from './sync-rig.js';
import type { Packet } from 'mqtt-packet';

const DAY = 86_400_000;

/** An NMEA sentence with its checksum. */
const nmea = (body: string): string => {
  let x = 0;
  for (const c of body) x ^= c.charCodeAt(0);
  return `$${body}*${x.toString(16).toUpperCase().padStart(2, '0')}`;
};

t.test('NMEA time sentences', async (t) => {
  const rows: [string, string, number | string][] = [
    [
      'RMC with a fix',
      nmea('GPRMC,123519.00,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W'),
      Date.UTC(1994, 2, 23, 12, 35, 19),
    ],
    [
      'RMC, GNSS talker, milliseconds, 20xx',
      nmea('GNRMC,235959.250,A,5231.000,N,01323.000,E,0.0,0.0,241126,,,A'),
      Date.UTC(2026, 10, 24, 23, 59, 59, 250),
    ],
    ['ZDA', nmea('GPZDA,201530.00,04,07,2002,00,00'), Date.UTC(2002, 6, 4, 20, 15, 30)],
    ['RMC without a fix', nmea('GPRMC,123519,V,,,,,,,230394,,'), 'NO_FIX'],
    ['bad checksum', '$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*00', 'BAD_CHECKSUM'],
    ['GGA carries no date', nmea('GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,'), 'NOT_TIME'],
    ['hour 25', nmea('GPRMC,253519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W'), 'BAD_FIELD'],
    ['month 13 in ZDA', nmea('GPZDA,201530.00,04,13,2002,00,00'), 'BAD_FIELD'],
    ['not NMEA', 'hello', 'NOT_NMEA'],
    ['truncated', '$GPRMC,1235', 'NOT_NMEA'],
  ];
  for (const [name, line, expected] of rows) {
    const r = parseNmeaTime(line);
    if (typeof expected === 'number') t.same(r instanceof NmeaError ? r : r.utcMs, expected, name);
    else t.equal(r instanceof NmeaError ? r.code : 'parsed', expected, name);
  }
});

/** A clock whose wall time is `skewMs` off true time, with a monotonic time the test moves. */
class TestClock implements Clock {
  mono = 1_000_000;
  constructor(
    readonly trueStart: number,
    readonly skewMs: number,
  ) {}
  monoMs(): number {
    return this.mono;
  }
  wallMs(): number {
    return this.trueWall(this.mono) + this.skewMs;
  }
  trueWall(mono: number): number {
    return this.trueStart + (mono - 1_000_000);
  }
  sleep(): Promise<void> {
    return Promise.resolve();
  }
}

t.test(
  'the corrector: unsynced before a reference, estimated after it for earlier records, synced for later ones',
  async (t) => {
    const clock = new TestClock(Date.UTC(2026, 10, 24, 8), -3 * DAY);
    const logs: string[] = [];
    const c = new ClockCorrector('boot-a', clock, { driftPpm: 50, windowMs: 3_600_000 }, (m) => logs.push(m));
    const record = (mono: number, bootId = 'boot-a'): VehicleTelemetry => ({
      ...new SampleRecords(1).record(1, 1),
      bootId,
      monoTimeMs: mono,
      deviceTimeMs: clock.trueWall(mono) - 3 * DAY,
      correctedTimeMs: clock.trueWall(mono) - 3 * DAY,
      timeQuality: TimeQuality.Unsynced,
      timeErrorMs: 0,
    });
    const early = record(clock.mono);
    const before = c.correct(early);
    t.equal(before.timeQuality, TimeQuality.Unsynced);
    t.equal(before.correctedTimeMs, early.deviceTimeMs, 'no reference: corrected = device time');
    t.equal(before.timeOutsideWindow, undefined, 'no reference: the device clock is all we know, nothing to flag');
    clock.mono += 600_000;
    t.ok(c.offer({ source: 'broker', wallMs: clock.trueWall(clock.mono), monoMs: clock.mono, errorMs: 4 }));
    t.match(logs[0], /first reference from broker \(±4 ms\): the system clock is 259200\.0 s behind/);
    t.equal(Math.round((c.offsetMs() ?? 0) / 1000), 3 * 86_400, 'offset: 3 days');
    const corrected = c.correct(early);
    t.equal(corrected.timeQuality, TimeQuality.Estimated, 'captured before the reference: estimated');
    t.equal(corrected.correctedTimeMs, clock.trueWall(early.monoTimeMs), 'exact true capture time');
    t.equal(corrected.timeErrorMs, 4 + 30, "error bound: the reference's ±4 ms + 10 min × 50 ppm");
    clock.mono += 1000;
    const late = c.correct(record(clock.mono));
    t.equal(late.timeQuality, TimeQuality.Synced, 'captured after the reference: synced');
    const otherBoot = c.correct(record(clock.mono - 500_000, 'boot-before'));
    t.equal(otherBoot.timeQuality, TimeQuality.Unsynced, "another boot's monotonic clock cannot be corrected");
    t.equal(otherBoot.timeOutsideWindow, true, '3 days off true time: flagged');
    t.notOk(
      c.offer({ source: 'gps', wallMs: clock.trueWall(clock.mono), monoMs: clock.mono, errorMs: 1000 }),
      'a worse reference is not taken',
    );
    clock.mono += 20 * 3_600_000;
    t.ok(
      c.offer({ source: 'gps', wallMs: clock.trueWall(clock.mono), monoMs: clock.mono, errorMs: 1000 }),
      '20 h later the old reference has drifted past ±1 s: GPS wins',
    );
    const week = c.correct({ ...record(clock.mono), monoTimeMs: clock.mono - 7 * DAY });
    t.equal(week.timeOutsideWindow, true, "a week-old backlog record is flagged for the cloud's ±1 h window");
  },
);

t.test('a serial GPS on a pty: RMC sentences become the reference, bad ones are counted', async (t) => {
  const pty = await openPtyPair();
  t.teardown(() => pty.close());
  const clock: Clock = {
    monoMs: () => systemClock.monoMs(),
    wallMs: () => Date.now() - 3 * DAY,
    sleep: (ms) => systemClock.sleep(ms),
  };
  const c = new ClockCorrector('boot', clock, { driftPpm: 50, windowMs: 3_600_000 }, () => undefined);
  const gps = new GnssReceiver(c, clock, { path: pty.gatewayEnd, baudRate: 9600, errorMs: 1000 }, () => undefined);
  gps.start();
  t.teardown(() => gps.stop());
  const { SerialPort } = await import('serialport');
  const device = new SerialPort({ path: pty.adapterEnd, baudRate: 9600 });
  t.teardown(() => new Promise<void>((resolve) => device.close(() => resolve())));
  await new Promise((resolve) => device.once('open', resolve));
  const now = new Date();
  const hhmmss = now.toISOString().slice(11, 19).replace(/:/g, '');
  const ddmmyy = `${now.toISOString().slice(8, 10)}${now.toISOString().slice(5, 7)}${now.toISOString().slice(2, 4)}`;
  device.write(
    `${nmea('GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,')}\r\n$GPRMC,garbage*00\r\n${nmea(`GPRMC,${hhmmss}.00,A,4807.038,N,01131.000,E,0.0,0.0,${ddmmyy},,`)}\r\n`,
  );
  await waitUntil('the GPS reference', () => c.reference !== null, 5000);
  t.equal(gps.counters.errors, 1, 'the corrupt sentence counted');
  t.equal(gps.counters.references, 1);
  t.ok(
    Math.abs((c.offsetMs() ?? 0) - 3 * DAY) < 2000,
    `offset ${(c.offsetMs() ?? 0) / 1000} s (3 days, within the sentence's second)`,
  );
});

t.test('cold boot 3 days behind: a reference 10 minutes later corrects every record of the boot', async (t) => {
  const skewed: Clock = {
    monoMs: () => systemClock.monoMs(),
    wallMs: () => Date.now() - 3 * DAY,
    sleep: (ms) => systemClock.sleep(ms),
  };
  const received = new Map<string, VehicleTelemetry>();
  const rig = await syncRig(t, {
    clock: skewed,
    beforeStart: (proxy) => {
      proxy.blackhole = true;
    },
    tune: (c) => {
      c.clock.brokerTime = true;
    },
  });
  rig.sink.onRecord = (r) => {
    received.set(r.messageId, r);
    rig.seen.add(r.messageId);
  };
  const bootId = rig.gateway.time.bootId;
  // Ten minutes of capture with no network: one record every 10 s, stamped by the skewed clock.
  // True time and the monotonic clock read at one instant: the ground truth for every record.
  const nowMono = skewed.monoMs();
  const nowTrue = Date.now();
  const truth = new Map<string, number>();
  const samples = new SampleRecords(5);
  for (let i = 0; i < 60; i++) {
    const mono = nowMono - 600_000 + i * 10_000;
    const trueCapture = nowTrue - (nowMono - mono);
    const device = Math.round(trueCapture - 3 * DAY);
    const r = {
      ...samples.record(i + 1, i % 10 === 0 ? 2 : 1),
      bootId,
      monoTimeMs: Math.round(mono),
      deviceTimeMs: device,
      correctedTimeMs: device,
    };
    truth.set(r.messageId, trueCapture);
    await rig.gateway.store.insert(r, skewed.wallMs());
  }
  await sleep(300);
  t.equal(rig.gateway.time.reference, null, 'no reference while offline');
  rig.proxy.blackhole = false;
  await rig.waitFor('all 60 records', () => received.size === 60, 30_000);
  const ref = rig.gateway.time.reference;
  t.equal(ref?.source, 'broker', "the broker's time answer is the reference");
  let worst = 0;
  let outside = 0;
  for (const r of received.values()) {
    const error = Math.abs(r.correctedTimeMs - (truth.get(r.messageId) ?? 0));
    worst = Math.max(worst, error);
    if (error > r.timeErrorMs) outside++;
  }
  t.equal(outside, 0, 'every corrected time within its own error bound');
  t.ok(
    [...received.values()].every((r) => r.timeQuality === TimeQuality.Estimated),
    'all estimated (captured before the reference)',
  );
  t.ok(
    [...received.values()].every((r) => r.timeOutsideWindow !== true),
    'none flagged: within the hour once corrected',
  );
  t.ok(
    [...received.values()].every((r) => r.deviceTimeMs < r.correctedTimeMs - 3 * DAY + 1000),
    'device time kept as it was',
  );
  t.ok(
    worst < 1000,
    `residual error after correction: ${worst} ms (bound ${Math.max(...[...received.values()].map((r) => r.timeErrorMs))} ms)`,
  );
  const metrics = await rig.gateway.metrics.text();
  t.ok(
    Math.abs(Number(/^v2c_clock_offset_seconds (\S+)$/m.exec(metrics)?.[1]) - 259_200) < 1,
    'v2c_clock_offset_seconds ≈ 3 days',
  );
  t.match(metrics, /v2c_time_quality\{quality="synced"\} 1/);
  t.ok(rig.logs.some((l) => /clock: first reference from broker .* 259200\.\d s behind/.test(l)));
});

t.test('a reconnect asks the broker for its time only once the last answer is an interval old', async (t) => {
  const intervalMs = 3000;
  const requests: { connection: number; atMs: number }[] = [];
  const connects = new Map<number, number>();
  let dropNextAnswer = false;
  const rig = await syncRig(t, {
    beforeStart: (proxy) => {
      // The answer the test drops: the broker keeps it (QoS 1, persistent session) and delivers it
      // again on the next connection, long after it was asked for.
      proxy.toClient = (p: Packet) => {
        if (dropNextAnswer && p.cmd === 'publish' && p.topic.endsWith('/time/response')) {
          dropNextAnswer = false;
          proxy.blackhole = true;
          return null;
        }
        return p;
      };
      proxy.toServer = (p: Packet, connection: number) => {
        if (p.cmd === 'connect') connects.set(connection, performance.now());
        if (p.cmd === 'publish' && proxy.topicOf(p, connection).endsWith('/time/request'))
          requests.push({ connection, atMs: performance.now() });
        return p;
      };
    },
    tune: (c) => {
      c.clock.brokerTime = true;
      c.clock.brokerTimeIntervalMs = intervalMs;
    },
  });
  await rig.waitFor('the first reference', () => rig.gateway.time.reference !== null);
  const first = requests[0];
  t.same(
    requests.map((r) => r.connection),
    [1],
    'one request on the first connection',
  );
  // A drop soon after the answer: the reference stands, so no request until an interval has passed.
  rig.proxy.resetAll();
  await rig.waitFor('a request on the second connection', () => requests.some((r) => r.connection === 2));
  const second = requests.find((r) => r.connection === 2);
  t.ok(
    first !== undefined && second !== undefined && second.atMs - first.atMs >= intervalMs - 50,
    `the second connection asked an interval after the first request (${((second?.atMs ?? 0) - (first?.atMs ?? 0)).toFixed(0)} ms), not on connecting`,
  );
  // The next answer lost with the link, then a new connection: that one asks as it connects, though
  // the broker hands it the old answer again.
  dropNextAnswer = true;
  await rig.waitFor('the link down with an answer on its way', () => rig.proxy.blackhole);
  await sleep(intervalMs + 500);
  rig.proxy.blackhole = false;
  rig.proxy.resetAll();
  await rig.waitFor('a request on a later connection', () => requests.some((r) => r.connection >= 3));
  const later = requests.find((r) => r.connection >= 3);
  const connected = later === undefined ? undefined : connects.get(later.connection);
  t.ok(
    later !== undefined && connected !== undefined && later.atMs - connected < intervalMs / 2,
    `asked ${((later?.atMs ?? 0) - (connected ?? 0)).toFixed(0)} ms after connecting, the last answered request being old`,
  );
});
