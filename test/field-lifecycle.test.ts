// Storage and lifecycle in the field (issue 11, items 6-11): a full disk does not ratchet the store
// down, small state files survive ENOSPC, `run` always exits, one instance per store, failures
// during send and stop are handled, counters say what happened, and every file is owner-only.
import t, { type Test } from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { writeFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { gunzipSync } from 'node:zlib';
import { SampleRecords } from '../bench/rig/sample-records.js';
import { startLocalBroker } from '../bench/rig/local-broker.js';
import { systemClock } from '../core/clock.js';
import { referenceVehicleConfig } from '../core/config.js';
import { readBootId, startGateway } from '../gateway/gateway.js';
import { projectRoot } from '../core/project-root.js';
import { TimeQuality, type VehicleTelemetry } from '../proto/telemetry-codec.js';
import { CellularBudget } from '../sync/link/cellular-budget.js';
import { lockStoreDir, StoreLockedError } from '../sync/store/store-lock.js';
import { TelemetrySink } from '../receiver/telemetry-sink.js';
import { TelemetryStore } from '../sync/store/telemetry-store.js';
import { loopbackServer } from '../bench/rig/local-broker.js';
import { waitUntil } from './helpers.js';
import { fastTimers, syncRig } from './sync-rig.js';

const CLI = join(projectRoot(), 'dist', 'app', 'cli.js');
const root = mkdtempSync(join(tmpdir(), 'v2c-life-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
const driveLines = gunzipSync(readFileSync(join(projectRoot(), 'drivers', 'reference-vehicle', 'drive.log.gz')))
  .toString('utf8')
  .split('\n');
const mode = (path: string): string => (statSync(path).mode & 0o777).toString(8);

/** A tmpfs of `size` under the test directory, or null where mounting is refused (not root). */
function tmpfs(t: Test, size: string): string | null {
  const dir = join(root, `tmpfs-${size}-${Math.random().toString(36).slice(2)}`);
  mkdirSync(dir);
  if (spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]).status !== 0) return null;
  t.teardown(() => {
    spawnSync('umount', ['-l', dir]);
  });
  return dir;
}

/** Fills the filesystem holding `dir` until a write fails. */
function fill(dir: string): void {
  const chunk = Buffer.alloc(64 * 1024);
  for (let i = 0; ; i++) {
    try {
      writeFileSync(join(dir, `filler-${i}`), chunk);
    } catch {
      return;
    }
  }
}

const canMount = spawnSync('sh', ['-c', 'id -u']).stdout.toString().trim() === '0';

t.test(
  'a full disk bounds the store once: the purge timer does not ratchet the cap down to nothing',
  { skip: canMount ? false : 'needs root to mount a tmpfs' },
  async (t) => {
    const fs = tmpfs(t, '12m');
    if (fs === null) {
      t.pass('mount refused here: nothing to test');
      return;
    }
    const logs: string[] = [];
    // The purge timer fires every 20 ms: before the fix, each tick re-created the 4 MiB reserve and
    // the next fill lowered the cap again (7.9 → 6.3 → … → 0.1 MiB, 6,298 of 6,303 records evicted).
    const store = await TelemetryStore.open({ kind: 'sqlite', dir: join(fs, 'data'), purgeIntervalMs: 20 }, (m) =>
      logs.push(m),
    );
    t.teardown(() => store.close().catch(() => undefined));
    const gen = new SampleRecords(4);
    let stored = 0;
    for (let seq = 0; seq < 6303; seq++) {
      if (await store.insert(gen.record(seq, 1), 0)) stored++;
      if (seq % 50 === 0) await new Promise((r) => setTimeout(r, 5));
    }
    t.equal(stored, 6303, 'every record stored when it arrived (older ones made room)');
    const full = logs.filter((l) => /is full; keeping the database within/.test(l));
    t.equal(full.length, 1, `the cap was set once: ${full.join(' | ')}`);
    t.notOk(
      logs.some((l) => /has room again/.test(l)),
      "the store's own released room is not mistaken for room coming back",
    );
    const used = store.usedBytes() ?? 0;
    t.ok(
      used > 0.6 * 12 * 2 ** 20,
      `the store keeps what the disk holds: ${(used / 2 ** 20).toFixed(1)} MiB of records on a 12 MiB filesystem`,
    );
    const kept = await store.count();
    t.ok(kept > 1500, `${kept} records kept (7 before the fix)`);
    t.equal(store.counters.dropped.get('1|store_full') ?? 0, 0, 'none refused for want of room');
  },
);

t.test(
  'small state files: the cellular budget on a full disk logs once, counts in memory, and never throws',
  { skip: canMount ? false : 'needs root to mount a tmpfs' },
  async (t) => {
    const fs = tmpfs(t, '1m');
    if (fs === null) {
      t.pass('mount refused here: nothing to test');
      return;
    }
    fill(fs);
    const logs: string[] = [];
    const budget = new CellularBudget(
      join(fs, 'state', 'cellular-budget.json'),
      1000,
      systemClock,
      (m) => logs.push(m),
      0,
    );
    budget.add(100);
    budget.add(50);
    t.equal(budget.persist(), false, 'the write failed, reported as a value');
    t.equal(budget.usedToday(), 150, 'the count goes on in memory');
    t.equal(logs.length, 1, 'one log line for repeated failures');
    t.match(logs[0], /cannot save the cellular byte count .*ENOSPC/);
    t.same(
      readdirSync(fs).filter((f) => f === 'state' && readdirSync(join(fs, f)).length > 0),
      [],
      'no half-written file left behind',
    );
  },
);

t.test(
  'stop completes on a full disk (the budget file cannot be written)',
  { skip: canMount ? false : 'needs root to mount a tmpfs' },
  async (t) => {
    const fs = tmpfs(t, '16m');
    if (fs === null) {
      t.pass('mount refused here: nothing to test');
      return;
    }
    const trace = join(root, 'empty-full.log');
    writeFileSync(trace, '');
    const config = referenceVehicleConfig({ mqttUrl: 'mqtt://127.0.0.1:1', trace, storeDir: join(fs, 'store') });
    fastTimers(config);
    const logs: string[] = [];
    const gateway = await startGateway(config, systemClock, (m) => logs.push(m));
    t.teardown(() => gateway.stop(0).catch(() => undefined));
    await gateway.store.insert(new SampleRecords(2).record(1, 1), Date.now());
    gateway.link.meter(1000);
    fill(fs);
    const result = await gateway.stop(0);
    t.equal(result.pending, 1, 'stop completed and the record is still stored');
    t.ok(
      logs.some((l) => /cannot save the cellular byte count/.test(l)),
      'the failed state write is logged, not thrown',
    );
    t.notOk(existsSync(join(fs, 'store', 'v2c.lock')), 'and the store lock is released');
  },
);

/** `run` as a user starts it, with stdin as a pipe the test keeps open. */
function runCli(configPath: string) {
  const child = spawn(process.execPath, [CLI, 'run', '--config', configPath], { stdio: ['pipe', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, log: () => err, exited };
}

t.test(
  'run on a live pipe (can.file "-"): records timed by arrival; SIGINT ends it although stdin stays open',
  async (t) => {
    const broker = await startLocalBroker();
    t.teardown(() => broker.stop());
    const dir = mkdtempSync(join(root, 'pipe-'));
    const sink = await TelemetrySink.start({
      url: broker.url,
      clientId: 'pipe-sink',
      deadLetterDir: join(dir, 'sink-dl'),
      dedupWindowMs: 3_600_000,
    });
    t.teardown(() => sink.close());
    const received: VehicleTelemetry[] = [];
    sink.onRecord = (r) => received.push(r);
    const config = referenceVehicleConfig({ mqttUrl: broker.url, trace: '-', storeDir: join(dir, 'store') });
    config.pipeline.windowMs = 1000;
    config.clock.ntp = false;
    const configPath = join(dir, 'config.json');
    writeFileSync(configPath, JSON.stringify(config));
    const run = runCli(configPath);
    t.teardown(() => {
      run.child.kill('SIGKILL');
    });
    // The recorded lines carry March 2026; piped live, their arrival is what counts.
    const started = Date.now();
    for (let i = 0; i < 3; i++) {
      run.child.stdin.write(`${driveLines.slice(i * 400, (i + 1) * 400).join('\n')}\n`);
      await new Promise((r) => setTimeout(r, 1100));
    }
    await waitUntil('records from the pipe at the sink', () => received.length >= 2, 30_000, [run.log()]);
    t.ok(
      received.every((r) => r.correctedTimeMs >= started - 60_000 && r.correctedTimeMs <= Date.now() + 60_000),
      'corrected times are now, not March 2026 and not 2083',
    );
    t.ok(
      received.every((r) => r.timeQuality !== TimeQuality.Recorded),
      "live records, corrected like the serial adapter's",
    );
    run.child.kill('SIGINT');
    const code = await run.exited;
    t.equal(code, 0, `exited 0 with stdin still open (log: ${run.log().split('\n').slice(-3).join(' | ')})`);
    t.match(run.log(), /stopped: frames=\d+/);
  },
);

t.test('run stopped while MQTT is still connecting exits (no socket outlives it)', async (t) => {
  // A "broker" that accepts TCP and never answers: the CONNECT waits for a CONNACK that never comes.
  const sockets = new Set<Socket>();
  const { server: silent, port } = await loopbackServer();
  silent.on('connection', (s) => {
    sockets.add(s);
    s.on('error', () => undefined);
  });
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    silent.close();
  });
  const dir = mkdtempSync(join(root, 'connecting-'));
  const config = referenceVehicleConfig({
    mqttUrl: `mqtt://127.0.0.1:${port}`,
    trace: '-',
    storeDir: join(dir, 'store'),
  });
  config.mqtt.connectTimeoutMs = 600_000;
  const configPath = join(dir, 'config.json');
  writeFileSync(configPath, JSON.stringify(config));
  const run = runCli(configPath);
  t.teardown(() => {
    run.child.kill('SIGKILL');
  });
  await waitUntil('the CONNECT on the wire', () => sockets.size > 0, 30_000);
  run.child.kill('SIGTERM');
  t.equal(await run.exited, 0, 'exited, nothing was pending');
  t.match(run.log(), /stopping \(SIGTERM\)/);
});

t.test(
  "two instances on one store: the second refuses with one line naming the holder's pid; a stale lock is taken over",
  async (t) => {
    const dir = mkdtempSync(join(root, 'twice-'));
    const trace = join(dir, 'empty.log');
    writeFileSync(trace, '');
    const config = referenceVehicleConfig({ mqttUrl: 'mqtt://127.0.0.1:1', trace, storeDir: join(dir, 'store') });
    const first = await startGateway(config, systemClock, () => undefined);
    t.teardown(() => first.stop(0).catch(() => undefined));
    await t.rejects(
      startGateway(config, systemClock, () => undefined),
      new StoreLockedError(
        `${join(dir, 'store')} is in use by another v2c-gateway (pid ${process.pid}); stop it, or give this one its own store.dir`,
        process.pid,
      ),
    );
    const configPath = join(dir, 'config.json');
    writeFileSync(configPath, JSON.stringify(config));
    const second = runCli(configPath);
    second.child.stdin.end();
    t.equal(await second.exited, 1, 'the CLI exits 1');
    t.equal(
      second.log().trim(),
      `v2c-gateway: ${join(dir, 'store')} is in use by another v2c-gateway (pid ${process.pid}); stop it, or give this one its own store.dir`,
      'with one line',
    );
    await first.stop(0);
    // A holder that died without releasing (power cut, SIGKILL): its pid no longer runs.
    writeFileSync(
      join(dir, 'store', 'v2c.lock'),
      JSON.stringify({ pid: 999_999_999, bootId: readBootId(), startTicks: '1' }),
    );
    const again = await startGateway(config, systemClock, () => undefined);
    t.teardown(() => again.stop(0).catch(() => undefined));
    t.ok(existsSync(join(dir, 'store', 'v2c.lock')), 'a stale lock is taken over');
    await again.stop(0);
    t.notOk(existsSync(join(dir, 'store', 'v2c.lock')), 'and released at stop');
    // Another boot's lock is stale whatever its pid (pids start over at boot).
    writeFileSync(
      join(dir, 'store', 'v2c.lock'),
      JSON.stringify({ pid: process.pid, bootId: 'another-boot', startTicks: '1' }),
    );
    lockStoreDir(join(dir, 'store'), readBootId()).release();
  },
);

t.test('failures during send and during stop are handled: no unhandled rejection, everything closed', async (t) => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => {
    unhandled.push(reason);
  };
  process.on('unhandledRejection', onUnhandled);
  t.teardown(() => {
    process.off('unhandledRejection', onUnhandled);
  });
  const rig = await syncRig(t, {
    tune: (c) => {
      c.mqtt.maxOutgoingPacketBytes = 6000;
    },
  });
  await rig.waitFor('online', () => rig.gateway.session.isConnected);
  const store = rig.gateway.store;
  const sender = rig.gateway.sender;
  const remove = store.remove.bind(store);
  // The disk fails as a record is dead-lettered (its removal) and as delivered records are removed.
  let removals = 0;
  store.remove = async () => {
    removals++;
    throw new Error('injected: I/O error on remove');
  };
  const huge = new SampleRecords(3).record(1000, 2);
  for (let i = 0; i < 400; i++)
    huge.signals[`Extra${i}`] = { min: i, max: i + 0.5, mean: i + 0.25, last: i, count: 600 };
  await store.insert(huge, Date.now());
  await rig.waitFor("the dead-lettered record's failed removal logged", () =>
    rig.logs.some((l) =>
      /1 dead-lettered record\(s\) could not be removed from the store: injected: I\/O error on remove; not sent again, removal retried in/.test(
        l,
      ),
    ),
  );
  // Bulk now waits for that removal (each delivery would add to what the disk cannot remove); events still go.
  await rig.insert(1, 3, () => 0);
  await rig.insert(4, 1, () => 1);
  await rig.waitFor("the delivered records' failed removal logged", () =>
    rig.logs.some((l) => /delivered record\(s\) could not be removed from the store: injected/.test(l)),
  );
  await rig.waitFor('all four waiting for their removal', () => sender.unremovedRecords === 4);
  t.match(await rig.gateway.metrics.text(), /\nv2c_unremoved_records 4\n/, 'and the metric says so');
  // Delivered records are not sent again while their removal fails, and the P1 record waits: a few retries later, still 3.
  const failed = removals;
  await rig.waitFor('two retries of the removal', () => removals >= failed + 2, 60_000);
  t.equal(sender.counters.singles, 3, 'each delivered record published once');
  t.equal(sender.counters.resends, 0, 'none resent');
  t.equal(rig.sink.counts.duplicates, 0, 'the receiver saw no duplicate');
  t.equal(readFileSync(rig.gateway.deadLetters.path, 'utf8').trim().split('\n').length, 1, 'one dead letter');
  t.equal(await store.count(), 5, 'nothing lost: all five still stored');
  store.remove = remove;
  await rig.waitFor('removed once the disk works again', async () => (await store.count()) === 0, 90_000);
  t.equal(sender.unremovedRecords, 0, 'none waiting any more');
  t.equal(sender.counters.singles, 4, 'then the P1 record went, once');
  // Now the store fails during stop: every later step still runs.
  store.count = async () => {
    throw new Error('injected: store gone during stop');
  };
  const result = await rig.gateway.stop(0);
  t.equal(result.drained, false, 'stop reports the failure');
  t.equal(rig.gateway.session.state, 'stopped', 'the MQTT session was closed after the failure');
  t.notOk(existsSync(join(rig.dir, 'store', 'v2c.lock')), 'the lock released');
  t.ok(
    rig.logs.some((l) => /stop: draining the outbox failed: injected: store gone during stop/.test(l)),
    'the failed step logged',
  );
  t.same(unhandled, [], 'no unhandled rejection');
});

t.test('counters say what happened: records refused by a full store are not "stored", nor write errors', async (t) => {
  // The trace comes through a FIFO, so the store can be filled with events before any window arrives.
  const fifo = join(mkdtempSync(join(root, 'fifo-')), 'trace.fifo');
  t.equal(spawnSync('mkfifo', [fifo]).status, 0, 'a FIFO for the trace');
  const rig = await syncRig(t, {
    beforeStart: (proxy) => {
      proxy.blackhole = true;
    },
    tune: (c) => {
      c.can.file = fifo;
      c.pipeline.windowMs = 1000;
      c.store.maxBytes = 1 << 20;
    },
  });
  // At its cap with nothing but P0: a P1 window may not evict an event, so it is refused (policy).
  // The cap is checked before each insert: stop right after the event that crosses 90 % of it.
  const samples = new SampleRecords(8);
  for (let seq = 1; (rig.gateway.store.usedBytes() ?? 0) <= 0.9 * (1 << 20); seq++)
    await rig.gateway.store.insert(samples.record(seq, 0), Date.now());
  // Written from the thread pool: the gateway reading the other end runs on this thread.
  await writeFile(fifo, `${driveLines.slice(0, 4000).join('\n')}\n`);
  await rig.gateway.sourceDone;
  const built = rig.gateway.pipeline.windows;
  t.ok(built >= 18, `${built} window records built`);
  const refused = rig.gateway.store.counters.dropped.get('1|store_full') ?? 0;
  t.ok(refused > 0, `${refused} refused by the full store`);
  t.equal(rig.gateway.stored(), built + rig.gateway.pipeline.events - refused, 'stored = built - refused');
  const metrics = await rig.gateway.metrics.text();
  t.match(
    metrics,
    new RegExp(`v2c_store_records_total ${rig.gateway.stored()}\\n`),
    'v2c_store_records_total counts only what was stored',
  );
  t.match(metrics, /v2c_store_write_errors_total 0\n/, 'a policy drop is not a write error');
  t.match(
    metrics,
    new RegExp(`v2c_dropped_total\\{priority="1",reason="store_full"\\} ${refused}\\n`),
    'it is counted as a drop',
  );
});

t.test(
  'files are owner-only: store 0700, database/WAL/SHM, budget and dead letters 0600, whatever the umask',
  async (t) => {
    const previous = process.umask(0o022);
    t.teardown(() => {
      process.umask(previous);
    });
    const dir = mkdtempSync(join(root, 'modes-'));
    const storeDir = join(dir, 'store');
    mkdirSync(storeDir);
    chmodSync(storeDir, 0o755);
    const rig = await syncRig(t, {
      tune: (c) => {
        c.store.dir = storeDir;
        c.mqtt.maxOutgoingPacketBytes = 6000;
      },
    });
    await rig.waitFor('online', () => rig.gateway.session.isConnected);
    const huge = new SampleRecords(3).record(1000, 2);
    for (let i = 0; i < 400; i++)
      huge.signals[`Extra${i}`] = { min: i, max: i + 0.5, mean: i + 0.25, last: i, count: 600 };
    await rig.gateway.store.insert(huge, Date.now());
    await rig.waitFor('the dead letter', () => existsSync(rig.gateway.deadLetters.path));
    rig.gateway.link.meter(1);
    rig.gateway.link.budget.persist();
    t.equal(mode(storeDir), '700', 'the store directory');
    for (const f of [
      'v2c.sqlite',
      'v2c.sqlite-wal',
      'v2c.sqlite-shm',
      'cellular-budget.json',
      'dead-letter.jsonl',
      'v2c.lock',
    ]) {
      t.equal(mode(join(storeDir, f)), '600', f);
    }
    // The sink's dead letters: a message it refuses.
    const client = await mqtt.connectAsync(rig.broker.url, {
      protocolVersion: 5,
      clientId: 'garbage',
      reconnectPeriod: 0,
    });
    await client.publishAsync('v2c/v1/eu-central-1/V2CREF00000000001/telemetry/vehicle', Buffer.from('not protobuf'), {
      qos: 1,
    });
    await client.endAsync();
    await rig.waitFor('the sink rejection', () => rig.sink.counts.rejected === 1);
    const sinkDir = join(rig.dir, 'sink-dead-letter');
    t.equal(mode(sinkDir), '700', 'the sink dead-letter directory');
    t.same(
      readdirSync(sinkDir).map((f) => mode(join(sinkDir, f))),
      ['600'],
      'its files',
    );
  },
);
