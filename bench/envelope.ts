// `npm run bench -- envelope` (issue 14): the real gateway (`v2c-gateway run`, a child process)
// inside a cgroup that stands for a Raspberry Pi (0.2 of one core here, 192 MiB), each figure beside
// the same scenario unconstrained (a cgroup that only measures), from the same run:
//   1. a saturated 500 kbit/s bus (~4,000 frames/s) through the simulator on a socat pty: frames
//      sent vs decoded, CPU share, max RSS; start-up to the first decoded frame and first PUBACK;
//   2. idle CPU with no frames;
//   3. P0 event → PUBACK latency while a backlog drains (from its first batch on), split at a TCP
//      relay into frame → PUBLISH and PUBLISH → PUBACK, and apart from it the events of the first
//      second after connecting; the drain itself: records/s, duplicates, max RSS, OOM kills.
// A benchmark, not a test: it prints PASS/FAIL against the issue's goals and never fails CI.
import { spawn, type ChildProcess } from 'node:child_process';
import {
  closeSync,
  copyFileSync,
  createWriteStream,
  existsSync,
  fsyncSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { once } from 'node:events';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { Packet } from 'mqtt-packet';
import { CgroupUnavailableError, PiCgroup, type CgroupUsage, type PiLimits } from './pi-cgroup.js';
import { parseCandumpLine, formatCandumpLog } from '../drivers/candump.js';
import { openTrace } from '../drivers/trace-source.js';
import type { CanFrame } from '../drivers/can-frame.js';
import { DecodeError } from '../drivers/dbc/decoder.js';
import { systemClock } from '../core/clock.js';
import { referenceVehicleConfig, type GatewayConfig } from '../core/config.js';
import { loadDecoder } from '../gateway/dbc-loader.js';
import { projectRoot } from '../core/project-root.js';
import { freePort, startLocalBroker, type LocalBroker } from './rig/local-broker.js';
import { openPtyPair } from './rig/pty-pair.js';
import { SampleRecords } from './rig/sample-records.js';
import { spawnSimulator } from './rig/simulator-process.js';
import { RecordKind } from '../proto/telemetry-codec.js';
import { LiveReader } from '../receiver/live-reader.js';
import { SinkThread } from './rig/sink-thread.js';
import { TelemetryStore } from '../sync/store/telemetry-store.js';
import { FaultProxy } from './rig/fault-proxy.js';
import { metricValue } from './rig/gateway-process.js';
import { serviceUnitLaunch } from './rig/service-unit.js';

const MiB = 2 ** 20;
const PI: PiLimits = { cpuCores: 0.2, memoryBytes: 192 * MiB };
const UNCONSTRAINED: PiLimits = { cpuCores: null, memoryBytes: null };
const BUS_FPS = 4000;
const BUS_SECONDS = Number(process.env.V2C_ENVELOPE_BUS_S ?? 120);
const IDLE_SECONDS = Number(process.env.V2C_ENVELOPE_IDLE_S ?? 60);
const BACKLOG = Number(process.env.V2C_ENVELOPE_BACKLOG ?? 100_000);
/** A drain that takes longer is reported at this point (records/s so far), not waited for. */
const DRAIN_CAP_S = Number(process.env.V2C_ENVELOPE_DRAIN_CAP_S ?? 300);
/**
 * P0 events raised while the backlog drains (one per 100 ms, until it is in), at most. The P99 of
 * 1,000 is the tenth-slowest event; of 200 it was the second-slowest, which one stalled CPU period
 * moved by 30 ms from run to run.
 */
const EVENTS = Number(process.env.V2C_ENVELOPE_EVENTS ?? 1000);
/** Fewer events raised while draining (a drain quicker than them) make no P99 verdict (issue 14: ≥ 200). */
const MIN_EVENTS = 200;
/** P0 events raised in the first second after connecting, before the drain's. */
const STARTUP_EVENTS = 10;
/** Records in the store for the start-up scenario (`bigstore`, only when named: filling it takes minutes). */
const BIG_STORE = Number(process.env.V2C_ENVELOPE_BIG_STORE ?? 1_000_000);
/** Scenarios to run (bus, idle, drain; bigstore when named), for a quicker look at one; bus, idle and drain by default. */
const SCENARIOS = new Set((process.env.V2C_ENVELOPE_SCENARIOS ?? 'bus,idle,drain').split(','));
/** Environments to run (unconstrained, envelope). */
const ENVIRONMENTS = new Set((process.env.V2C_ENVELOPE_ENVIRONMENTS ?? 'unconstrained,envelope').split(','));
/** After start-up, before idle is measured: a Pi-sized share of a core finishes its start-up work late. */
const IDLE_SETTLE_S = 30;
const DRIVE = join(projectRoot(), 'drivers', 'reference-vehicle', 'drive.log.gz');
const CLI = join(projectRoot(), 'dist', 'app', 'cli.js');

/** As the service unit runs it (provisioning/v2c-gateway.service). */
const SERVICE = serviceUnitLaunch();

interface Figures {
  busSent: number;
  busDecoded: number;
  busCpuShare: number;
  busMaxRssMiB: number;
  startDecodedS: number;
  startPubackS: number;
  idleCpuShare: number;
  latency: { raised: number; framePublish: number[]; publishPuback: number[]; total: number[] };
  /** Frame → PUBACK of the events raised in the first second after connecting (the start-up's tail). */
  startupLatency: number[];
  drainRecordsPerS: number;
  drained: number;
  duplicates: number;
  drainMaxRssMiB: number;
  oomKills: number;
  /** Why the drain ended early (the gateway died, a wait ran out), if it did. */
  drainProblem?: string;
  /** Start-up on a store of BIG_STORE records: to the first PUBACK, and the RSS peak until a minute in. */
  bigStartPubackS: number;
  bigStartMaxRssMiB: number;
  bigStartOomKills: number;
}

/** The gateway in `cgroup`, with its peak RSS sampled from /proc while it runs. */
class MeasuredGateway {
  readonly child: ChildProcess;
  private peakKiB = 0;
  /** What the largest RSS sampled was made of: anonymous memory (heap, native) and mapped files (code). */
  private peakParts = { rss: 0, anon: 0, file: 0 };
  private readonly sampler: NodeJS.Timeout;
  log = '';

  constructor(
    readonly cgroup: PiCgroup,
    configPath: string,
    stdin: 'pipe' | 'ignore',
  ) {
    // V2C_ENVELOPE_NODE_ARGS: extra node flags for the gateway (a --cpu-prof to see where a figure goes).
    const nodeArgs = (process.env.V2C_ENVELOPE_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');
    const [cmd, args] = cgroup.wrap(process.execPath, [
      ...SERVICE.nodeFlags,
      ...nodeArgs,
      CLI,
      'run',
      '--config',
      configPath,
    ]);
    // V2C_ENVELOPE_GATEWAY_STDOUT: a file for the gateway's stdout (where --trace-gc writes).
    const stdoutFile = process.env.V2C_ENVELOPE_GATEWAY_STDOUT;
    const stdout = stdoutFile === undefined ? 'ignore' : openSync(stdoutFile, 'a');
    this.child = spawn(cmd, args, { stdio: [stdin, stdout, 'pipe'], env: { ...process.env, ...SERVICE.env } });
    if (typeof stdout === 'number') closeSync(stdout);
    this.child.stderr?.on('data', (d: Buffer) => {
      this.log = (this.log + d.toString()).slice(-20_000);
    });
    this.sampler = setInterval(() => this.sample(), 250);
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  get maxRssMiB(): number {
    this.sample();
    return this.peakKiB / 1024;
  }

  /** The largest RSS sampled, split into anonymous and file-backed pages. */
  get peakComposition(): string {
    const { rss, anon, file } = this.peakParts;
    return `${(rss / 1024).toFixed(0)} MiB sampled at most: anon ${(anon / 1024).toFixed(0)}, file ${(file / 1024).toFixed(0)} MiB`;
  }

  private sample(): void {
    try {
      const status = readFileSync(`/proc/${this.child.pid}/status`, 'utf8');
      const kib = (field: string): number => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0);
      this.peakKiB = Math.max(this.peakKiB, kib('VmHWM'));
      const rss = kib('VmRSS');
      if (rss > this.peakParts.rss) this.peakParts = { rss, anon: kib('RssAnon'), file: kib('RssFile') };
    } catch {
      /* exited */
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.sampler);
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const killer = setTimeout(() => this.child.kill('SIGKILL'), 45_000);
    await once(this.child, 'exit');
    clearTimeout(killer);
  }
}

async function until(
  what: string,
  predicate: () => boolean | Promise<boolean>,
  gateway: MeasuredGateway,
  maxMs: number,
): Promise<void> {
  const deadline = Date.now() + maxMs;
  while (!(await predicate())) {
    if (!gateway.running)
      throw new Error(
        `the gateway ended (${gateway.child.exitCode ?? gateway.child.signalCode}) waiting for ${what}: ${gateway.log.slice(-2000)}`,
      );
    if (Date.now() > deadline) throw new Error(`waited ${maxMs / 1000} s for ${what}: ${gateway.log.slice(-2000)}`);
    await systemClock.sleep(20);
  }
}

function writeConfig(dir: string, config: GatewayConfig): string {
  const path = join(dir, `gateway-${Date.now()}.json`);
  writeFileSync(path, JSON.stringify(config));
  return path;
}

/** The reference drive played `laps` times back to back (times shifted), as one candump log. */
async function lappedDrive(path: string, laps: number): Promise<number> {
  const lines: string[] = [];
  for await (const line of createInterface({ input: openTrace(DRIVE) })) if (line !== '') lines.push(line);
  const time = (l: string): number => Number(/^\((\d+\.\d+)\)/.exec(l)?.[1]);
  const first = time(lines[0] as string);
  const span = time(lines[lines.length - 1] as string) - first + 0.01;
  const out = createWriteStream(path);
  for (let lap = 0; lap < laps; lap++) {
    for (const l of lines) out.write(`(${(time(l) + lap * span).toFixed(6)})${l.slice(l.indexOf(')') + 1)}\n`);
  }
  out.end();
  await once(out, 'finish');
  return span;
}

/** Two frames of the reference vehicle's battery message: one under the low-12 V threshold, one back over it. */
async function batteryFrames(): Promise<{ low: CanFrame; normal: CanFrame }> {
  const decoder = loadDecoder(join(projectRoot(), 'drivers', 'reference-vehicle', 'v2c-reference.dbc'));
  let low: CanFrame | null = null;
  let normal: CanFrame | null = null;
  for await (const line of createInterface({ input: openTrace(DRIVE) })) {
    const frame = parseCandumpLine(line);
    if (frame === null || !('data' in frame)) continue;
    const decoded = decoder.decode(frame);
    if (decoded instanceof DecodeError) continue;
    const volts = decoded.signals.Battery12V;
    if (typeof volts !== 'number') continue;
    if (volts < 10.5) low ??= frame;
    if (volts > 12.5) normal ??= frame;
    if (low !== null && normal !== null) return { low, normal };
  }
  throw new Error('the reference drive has no low and normal Battery12V frames');
}

async function prefilledStore(dir: string, n: number, name = 'backlog'): Promise<string> {
  const storeDir = join(dir, name);
  const store = await TelemetryStore.open({ kind: 'sqlite', dir: storeDir, synchronous: 'OFF' });
  const samples = new SampleRecords(11);
  const started = Date.now();
  for (let seq = 0; seq < n; seq++) {
    await store.insert(samples.record(seq, 2), Date.now());
    // A macrotask turn now and then: RxDB frees the documents it cached from a FinalizationRegistry,
    // whose callbacks never run while a loop only awaits (1M inserts ran the heap out at 4 GB).
    if (seq % 1000 === 999) await new Promise((resolve) => setImmediate(resolve));
  }
  await store.close();
  console.log(
    `  (backlog of ${n.toLocaleString('en-US')} records stored in ${((Date.now() - started) / 1000).toFixed(0)} s)`,
  );
  return storeDir;
}

/**
 * A copy of a prefilled store for one run (each environment starts from the same records), on disk
 * before the gateway starts: a copy still in the page cache could make the gateway's first durable
 * commit wait for it to be written (an ext4 journal commit writes out the data it orders).
 */
function copyOfStore(from: string, to: string): string {
  mkdirSync(to);
  for (const f of ['v2c.sqlite', 'v2c.sqlite-wal', 'v2c.sqlite-shm']) {
    if (!existsSync(join(from, f))) continue;
    copyFileSync(join(from, f), join(to, f));
    const fd = openSync(join(to, f), 'r+');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
  return to;
}

/**
 * Start-up on a store holding BIG_STORE records (a long outage): the time to the first PUBACK and the
 * RSS peak over the first minute, while the drain begins. Each environment starts from its own copy
 * (the unconstrained run drains ~4,000 records a second: sharing one store, the envelope found it
 * emptied by a fourth at 1M and empty at 200,000).
 */
async function bigStoreScenario(
  dir: string,
  limits: PiLimits,
  figures: Partial<Figures>,
  storeDir: string,
  name: string,
): Promise<void> {
  const broker = await startLocalBroker();
  const cgroup = PiCgroup.create(`v2c-envelope-bigstore-${name}-${process.pid}`, limits);
  const metricsPort = await freePort();
  const runDir = copyOfStore(storeDir, join(dir, `big-store-${name}`));
  const config = referenceVehicleConfig({ mqttUrl: broker.url, trace: '-', storeDir: runDir });
  config.metrics.port = metricsPort;
  const gateway = new MeasuredGateway(cgroup, writeConfig(dir, config), 'pipe');
  try {
    const spawned = Date.now();
    const acked = async (): Promise<number> =>
      (await metricValue(metricsPort, 'v2c_telemetry_records_acked_total')) ?? 0;
    await until('the first PUBACK', async () => (await acked()) > 0, gateway, 600_000);
    figures.bigStartPubackS = (Date.now() - spawned) / 1000;
    await until('a minute after the start', () => Date.now() - spawned >= 60_000, gateway, 120_000);
    figures.bigStartMaxRssMiB = gateway.maxRssMiB;
  } finally {
    figures.bigStartOomKills = cgroup.usage().oomKills;
    await gateway.stop();
    cgroup.remove();
    await broker.stop();
    rmSync(runDir, { recursive: true, force: true });
  }
}

const cpuDelta = (a: CgroupUsage, b: CgroupUsage, seconds: number): number => (b.cpuSeconds - a.cpuSeconds) / seconds;

/** Saturated bus and start-up. */
async function busScenario(
  dir: string,
  limits: PiLimits,
  figures: Partial<Figures>,
  trace: string,
  speed: number,
  name: string,
): Promise<void> {
  const broker = await startLocalBroker();
  const pty = await openPtyPair();
  const cgroup = PiCgroup.create(`v2c-envelope-bus-${name}-${process.pid}`, limits);
  const metricsPort = await freePort();
  const config = referenceVehicleConfig({
    mqttUrl: broker.url,
    port: pty.gatewayEnd,
    storeDir: join(dir, `bus-${name}`),
  });
  config.metrics.port = metricsPort;
  // To compare against reading every byte at once (0), as the gateway did before.
  if (process.env.V2C_ENVELOPE_READ_INTERVAL_MS !== undefined)
    config.can.readIntervalMs = Number(process.env.V2C_ENVELOPE_READ_INTERVAL_MS);
  const gateway = new MeasuredGateway(cgroup, writeConfig(dir, config), 'ignore');
  try {
    const spawned = Date.now();
    const simulator = await spawnSimulator(pty.adapterEnd, speed, systemClock, trace);
    const decoded = async (): Promise<number> => (await metricValue(metricsPort, 'v2c_can_decoded_frames_total')) ?? 0;
    await until('the first decoded frame', async () => (await decoded()) > 0, gateway, 120_000);
    figures.startDecodedS = (Date.now() - spawned) / 1000;
    const acked = async (): Promise<number> =>
      ((await metricValue(metricsPort, 'v2c_telemetry_records_acked_total')) ?? 0) +
      ((await metricValue(metricsPort, 'v2c_heartbeats_total', { result: 'acked' })) ?? 0);
    await until('the first PUBACK', async () => (await acked()) > 0, gateway, 120_000);
    figures.startPubackS = (Date.now() - spawned) / 1000;
    const before = cgroup.usage();
    const t0 = Date.now();
    await simulator.done;
    const seconds = (Date.now() - t0) / 1000;
    const after = cgroup.usage();
    // The last lines cross the pty after the simulator exits: wait until the count stops moving.
    let last = -1;
    for (let now = await decoded(); now !== last; now = await decoded()) {
      last = now;
      await systemClock.sleep(1000);
    }
    figures.busDecoded = last;
    figures.busSent = Number(/sent=(\d+)/.exec(simulator.log())?.[1] ?? NaN);
    figures.busCpuShare = cpuDelta(before, after, seconds);
    figures.busMaxRssMiB = gateway.maxRssMiB;
  } finally {
    await gateway.stop();
    cgroup.remove();
    await pty.close();
    await broker.stop();
  }
}

/** No frames at all (stdin open and silent): what the gateway costs when the vehicle is parked. */
async function idleScenario(dir: string, limits: PiLimits, figures: Partial<Figures>, name: string): Promise<void> {
  const broker = await startLocalBroker();
  const cgroup = PiCgroup.create(`v2c-envelope-idle-${name}-${process.pid}`, limits);
  const metricsPort = await freePort();
  const config = referenceVehicleConfig({ mqttUrl: broker.url, trace: '-', storeDir: join(dir, `idle-${name}`) });
  config.metrics.port = metricsPort;
  const gateway = new MeasuredGateway(cgroup, writeConfig(dir, config), 'pipe');
  try {
    await until(
      'connected',
      async () => (await metricValue(metricsPort, 'v2c_mqtt_connected')) === 1,
      gateway,
      120_000,
    );
    await systemClock.sleep(IDLE_SETTLE_S * 1000);
    const before = cgroup.usage();
    await systemClock.sleep(IDLE_SECONDS * 1000);
    figures.idleCpuShare = cpuDelta(before, cgroup.usage(), IDLE_SECONDS);
  } finally {
    gateway.child.stdin?.end();
    await gateway.stop();
    cgroup.remove();
    await broker.stop();
  }
}

/** A backlog draining to the broker and sink while P0 events are raised through stdin. */
async function drainScenario(
  dir: string,
  limits: PiLimits,
  figures: Partial<Figures>,
  backlog: string,
  name: string,
): Promise<void> {
  const broker: LocalBroker = await startLocalBroker({ extraConfig: ['max_queued_messages 1000000'] });
  const relay = await FaultProxy.start(broker.port);
  const sink = await SinkThread.start({
    url: broker.url,
    clientId: `envelope-sink-${name}-${process.pid}`,
    deadLetterDir: join(dir, `sink-${name}`),
    dedupWindowMs: 3_600_000,
  });
  const storeDir = copyOfStore(backlog, join(dir, `drain-${name}`));
  // Each P0 event's PUBLISH and PUBACK as the relay sees them (first send only).
  const published: number[] = [];
  const pubacked = new Map<number, number>();
  const packetEvent = new Map<string, number>();
  const live = new LiveReader();
  let batchesSeen = 0;
  relay.toServer = (p: Packet, connection: number): Packet => {
    if (p.cmd === 'publish') {
      const topic = relay.topicOf(p, connection);
      if (topic.endsWith('/telemetry/batch')) batchesSeen++;
      const record = live.read(topic, p.payload as Buffer);
      if (record !== null && !p.dup && record.priority === 0 && record.kind === RecordKind.Event) {
        packetEvent.set(`${connection}:${p.messageId}`, published.length);
        published.push(performance.now());
      }
    }
    return p;
  };
  relay.toClient = (p: Packet, connection: number): Packet => {
    if (p.cmd === 'puback') {
      const k = packetEvent.get(`${connection}:${p.messageId}`);
      if (k !== undefined) pubacked.set(k, performance.now());
    }
    return p;
  };
  const cgroup = PiCgroup.create(`v2c-envelope-drain-${name}-${process.pid}`, limits);
  const metricsPort = await freePort();
  const config = referenceVehicleConfig({ mqttUrl: relay.url, trace: '-', storeDir });
  config.metrics.port = metricsPort;
  // To compare settings (P0 latency against drain rate), e.g. V2C_ENVELOPE_CONFIG='{"batch":{"maxRecords":25}}':
  // merged section by section; the gateway validates the result as it does any config.
  if (process.env.V2C_ENVELOPE_CONFIG !== undefined) {
    const sections = JSON.parse(process.env.V2C_ENVELOPE_CONFIG) as Record<string, object>;
    for (const [name, values] of Object.entries(sections)) {
      const section = (config as unknown as Record<string, object | undefined>)[name];
      if (section === undefined) throw new Error(`V2C_ENVELOPE_CONFIG: the config has no section "${name}"`);
      Object.assign(section, values);
    }
  }
  const gateway = new MeasuredGateway(cgroup, writeConfig(dir, config), 'pipe');
  const { low, normal } = await batteryFrames();
  try {
    await until(
      'connected',
      async () => (await metricValue(metricsPort, 'v2c_mqtt_connected')) === 1,
      gateway,
      300_000,
    );
    const drainStart = Date.now();
    // The relay that times each PUBLISH and PUBACK runs on this event loop: its delay is in the
    // latency figures (the sink has its own thread, see SinkThread).
    const benchLoop = monitorEventLoopDelay({ resolution: 10 });
    benchLoop.enable();
    // Low, then back to normal (the rule re-arms), every 50 ms: one P0 event per 100 ms.
    const raised: number[] = [];
    const stdin = gateway.child.stdin;
    if (stdin === null) throw new Error('no stdin');
    // A gateway that dies (the OOM killer) closes the pipe: reported below, not thrown here.
    stdin.on('error', () => undefined);
    const drained = (): boolean => sink.counts.unique >= BACKLOG;
    const raise = async (n: number, whileDraining: boolean): Promise<void> => {
      for (let k = 0; k < n && gateway.running && !(whileDraining && drained()); k++) {
        raised.push(performance.now());
        stdin.write(`${formatCandumpLog(low, Date.now() / 1000)}\n`);
        await systemClock.sleep(50);
        stdin.write(`${formatCandumpLog(normal, Date.now() / 1000)}\n`);
        await systemClock.sleep(50);
      }
    };
    // The first second after connecting is the start-up's tail (its GC, the first sends through
    // cold code): reported on its own. The goal is for events while the backlog drains.
    await raise(STARTUP_EVENTS, false);
    await until('the first batch', () => batchesSeen > 0, gateway, 120_000);
    // Wall time, and the monotonic clock a --cpu-prof profile's timestamps count in (µs).
    const firstRaisedAt = `${new Date().toISOString()}, monotonic ${process.hrtime.bigint() / 1000n} µs`;
    await raise(EVENTS, true);
    const all = raised.length;
    await until(`${all} events acknowledged`, () => pubacked.size >= all, gateway, 120_000).catch((err: Error) => {
      figures.drainProblem = err.message.slice(0, 300);
    });
    figures.startupLatency = published
      .slice(0, STARTUP_EVENTS)
      .map((_, k) => (pubacked.get(k) ?? NaN) - (raised[k] as number))
      .filter(Number.isFinite);
    const eventsPublished = published.length;
    // From here on, k counts the events raised while draining.
    published.splice(0, STARTUP_EVENTS);
    raised.splice(0, STARTUP_EVENTS);
    const drainPubacked = new Map([...pubacked].map(([k, at]) => [k - STARTUP_EVENTS, at]));
    const framePublish = published.map((at, k) => at - (raised[k] as number));
    const publishPuback = published.map((at, k) => (drainPubacked.get(k) ?? NaN) - at).filter(Number.isFinite);
    // Where the tail comes from: the slowest events and when they were raised.
    const slowest = framePublish
      .map((ms, k) => ({ ms, k }))
      .sort((a, b) => b.ms - a.ms)
      .slice(0, 5)
      .map(
        ({ ms, k }) =>
          `#${k} at +${(((raised[k] as number) - (raised[0] as number)) / 1000).toFixed(1)} s: ${ms.toFixed(0)} ms`,
      );
    benchLoop.disable();
    console.log(`    slowest frame → PUBLISH: ${slowest.join(', ')} (#0 raised at ${firstRaisedAt})`);
    console.log(
      `    the relay's event loop meanwhile, beyond its 10 ms tick: P99 ${(benchLoop.percentile(99) / 1e6 - 10).toFixed(1)} ms, max ${(benchLoop.max / 1e6 - 10).toFixed(1)} ms`,
    );
    figures.latency = {
      raised: raised.length,
      framePublish,
      publishPuback,
      total: published.map((_, k) => (drainPubacked.get(k) ?? NaN) - (raised[k] as number)).filter(Number.isFinite),
    };
    const deadline = drainStart + DRAIN_CAP_S * 1000;
    await until(
      'the backlog drained',
      () => sink.counts.unique >= BACKLOG + eventsPublished || Date.now() > deadline,
      gateway,
      DRAIN_CAP_S * 1000 + 60_000,
    ).catch((err: Error) => {
      figures.drainProblem = err.message.slice(0, 300);
    });
    figures.drained = Math.min(sink.counts.unique, BACKLOG + eventsPublished);
    figures.drainRecordsPerS = figures.drained / ((Date.now() - drainStart) / 1000);
    figures.duplicates = sink.counts.duplicates;
    figures.drainMaxRssMiB = gateway.maxRssMiB;
    const { periods, throttledPeriods } = cgroup.usage();
    console.log(
      `    drain (${cgroup.name}): RSS ${gateway.peakComposition}; CPU quota used up in ${throttledPeriods} of ${periods} periods`,
    );
    figures.oomKills = cgroup.usage().oomKills;
  } finally {
    gateway.child.stdin?.end();
    await gateway.stop();
    figures.oomKills = Math.max(figures.oomKills ?? 0, cgroup.usage().oomKills);
    cgroup.remove();
    await sink.close();
    await relay.close();
    await broker.stop();
  }
}

function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

export async function envelopeSection(): Promise<void> {
  console.log(
    `\nPi envelope: the gateway (v2c-gateway run) in a cgroup of ${PI.cpuCores} of one core and ${(PI.memoryBytes as number) / MiB} MiB, beside the same scenario unconstrained`,
  );
  let probe: PiCgroup;
  try {
    probe = PiCgroup.create(`v2c-envelope-probe-${process.pid}`, PI);
  } catch (err) {
    if (err instanceof CgroupUnavailableError) {
      console.log(`  skipped: ${err.message}`);
      return;
    }
    throw err;
  }
  probe.remove();
  const dir = mkdtempSync(join(tmpdir(), 'v2c-envelope-'));
  try {
    const trace = join(dir, 'laps.log');
    const driveFps = 119_700 / 630;
    const speed = BUS_FPS / driveFps;
    const laps = Math.max(1, Math.ceil((BUS_SECONDS * speed) / 630));
    await lappedDrive(trace, laps);
    const backlog = await prefilledStore(dir, BACKLOG);
    const bigStore = SCENARIOS.has('bigstore') ? await prefilledStore(dir, BIG_STORE, 'big-store') : null;
    const results: Record<string, Partial<Figures>> = { unconstrained: {}, envelope: {} };
    for (const [name, limits] of [
      ['unconstrained', UNCONSTRAINED],
      ['envelope', PI],
    ] as const) {
      if (!ENVIRONMENTS.has(name)) continue;
      const f = results[name] as Partial<Figures>;
      console.log(
        `  running: ${name} (bus ${BUS_SECONDS} s at ${BUS_FPS} frames/s, idle ${IDLE_SECONDS} s, drain of ${BACKLOG.toLocaleString('en-US')} with up to ${EVENTS} P0 events)`,
      );
      if (SCENARIOS.has('bus')) await busScenario(dir, limits, f, trace, speed, name);
      if (SCENARIOS.has('idle')) await idleScenario(dir, limits, f, name);
      if (SCENARIOS.has('drain')) await drainScenario(dir, limits, f, backlog, name);
      if (bigStore !== null) await bigStoreScenario(dir, limits, f, bigStore, name);
    }
    report(results.unconstrained ?? {}, results.envelope ?? {});
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function report(free: Partial<Figures>, pi: Partial<Figures>): void {
  const row = (label: string, a: string, b: string, verdict = ''): void =>
    console.log(`  ${label.padEnd(50)} ${a.padStart(22)} ${b.padStart(22)}  ${verdict}`);
  /** A figure of each environment, '-' where it was not run. */
  const cells = <K extends keyof Figures>(key: K, show: (v: NonNullable<Figures[K]>) => string): [string, string] =>
    [free, pi].map((f) => (f[key] === undefined ? '-' : show(f[key] as NonNullable<Figures[K]>))) as [string, string];
  /** PASS/FAIL on the envelope's figure (and the unconstrained one where the goal names it). */
  const verdict = (ok: boolean | undefined, goal: string): string =>
    ok === undefined ? '' : `${ok ? 'PASS' : 'FAIL'} (${goal})`;
  const share = (v: number): string => `${(v * 100).toFixed(1)} % core`;
  const ofEnvelope = (v: number): number => v / (PI.cpuCores as number);
  const ms = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(1)} ms` : '-');
  const mib = (v: number): string => `${v.toFixed(0)} MiB`;
  row('', 'unconstrained', 'envelope');
  if (free.busSent !== undefined || pi.busSent !== undefined) {
    row(
      'bus: frames sent / decoded',
      ...(cells('busSent', (v) => String(v)).map((c, i) => `${c} / ${[free, pi][i]?.busDecoded ?? '-'}`) as [
        string,
        string,
      ]),
      verdict(pi.busSent === undefined ? undefined : pi.busSent === pi.busDecoded, 'lost 0'),
    );
    row(
      'bus: CPU',
      ...cells(
        'busCpuShare',
        (v) => `${share(v)}${v === pi.busCpuShare ? ` = ${(ofEnvelope(v) * 100).toFixed(0)} % of it` : ''}`,
      ),
      verdict(pi.busCpuShare === undefined ? undefined : ofEnvelope(pi.busCpuShare) <= 0.6, '≤ 60 % of the envelope'),
    );
    row(
      'bus: max RSS',
      ...cells('busMaxRssMiB', mib),
      verdict(pi.busMaxRssMiB === undefined ? undefined : pi.busMaxRssMiB <= 160, '≤ 160 MiB'),
    );
    row('start-up to the first decoded frame', ...cells('startDecodedS', (v) => `${v.toFixed(1)} s`));
    row(
      'start-up to the first PUBACK',
      ...cells('startPubackS', (v) => `${v.toFixed(1)} s`),
      verdict(pi.startPubackS === undefined ? undefined : pi.startPubackS <= 5, '≤ 5 s in the envelope'),
    );
  }
  if (free.bigStartPubackS !== undefined || pi.bigStartPubackS !== undefined) {
    const n = BIG_STORE.toLocaleString('en-US');
    row(`start-up with ${n} stored: to the first PUBACK`, ...cells('bigStartPubackS', (v) => `${v.toFixed(1)} s`));
    row(
      `start-up with ${n} stored: max RSS (1st minute)`,
      ...cells('bigStartMaxRssMiB', mib),
      verdict(
        pi.bigStartMaxRssMiB === undefined ? undefined : pi.bigStartMaxRssMiB <= 160 && pi.bigStartOomKills === 0,
        '≤ 160 MiB, no OOM kill',
      ),
    );
  }
  if (free.idleCpuShare !== undefined || pi.idleCpuShare !== undefined) {
    row(
      'idle CPU (no frames)',
      ...cells(
        'idleCpuShare',
        (v) => `${share(v)}${v === pi.idleCpuShare ? ` = ${(ofEnvelope(v) * 100).toFixed(1)} % of it` : ''}`,
      ),
      verdict(pi.idleCpuShare === undefined ? undefined : ofEnvelope(pi.idleCpuShare) <= 0.02, '≤ 2 % of the envelope'),
    );
  }
  if (free.latency !== undefined || pi.latency !== undefined) {
    const met =
      pi.latency !== undefined && free.latency !== undefined
        ? { envelope: percentile(pi.latency.total, 99) <= 50, unconstrained: percentile(free.latency.total, 99) <= 20 }
        : null;
    const tooFew = [pi.latency, free.latency].some((l) => l !== undefined && l.raised < MIN_EVENTS);
    const ok = met === null || tooFew ? undefined : met.envelope && met.unconstrained;
    const yes = (goalMet: boolean): string => (goalMet ? 'met' : 'not met');
    const goal =
      met === null
        ? ''
        : `≤ 50 ms envelope ${yes(met.envelope)}, ≤ 20 ms unconstrained ${yes(met.unconstrained)}; over ≥ ${MIN_EVENTS} events`;
    for (const p of [50, 90, 99]) {
      const at = (l: Figures['latency']): string =>
        `${ms(percentile(l.total, p))} (${ms(percentile(l.framePublish, p))} + ${ms(percentile(l.publishPuback, p))})`;
      row(
        `P0 event → PUBACK P${p} (frame→PUBLISH + PUBLISH→PUBACK)`,
        ...cells('latency', at),
        p !== 99 ? '' : tooFew ? `no verdict: fewer than ${MIN_EVENTS} events while draining` : verdict(ok, goal),
      );
    }
    row(
      'P0 event → PUBACK max (events acknowledged)',
      ...cells('latency', (l) => `${ms(Math.max(...l.total))} (${l.total.length}/${l.raised})`),
    );
    row(
      `P0 → PUBACK in the 1st second after connecting: P50 / max (${STARTUP_EVENTS} events)`,
      ...cells('startupLatency', (l) => `${ms(percentile(l, 50))} / ${ms(Math.max(...l))}`),
    );
    row(
      'drain: records/s (records delivered)',
      ...(cells('drainRecordsPerS', (v) => v.toFixed(0)).map((c, i) => `${c} (${[free, pi][i]?.drained ?? '-'})`) as [
        string,
        string,
      ]),
      verdict(pi.drainRecordsPerS === undefined ? undefined : pi.drainRecordsPerS >= 300, '≥ 300 records/s'),
    );
    row(
      'drain: duplicates at the sink',
      ...cells('duplicates', String),
      verdict(pi.duplicates === undefined ? undefined : pi.duplicates === 0, '0'),
    );
    row(
      'drain: max RSS',
      ...cells('drainMaxRssMiB', mib),
      verdict(pi.drainMaxRssMiB === undefined ? undefined : pi.drainMaxRssMiB <= 160, '≤ 160 MiB'),
    );
    row(
      'drain: OOM kills',
      ...cells('oomKills', String),
      verdict(pi.oomKills === undefined ? undefined : pi.oomKills === 0, '0'),
    );
  }
  for (const [name, f] of [
    ['unconstrained', free],
    ['envelope', pi],
  ] as const)
    if (f.drainProblem !== undefined) console.log(`  ${name}: the drain ended early: ${f.drainProblem}`);
}
