#!/usr/bin/env node
// v2c-gateway command line: run | decode | simulate | demo | sink.
import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { join, resolve } from 'node:path';
import { projectRoot } from '../core/project-root.js';
import type { SimulatedObdVehicle } from '../drivers/obd/simulated-ecu.js';
// Every other module is imported by the command that needs it: `decode` must not load rxdb, mqtt
// or zstd (start-up CPU on a Pi, and a native binary that may be missing on armv7).

const USAGE = `usage: v2c-gateway <command> [options]

commands:
  --version                         the gateway's version, and the Node and CPU it runs on
  run --config FILE                 run the gateway with a YAML/JSON config
  decode [--dbc FILE] [--format candump|slcan] [--j1939] [--obd] [FILE|-]
                                    print one JSON object per input line
  simulate --port PATH [--trace FILE] [--speed X] [--timestamps] [--ignition-file FILE]
           [--obd [--obd-addressing 11bit|29bit]]
                                    act as a USB SLCAN adapter on a serial port, playing a trace
                                    (and the ignition: 1 in FILE while it plays, 0 at its end);
                                    --obd: be the car's OBD-II ECUs instead, answering requests
  demo [--speed X] [--vehicle car|obd|truck]
                                    recorded drive -> simulated adapter -> gateway -> local broker
                                    (obd: the car through OBD-II requests only, no DBC;
                                    truck: J1939 with multi-packet DM1s)
  sink --url URL [--dead-letter DIR] [--idle-exit S] [--dedup-window S] [--client-id ID]
       [--ca FILE --cert FILE --key FILE] [--offload-port P --server-cert FILE --server-key FILE]
                                    receive, verify, de-duplicate and count telemetry; ends (SIGINT,
                                    SIGTERM or S seconds without messages) with the sink: line
  provision --vehicle-id VIN --region R --broker mqtts://HOST:PORT --ca FILE --cert FILE --key FILE
            [--prefix DIR] [--no-service] [--dbc FILE] [--template FILE] [--can-port PATH] [--model M]
                                    check the device credentials and install the gateway
  provision --vehicle-id VIN --generate-key --csr-only [--prefix DIR]
                                    make an ECC P-256 key and a CSR for the fleet PKI to sign
  provision dev-pki --out DIR       a bench CA, broker, cloud and device certificates (valid,
                                    expired, other vehicle, unknown CA)
`;

/** A usage mistake: printed with the usage text, exit code 2. */
class UsageError extends Error {
  readonly code = 'USAGE';
}

function args(argv: string[], options: ParseArgsConfig['options']): ReturnType<typeof parseArgs> {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** A value as node:util's parseArgs gives it. */
type OptionValue = string | boolean | (string | boolean)[] | undefined;

function numberOption(value: OptionValue, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new UsageError(`--${name} ${String(value)}: expected a number >= 0`);
  return n;
}

const logJson = (msg: string): void => {
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), msg })}\n`);
};

/** How long `run` waits for acknowledgements at stop, and what closing may take on top of it. */
const DRAIN_TIMEOUT_MS = 30_000;
const STOP_MARGIN_MS = 5_000;

/** The reference car's OBD-II ECUs, their model driven by its DBC (the drive's frames are not sent). */
async function simulatedObdVehicle(addressing: '11bit' | '29bit'): Promise<SimulatedObdVehicle> {
  const [{ SimulatedObdVehicle }, { loadDecoder }, { referenceVehicleId }] = await Promise.all([
    import('../drivers/obd/simulated-ecu.js'),
    import('./dbc-loader.js'),
    import('../core/config.js'),
  ]);
  const dbc = join(projectRoot(), 'drivers', 'reference-vehicle', 'v2c-reference.dbc');
  return new SimulatedObdVehicle(addressing, loadDecoder(dbc), referenceVehicleId('car'));
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'run': {
      const a = args(rest, { config: { type: 'string' } });
      if (a.values.config === undefined) throw new UsageError('run needs --config FILE');
      const [{ loadConfigFile }, { startGateway }, { systemClock }, { serviceNotifier }] = await Promise.all([
        import('../core/config.js'),
        import('./gateway.js'),
        import('../core/clock.js'),
        import('./service-notify.js'),
      ]);
      const config = loadConfigFile(String(a.values.config));
      const gateway = await startGateway(config, systemClock, logJson);
      const service = serviceNotifier(process.env, logJson);
      service?.ready(`capturing (${config.can.source}), broker ${config.mqtt.url}`);
      const stopOn = new Promise<string>((resolve) => {
        process.once('SIGINT', () => resolve('SIGINT'));
        process.once('SIGTERM', () => resolve('SIGTERM'));
        void gateway.sourceDone.then(() => resolve('end of trace'));
      });
      const why = await stopOn;
      logJson(`stopping (${why}); waiting for acknowledgements`);
      service?.stopping();
      // Whatever hangs (a socket, a reader), the process ends: after the drain and a margin, or at
      // a second signal. Records not acknowledged stay in the store for the next start.
      const hardExit = (reason: string): void => {
        logJson(`exiting now (${reason}); unacknowledged records stay stored`);
        process.exit(1);
      };
      const watchdog = setTimeout(
        () => hardExit(`stop took over ${(DRAIN_TIMEOUT_MS + STOP_MARGIN_MS) / 1000} s`),
        DRAIN_TIMEOUT_MS + STOP_MARGIN_MS,
      );
      watchdog.unref();
      process.once('SIGINT', () => hardExit('second SIGINT'));
      process.once('SIGTERM', () => hardExit('second SIGTERM'));
      const { drained, pending } = await gateway.stop(DRAIN_TIMEOUT_MS);
      service?.close();
      logJson(
        `stopped: frames=${gateway.pipeline.frames} records=${gateway.stored()} acked=${gateway.sender.counters.acked} batches=${gateway.sender.counters.batches} pending=${pending}`,
      );
      return drained ? 0 : 1;
    }
    case 'decode': {
      const a = args(rest, {
        dbc: { type: 'string' },
        format: { type: 'string', default: 'candump' },
        j1939: { type: 'boolean', default: false },
        obd: { type: 'boolean', default: false },
      });
      const format = String(a.values.format);
      if (format !== 'candump' && format !== 'slcan')
        throw new UsageError(`--format ${format}: expected candump or slcan`);
      const [{ loadDecoder }, { TraceDecoder }, { MAX_TRACE_LINE_CHARS, openTrace }, { readBoundedLines }] =
        await Promise.all([
          import('./dbc-loader.js'),
          import('./decode-command.js'),
          import('../drivers/trace-source.js'),
          import('../drivers/line-reader.js'),
        ]);
      const j1939 = a.values.j1939 === true;
      const decoder = a.values.dbc === undefined ? null : loadDecoder(String(a.values.dbc), { j1939 });
      for (const warning of decoder?.db.warnings ?? []) process.stderr.write(`v2c-gateway: dbc: ${warning}\n`);
      const input = openTrace(a.positionals[0] ?? '-');
      const lines = new TraceDecoder({ format, decoder, j1939, obd: a.values.obd === true });
      const out: string[] = [];
      // `decode … | head` closes the pipe early: that ends the command quietly, as it does for cat.
      process.stdout.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'EPIPE') process.exit(0);
        throw err;
      });
      for await (const line of readBoundedLines(input, MAX_TRACE_LINE_CHARS)) {
        out.push(...lines.decode(line));
        if (out.length >= 256) process.stdout.write(out.splice(0).join('\n') + '\n');
      }
      if (out.length > 0) process.stdout.write(out.join('\n') + '\n');
      const transport = lines.transportSummary();
      if (transport !== null) process.stderr.write(`decode: j1939 transport ${transport}\n`);
      return 0;
    }
    case 'simulate': {
      const a = args(rest, {
        port: { type: 'string' },
        trace: { type: 'string' },
        speed: { type: 'string' },
        timestamps: { type: 'boolean', default: false },
        'ignition-file': { type: 'string' },
        obd: { type: 'boolean', default: false },
        'obd-addressing': { type: 'string', default: '11bit' },
      });
      if (a.values.port === undefined) throw new UsageError('simulate needs --port PATH (one end of a socat pty pair)');
      const addressing = String(a.values['obd-addressing']);
      if (addressing !== '11bit' && addressing !== '29bit')
        throw new UsageError(`--obd-addressing ${addressing}: expected 11bit or 29bit`);
      const [{ runSimulator }, { systemClock }] = await Promise.all([
        import('../drivers/slcan-adapter-simulator.js'),
        import('../core/clock.js'),
      ]);
      const ecu = a.values.obd === true ? await simulatedObdVehicle(addressing) : undefined;
      const result = await runSimulator(
        {
          port: String(a.values.port),
          trace:
            a.values.trace === undefined
              ? join(projectRoot(), 'drivers', 'reference-vehicle', 'drive.log.gz')
              : String(a.values.trace),
          speed: numberOption(a.values.speed, 'speed', 1),
          timestamps: a.values.timestamps === true,
          ...(a.values['ignition-file'] !== undefined ? { ignitionFile: String(a.values['ignition-file']) } : {}),
          ...(ecu !== undefined ? { ecu } : {}),
        },
        systemClock,
        (m) => process.stderr.write(`${m}\n`),
      );
      process.stderr.write(
        `simulate: sent=${result.framesSent} received=${result.framesReceived} skipped=${result.skippedLines} commands=${result.commands}\n`,
      );
      return 0;
    }
    case 'demo': {
      const a = args(rest, { speed: { type: 'string' }, vehicle: { type: 'string', default: 'car' } });
      const vehicle = String(a.values.vehicle);
      if (vehicle !== 'car' && vehicle !== 'obd' && vehicle !== 'truck')
        throw new UsageError(`--vehicle ${vehicle}: expected car, obd or truck`);
      const { runDemo } = await import('../bench/demo.js');
      return runDemo({ speed: numberOption(a.values.speed, 'speed', 12), vehicle });
    }
    case 'sink': {
      const a = args(rest, {
        url: { type: 'string' },
        'dead-letter': { type: 'string', default: '.v2c/sink-dead-letter' },
        'idle-exit': { type: 'string' },
        'dedup-window': { type: 'string' },
        'client-id': { type: 'string', default: 'v2c-sink' },
        ca: { type: 'string' },
        cert: { type: 'string' },
        key: { type: 'string' },
        'offload-port': { type: 'string' },
        'server-cert': { type: 'string' },
        'server-key': { type: 'string' },
      });
      if (a.values.url === undefined) throw new UsageError('sink needs --url mqtt://host:port');
      const tlsFiles = [a.values.ca, a.values.cert, a.values.key];
      if (String(a.values.url).startsWith('mqtts://') !== tlsFiles.every((f) => f !== undefined))
        throw new UsageError('sink: an mqtts:// url needs --ca, --cert and --key (and mqtt:// none of them)');
      const tls =
        a.values.ca === undefined
          ? undefined
          : {
              ca: readFileSync(String(a.values.ca), 'utf8'),
              cert: readFileSync(String(a.values.cert), 'utf8'),
              key: readFileSync(String(a.values.key), 'utf8'),
            };
      const idleExitMs =
        a.values['idle-exit'] === undefined ? null : numberOption(a.values['idle-exit'], 'idle-exit', 0) * 1000;
      const [{ sinkSummary, TelemetrySink }, { OffloadReceiver }] = await Promise.all([
        import('../receiver/telemetry-sink.js'),
        import('../receiver/offload-receiver.js'),
      ]);
      const sink = await TelemetrySink.start(
        {
          url: String(a.values.url),
          clientId: String(a.values['client-id']),
          deadLetterDir: String(a.values['dead-letter']),
          dedupWindowMs: numberOption(a.values['dedup-window'], 'dedup-window', 300) * 1000,
          ...(tls !== undefined ? { tls } : {}),
        },
        (m) => process.stderr.write(`${m}\n`),
      );
      process.stderr.write(`sink: subscribed on ${String(a.values.url)}\n`);
      let offload: Awaited<ReturnType<typeof OffloadReceiver.start>> | null = null;
      if (a.values['offload-port'] !== undefined) {
        if (
          a.values.ca === undefined ||
          a.values['server-cert'] === undefined ||
          a.values['server-key'] === undefined
        ) {
          throw new UsageError("sink --offload-port needs --ca (the devices' CA), --server-cert and --server-key");
        }
        offload = await OffloadReceiver.start(
          sink,
          {
            host: '127.0.0.1',
            port: numberOption(a.values['offload-port'], 'offload-port', 0),
            basePath: '/v1/vehicles',
            maxBodyBytes: 16 << 20,
            tls: {
              ca: readFileSync(String(a.values.ca), 'utf8'),
              cert: readFileSync(String(a.values['server-cert']), 'utf8'),
              key: readFileSync(String(a.values['server-key']), 'utf8'),
            },
          },
          (m) => process.stderr.write(`${m}\n`),
        );
        process.stderr.write(`sink: offload uploads on https://127.0.0.1:${offload.port}/v1/vehicles\n`);
      }
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
        if (idleExitMs !== null) {
          const timer = setInterval(() => {
            if (sink.idleMs >= idleExitMs) {
              clearInterval(timer);
              resolve();
            }
          }, 100);
        }
      });
      await offload?.close();
      await sink.close();
      process.stdout.write(`${sinkSummary(sink.counts)}\n`);
      return 0;
    }
    case 'provision':
      return provisionCommand(rest);
    case '--version':
    case 'version': {
      const { version } = JSON.parse(readFileSync(join(projectRoot(), 'package.json'), 'utf8')) as { version: string };
      process.stdout.write(`v2c-gateway ${version} (node ${process.version}, linux-${process.arch})\n`);
      return 0;
    }
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

async function provisionCommand(argv: string[]): Promise<number> {
  const { BENCH_CLOUD_CN, BENCH_VEHICLE_ID, createDevPki } = await import('../provisioning/dev-pki.js');
  if (argv[0] === 'dev-pki') {
    const a = args(argv.slice(1), {
      out: { type: 'string' },
      'vehicle-id': { type: 'string', default: BENCH_VEHICLE_ID },
    });
    if (a.values.out === undefined) throw new UsageError('provision dev-pki needs --out DIR');
    const pki = await createDevPki(resolve(String(a.values.out)), String(a.values['vehicle-id']));
    process.stdout.write(
      [
        `bench PKI in ${pki.dir} (for benches and tests only):`,
        `  CA ${pki.ca.cert}; broker ${pki.broker.cert} (127.0.0.1, localhost); cloud client ${pki.cloud.cert} (CN ${BENCH_CLOUD_CN})`,
        ...Object.entries(pki.devices).map(([name, f]) => `  device ${name}: ${f.cert} ${f.key}`),
        '',
      ].join('\n'),
    );
    return 0;
  }
  const a = args(argv, {
    'vehicle-id': { type: 'string' },
    region: { type: 'string', default: 'eu-central-1' },
    model: { type: 'string', default: 'unknown' },
    broker: { type: 'string' },
    ca: { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
    'generate-key': { type: 'boolean', default: false },
    'csr-only': { type: 'boolean', default: false },
    prefix: { type: 'string', default: '/' },
    'config-dir': { type: 'string', default: '/etc/v2c-gateway' },
    'data-dir': { type: 'string', default: '/var/lib/v2c-gateway' },
    dbc: { type: 'string' },
    template: { type: 'string' },
    'can-port': { type: 'string', default: '/dev/ttyACM0' },
    'no-service': { type: 'boolean', default: false },
    user: { type: 'string', default: 'v2c-gateway' },
  });
  const v = a.values;
  if (v['vehicle-id'] === undefined) throw new UsageError('provision needs --vehicle-id VIN');
  if (v.broker === undefined && v['generate-key'] !== true && v['csr-only'] !== true)
    throw new UsageError('provision needs --broker mqtts://HOST:PORT');
  const optional = (x: OptionValue): string | undefined => (x === undefined ? undefined : resolve(String(x)));
  const { provision } = await import('../provisioning/provision.js');
  const result = await provision({
    vehicleId: String(v['vehicle-id']),
    region: String(v.region),
    model: String(v.model),
    broker: String(v.broker ?? ''),
    ca: optional(v.ca),
    cert: optional(v.cert),
    key: optional(v.key),
    generateKey: v['generate-key'] === true,
    csrOnly: v['csr-only'] === true,
    prefix: resolve(String(v.prefix)),
    configDir: String(v['config-dir']),
    dataDir: String(v['data-dir']),
    dbc: optional(v.dbc),
    template: optional(v.template),
    canPort: String(v['can-port']),
    service: v['no-service'] !== true,
    serviceUser: String(v.user),
    now: new Date(),
  });
  process.stdout.write(`${result.summary.join('\n')}\n`);
  return 0;
}

/** Our typed errors (ConfigError, DbcLoadError, StorageError, …) carry an upper-case code: their message is the whole story. */
function isExplained(err: unknown): err is Error & { code: string } {
  const code = err instanceof Error ? (err as Error & { code?: unknown }).code : undefined;
  return typeof code === 'string' && /^[A-Z][A-Z0-9_]+$/.test(code);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof UsageError) process.stderr.write(`v2c-gateway: ${err.message}\n\n${USAGE}`);
    else if (isExplained(err)) process.stderr.write(`v2c-gateway: ${err.message}\n`);
    else process.stderr.write(`v2c-gateway: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = err instanceof UsageError ? 2 : 1;
  },
);
