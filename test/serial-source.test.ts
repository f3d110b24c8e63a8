// The SLCAN source against a real pseudo-terminal pair (socat), as the USB adapter would be.
import t from 'tap';
import { SerialPort } from 'serialport';
import { ReadlineParser } from '@serialport/parser-readline';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { firstValueFrom, filter, take, toArray } from 'rxjs';
import { openPtyPair } from '../bench/rig/pty-pair.js';
import { SlcanSerialSource, type SlcanSourceOptions } from '../drivers/slcan-serial-source.js';
import { runSimulator } from '../drivers/slcan-adapter-simulator.js';
import { MalformedLine, type CanFrame } from '../drivers/can-frame.js';
import { parseCandumpLine } from '../drivers/candump.js';
import { systemClock } from '../core/clock.js';

const options = (path: string, extra: Partial<SlcanSourceOptions> = {}): SlcanSourceOptions => ({
  path,
  bitrate: 500000,
  baudRate: 115200,
  bus: 'can0',
  watchdogMs: 5000,
  reopenDelaysMs: [50, 100, 200],
  readIntervalMs: 5,
  ...extra,
});

async function openAdapterEnd(path: string): Promise<{ port: SerialPort; commands: string[] }> {
  const port = new SerialPort({ path, baudRate: 115200, autoOpen: false });
  await new Promise<void>((resolve, reject) => port.open((e) => (e ? reject(e) : resolve())));
  const commands: string[] = [];
  port.pipe(new ReadlineParser({ delimiter: '\r', encoding: 'latin1' })).on('data', (l: string) => commands.push(l));
  return { port, commands };
}

const until = async (cond: () => boolean, ms: number, what: string): Promise<void> => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await systemClock.sleep(10);
  }
};

t.test('an unsupported bitrate is refused with the field name', async (t) => {
  t.throws(() => new SlcanSerialSource(options('/dev/null', { bitrate: 33333 }), systemClock), {
    code: 'SLCAN_CONFIG',
    message: /can\.bitrate 33333: expected one of/,
  });
});

t.test('simulator → pty → source: every frame of a trace arrives intact', async (t) => {
  const pty = await openPtyPair();
  t.teardown(() => pty.close());
  const dir = mkdtempSync(join(tmpdir(), 'v2c-trace-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const lines: string[] = [];
  for (let i = 0; i < 2000; i++) {
    const id = (i * 37) % 0x800;
    lines.push(
      i % 7 === 0
        ? `(${(1000 + i / 100).toFixed(6)}) can0 ${(0x18ff0000 + i).toString(16).toUpperCase()}#${i.toString(16).padStart(4, '0').toUpperCase()}`
        : `(${(1000 + i / 100).toFixed(6)}) can0 ${id.toString(16).toUpperCase().padStart(3, '0')}#${(i % 256)
            .toString(16)
            .padStart(2, '0')
            .toUpperCase()
            .repeat(i % 9)}`,
    );
  }
  writeFileSync(join(dir, 'trace.log'), lines.join('\n') + '\n');
  const expected = lines.map((l) => parseCandumpLine(l) as CanFrame);

  const simulator = runSimulator(
    { port: pty.adapterEnd, trace: join(dir, 'trace.log'), speed: 0, timestamps: true },
    systemClock,
    () => undefined,
  );
  const source = new SlcanSerialSource(options(pty.gatewayEnd), systemClock);
  const received = firstValueFrom(source.frames.pipe(take(expected.length), toArray()));
  source.start();
  const result = await simulator;
  const frames = (await received) as CanFrame[];
  await source.stop();
  t.equal(result.framesSent, 2000);
  t.equal(source.counters.frames, 2000);
  t.equal(source.counters.malformed, 0);
  t.same(
    frames.map((f) => [f.id, f.extended, Buffer.from(f.data).toString('hex')]),
    expected.map((f) => [f.id, f.extended, Buffer.from(f.data).toString('hex')]),
  );
  t.ok(
    frames.every((f, i) => i === 0 || f.tsMono >= (frames[i - 1] as CanFrame).tsMono),
    'arrival times are monotonic',
  );
});

t.test('open sequence, malformed lines, BEL replies and a line without terminator', async (t) => {
  const pty = await openPtyPair();
  t.teardown(() => pty.close());
  const adapter = await openAdapterEnd(pty.adapterEnd);
  t.teardown(() => new Promise<void>((r) => adapter.port.close(() => r())));
  const source = new SlcanSerialSource(options(pty.gatewayEnd), systemClock);
  const items: Array<CanFrame | MalformedLine> = [];
  source.frames.subscribe((i) => items.push(i));
  source.start();
  await until(() => adapter.commands.length >= 3, 3000, 'open sequence');
  t.same(adapter.commands.slice(0, 3), ['C', 'S6', 'O'], 'close, bitrate, open');
  adapter.port.write('t1232ABCD\rt12X0\r\x07\x07t7FF0\rtfff0\rT1FFFFFFF0\r');
  await until(() => items.length >= 5, 3000, 'five lines');
  adapter.port.write('t123' + '0'.repeat(700));
  await until(() => source.counters.malformed >= 3, 3000, 'over-long line discarded');
  adapter.port.write('\rt1000\r');
  await until(() => source.counters.frames >= 4, 3000, 'recovery after the over-long line');
  await source.stop();
  t.same(
    items.slice(0, 5).map((i) => (i instanceof MalformedLine ? i.code : i.id)),
    [0x123, 'non-hex', 0x7ff, 'id-out-of-range', 0x1fffffff],
  );
  t.equal(source.counters.adapterErrors, 2, 'two BEL replies counted');
  t.equal((items[5] as MalformedLine).code, 'too-long');
  t.same(source.counters.frames, 4);
  t.ok(source.counters.malformed >= 3);
});

t.test('watchdog reopens a port that stays open but goes silent', async (t) => {
  const pty = await openPtyPair();
  t.teardown(() => pty.close());
  const adapter = await openAdapterEnd(pty.adapterEnd);
  t.teardown(() => new Promise<void>((r) => adapter.port.close(() => r())));
  const source = new SlcanSerialSource(options(pty.gatewayEnd, { watchdogMs: 300 }), systemClock);
  source.start();
  await until(() => source.counters.watchdogReopens >= 2, 5000, 'two watchdog reopens');
  await until(() => adapter.commands.filter((c) => c === 'O').length >= 2, 3000, 'the open sequence again');
  // A live bus keeps talking; once it does, the watchdog stays quiet.
  const traffic = setInterval(() => adapter.port.write('t1230\r'), 20);
  t.teardown(() => clearInterval(traffic));
  const frame = await firstValueFrom(source.frames.pipe(filter((f): f is CanFrame => !(f instanceof MalformedLine))));
  t.equal(frame.id, 0x123, 'frames flow after the reopen');
  const reopens = source.counters.watchdogReopens;
  await systemClock.sleep(900);
  t.equal(source.counters.watchdogReopens, reopens, 'no watchdog reopen while data flows');
  clearInterval(traffic);
  await source.stop();
});

t.test('an unplugged adapter is reopened with growing delay once it comes back', async (t) => {
  let pty = await openPtyPair();
  const source = new SlcanSerialSource(options(pty.gatewayEnd, { reopenDelaysMs: [50, 100, 200, 400] }), systemClock);
  const events: string[] = [];
  source.events.subscribe((e) => events.push(e.kind === 'retry' ? `retry ${e.delayMs}` : e.kind));
  source.start();
  await until(() => events.includes('open'), 3000, 'first open');
  await pty.close(true); // unplug
  await until(() => source.counters.reopens >= 3, 5000, 'reopen attempts while unplugged');
  const delays = events.filter((e) => e.startsWith('retry')).map((e) => Number(e.split(' ')[1]));
  t.same(delays.slice(0, 3), [50, 100, 200], 'delays grow');
  pty = await openPtyPair(pty.dir); // plug back in at the same path
  t.teardown(() => pty.close());
  const adapter = await openAdapterEnd(pty.adapterEnd);
  t.teardown(() => new Promise<void>((r) => adapter.port.close(() => r())));
  await until(() => events.filter((e) => e === 'open').length >= 2, 5000, 'reopen');
  await until(() => adapter.commands.includes('O'), 3000, 'open sequence on the new device');
  adapter.port.write('t4561AA\r');
  const frame = await firstValueFrom(source.frames.pipe(filter((f): f is CanFrame => !(f instanceof MalformedLine))));
  t.equal(frame.id, 0x456);
  await source.stop();
});

t.test(
  'read in bursts (can.readIntervalMs): lines sent one by one arrive in a few reads, none lost; a stop during the wait is quiet',
  async (t) => {
    const distinctArrivals = async (
      readIntervalMs: number,
    ): Promise<{ frames: number; arrivals: number; errors: string[] }> => {
      const pty = await openPtyPair();
      t.teardown(() => pty.close());
      const adapter = await openAdapterEnd(pty.adapterEnd);
      t.teardown(() => new Promise<void>((r) => adapter.port.close(() => r())));
      const source = new SlcanSerialSource(options(pty.gatewayEnd, { readIntervalMs }), systemClock);
      const errors: string[] = [];
      source.events.subscribe((e) => {
        if (e.kind === 'closed') errors.push(e.reason);
      });
      const frames: CanFrame[] = [];
      source.frames.subscribe((f) => {
        if (!(f instanceof MalformedLine)) frames.push(f);
      });
      source.start();
      await until(() => adapter.commands.length >= 3, 3000, 'open sequence');
      // 300 lines, each written on its own a millisecond apart, as a busy adapter sends them.
      for (let i = 0; i < 300; i++) {
        adapter.port.write(`t1232${(i % 256).toString(16).padStart(2, '0').toUpperCase()}00\r`);
        await systemClock.sleep(1);
      }
      await until(() => frames.length === 300, 10_000, '300 frames');
      // Lines keep coming while it stops: the close lands during a wait.
      adapter.port.write('t1232AB00\r'.repeat(20));
      await source.stop();
      // Lines of one read are parsed within microseconds of each other; a new read comes later.
      const reads = 1 + frames.filter((f, i) => i > 0 && f.tsMono - (frames[i - 1] as CanFrame).tsMono >= 0.5).length;
      return { frames: frames.length, arrivals: reads, errors };
    };
    const eager = await distinctArrivals(0);
    const bursts = await distinctArrivals(30);
    t.equal(bursts.frames, 300, 'every frame arrives');
    t.ok(
      bursts.arrivals < eager.arrivals / 3,
      `read in bursts: ${bursts.arrivals} reads with 30 ms, ${eager.arrivals} reading at once`,
    );
    t.same(bursts.errors, [], 'stopping during a wait is not a port error');
  },
);
