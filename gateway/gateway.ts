// The composition root (DESIGN §1): builds each stage from the config, wires them, owns the lifecycle.
import { readFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { concatMap, filter, Subject, takeUntil, type Observable } from 'rxjs';
import type { CanFrame, MalformedLine } from '../drivers/can-frame.js';
import type { DbcDecoder } from '../drivers/dbc/decoder.js';
import { loadDecoder } from './dbc-loader.js';
import { SlcanSerialSource, type SlcanSourceCounters } from '../drivers/slcan-serial-source.js';
import { traceFrames } from '../drivers/trace-source.js';
import { join } from 'node:path';
import { CommandHandler, commandFilter, isCommandTopic } from '../sync/session/command-handler.js';
import { DeadLetterFile } from '../sync/store/dead-letter.js';
import { Heartbeat } from '../sync/session/heartbeat.js';
import { MqttSession, type TlsPolicy } from '../sync/session/mqtt-session.js';
import { OutboxSender, type Route } from '../sync/outbox-sender.js';
import { registerOutboxMetrics } from '../sync/outbox/outbox-metrics.js';
import { registerSessionMetrics } from '../sync/session/session-metrics.js';
import { registerStoreMetrics } from '../sync/store/store-metrics.js';
import { registerLinkMetrics } from '../sync/link/link-metrics.js';
import { registerClockMetrics } from '../sync/time/clock-metrics.js';
import { registerCertificateMetrics } from '../provisioning/certificate-metrics.js';
import { DrainPacer } from '../sync/drain-pacer.js';
import { cpuAllowance } from '../core/cpu-allowance.js';
import { HttpsOffloadUploader } from '../sync/offload/https-offload.js';
import { TelemetryStore } from '../sync/store/telemetry-store.js';
import { makePrivateDir } from '../core/private-files.js';
import { lockStoreDir, StoreLockedError, type StoreLock } from '../sync/store/store-lock.js';
import { CellularBudget } from '../sync/link/cellular-budget.js';
import { BrokerTimeSource, timeTopics } from '../sync/session/broker-time.js';
import { ClockCorrector } from '../sync/time/clock-corrector.js';
import { GnssReceiver, NtpStateSource } from '../sync/time/time-sources.js';
import { prepareCodecs, SCHEMA_VERSION } from '../proto/telemetry-codec.js';
import { validateRecord } from '../proto/record-validation.js';
import { zstdChoice } from '../proto/zstd.js';
import { LinkController } from '../sync/link/link-controller.js';
import { SystemLinkMonitor, type LinkMonitor } from '../sync/link/link-monitor.js';
import { ledModeFor, openGpio } from './gpio.js';
import type { IgnitionSense, StatusLed } from '../core/hardware.js';
import { CertificateLifecycle, sessionTls } from '../provisioning/certificate-lifecycle.js';
import { checkCredentials, CredentialError, type CertificateFacts } from '../provisioning/credential-checks.js';
import { FileKeyStore, type DeviceCredentials } from '../provisioning/key-store.js';
import type { Clock } from '../core/clock.js';
import { rateLimited, type Log } from '../core/log.js';
import { checkConfigInputs, ConfigError, type GatewayConfig } from '../core/config.js';
import { GatewayMetrics } from './metrics.js';
import { newPipelineCounters, telemetryPipeline, type PipelineCounters } from './telemetry-pipeline.js';
import { DM1_SIGNALS } from './pipeline/j1939-diagnostics.js';
import { GNSS_MESSAGE, gnssFrames } from './pipeline/gnss-stage.js';
import { OBD_DTC_SIGNALS, OBD_MESSAGE } from './pipeline/obd-responses.js';
import { ObdPoller } from './obd-poller.js';
import { resolutionTable } from './wire-resolution.js';

export type { Log } from '../core/log.js';

/** The drain pacer's averaging time: a few batches long, so one batch's burst does not hold the next back. */
const DRAIN_USAGE_WINDOW_MS = 500;
const routeLabel: Record<Route, string> = { single: 'individual', batch: 'batch', upload: 'offload' };

export interface GatewayHandle {
  pipeline: PipelineCounters;
  serial: SlcanSourceCounters | null;
  /** Records written to the store. */
  stored: () => number;
  sender: OutboxSender;
  /** Holds batches back while the process uses its CPU share. */
  pacer: DrainPacer;
  session: MqttSession;
  heartbeat: Heartbeat;
  commands: CommandHandler;
  deadLetters: DeadLetterFile;
  store: TelemetryStore;
  /** Clock-skew correction: the best time reference of this boot. */
  time: ClockCorrector;
  /** Link, ignition and cellular budget, and the decision they make. */
  link: LinkController;
  /** OBD-II polling, when `can.protocols` names obd and the adapter is live; null otherwise. */
  obd: ObdPoller | null;
  /** The device certificate's lifecycle; null without mutual TLS. */
  certificate: CertificateLifecycle | null;
  metrics: GatewayMetrics;
  metricsPort: number | null;
  /** Resolves when the frame source has ended and every record it produced is stored. */
  sourceDone: Promise<void>;
  /** Stops capture, flushes the open window, waits up to `drainTimeoutMs` for PUBACKs, closes. */
  stop(drainTimeoutMs: number): Promise<{ drained: boolean; pending: number }>;
}

export { DbcLoadError, loadDecoder } from './dbc-loader.js';

/** The broker connection's TLS policy from the config (the offload, on WiFi, takes only the minimum version). */
function tlsPolicy(t: NonNullable<GatewayConfig['mqtt']['tls']>): TlsPolicy {
  return {
    minVersion: t.minVersion,
    maxVersion: t.maxVersion,
    ...(t.servername !== undefined ? { servername: t.servername } : {}),
  };
}

export function readBootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'unknown-boot';
  }
}

/** `v2c/v1/{region}/{vehicle_id}/{suffix}` (the spec's topic tree). */
export function vehicleTopic(
  config: GatewayConfig,
  suffix: 'telemetry/vehicle' | 'telemetry/batch' | 'telemetry/compact' | 'telemetry/layout' | 'status/heartbeat',
): string {
  return `v2c/v1/${config.vehicle.region}/${config.vehicle.id}/${suffix}`;
}

interface TlsStart {
  settings: NonNullable<GatewayConfig['mqtt']['tls']>;
  keyStore: FileKeyStore;
  credentials: DeviceCredentials;
  facts: CertificateFacts;
  /** Why the session must not connect (an expired certificate), or null. */
  hold: string | null;
}

/**
 * Loads and checks the device credentials: a key readable by others, a key that does not match,
 * an untrusted chain or a CN other than the vehicle id stop the start; an expired certificate
 * lets capture run but keeps the session from connecting (certificate-renewal state).
 */
function loadCredentials(config: GatewayConfig, clock: Clock, log: Log): TlsStart | null {
  const tls = config.mqtt.tls;
  if (tls === undefined) return null;
  const keyStore = new FileKeyStore({ key: tls.key, cert: tls.cert, ca: tls.ca });
  const credentials = keyStore.load();
  const check = checkCredentials(credentials, credentials.files, {
    vehicleId: config.vehicle.id,
    now: new Date(clock.wallMs()),
    expiringWithinDays: 0,
  });
  const fatal = check.problems.filter((p) => p.code !== 'CERT_EXPIRED' && p.code !== 'CERT_NOT_YET_VALID');
  if (fatal.length > 0 || check.facts === null) throw new CredentialError(fatal.length > 0 ? fatal : check.problems);
  // Without a real-time clock the system time can be days behind: try anyway, the broker decides.
  const early = check.problems.find((p) => p.code === 'CERT_NOT_YET_VALID');
  if (early !== undefined) log(`certificate: ${early.message}; connecting anyway`);
  const expired = check.problems.find((p) => p.code === 'CERT_EXPIRED');
  return {
    settings: tls,
    keyStore,
    credentials,
    facts: check.facts,
    hold: expired === undefined ? null : `${expired.file}: ${expired.message}`,
  };
}

/** Hardware the tests and the bench supply themselves; the real ones are used for what is absent. */
export interface GatewayDevices {
  linkMonitor?: LinkMonitor;
  ignition?: IgnitionSense | null;
  led?: StatusLed | null;
}

export async function startGateway(
  config: GatewayConfig,
  clock: Clock,
  log: Log,
  devices: GatewayDevices = {},
): Promise<GatewayHandle> {
  const j1939 = config.can.protocols.includes('j1939');
  const decoder = loadDecoder(config.dbc, { j1939 });
  for (const warning of decoder.db.warnings) log(`dbc: ${warning}`);
  const obd = config.can.protocols.includes('obd');
  const signals = [
    ...decoder.db.messages.flatMap((m) => m.signals.map((s) => s.name)),
    ...(j1939 ? Object.values(DM1_SIGNALS) : []),
    ...(obd ? [...OBD_MESSAGE.signals.map((s) => s.name), ...Object.values(OBD_DTC_SIGNALS)] : []),
    ...(config.clock.gpsPort !== undefined ? GNSS_MESSAGE.signals.map((s) => s.name) : []),
  ];
  checkConfigInputs(config, new Set(signals), 'configuration');
  const tls = loadCredentials(config, clock, log);
  const bootId = readBootId();
  const lock = lockStore(config.store.dir, bootId, log);
  try {
    return await wire(config, clock, log, devices, { decoder, tls, bootId, lock });
  } catch (err) {
    lock?.release();
    throw err;
  }
}

/**
 * The store directory, owner-only and locked for this process. A directory the gateway cannot
 * write is no reason to stop capturing (the store runs in memory and says so): no lock then.
 */
function lockStore(dir: string, bootId: string, log: Log): StoreLock | null {
  try {
    makePrivateDir(dir);
    return lockStoreDir(dir, bootId);
  } catch (err) {
    if (err instanceof StoreLockedError) throw err;
    log(`store: cannot lock ${dir} (${(err as Error).message}); another instance on it would not be refused`);
    return null;
  }
}

interface Prepared {
  decoder: DbcDecoder;
  tls: TlsStart | null;
  bootId: string;
  lock: StoreLock | null;
}

async function wire(
  config: GatewayConfig,
  clock: Clock,
  log: Log,
  devices: GatewayDevices,
  { decoder, tls, bootId, lock }: Prepared,
): Promise<GatewayHandle> {
  const { p0, p1, p2 } = config.store.quotaBytes;
  const store = await TelemetryStore.open(
    { kind: config.store.storage, ...config.store, quotaBytes: [p0, p1, p2] },
    log,
  );
  const counters = newPipelineCounters();
  let stored = 0;
  const invalidLog = rateLimited(log, 60_000);

  let serial: SlcanSerialSource | null = null;
  let frames: Observable<CanFrame | MalformedLine>;
  if (config.can.source === 'slcan') {
    serial = new SlcanSerialSource(
      {
        path: config.can.port as string,
        bitrate: config.can.bitrate,
        baudRate: config.can.baudRate,
        bus: config.can.bus,
        watchdogMs: config.can.watchdogMs,
        reopenDelaysMs: config.can.reopenDelaysMs,
        readIntervalMs: config.can.readIntervalMs,
      },
      clock,
    );
    serial.events.subscribe((e) =>
      log(
        e.kind === 'open'
          ? `can: adapter open on ${config.can.port}`
          : e.kind === 'closed'
            ? `can: adapter closed: ${e.reason}`
            : `can: reopening in ${e.delayMs} ms`,
      ),
    );
    frames = serial.frames;
  } else {
    frames = traceFrames(
      config.can.file as string,
      config.can.source === 'candump' ? 'candump' : 'slcan',
      config.can.speed,
      clock,
    );
  }

  const m = config.mqtt;
  const session = new MqttSession(
    {
      url: m.url,
      clientId: m.clientId ?? config.vehicle.id,
      keepaliveS: m.keepaliveS,
      sessionExpiryS: m.sessionExpiryS,
      receiveMaximum: m.receiveMaximum,
      maximumPacketSize: m.maximumPacketSize,
      maxOutgoingPacketBytes: m.maxOutgoingPacketBytes,
      connectTimeoutMs: m.connectTimeoutMs,
      pubackTimeoutMs: m.pubackTimeoutMs,
      reconnect: m.reconnect,
      vehicleModel: config.vehicle.model,
      firmwareVersion: config.firmwareVersion,
      ...(tls !== null
        ? {
            tls: sessionTls(tls.credentials, tlsPolicy(tls.settings)),
            tlsSessionResumption: tls.settings.sessionResumption,
          }
        : {}),
    },
    log,
  );
  const c = config.certificate;
  const certificate =
    tls === null
      ? null
      : new CertificateLifecycle(
          tls.keyStore,
          session,
          tls.credentials,
          tls.facts,
          {
            vehicleId: config.vehicle.id,
            region: config.vehicle.region,
            warnDays: c.warnDays,
            renewAtFraction: c.renewAtFraction,
            checkIntervalMs: c.checkIntervalMs,
            responseTimeoutMs: c.responseTimeoutMs,
            connectTimeoutMs: c.connectTimeoutMs,
            tls: tlsPolicy(tls.settings),
          },
          clock,
          log,
        );
  const deadLetters = new DeadLetterFile(config.store.deadLetterFile ?? join(config.store.dir, 'dead-letter.jsonl'));
  const status = async (): Promise<Record<string, unknown>> => ({
    state: session.state,
    pending: await store.count(),
    in_flight: sender.inFlight,
    parked: sender.parkedRecords,
    acked: sender.counters.acked,
  });
  const heartbeat = new Heartbeat(
    session,
    vehicleTopic(config, 'status/heartbeat'),
    m.heartbeatS * 1000,
    m.heartbeatTimeoutMs,
    clock,
  );
  const commands = new CommandHandler(
    session,
    {
      status,
      flush: () => sender.flush(),
      setIntervalS: (s) => heartbeat.setInterval(s * 1000),
      nowMs: () => clock.wallMs(),
    },
    log,
  );
  session.messages
    .pipe(filter((message) => isCommandTopic(message.topic, config.vehicle.id)))
    .subscribe((message) => void commands.handle(message));
  session.keepSubscribed(commandFilter(config.vehicle.id));

  const gpio =
    devices.ignition !== undefined || devices.led !== undefined
      ? { ignition: devices.ignition ?? null, led: devices.led ?? null }
      : openGpio(config.gpio, clock, log);
  const l = config.link;
  const link = new LinkController(
    devices.linkMonitor ??
      new SystemLinkMonitor(
        {
          cellularInterfaces: l.cellularInterfaces,
          pollMs: l.pollMs,
          ...(l.wifiInterface !== undefined ? { wifiInterface: l.wifiInterface } : {}),
        },
        log,
      ),
    gpio.ignition,
    new CellularBudget(join(config.store.dir, 'cellular-budget.json'), l.dailyCellularBudgetBytes, clock, log),
    {
      allowedSsids: l.allowedSsids,
      parkedAfterMs: l.parkedAfterMs,
      dailyCellularBudgetBytes: l.dailyCellularBudgetBytes,
      batchMaxRecords: config.batch.maxRecords,
      offloadBatchRecords: l.offloadBatchRecords,
    },
    () => store.count(),
    log,
    () => clock.monoMs(),
  );
  // A link that comes back ends the reconnect wait at once.
  link.monitor.links.subscribe((state) => {
    if (state.kind !== 'none') session.retryNow();
  });
  const led = gpio.led;
  if (led !== null) session.states.subscribe((s) => led.show(ledModeFor(s.state, store.counters.degraded !== null)));

  const k = config.clock;
  const corrector = new ClockCorrector(bootId, clock, { driftPpm: k.driftPpm, windowMs: k.windowMs }, log);
  let onlineSinceMs: number | null = null;
  session.connected.subscribe((up) => {
    onlineSinceMs = up ? clock.monoMs() : null;
  });
  const uploader =
    config.offload.url === undefined || tls === null
      ? null
      : new HttpsOffloadUploader(
          {
            url: config.offload.url,
            vehicleId: config.vehicle.id,
            concurrency: config.offload.concurrency,
            timeoutMs: config.offload.timeoutMs,
            tls: sessionTls(tls.credentials, { minVersion: tls.settings.minVersion }),
          },
          corrector,
          clock,
        );
  if (certificate !== null && uploader !== null && tls !== null) {
    certificate.onRenewed = (c) => uploader.useCredentials(sessionTls(c, { minVersion: tls.settings.minVersion }));
  }
  const metrics = new GatewayMetrics();
  const allowance = cpuAllowance();
  const pacer = new DrainPacer(
    {
      allowedCores: allowance.cores,
      share: config.batch.drainCpuShare,
      maxCores: config.batch.drainMaxCores,
      windowMs: DRAIN_USAGE_WINDOW_MS,
      quotaPeriodMs: allowance.quotaPeriodMs,
      burstShare: config.batch.drainBurstShare,
    },
    clock,
  );
  const sender = new OutboxSender(
    {
      vehicleId: config.vehicle.id,
      vehicleTopic: vehicleTopic(config, 'telemetry/vehicle'),
      batchTopic: vehicleTopic(config, 'telemetry/batch'),
      liveEncoding: m.liveEncoding,
      compactTopic: vehicleTopic(config, 'telemetry/compact'),
      layoutTopicPrefix: vehicleTopic(config, 'telemetry/layout'),
      inflight: m.inflight,
      batchMinRecords: config.batch.minRecords,
      batchMaxRecords: config.batch.maxRecords,
      batchInflight: config.batch.inflight,
      batchMaxAgeMs: config.batch.maxAgeMs,
      retryDelayMs: m.retryDelayMs,
      resends: m.resends,
      quotaBackoffMs: config.batch.quotaBackoffMs,
      zstdLevel: config.batch.zstdLevel,
      resolution: resolutionTable(decoder.db, config.pipeline.fields),
    },
    {
      store,
      session,
      deadLetters,
      clock,
      log,
      link,
      prepare: (record) => corrector.correct(record),
      uploader,
      timeHoldMs: () =>
        corrector.reference !== null || !k.brokerTime || onlineSinceMs === null
          ? 0
          : Math.max(0, onlineSinceMs + k.unsyncedHoldMs - clock.monoMs()),
      onAck: (route, s) => metrics.publishLatency.observe({ topic: routeLabel[route] }, s),
      pacer,
    },
  );
  link.decisions.subscribe(() => sender.kick());
  corrector.references.subscribe(() => sender.kick());
  const brokerTime = k.brokerTime
    ? new BrokerTimeSource(
        session,
        timeTopics(config.vehicle.region, config.vehicle.id),
        corrector,
        clock,
        k.brokerTimeIntervalMs,
        log,
      )
    : null;
  const ntp = k.ntp
    ? new NtpStateSource(corrector, clock, { intervalMs: k.ntpIntervalMs, errorMs: k.ntpErrorMs }, log)
    : null;
  const gps =
    k.gpsPort !== undefined
      ? new GnssReceiver(corrector, clock, { path: k.gpsPort, baudRate: k.gpsBaudRate, errorMs: k.gpsErrorMs }, log)
      : null;
  if (gps !== null)
    metrics.counter(
      'v2c_gnss_sentences_total',
      'NMEA sentences from the GNSS receiver, by what they gave',
      ['result'],
      () => [
        [{ result: 'time' }, gps.counters.references],
        [{ result: 'position' }, gps.counters.positions],
        [{ result: 'no_fix' }, gps.counters.noFix],
        [{ result: 'error' }, gps.counters.errors],
      ],
    );

  // How late the event loop runs (a CPU-starved board, a blocking write): what every deadline lives with.
  // 100 ms: enough to see the stalls that matter (hundreds of ms), at 10 wake-ups a second instead of 50.
  const loopDelay = monitorEventLoopDelay({ resolution: 100 });
  metrics.gauge(
    'v2c_event_loop_delay_seconds',
    'Event-loop delay since the last scrape (p99 and max)',
    ['stat'],
    () => {
      const figures: Array<[Record<string, string>, number]> = [
        [{ stat: 'p99' }, loopDelay.percentile(99) / 1e9],
        [{ stat: 'max' }, loopDelay.max / 1e9],
      ];
      loopDelay.reset();
      return figures;
    },
  );
  registerPipelineMetrics(metrics, config.can.source, counters, serial?.counters ?? null, () => stored);
  registerOutboxMetrics(metrics, sender, pacer, config.vehicle.region);
  registerSessionMetrics(metrics, session, heartbeat, commands, {
    region: config.vehicle.region,
    vehicleModel: config.vehicle.model,
  });
  registerStoreMetrics(metrics, store, deadLetters, config.vehicle.id);
  if (certificate !== null) registerCertificateMetrics(metrics, certificate);
  registerLinkMetrics(metrics, link);
  registerClockMetrics(metrics, corrector);
  let metricsPort: number | null = null;
  try {
    metricsPort = config.metrics.port > 0 ? await metrics.listen(config.metrics.host, config.metrics.port) : null;
  } catch (err) {
    await store.close();
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new ConfigError('configuration', [
      `metrics.port: cannot listen on ${config.metrics.host}:${config.metrics.port} (${code}); choose a free port, or 0 to turn the endpoint off`,
    ]);
  }
  if (metricsPort !== null) log(`metrics: http://${config.metrics.host}:${metricsPort}/metrics`);
  loopDelay.enable();

  const firstSequence = (await store.maxSequence()) + 1;
  // Ends a trace replay on stop; the serial source ends with the adapter's own stop.
  const stopping = new Subject<void>();
  const sourceDone = new Promise<void>((resolve, reject) => {
    telemetryPipeline(frames.pipe(takeUntil(stopping)), {
      config,
      decoder,
      clock,
      counters,
      bootId,
      firstSequence,
      live: serial !== null || config.can.file === '-',
      // A receiver's live positions belong with live capture, not with a replayed recording's time.
      ...(gps !== null && serial !== null ? { sideSignals: gnssFrames(gps.positions).pipe(takeUntil(stopping)) } : {}),
    })
      .pipe(
        concatMap(async (record) => {
          // A record its receiver would refuse is never stored (it would be deleted on its PUBACK and lost there).
          const problem = validateRecord(record, config.vehicle.id, [SCHEMA_VERSION]);
          if (problem !== null) {
            try {
              deadLetters.write({ reason: 'invalid_record', topic: 'store', detail: problem, record }, clock.wallMs());
              invalidLog(
                `pipeline: record ${record.messageId} is not valid (${problem}); moved to ${deadLetters.path}`,
              );
            } catch (err) {
              invalidLog(
                `pipeline: record ${record.messageId} is not valid (${problem}) and could not be kept in ${deadLetters.path}: ${(err as Error).message}`,
              );
            }
            return;
          }
          if (await store.insert(record, clock.wallMs())) stored++;
        }),
      )
      .subscribe({ error: reject, complete: resolve });
  });
  prepareCodecs();
  link.start();
  brokerTime?.start();
  ntp?.start();
  gps?.start();
  sender.start();
  if (tls?.hold != null)
    session.holdForCertificate(
      `${tls.hold}; certificate renewal needed (run v2c-gateway provision with a new certificate)`,
    );
  else session.start();
  certificate?.start();
  heartbeat.start();
  serial?.start();
  // Asking the ECUs needs a live adapter; a trace's OBD-II answers are only read.
  const poller =
    config.can.protocols.includes('obd') && serial !== null
      ? new ObdPoller(
          { ...config.obd, vehicleId: config.vehicle.id },
          serial,
          clock,
          log,
          () => gpio.ignition?.isOn ?? null,
        )
      : null;
  if (poller !== null && serial !== null) {
    poller.start(serial.frames);
    registerObdMetrics(metrics, poller);
  }
  announceZstd(metrics, log);

  async function stopOnce(drainTimeoutMs: number): Promise<{ drained: boolean; pending: number }> {
    // Every step runs whatever the one before it did: one failure must not leak the rest.
    const step = async (what: string, fn: () => unknown): Promise<void> => {
      try {
        await fn();
      } catch (err) {
        failures++;
        log(`stop: ${what} failed: ${(err as Error).message}`);
      }
    };
    let failures = 0;
    let drained = false;
    let pending = -1;
    poller?.stop();
    await step('closing the adapter', () => serial?.stop());
    stopping.next();
    await step('ending capture', () => sourceDone);
    await step('draining the outbox', async () => {
      drained = await sender.drain(drainTimeoutMs);
    });
    await step('counting what is left', async () => {
      pending = await store.count();
    });
    await step('stopping the sender', () => sender.stop());
    await step('stopping the heartbeat', () => heartbeat.stop());
    await step('stopping the certificate checks', () => certificate?.stop());
    await step('stopping the link controller', () => link.stop());
    await step('stopping the LED', () => led?.stop());
    await step('stopping the broker time source', () => brokerTime?.stop());
    await step('stopping NTP checks', () => ntp?.stop());
    await step('stopping the GPS', () => gps?.stop());
    await step('closing the offload uploader', () => uploader?.close());
    await step('closing the MQTT session', () => session.close());
    await step('closing the metrics endpoint', () => metrics.close());
    loopDelay.disable();
    await step('closing the store', () => store.close());
    await step('releasing the store lock', () => lock?.release());
    return { drained: drained && failures === 0, pending };
  }
  let stopped: Promise<{ drained: boolean; pending: number }> | undefined;
  return {
    pipeline: counters,
    serial: serial?.counters ?? null,
    stored: () => stored,
    sender,
    pacer,
    session,
    heartbeat,
    commands,
    deadLetters,
    store,
    metrics,
    metricsPort,
    sourceDone,
    certificate,
    link,
    time: corrector,
    obd: poller,
    stop(drainTimeoutMs) {
      // A second stop (a teardown after the caller's own, a signal during stop) gets the first's result.
      stopped ??= stopOnce(drainTimeoutMs);
      return stopped;
    },
  };
}

/**
 * Picks the zstd implementation once capture runs (not before the first frame: the WebAssembly one
 * compiles for tens of ms), and says which in the log and in `v2c_zstd_implementation`. With none,
 * capture and single records go on; batches stay stored and each attempt logs why.
 */
function announceZstd(m: GatewayMetrics, log: Log): void {
  let implementation = 'pending';
  m.gauge(
    'v2c_zstd_implementation',
    '1 for the zstd implementation batches are compressed with (none: batches cannot be sent)',
    ['implementation'],
    () => [[{ implementation }, 1]],
  );
  zstdChoice().then(
    ({ codec, passedOver }) => {
      implementation = codec.implementation;
      log(`zstd: ${codec.implementation}${passedOver.length > 0 ? ` (passed over ${passedOver.join('; ')})` : ''}`);
    },
    (err: unknown) => {
      implementation = 'none';
      log(`zstd: ${(err as Error).message}; batches stay stored until one is installed`);
    },
  );
}

function registerObdMetrics(m: GatewayMetrics, poller: ObdPoller): void {
  const c = poller.counters;
  m.counter('v2c_obd_requests_total', 'OBD-II requests sent, by PID (service 01) or service', ['pid'], () =>
    [...c.perPid].map(([pid, n]) => [{ pid: pidLabel(pid) }, n.requests]),
  );
  m.counter('v2c_obd_answers_total', 'OBD-II requests answered, by PID or service', ['pid'], () =>
    [...c.perPid].map(([pid, n]) => [{ pid: pidLabel(pid) }, n.answers]),
  );
  m.counter('v2c_obd_timeouts_total', 'OBD-II physical requests without an answer in time', [], () => [
    [{}, c.timeouts],
  ]);
  m.counter('v2c_obd_negative_responses_total', 'OBD-II refusals by negative response code', ['nrc'], () =>
    Object.entries(c.negative).map(([nrc, n]) => [{ nrc: `0x${Number(nrc).toString(16)}` }, n]),
  );
}

/** `0x0c` for a service-01 PID, `service_03` for a DTC service (counted as 0x100 + service). */
function pidLabel(key: number): string {
  return key >= 0x100
    ? `service_${(key - 0x100).toString(16).padStart(2, '0')}`
    : `0x${key.toString(16).padStart(2, '0')}`;
}

function registerPipelineMetrics(
  m: GatewayMetrics,
  source: string,
  p: PipelineCounters,
  serial: SlcanSourceCounters | null,
  stored: () => number,
): void {
  m.counter('v2c_can_frames_total', 'CAN frames received', ['source'], () => [[{ source }, p.frames]]);
  m.counter('v2c_can_malformed_lines_total', 'Input lines that were not valid frames', ['source'], () => [
    [{ source }, p.malformed],
  ]);
  m.counter('v2c_can_decoded_frames_total', 'Frames decoded with the DBC', [], () => [[{}, p.decoded]]);
  m.counter('v2c_can_decode_errors_total', 'Frames the DBC could not decode', ['reason'], () =>
    Object.entries(p.decodeErrors).map(([reason, n]) => [{ reason }, n]),
  );
  if (serial !== null) {
    m.counter('v2c_serial_reopens_total', 'Adapter reopen attempts', ['cause'], () => [
      [{ cause: 'watchdog' }, serial.watchdogReopens],
      [{ cause: 'error' }, serial.reopens - serial.watchdogReopens],
    ]);
    m.counter('v2c_serial_adapter_errors_total', 'BEL error replies from the adapter', [], () => [
      [{}, serial.adapterErrors],
    ]);
  }
  const j1939 = p.j1939;
  if (j1939 !== null) {
    m.counter('v2c_j1939_transport_total', 'J1939 transport-protocol transfers by outcome', ['outcome'], () =>
      Object.entries(j1939.transport).map(([outcome, n]) => [{ outcome }, n]),
    );
    m.counter('v2c_j1939_dm1_total', 'J1939 DM1 messages read, and those too short to read', ['result'], () => [
      [{ result: 'read' }, j1939.dm1.dm1],
      [{ result: 'too-short' }, j1939.dm1.dm1Errors],
    ]);
  }
  m.counter('v2c_pipeline_records_total', 'Telemetry records built', ['kind'], () => [
    [{ kind: 'window' }, p.windows],
    [{ kind: 'event' }, p.events],
  ]);
  m.counter('v2c_store_records_total', 'Records written to the local store', [], () => [[{}, stored()]]);
}
