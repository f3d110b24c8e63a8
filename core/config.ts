// Gateway configuration: one schema, validated at start with errors that name the field.
import { readInputFile } from './input-file.js';

import { statSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { projectRoot } from './project-root.js';

/** Node's timers hold at most 2^31 - 1 ms; a longer one fires after 1 ms (a spawn loop, a connect that never waits). */
const MAX_TIMER_MS = 2_147_483_647;
const TIMER_LIMIT = 'at most 2147483647 ms (24.8 days, the longest timer Node keeps)';
/** The OBD-II PIDs the gateway can read (drivers/obd/pids.ts), listed here so the schema stays import-light. */
const OBD_PIDS = new Set([
  0x01, 0x04, 0x05, 0x0c, 0x0d, 0x0f, 0x10, 0x11, 0x1f, 0x2f, 0x31, 0x42, 0x46, 0x5b, 0x5e, 0xa6,
]);
/** What a fleet usually wants, at rates a car's diagnostic port takes without trouble (~3 requests/s). */
const DEFAULT_OBD_PIDS = [
  { pid: 0x0d, intervalMs: 1000 },
  { pid: 0x0c, intervalMs: 1000 },
  { pid: 0x04, intervalMs: 5000 },
  { pid: 0x05, intervalMs: 5000 },
  { pid: 0x11, intervalMs: 5000 },
  { pid: 0x5e, intervalMs: 5000 },
  { pid: 0x0f, intervalMs: 10_000 },
  { pid: 0x10, intervalMs: 10_000 },
  { pid: 0x42, intervalMs: 10_000 },
  { pid: 0x2f, intervalMs: 30_000 },
  { pid: 0x5b, intervalMs: 30_000 },
  { pid: 0x1f, intervalMs: 60_000 },
  { pid: 0x31, intervalMs: 60_000 },
  { pid: 0x46, intervalMs: 60_000 },
  { pid: 0xa6, intervalMs: 60_000 },
];

/** The largest packet MQTT can frame (a 4-byte Remaining Length plus its header). */
const MQTT_MAX_PACKET_BYTES = 268_435_460;
const MQTT_PACKET_LIMIT = 'at most 268435460 bytes (the largest MQTT packet)';

/** A configuration is a few kilobytes; anything this large is the wrong file. */
const MAX_CONFIG_BYTES = 1 << 20;

const stat = z.enum(['min', 'max', 'mean', 'last']);
const fieldMapping = z.object({ signal: z.string().min(1), stat: stat.default('last') }).strict();

const eventRule = z.discriminatedUnion('kind', [
  z
    .object({
      kind: z.literal('threshold'),
      name: z.string().regex(/^[a-z0-9_]+$/, 'expected a snake_case rule name'),
      signal: z.string().min(1),
      above: z.number().optional(),
      below: z.number().optional(),
      /** The rule re-arms once the value is back past the threshold by this much. */
      hysteresis: z.number().nonnegative().default(0),
    })
    .strict(),
  z
    .object({
      kind: z.literal('dtc'),
      name: z.string().regex(/^[a-z0-9_]+$/, 'expected a snake_case rule name'),
      signal: z.string().min(1),
    })
    .strict(),
]);

/** The vehicle id (VIN): also the certificate CN and a topic level. */
export const vehicleIdSchema = z
  .string()
  .regex(/^[A-Za-z0-9_-]{1,64}$/, 'expected 1-64 letters, digits, "-" or "_" (the VIN)');

export const configSchema = z
  .object({
    vehicle: z
      .object({
        id: vehicleIdSchema,
        region: z.string().regex(/^[a-z0-9-]{1,32}$/, 'expected a lower-case region name such as eu-central-1'),
        model: z.string().min(1).default('unknown'),
      })
      .strict(),
    firmwareVersion: z.string().default('0.1.0'),
    can: z
      .object({
        source: z.enum(['slcan', 'candump', 'slcan-log']),
        /** Serial device of the SLCAN adapter (source slcan). */
        port: z.string().optional(),
        bitrate: z.number().int().positive().default(500000),
        baudRate: z.number().int().positive().default(115200),
        bus: z.string().default('can0'),
        watchdogMs: z.number().int().min(100).max(MAX_TIMER_MS, TIMER_LIMIT).default(5000),
        reopenDelaysMs: z
          .array(z.number().int().positive().max(MAX_TIMER_MS, TIMER_LIMIT))
          .min(1)
          .default([250, 500, 1000, 2000, 5000, 10000]),
        /** The adapter is read in bursts at most this often while data flows (0: every byte at once). */
        readIntervalMs: z.number().int().min(0).max(100).default(5),
        /** Trace file for the candump / slcan-log sources; `-` for stdin. */
        file: z.string().optional(),
        /** Replay pace for traces: 1 = recorded pace, 0 = as fast as possible. */
        speed: z.number().nonnegative().default(0),
        /** Protocols read beside the DBC: `j1939` (PGN matching, transport protocol, DM1), `obd` (OBD-II answers). */
        protocols: z.array(z.enum(['j1939', 'obd'])).default([]),
      })
      .strict()
      .refine((c) => c.source !== 'slcan' || c.port !== undefined, {
        message: 'required when can.source is "slcan"',
        path: ['port'],
      })
      .refine((c) => c.source === 'slcan' || c.file !== undefined, {
        message: 'required when can.source is a trace',
        path: ['file'],
      }),
    /** The vehicle's DBC; a vehicle read only through OBD-II or J1939 may have none. */
    dbc: z.string().min(1).optional(),
    /** OBD-II polling through the adapter (`can.protocols: [obd]` with `can.source: slcan`). */
    obd: z
      .object({
        /** ISO 15765-4: 11-bit (0x7DF / 0x7E0+n) or 29-bit (0x18DB33F1 / 0x18DAnnF1) identifiers. */
        addressing: z.enum(['11bit', '29bit']).default('11bit'),
        /** Service 01 PIDs to poll, each at its own interval, among those the ECUs say they support. */
        pids: z
          .array(
            z
              .object({
                pid: z
                  .number()
                  .int()
                  .refine((pid) => OBD_PIDS.has(pid), {
                    message: `expected one of the PIDs the gateway reads: ${[...OBD_PIDS].map((p) => `0x${p.toString(16).toUpperCase().padStart(2, '0')}`).join(', ')}`,
                  }),
                intervalMs: z.number().int().min(100).max(MAX_TIMER_MS, TIMER_LIMIT),
              })
              .strict(),
          )
          .default(DEFAULT_OBD_PIDS),
        /** Stored, pending and permanent DTCs and the MIL (services 03, 07, 0A and PID 01) this often. */
        dtcIntervalMs: z.number().int().min(1000).max(MAX_TIMER_MS, TIMER_LIMIT).default(60_000),
        /** Requests per second at most, all PIDs together: fast polling disturbs some cars. */
        maxRequestsPerSecond: z.number().min(0.1).max(50).default(10),
        /** How long an ECU has to answer (J1979 P2: 50 ms, plus the adapter's latency). */
        responseTimeoutMs: z.number().int().min(50).max(5000).default(150),
        /** Flow control the gateway sends for multi-frame answers: block size (0: all) and STmin. */
        blockSize: z.number().int().min(0).max(255).default(0),
        stMinMs: z.number().int().min(0).max(127).default(0),
      })
      .strict()
      .default({}),
    pipeline: z
      .object({
        windowMs: z.number().int().min(100).max(3_600_000).default(60_000),
        /** Close a window after this much silence (live sources only). */
        idleFlushMs: z.number().int().min(0).max(MAX_TIMER_MS, TIMER_LIMIT).default(5_000),
        fields: z
          .object({
            speedKmh: fieldMapping.optional(),
            engineRpm: fieldMapping.optional(),
            gear: fieldMapping.optional(),
            batteryVoltageV: fieldMapping.optional(),
            stateOfChargePct: fieldMapping.optional(),
            coolantTempC: fieldMapping.optional(),
            fuelLevelPct: fieldMapping.optional(),
            odometerKm: fieldMapping.optional(),
            gpsLatitude: fieldMapping.optional(),
            gpsLongitude: fieldMapping.optional(),
            tyreFrontLeftKpa: fieldMapping.optional(),
            tyreFrontRightKpa: fieldMapping.optional(),
            tyreRearLeftKpa: fieldMapping.optional(),
            tyreRearRightKpa: fieldMapping.optional(),
            milOn: fieldMapping.optional(),
            activeDtc: fieldMapping.optional(),
          })
          .strict()
          .default({}),
        /** Decoded signals left out of the per-record signal map. */
        exclude: z.array(z.string()).default([]),
        events: z
          .array(
            eventRule.superRefine((r, ctx) => {
              if (r.kind === 'threshold' && (r.above === undefined) === (r.below === undefined))
                ctx.addIssue({ code: z.ZodIssueCode.custom, message: 'expected exactly one of "above" or "below"' });
            }),
          )
          .default([]),
      })
      .strict()
      .default({}),
    store: z
      .object({
        /** Directory for the local database (`<dir>/v2c.sqlite`). */
        dir: z.string().min(1).default('.v2c/data'),
        /** `memory` keeps nothing across a restart: for tests and benchmarks only. */
        storage: z.enum(['sqlite', 'memory']).default('sqlite'),
        /** FULL: every stored record is on the medium before the write returns (power cuts lose nothing). */
        synchronous: z.enum(['OFF', 'NORMAL', 'FULL', 'EXTRA']).default('FULL'),
        /** Page size of a new database file; small pages mean fewer bytes written per record (docs/decisions.md). */
        pageSize: z
          .union([
            z.literal(1024),
            z.literal(2048),
            z.literal(4096),
            z.literal(8192),
            z.literal(16384),
            z.literal(32768),
            z.literal(65536),
          ])
          .default(1024),
        /** WAL pages before SQLite copies them into the database (see docs/decisions.md on flash wear). */
        walAutocheckpointPages: z.number().int().min(16).max(1_000_000).default(10_000),
        /** Size cap of the database; past 90 % the oldest records of the lowest priority make room. */
        maxBytes: z
          .number()
          .int()
          .min(1 << 20)
          .optional(),
        /** How often acknowledged records' tombstones are purged from the file. */
        purgeIntervalMs: z.number().int().min(1000).max(MAX_TIMER_MS, TIMER_LIMIT).default(60_000),
        /** `PRAGMA quick_check` at start for files up to this size; larger ones are checked in the background. */
        checkOnOpenMaxBytes: z
          .number()
          .int()
          .min(0)
          .default(64 * 1024 * 1024),
        /** Ballast beside the database, given back when the filesystem fills up so old records can make room. */
        reserveBytes: z
          .number()
          .int()
          .min(0)
          .default(4 * 1024 * 1024),
        /** Byte quota per priority class (records' stored JSON); a class over it drops its own oldest. */
        quotaBytes: z
          .object({
            p0: z.number().int().min(1024).optional(),
            p1: z.number().int().min(1024).optional(),
            p2: z.number().int().min(1024).optional(),
          })
          .strict()
          .default({}),
        /** Records that can never be sent (larger than any packet the broker takes), one JSON line each. */
        deadLetterFile: z.string().min(1).optional(),
      })
      .strict()
      .default({}),
    mqtt: z
      .object({
        url: z.string().regex(/^mqtts?:\/\/[^\s/]+(:\d+)?\/?$/, 'expected mqtt://host:port or mqtts://host:port'),
        clientId: z.string().optional(),
        keepaliveS: z.number().int().min(10).max(65535).default(300),
        sessionExpiryS: z
          .number()
          .int()
          .min(0)
          .max(0xffffffff, 'at most 4294967295 (an MQTT 5 four-byte integer)')
          .default(3600),
        receiveMaximum: z.number().int().min(1).max(65535).default(100),
        maximumPacketSize: z.number().int().min(1024).max(MQTT_MAX_PACKET_BYTES, MQTT_PACKET_LIMIT).default(131072),
        connectTimeoutMs: z.number().int().min(100).max(MAX_TIMER_MS, TIMER_LIMIT).default(15000),
        /** Largest packet we send when the broker's CONNACK names no limit (the spec's broker: 128 KiB). */
        maxOutgoingPacketBytes: z
          .number()
          .int()
          .min(1024)
          .max(MQTT_MAX_PACKET_BYTES, MQTT_PACKET_LIMIT)
          .default(131072),
        /** Wait for a PUBACK; then the connection is closed and the record goes again (DUP) on the next one. */
        pubackTimeoutMs: z.number().int().min(50).max(MAX_TIMER_MS, TIMER_LIMIT).default(5000),
        resends: z.number().int().min(0).max(10).default(3),
        /** Rest for records whose publish failed before the next attempt. */
        retryDelayMs: z.number().int().min(10).max(MAX_TIMER_MS, TIMER_LIMIT).default(5000),
        /** Messages (single records or batches) in flight (published, PUBACK pending) at most. */
        inflight: z.number().int().min(1).max(1000).default(50),
        /**
         * Live P0/P1 records: `compact` (values under a layout published once, retained; issue 15)
         * or `row` (a whole protobuf record each). Compact falls back to row-wise on a broker
         * without retained messages.
         */
        liveEncoding: z.enum(['compact', 'row']).default('compact'),
        heartbeatS: z.number().min(0.05).max(3600).default(30),
        /** PUBACK deadline for the heartbeat; missing it closes the socket (split brain). */
        heartbeatTimeoutMs: z.number().int().min(50).max(MAX_TIMER_MS, TIMER_LIMIT).default(5000),
        /** Mutual TLS with the device certificate; required with mqtts:// (provisioning writes it). */
        tls: z
          .object({
            ca: z.string().min(1),
            cert: z.string().min(1),
            key: z.string().min(1),
            minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
            /** TLSv1.2 resumes a session in about half the bytes of 1.3 (bench -- month); 1.3 resumes with forward secrecy. */
            maxVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.3'),
            /** Name the broker's certificate must carry, when it differs from the URL's host. */
            servername: z.string().min(1).optional(),
            /** Resume the last TLS session from its ticket on reconnect (no certificates resent). */
            sessionResumption: z.boolean().default(true),
          })
          .strict()
          .optional(),
        reconnect: z
          .object({
            baseMs: z.number().int().min(10).max(MAX_TIMER_MS, TIMER_LIMIT).default(2000),
            capMs: z.number().int().min(10).max(MAX_TIMER_MS, TIMER_LIMIT).default(60_000),
            jitter: z.number().min(0).max(1).default(0.2),
            offlineAfterFailures: z.number().int().min(1).default(5),
            offlineRetryMs: z.number().int().min(10).max(MAX_TIMER_MS, TIMER_LIMIT).default(300_000),
            quotaWaitMs: z.number().int().min(0).max(MAX_TIMER_MS, TIMER_LIMIT).default(60_000),
            quotaJitterMs: z.number().int().min(0).max(MAX_TIMER_MS, TIMER_LIMIT).default(30_000),
          })
          .strict()
          .default({}),
      })
      .strict()
      .refine((m) => !m.url.startsWith('mqtts://') || m.tls !== undefined, {
        message: 'required with an mqtts:// url (ca, cert, key)',
        path: ['tls'],
      })
      .refine((m) => m.url.startsWith('mqtts://') || m.tls === undefined, {
        message: 'mutual TLS needs an mqtts:// url',
        path: ['url'],
      })
      .refine((m) => m.tls === undefined || m.tls.minVersion <= m.tls.maxVersion, {
        message: 'expected maxVersion at least minVersion',
        path: ['tls', 'maxVersion'],
      }),
    link: z
      .object({
        /** Network interfaces of the cellular modem; the first that is up makes the link cellular. */
        cellularInterfaces: z
          .array(z.string().regex(/^[A-Za-z0-9_.-]{1,15}$/, 'expected a network interface name such as wwan0'))
          .default(['wwan0', 'ppp0', 'usb0']),
        /** WiFi interface for nmcli; any when absent. */
        wifiInterface: z.string().min(1).optional(),
        /** WiFi networks where the whole backlog is offloaded even while driving (the depot's). */
        allowedSsids: z.array(z.string().min(1)).default([]),
        pollMs: z.number().int().min(100).max(MAX_TIMER_MS, TIMER_LIMIT).default(5000),
        /** Ignition off this long counts as parked: then any WiFi offloads. */
        parkedAfterMs: z.number().int().min(0).max(MAX_TIMER_MS, TIMER_LIMIT).default(300_000),
        /** Bytes a day (UTC) that P2 may use on cellular; P0/P1 always go. */
        dailyCellularBudgetBytes: z.number().int().min(0).default(10_000_000),
        /** Records per batch when offloading. */
        offloadBatchRecords: z.number().int().min(1).max(10_000).default(500),
      })
      .strict()
      .default({}),
    offload: z
      .object({
        /** HTTPS endpoint for WiFi offload (https://host:port/path); batches go to <url>/<vehicle_id>/batches/<batch_id>. Without it, offload uses the MQTT batch topic. */
        url: z
          .string()
          .regex(/^https:\/\/[^\s/]+(:\d+)?(\/[^\s]*)?$/, 'expected https://host:port/path')
          .optional(),
        /** PUTs in flight at most. */
        concurrency: z.number().int().min(1).max(32).default(4),
        timeoutMs: z.number().int().min(100).max(MAX_TIMER_MS, TIMER_LIMIT).default(30_000),
      })
      .strict()
      .default({}),
    clock: z
      .object({
        /** Ask the broker for its time (MQTT 5 request/response on …/time/request). */
        brokerTime: z.boolean().default(true),
        brokerTimeIntervalMs: z.number().int().min(1000).max(MAX_TIMER_MS, TIMER_LIMIT).default(3_600_000),
        /** With no reference yet this boot, P1/P2 wait this long after connecting for the broker's answer, so they go out corrected. */
        unsyncedHoldMs: z.number().int().min(0).max(MAX_TIMER_MS, TIMER_LIMIT).default(5000),
        /** Use the system clock as a reference while timedatectl says NTP is synchronised. */
        ntp: z.boolean().default(true),
        ntpIntervalMs: z.number().int().min(1000).max(MAX_TIMER_MS, TIMER_LIMIT).default(60_000),
        ntpErrorMs: z.number().min(0).default(100),
        /** Serial GPS sending NMEA RMC/ZDA. */
        gpsPort: z.string().min(1).optional(),
        gpsBaudRate: z.number().int().positive().default(9600),
        /** A sentence arrives up to about a second after the time it reports. */
        gpsErrorMs: z.number().min(0).default(1000),
        /** Oscillator drift assumed between a reference and a record. */
        driftPpm: z.number().min(0).max(10_000).default(50),
        /** Records whose corrected time is further than this from true now are flagged (time_outside_window). */
        windowMs: z.number().int().min(1000).max(MAX_TIMER_MS, TIMER_LIMIT).default(3_600_000),
      })
      .strict()
      .default({}),
    gpio: z
      .object({
        /** BCM line of the ignition-sense input (high = ignition on, unless activeLow). */
        ignitionPin: z.number().int().min(0).max(1023).optional(),
        /** BCM line of the status LED. */
        ledPin: z.number().int().min(0).max(1023).optional(),
        activeLow: z.boolean().default(false),
        debounceMs: z.number().int().min(0).max(10_000).default(50),
        /** Bench only: read the ignition from this file ("1"/"0", as `simulate --ignition-file` writes it) instead of GPIO. */
        benchIgnitionFile: z.string().min(1).optional(),
      })
      .strict()
      .default({}),
    certificate: z
      .object({
        /** Log a warning this many days before the certificate expires. */
        warnDays: z.number().min(0).default(7),
        /** Share of the validity after which a new key and CSR are sent (11/12: month 11 of a 1-year certificate). */
        renewAtFraction: z
          .number()
          .gt(0)
          .lt(1)
          .default(11 / 12),
        checkIntervalMs: z.number().int().min(100).max(MAX_TIMER_MS, TIMER_LIMIT).default(3_600_000),
        /** How long to wait for the signed certificate on …/cert/response before asking again. */
        responseTimeoutMs: z.number().int().min(100).max(MAX_TIMER_MS, TIMER_LIMIT).default(3_600_000),
        /** A new certificate must connect within this time, or the old one is put back. */
        connectTimeoutMs: z.number().int().min(100).max(MAX_TIMER_MS, TIMER_LIMIT).default(60_000),
      })
      .strict()
      .default({}),
    batch: z
      .object({
        /** A P1 backlog longer than this goes out in batches; P2 waits for this many (or maxAgeMs). */
        minRecords: z.number().int().min(1).default(25),
        maxRecords: z.number().int().min(1).max(10_000).default(50),
        /** P2 records wait at most this long for a batch (hourly on cellular, DESIGN §5). */
        maxAgeMs: z.number().int().min(0).max(MAX_TIMER_MS, TIMER_LIMIT).default(3_600_000),
        /**
         * zstd level 1 (fast) .. 22 (smallest). 9: per 50-record batch 7 ms of CPU for 76.0 B a record,
         * where 19 takes 77 ms for 72.2 B; on a Pi's share of a core 19 caps a drain near 130 records/s.
         */
        zstdLevel: z.number().int().min(1).max(22).default(9),
        /** Batches packed or waiting for their PUBACK at once: each holds its records and a compression context. */
        inflight: z.number().int().min(1).max(100).default(2),
        /**
         * Share of the CPU the process may use (its cgroup quota, at most one core) at which a new batch
         * may start: the rest is kept for live records. 1 here and in drainMaxCores turns this pacing off.
         */
        drainCpuShare: z.number().gt(0).max(1).default(0.5),
        /**
         * Cores the process may be using at which a new batch may start, whatever its quota: a drain
         * keeping the one event-loop thread half busy made a P0 event's P99 27-38 ms; a quarter, 22-23.
         */
        drainMaxCores: z.number().gt(0).max(1).default(0.25),
        /**
         * Under a CPU quota (systemd CPUQuota, a container): the share of one quota period's CPU the
         * process may have used in the last period at which a new batch may start. A batch takes ~12 ms
         * of a Pi-sized 20 ms a period; started later in a period it used the quota up, and an event
         * waited for the next period. 1: a batch waits only after a whole period's quota was used.
         */
        drainBurstShare: z.number().gt(0).max(1).default(0.25),
        /** PUBACK 0x97 (quota exceeded) pauses publishing this long (plus up to half of it). */
        quotaBackoffMs: z.number().int().min(0).max(MAX_TIMER_MS, TIMER_LIMIT).default(60_000),
      })
      .strict()
      // A batch smaller than minRecords would send every backlog one record at a time.
      .refine((b) => b.maxRecords >= b.minRecords, {
        message: 'expected at least batch.minRecords',
        path: ['maxRecords'],
      })
      .default({}),
    metrics: z
      .object({
        host: z.string().default('127.0.0.1'),
        /** 0 disables the endpoint. */
        port: z.number().int().min(0).max(65535).default(9464),
      })
      .strict()
      .default({}),
  })
  .strict()
  .refine((c) => c.dbc !== undefined || c.can.protocols.length > 0, {
    message: 'required unless can.protocols names obd or j1939 (a vehicle read without a DBC)',
    path: ['dbc'],
  })
  .refine((c) => c.offload.url === undefined || c.mqtt.tls !== undefined, {
    message: 'HTTPS offload authenticates with the device certificate: mqtt.tls is required',
    path: ['offload', 'url'],
  });

export type GatewayConfig = z.infer<typeof configSchema>;
export type FieldName = keyof GatewayConfig['pipeline']['fields'];
export type EventRule = GatewayConfig['pipeline']['events'][number];

/** A configuration that cannot be used; `issues` lists each bad field as `path: problem`. */
export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  constructor(
    readonly source: string,
    readonly issues: string[],
  ) {
    super(`${source}: invalid configuration:\n  ${issues.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

/**
 * What the schema cannot know: the signals the configuration names exist in the DBC, and the files
 * it names are of the right kind. Throws ConfigError listing every problem with its field.
 */
export function checkConfigInputs(config: GatewayConfig, dbcSignals: ReadonlySet<string>, source: string): void {
  const issues: string[] = [];
  const known = (field: string, signal: string): void => {
    if (!dbcSignals.has(signal))
      issues.push(
        `${field}: "${signal}" is not a signal of ${config.dbc ?? 'the configured protocols (no DBC)'}${config.can.protocols.length > 0 ? ` or of ${config.can.protocols.join(', ')}` : ''}`,
      );
  };
  for (const [name, mapping] of Object.entries(config.pipeline.fields))
    if (mapping !== undefined) known(`pipeline.fields.${name}.signal`, mapping.signal);
  config.pipeline.events.forEach((rule, i) => known(`pipeline.events.${i}.signal`, rule.signal));
  const kind = (path: string): string | null => {
    try {
      const st = statSync(path);
      return st.isDirectory() ? 'directory' : st.isFile() ? 'file' : st.isFIFO() ? 'fifo' : 'other';
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'ENOENT' ? null : 'unreadable';
    }
  };
  if (config.store.deadLetterFile !== undefined && kind(config.store.deadLetterFile) === 'directory') {
    issues.push(`store.deadLetterFile: ${config.store.deadLetterFile} is a directory, expected a file path`);
  }
  if (config.can.source !== 'slcan' && config.can.file !== undefined && config.can.file !== '-') {
    const trace = kind(config.can.file);
    if (trace === null) issues.push(`can.file: ${config.can.file} does not exist`);
    else if (trace !== 'file' && trace !== 'fifo')
      issues.push(
        `can.file: ${config.can.file} is ${trace === 'directory' ? 'a directory' : 'not readable as a file'}, expected a trace file, a named pipe or "-" for stdin`,
      );
  }
  if (issues.length > 0) throw new ConfigError(source, issues);
}

/** Validates a parsed configuration object. */
export function validateConfig(raw: unknown, source: string): GatewayConfig {
  const result = configSchema.safeParse(raw);
  if (result.success) return result.data;
  throw new ConfigError(
    source,
    result.error.issues.map((i) => `${i.path.length > 0 ? i.path.join('.') : '(top level)'}: ${i.message}`),
  );
}

/** Reads a YAML or JSON configuration file and validates it. */
export function loadConfigFile(path: string): GatewayConfig {
  let text: string;
  try {
    text = readInputFile(path, MAX_CONFIG_BYTES).toString('utf8');
  } catch (err) {
    throw new ConfigError(path, [`cannot read: ${(err as Error).message}`]);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text, { prettyErrors: true });
  } catch (err) {
    throw new ConfigError(path, [`not valid YAML/JSON: ${(err as Error).message}`]);
  }
  return validateConfig(raw, path);
}

export interface ReferenceOverrides {
  mqttUrl: string;
  port?: string;
  trace?: string;
  speed?: number;
  windowMs?: number;
  storeDir?: string;
  tls?: { ca: string; cert: string; key: string };
  /** Which reference vehicle (default: the car). */
  vehicle?: ReferenceVehicle;
}

/** The built-in defaults: the reference vehicle's DBC and drive, a local broker. */
export function referenceVehicleConfig(overrides: ReferenceOverrides): GatewayConfig {
  return validateConfig(referenceVehicleSettings(overrides), 'built-in defaults');
}

/** The reference vehicles: a car with a DBC of its own, the same car read through its OBD-II port only, and a J1939 truck. */
export type ReferenceVehicle = 'car' | 'obd' | 'truck';

const field = (signal: string, stat: 'min' | 'max' | 'mean' | 'last' = 'last') => ({ signal, stat });

/** What differs between the reference vehicles: files, identity, protocols and the field mapping. */
function referenceProfile(vehicle: ReferenceVehicle): {
  dir: string;
  dbc: string | null;
  identity: { id: string; region: string; model: string };
  protocols: string[];
  pipeline: Record<string, unknown>;
} {
  if (vehicle === 'truck')
    return {
      dir: join(projectRoot(), 'drivers', 'reference-truck'),
      dbc: 'v2c-reference-truck.dbc',
      identity: { id: 'V2CREFTRK00000001', region: 'eu-central-1', model: 'v2c-reference-truck' },
      protocols: ['j1939'],
      pipeline: {
        fields: {
          speedKmh: field('WheelBasedVehicleSpeed', 'mean'),
          engineRpm: field('EngSpeed', 'mean'),
          batteryVoltageV: field('BatteryPotentialPowerInput1', 'mean'),
          coolantTempC: field('EngCoolantTemp', 'max'),
          fuelLevelPct: field('FuelLevel1'),
          odometerKm: field('HiResTotalVehicleDistance'),
          milOn: field('DM1_MilOn', 'max'),
        },
        exclude: ['EngTorqueMode', 'SrcAddrssOfCntrllngDvcFrEngCtrl', 'EngStarterMode'],
        events: [
          { kind: 'threshold', name: 'coolant_over_temperature', signal: 'EngCoolantTemp', above: 100, hysteresis: 5 },
          {
            kind: 'threshold',
            name: 'low_24v_battery',
            signal: 'BatteryPotentialPowerInput1',
            below: 22.0,
            hysteresis: 1,
          },
          { kind: 'dtc', name: 'dtc_appeared', signal: 'DM1_ActiveDtcs' },
        ],
      },
    };
  if (vehicle === 'obd')
    return {
      dir: join(projectRoot(), 'drivers', 'reference-vehicle'),
      dbc: null,
      identity: { id: 'V2CREF00000000001', region: 'eu-central-1', model: 'v2c-reference-obd' },
      protocols: ['obd'],
      pipeline: {
        fields: {
          speedKmh: field('OBD_VehicleSpeed', 'mean'),
          engineRpm: field('OBD_EngineSpeed', 'mean'),
          batteryVoltageV: field('OBD_ModuleVoltage', 'mean'),
          coolantTempC: field('OBD_CoolantTemp', 'max'),
          fuelLevelPct: field('OBD_FuelLevel'),
          odometerKm: field('OBD_Odometer'),
          milOn: field('OBD_MilOn', 'max'),
        },
        events: [
          { kind: 'threshold', name: 'coolant_over_temperature', signal: 'OBD_CoolantTemp', above: 105, hysteresis: 5 },
          { kind: 'dtc', name: 'dtc_appeared', signal: 'OBD_StoredDtcs' },
        ],
      },
    };
  return {
    dir: join(projectRoot(), 'drivers', 'reference-vehicle'),
    dbc: 'v2c-reference.dbc',
    identity: { id: 'V2CREF00000000001', region: 'eu-central-1', model: 'v2c-reference' },
    protocols: [],
    pipeline: {
      fields: {
        speedKmh: field('VehicleSpeed', 'mean'),
        engineRpm: field('EngineSpeed', 'mean'),
        gear: field('GearPosition'),
        batteryVoltageV: field('Battery12V', 'mean'),
        stateOfChargePct: field('StateOfCharge'),
        coolantTempC: field('CoolantTemp', 'max'),
        fuelLevelPct: field('FuelLevel'),
        odometerKm: field('Odometer'),
        gpsLatitude: field('Latitude'),
        gpsLongitude: field('Longitude'),
        tyreFrontLeftKpa: field('TyrePressureFL'),
        tyreFrontRightKpa: field('TyrePressureFR'),
        tyreRearLeftKpa: field('TyrePressureRL'),
        tyreRearRightKpa: field('TyrePressureRR'),
        milOn: field('MilOn'),
        activeDtc: field('ActiveDtc'),
      },
      exclude: ['AliveCounter', 'TyreIndex', 'UtcSecondOfDay'],
      events: [
        { kind: 'threshold', name: 'coolant_over_temperature', signal: 'CoolantTemp', above: 105, hysteresis: 5 },
        { kind: 'threshold', name: 'low_12v_battery', signal: 'Battery12V', below: 11.0, hysteresis: 0.5 },
        { kind: 'dtc', name: 'dtc_appeared', signal: 'ActiveDtc' },
      ],
    },
  };
}

/** The vehicle id (VIN) of a reference vehicle: its bench certificates carry it. */
export function referenceVehicleId(vehicle: ReferenceVehicle): string {
  return referenceProfile(vehicle).identity.id;
}

/** The recorded drive of a reference vehicle (what `simulate` and the demo play). */
export function referenceVehicleTrace(vehicle: ReferenceVehicle): string {
  return join(referenceProfile(vehicle).dir, 'drive.log.gz');
}

/** The reference vehicle's settings before validation (the provisioning command writes them as YAML). */
export function referenceVehicleSettings(overrides: ReferenceOverrides): Record<string, unknown> {
  const profile = referenceProfile(overrides.vehicle ?? 'car');
  return {
    vehicle: profile.identity,
    can: {
      ...(overrides.port !== undefined
        ? { source: 'slcan', port: overrides.port, watchdogMs: 5000 }
        : {
            source: 'candump',
            file: overrides.trace ?? referenceVehicleTrace(overrides.vehicle ?? 'car'),
            speed: overrides.speed ?? 0,
          }),
      ...(profile.protocols.length > 0 ? { protocols: profile.protocols } : {}),
    },
    ...(profile.dbc !== null ? { dbc: join(profile.dir, profile.dbc) } : {}),
    pipeline: { windowMs: overrides.windowMs ?? 60_000, ...profile.pipeline },
    store: { dir: overrides.storeDir ?? '.v2c/data' },
    mqtt: { url: overrides.mqttUrl, ...(overrides.tls !== undefined ? { tls: overrides.tls } : {}) },
    metrics: { port: 0 },
  };
}
