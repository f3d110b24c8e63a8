// Hostile input at every boundary (issue 13): decode output, candump times, configuration and files,
// bounded lines, zstd bombs, confused deputies, and seeded fuzzing of the line and DBC parsers.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import mqtt from 'mqtt';
import { parseCandumpLine, parseCandumpTime } from '../drivers/candump.js';
import { MalformedLine } from '../drivers/can-frame.js';
import { DbcDecoder } from '../drivers/dbc/decoder.js';
import { parseDbc } from '../drivers/dbc/parser.js';
import { readBoundedLines } from '../drivers/line-reader.js';
import { SeededRandom } from '../bench/rig/seeded-random.js';
import { systemClock } from '../core/clock.js';
import {
  ConfigError,
  loadConfigFile,
  referenceVehicleConfig,
  validateConfig,
  referenceVehicleSettings,
} from '../core/config.js';
import { TraceDecoder, toJson } from '../gateway/decode-command.js';
import { DbcLoadError, loadDecoder, startGateway } from '../gateway/gateway.js';
import { projectRoot } from '../core/project-root.js';
import { BatchRejectedError, sha256Hex, unpackBatch } from '../proto/batch-packer.js';
import { SCHEMA_VERSION } from '../proto/telemetry-codec.js';
import {
  loadZstd,
  zstdCompress,
  zstdDecompress,
  zstdDecompressedBound,
  ZstdError,
  ZSTD_IMPLEMENTATIONS,
} from '../proto/zstd.js';
import { isOwnResponseTopic } from '../sync/session/command-handler.js';
import { waitUntil } from './helpers.js';
import { syncRig } from './sync-rig.js';

const CLI = join(projectRoot(), 'dist', 'app', 'cli.js');
const REF = join(projectRoot(), 'drivers', 'reference-vehicle');
const DBC_PATH = join(REF, 'v2c-reference.dbc');
const dir = mkdtempSync(join(tmpdir(), 'v2c-hostile-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const driveLines = gunzipSync(readFileSync(join(REF, 'drive.log.gz')))
  .toString('utf8')
  .split('\n');
/** Larger fuzz runs: V2C_FUZZ_SCALE=10 npm test … */
const SCALE = Math.max(1, Number(process.env.V2C_FUZZ_SCALE ?? 1));

t.test('decode JSON keeps NaN and ±Infinity of IEEE float signals as strings', async (t) => {
  t.equal(
    toJson({ a: Number.NaN, b: Infinity, c: -Infinity, d: 1.5, e: 2n ** 60n }),
    '{"a":"NaN","b":"Infinity","c":"-Infinity","d":1.5,"e":1152921504606846976}',
  );
  const db = parseDbc('BO_ 1 F: 8 ECU\n SG_ X : 0|64@1- (1,0) [0|0] "" ECU\nSIG_VALTYPE_ 1 X : 2;\n', 'f.dbc');
  const nan = Buffer.alloc(8);
  nan.writeDoubleLE(Number.NaN);
  const inf = Buffer.alloc(8);
  inf.writeDoubleLE(-Infinity);
  const decoder = new DbcDecoder(db);
  const lines = new TraceDecoder({ format: 'candump', decoder });
  t.match(lines.decode(`(1.0) can0 001#${nan.toString('hex')}`), [/"signals":\{"X":"NaN"\}/]);
  t.match(lines.decode(`(1.0) can0 001#${inf.toString('hex')}`), [/"signals":\{"X":"-Infinity"\}/]);
});

t.test('candump times: seconds.fraction and -t A local date and time', async (t) => {
  const rows: Array<[string, number | null]> = [
    ['1608379485.485261', 1608379485.485261],
    ['2020-12-19 12:04:45.485261', new Date(2020, 11, 19, 12, 4, 45).getTime() / 1000 + 0.485261],
    ['2020-02-31 12:00:00.000000', null],
    ['2020-12-19 25:04:45.485261', null],
    ['2020-12-19T12:04:45.485261', null],
    ['yesterday', null],
  ];
  for (const [text, expected] of rows) {
    const got = parseCandumpTime(text);
    if (expected === null) t.equal(got, null, `${text}: refused`);
    else t.ok(got !== null && Math.abs(got - expected) < 1e-6, `${text}: ${String(got)}`);
  }
  const frame = parseCandumpLine('(2020-12-19 12:04:45.485261)  can0  123   [2]  11 22');
  t.notOk(frame instanceof MalformedLine, 'a -t A screen line is a frame');
  t.same(
    frame !== null && !(frame instanceof MalformedLine)
      ? [frame.id, frame.bus, Buffer.from(frame.data).toString('hex')]
      : null,
    [0x123, 'can0', '1122'],
  );
});

t.test(
  'configuration: durations, MQTT integer fields, signals and files are checked, each error naming its field',
  async (t) => {
    const base = referenceVehicleSettings({
      mqttUrl: 'mqtt://127.0.0.1:1883',
      storeDir: join(dir, 'cfg-store'),
    }) as Record<string, Record<string, unknown>>;
    const with_ = (section: string, values: Record<string, unknown>): Record<string, unknown> => ({
      ...base,
      [section]: { ...base[section], ...values },
    });
    const rows: Array<[string, Record<string, unknown>, RegExp]> = [
      [
        'a 30-day NTP interval',
        with_('clock', { ntpIntervalMs: 2_592_000_000 }),
        /clock\.ntpIntervalMs: at most 2147483647 ms/,
      ],
      [
        'a connect timeout past the timer limit',
        with_('mqtt', { url: 'mqtt://127.0.0.1:1883', connectTimeoutMs: 2 ** 31 }),
        /mqtt\.connectTimeoutMs: at most 2147483647 ms/,
      ],
      [
        'maximumPacketSize 2^32',
        with_('mqtt', { url: 'mqtt://127.0.0.1:1883', maximumPacketSize: 2 ** 32 }),
        /mqtt\.maximumPacketSize: at most 268435460 bytes/,
      ],
      [
        'sessionExpiryS 2^32',
        with_('mqtt', { url: 'mqtt://127.0.0.1:1883', sessionExpiryS: 2 ** 32 }),
        /mqtt\.sessionExpiryS: at most 4294967295/,
      ],
      [
        'a reopen delay past the timer limit',
        with_('can', { reopenDelaysMs: [250, 3e9] }),
        /can\.reopenDelaysMs\.1: at most 2147483647 ms/,
      ],
      [
        'batches smaller than the backlog threshold',
        with_('batch', { minRecords: 25, maxRecords: 20 }),
        /batch\.maxRecords: expected at least batch\.minRecords/,
      ],
      ['a drain CPU share of 0', with_('batch', { drainCpuShare: 0 }), /batch\.drainCpuShare/],
      ['a drain CPU share over 1', with_('batch', { drainCpuShare: 1.5 }), /batch\.drainCpuShare/],
      ['a drain cap of 0 cores', with_('batch', { drainMaxCores: 0 }), /batch\.drainMaxCores/],
      ['a drain cap over one core', with_('batch', { drainMaxCores: 2 }), /batch\.drainMaxCores/],
      ['a burst share of 0', with_('batch', { drainBurstShare: 0 }), /batch\.drainBurstShare/],
      ['a burst share over the whole period', with_('batch', { drainBurstShare: 1.5 }), /batch\.drainBurstShare/],
      [
        'a TLS maximum under the minimum',
        with_('mqtt', {
          url: 'mqtts://127.0.0.1:8883',
          tls: { ca: 'ca.crt', cert: 'd.crt', key: 'd.key', minVersion: 'TLSv1.3', maxVersion: 'TLSv1.2' },
        }),
        /mqtt\.tls\.maxVersion: expected maxVersion at least minVersion/,
      ],
    ];
    for (const [label, raw, message] of rows)
      t.throws(() => validateConfig(raw, 'cfg.yaml'), { name: 'ConfigError', message }, label);

    const start = async (tune: (c: ReturnType<typeof referenceVehicleConfig>) => void): Promise<unknown> => {
      const config = referenceVehicleConfig({
        mqttUrl: 'mqtt://127.0.0.1:1',
        storeDir: join(dir, `start-${Math.random().toString(36).slice(2)}`),
      });
      tune(config);
      return startGateway(config, systemClock, () => undefined).then(
        async (g) => {
          await g.stop(0);
          return null;
        },
        (err: unknown) => err,
      );
    };
    const unknownSignal = await start((c) => {
      c.pipeline.fields.speedKmh = { signal: 'NoSuchSignal', stat: 'mean' };
      c.pipeline.events.push({ kind: 'dtc', name: 'x', signal: 'AlsoMissing' });
    });
    t.ok(unknownSignal instanceof ConfigError, 'a signal the DBC does not have: ConfigError');
    t.match(
      (unknownSignal as Error).message,
      /pipeline\.fields\.speedKmh\.signal: "NoSuchSignal" is not a signal of .*v2c-reference\.dbc/,
    );
    t.match((unknownSignal as Error).message, /pipeline\.events\.\d+\.signal: "AlsoMissing" is not a signal/);
    const deadLetterDir = await start((c) => {
      c.store.deadLetterFile = dir;
    });
    t.match((deadLetterDir as Error).message, /store\.deadLetterFile: .* is a directory, expected a file path/);
    const missingTrace = await start((c) => {
      c.can.file = join(dir, 'no-such-trace.log');
    });
    t.match((missingTrace as Error).message, /can\.file: .*no-such-trace\.log does not exist/);
    const traceDir = await start((c) => {
      c.can.file = dir;
    });
    t.match((traceDir as Error).message, /can\.file: .* is a directory, expected a trace file/);
    // The metrics port taken by another program: the field is named, no stack trace.
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    t.teardown(() => {
      taken.close();
    });
    const port = (taken.address() as { port: number }).port;
    const busy = await start((c) => {
      c.metrics.port = port;
    });
    t.ok(busy instanceof ConfigError, 'metrics port in use: ConfigError');
    t.match(
      (busy as Error).message,
      new RegExp(`metrics\\.port: cannot listen on 127\\.0\\.0\\.1:${port} \\(EADDRINUSE\\)`),
    );
  },
);

t.test(
  'a FIFO, a directory or a missing file named as the DBC, the config or a key gives an error at once',
  async (t) => {
    const fifo = join(dir, 'input.fifo');
    t.equal(spawnSync('mkfifo', [fifo]).status, 0);
    t.throws(() => loadDecoder(fifo), {
      name: 'Error',
      message: /cannot read DBC .*input\.fifo: a FIFO \(named pipe\), expected a regular file/,
    });
    t.ok(
      (() => {
        try {
          loadDecoder(fifo);
        } catch (err) {
          return err instanceof DbcLoadError;
        }
        return false;
      })(),
      'a DbcLoadError',
    );
    t.throws(() => loadConfigFile(fifo), {
      name: 'ConfigError',
      message: /input\.fifo: invalid configuration:\n {2}cannot read: a FIFO/,
    });
    t.throws(() => loadDecoder(dir), { message: /a directory, expected a regular file/ });
    t.throws(() => loadDecoder(join(dir, 'none.dbc')), { message: /cannot read DBC .*none\.dbc: ENOENT/ });
    const config = join(dir, 'fifo-key.json');
    const settings = referenceVehicleSettings({
      mqttUrl: 'mqtts://127.0.0.1:8883',
      storeDir: join(dir, 'fifo-store'),
    }) as Record<string, Record<string, unknown>>;
    writeFileSync(
      config,
      JSON.stringify({
        ...settings,
        mqtt: { ...settings.mqtt, url: 'mqtts://127.0.0.1:8883', tls: { ca: fifo, cert: fifo, key: fifo } },
      }),
    );
    const r = spawnSync(process.execPath, [CLI, 'run', '--config', config], { encoding: 'utf8', timeout: 60_000 });
    t.equal(r.status, 1, 'run exits 1 at once');
    t.match(
      r.stderr,
      /input\.fifo: cannot read: a FIFO \(named pipe\), expected a regular file/,
      'naming the key file',
    );
    t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
  },
);

t.test('long lines are cut as they arrive, never held whole', async (t) => {
  // 50 MB without a newline, then a good line: the reader keeps at most 1,025 characters of the long one.
  const chunk = Buffer.alloc(1 << 20, 0x41);
  let sent = 0;
  const input = new Readable({
    read() {
      if (sent < 50) {
        sent++;
        this.push(chunk);
      } else {
        this.push(Buffer.from(`\n${driveLines[0] as string}\r\nlast`));
        this.push(null);
      }
    },
  });
  const lines: string[] = [];
  for await (const line of readBoundedLines(input, 1024)) lines.push(line);
  t.same(
    lines.map((l) => l.length),
    [1025, (driveLines[0] as string).length, 4],
    'the long line cut to 1,025, the CRLF line and the last line intact',
  );
  t.match(
    new TraceDecoder({ format: 'candump', decoder: null }).decode(lines[0] as string),
    [/"error":"too-long/],
    'and reported too long by the parser',
  );
  const r = spawnSync('sh', ['-c', `node ${CLI} decode --dbc ${DBC_PATH} ${join(REF, 'drive.log.gz')} | head -n 2`], {
    encoding: 'utf8',
  });
  t.equal(r.stdout.trim().split('\n').length, 2, 'decode | head: two lines');
  t.equal(r.stderr, '', 'and no EPIPE stack trace');
});

t.test('zstd bombs are refused from their headers, before any decompression', async (t) => {
  const bomb = await zstdCompress(Buffer.alloc(64 << 20), 3);
  t.ok(bomb.byteLength < 64 * 1024, `64 MiB of zeros in ${bomb.byteLength} bytes`);
  const bound = zstdDecompressedBound(bomb);
  t.ok(typeof bound === 'number' && bound >= 64 << 20, `bound ${String(bound)} ≥ the real 64 MiB`);
  const before = process.memoryUsage().rss;
  await t.rejects(zstdDecompress(bomb, 16 << 20), {
    name: 'ZstdError',
    message: /could expand to \d+ bytes, more than the 16777216 allowed; not decompressed/,
  });
  t.ok(process.memoryUsage().rss - before < 32 << 20, 'memory did not grow by the bomb');
  const props = { compression: 'zstd', sha256: 'x', payload_sha256: sha256Hex(bomb) };
  await t.rejects(
    unpackBatch(bomb, props, { maxUncompressedBytes: 16 << 20, acceptedSchemaVersions: [SCHEMA_VERSION] }),
    new BatchRejectedError('decompress', ''),
    'the sink refuses it as a batch (decompress)',
  );
  // The bound never under-counts: random and repetitive data at several levels and sizes, from
  // either implementation (the native one writes no content size, the WebAssembly one does).
  for (const implementation of ZSTD_IMPLEMENTATIONS) {
    const zstd = await loadZstd(implementation);
    const rng = new SeededRandom(13);
    for (const size of [0, 1, 100, 5_000, 200_000, 1_000_000]) {
      for (const level of [1, 3, 19]) {
        const data = Buffer.alloc(size);
        for (let i = 0; i < size; i++) data[i] = rng.float() < 0.5 ? rng.int(0, 255) : 0x20;
        const packed = await zstdCompress(data, level, zstd);
        const b = zstdDecompressedBound(packed);
        t.ok(
          typeof b === 'number' && b >= size,
          `${implementation}: ${size} bytes at level ${level}: bound ${String(b)}`,
        );
        t.same(await zstdDecompress(packed, 2 << 20, zstd), data);
      }
    }
  }
  for (const garbage of [Buffer.alloc(0), Buffer.from('not zstd at all'), bomb.subarray(0, 10)])
    t.ok(zstdDecompressedBound(garbage) instanceof ZstdError, `garbage (${garbage.byteLength} bytes) refused`);
});

t.test("confused deputy: answers only on the requester's own response topics", async (t) => {
  const rows: Array<[string, string, boolean]> = [
    ['v2c/v1/eu/V1/command/response', 'v2c/v1/eu/V1/command/request', true],
    ['v2c/v1/eu/V1/command/response/abc123', 'v2c/v1/eu/V1/command/request', true],
    ['v2c/v1/eu/V2/command/request', 'v2c/v1/eu/V1/command/request', false],
    ['v2c/v1/eu/V1/telemetry/vehicle', 'v2c/v1/eu/V1/command/request', false],
    ['v2c/v1/eu/V1/command/response/+', 'v2c/v1/eu/V1/command/request', false],
    ['v2c/v1/eu/V1/command/responses', 'v2c/v1/eu/V1/command/request', false],
  ];
  for (const [response, request, ok] of rows)
    t.equal(isOwnResponseTopic(response, request), ok, `${response} for ${request}`);

  const rig = await syncRig(t, {
    tune: (c) => {
      c.clock.brokerTime = false;
    },
  });
  await rig.waitFor('online', () => rig.gateway.session.isConnected);
  const vehicle = rig.config.vehicle.id;
  const other = 'V2CREF00000000002';
  const client = await mqtt.connectAsync(rig.broker.url, {
    protocolVersion: 5,
    clientId: 'deputy-probe',
    reconnectPeriod: 0,
  });
  t.teardown(() => client.endAsync());
  const landed: string[] = [];
  client.on('message', (topic) => landed.push(topic));
  await client.subscribeAsync(
    [
      `v2c/v1/+/${other}/command/request`,
      `v2c/v1/+/${vehicle}/telemetry/vehicle`,
      `v2c/v1/+/${vehicle}/command/response`,
    ],
    { qos: 1 },
  );
  // Vehicle 001 asks the cloud for the time, with vehicle 002's command topic as the response topic.
  await client.publishAsync(`v2c/v1/eu-central-1/${vehicle}/time/request`, '{}', {
    qos: 1,
    properties: { responseTopic: `v2c/v1/eu-central-1/${other}/command/request`, correlationData: Buffer.from('x') },
  });
  await waitUntil('the sink refusing the time request', () => rig.sink.refusedTimeRequests === 1, 10_000);
  // A command whose answer would land on the vehicle's own telemetry topic.
  await client.publishAsync(`v2c/v1/eu-central-1/${vehicle}/command/request`, JSON.stringify({ command: 'flush' }), {
    qos: 1,
    properties: { responseTopic: `v2c/v1/eu-central-1/${vehicle}/telemetry/vehicle` },
  });
  await rig.waitFor(
    'the gateway refusing the command',
    () => rig.gateway.commands.counts.get('flush|foreign_response_topic') === 1,
  );
  // A proper request is still answered.
  await client.publishAsync(`v2c/v1/eu-central-1/${vehicle}/command/request`, JSON.stringify({ command: 'ping' }), {
    qos: 1,
    properties: { responseTopic: `v2c/v1/eu-central-1/${vehicle}/command/response` },
  });
  await waitUntil('the ping answer', () => landed.includes(`v2c/v1/eu-central-1/${vehicle}/command/response`), 10_000);
  t.same(
    landed.filter((topic) => topic.endsWith('/command/request') || topic.endsWith('/telemetry/vehicle')),
    [],
    'nothing published where a requester pointed',
  );
  t.ok(
    rig.logs.some((l) => /command: SECURITY: "flush" asks for its answer on .*telemetry\/vehicle/.test(l)),
    'the gateway logs it as a security event',
  );
});

/** `n` mutations of `text`: flips, deletions, insertions, duplications of characters and spans. */
function mutate(text: string, rng: SeededRandom, n: number): string {
  let s = text;
  const alphabet = '()#.-+ :;|@"\\\r\n\t0123456789ABCDEFabcdefRSG_BO_mMx\u0000\u00ff';
  for (let k = 0; k < n; k++) {
    const at = rng.int(0, Math.max(0, s.length - 1));
    const op = rng.int(0, 4);
    const c = alphabet[rng.int(0, alphabet.length - 1)] as string;
    if (op === 0) s = s.slice(0, at) + c + s.slice(at + 1);
    else if (op === 1) s = s.slice(0, at) + s.slice(at + 1);
    else if (op === 2) s = s.slice(0, at) + c + s.slice(at);
    else if (op === 3) s = s.slice(0, at) + s.slice(at, at + rng.int(1, 40)).repeat(rng.int(2, 4)) + s.slice(at);
    else s = s.slice(0, at) + s.slice(at + rng.int(1, 30));
  }
  return s;
}

t.test(
  `fuzz: ${100_000 * SCALE} mutated lines per format through decode (plain, J1939, OBD-II) give JSON objects, never an exception`,
  async (t) => {
    const decoder = loadDecoder(DBC_PATH);
    const slcan = driveLines.slice(0, 2000).map((l) => {
      const f = parseCandumpLine(l);
      return f === null || f instanceof MalformedLine
        ? 't0000'
        : `${f.extended ? 'T' : 't'}${f.id
            .toString(16)
            .toUpperCase()
            .padStart(f.extended ? 8 : 3, '0')}${f.data.length}${Buffer.from(f.data).toString('hex').toUpperCase()}`;
    });
    // The truck's lines bring J1939 transport-protocol and DM1 frames to mutate.
    const truck = gunzipSync(readFileSync(join(projectRoot(), 'drivers', 'reference-truck', 'drive.log.gz')))
      .toString('utf8')
      .split('\n')
      .filter((l) => /#[0-9A-F]{2}/.test(l) && /can0 1C(EC|EB)|can0 18FECA/.test(l))
      .slice(0, 1000);
    // An OBD-II session: requests, single- and multi-frame answers, flow control, a refusal.
    const obd = [
      '(1.000) can0 7DF#0201000000000000',
      '(1.010) can0 7E8#064100BE1FA813AA',
      '(1.100) can0 7DF#0209020000000000',
      '(1.110) can0 7E8#1014490201563243',
      '(1.115) can0 7E0#3000000000000000',
      '(1.120) can0 7E8#2152454630303030',
      '(1.125) can0 7E8#2230303030303031',
      '(1.210) can0 7E8#04410C1AF8AAAAAA',
      '(1.310) can0 18DAF110#0443010217AAAAAA',
      '(1.410) can0 7E8#037F0112AAAAAAAA',
    ];
    for (const [format, corpus] of [
      ['candump', [...driveLines.slice(0, 2000), ...truck, ...obd, ...obd, ...obd]],
      ['slcan', slcan],
    ] as const) {
      const rng = new SeededRandom(format === 'candump' ? 101 : 202);
      // With and without a DBC, plain, J1939 or OBD-II (whose transport and ISO-TP state spans lines).
      const decoders = [null, decoder].flatMap((dbc) =>
        [{}, { j1939: true }, { obd: true }].map((p) => new TraceDecoder({ format, decoder: dbc, ...p })),
      );
      let objects = 0;
      let errors = 0;
      let failures = 0;
      for (let i = 0; i < 100_000 * SCALE; i++) {
        const line = mutate(corpus[rng.int(0, corpus.length - 1)] as string, rng, rng.int(1, 4));
        try {
          for (const out of (decoders[rng.int(0, decoders.length - 1)] as TraceDecoder).decode(line)) {
            const parsed = JSON.parse(out) as Record<string, unknown>;
            if (typeof parsed !== 'object' || parsed === null || out.includes('\n')) failures++;
            objects++;
            if ('error' in parsed) errors++;
          }
        } catch {
          failures++;
        }
      }
      t.equal(failures, 0, `${format}: ${objects} JSON objects (${errors} errors), no exception, no broken line`);
    }
  },
);

t.test(
  `fuzz: ${2000 * SCALE} mutated DBC files parse or are refused with one DbcSyntaxError line, never a crash`,
  async (t) => {
    const text = readFileSync(DBC_PATH, 'latin1');
    const rng = new SeededRandom(303);
    let parsed = 0;
    let refused = 0;
    let crashes = 0;
    const startRss = process.memoryUsage().rss;
    let peak = startRss;
    for (let i = 0; i < 2000 * SCALE; i++) {
      const file = mutate(text, rng, rng.int(1, 12));
      try {
        const db = parseDbc(file, 'fuzz.dbc');
        new DbcDecoder(db);
        parsed++;
        if (db.warnings.some((w) => !/^fuzz\.dbc:\d+: /.test(w))) crashes++;
      } catch (err) {
        if (
          (err as Error).name === 'DbcSyntaxError' &&
          /^fuzz\.dbc:\d+: /.test((err as Error).message) &&
          !(err as Error).message.includes('\n')
        )
          refused++;
        else {
          crashes++;
          if (crashes <= 3) t.comment(`crash on file ${i}: ${(err as Error).stack ?? String(err)}`);
        }
      }
      if (i % 200 === 0) peak = Math.max(peak, process.memoryUsage().rss);
    }
    t.equal(
      crashes,
      0,
      `${parsed} parsed (with warnings naming file:line), ${refused} refused with a file:line error, no crash`,
    );
    t.ok(peak - startRss < 256 << 20, `memory stayed bounded (+${((peak - startRss) / 2 ** 20).toFixed(0)} MiB)`);
  },
);
