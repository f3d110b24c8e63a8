// GNSS position from NMEA: sentences written by hand (checksums computed here), no-fix and
// corrupt sentences, and positions through a real pty into the pipeline's windows.
import t from 'tap';
import { Subject, lastValueFrom, toArray } from 'rxjs';
import { systemClock } from '../core/clock.js';
import { validateConfig, referenceVehicleSettings } from '../core/config.js';
import type { CanFrame } from '../drivers/can-frame.js';
import { GNSS_SIGNALS, NmeaError, parseNmeaPosition } from '../drivers/nmea.js';
import { loadDecoder } from '../gateway/dbc-loader.js';
import { gnssFrames } from '../gateway/pipeline/gnss-stage.js';
import { newPipelineCounters, telemetryPipeline } from '../gateway/telemetry-pipeline.js';
import { ClockCorrector } from '../sync/time/clock-corrector.js';
import { GnssReceiver } from '../sync/time/time-sources.js';
import { openPtyPair } from '../bench/rig/pty-pair.js';
import { waitUntil } from './helpers.js';

/** `$body*CS` with the XOR checksum of the body. */
function nmea(body: string): string {
  let x = 0;
  for (let i = 0; i < body.length; i++) x ^= body.charCodeAt(i);
  return `$${body}*${x.toString(16).toUpperCase().padStart(2, '0')}`;
}

const { latitude, longitude, speedKmh, heading, fixQuality, satellites, hdop } = GNSS_SIGNALS;

t.test('RMC, GGA and VTG into signals; southern and western hemispheres negative', async (t) => {
  const rows: Array<[string, Record<string, number>]> = [
    [
      'GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W',
      { [latitude]: 48 + 7.038 / 60, [longitude]: 11 + 31 / 60, [speedKmh]: 22.4 * 1.852, [heading]: 84.4 },
    ],
    [
      'GNGGA,092750.000,5321.6802,N,00630.3372,W,1,8,1.03,61.7,M,55.2,M,,',
      {
        [latitude]: 53 + 21.6802 / 60,
        [longitude]: -(6 + 30.3372 / 60),
        [fixQuality]: 1,
        [satellites]: 8,
        [hdop]: 1.03,
      },
    ],
    [
      'GPGGA,000000,3351.000,S,15112.000,E,2,12,0.8,10,M,,M,,',
      { [latitude]: -(33 + 51 / 60), [longitude]: 151 + 12 / 60, [fixQuality]: 2, [satellites]: 12, [hdop]: 0.8 },
    ],
    ['GPVTG,054.7,T,034.4,M,005.5,N,010.2,K,A', { [heading]: 54.7, [speedKmh]: 10.2 }],
    ['GPRMC,123519,A,4807.038,N,01131.000,E,,,230394,,', { [latitude]: 48 + 7.038 / 60, [longitude]: 11 + 31 / 60 }],
  ];
  for (const [body, want] of rows) {
    const got = parseNmeaPosition(nmea(body));
    t.ok(!(got instanceof NmeaError), body);
    if (got instanceof NmeaError) continue;
    t.same(Object.keys(got.signals).sort(), Object.keys(want).sort(), `${body}: signals`);
    for (const [k, v] of Object.entries(want)) t.ok(Math.abs((got.signals[k] ?? NaN) - v) < 1e-9, `${body}: ${k}`);
  }
});

t.test('no fix, 0,0, corrupt and foreign sentences: refused with a code, never a position', async (t) => {
  const rows: Array<[string, string]> = [
    [nmea('GPRMC,123519,V,,,,,,,230394,,'), 'NO_FIX'],
    [nmea('GPRMC,123519,V,4807.038,N,01131.000,E,0,0,230394,,'), 'NO_FIX'], // a stale position with status V
    [nmea('GPGGA,123519,,,,,0,00,99.9,,M,,M,,'), 'NO_FIX'],
    [nmea('GPGGA,123519,0000.000,N,00000.000,E,1,04,2.0,0,M,,M,,'), 'NO_FIX'], // 0,0: never reported
    [nmea('GPVTG,,T,,M,,N,,K,N'), 'NO_FIX'],
    [nmea('GPRMC,123519,A,4807.038,X,01131.000,E,0,0,230394,,'), 'BAD_FIELD'],
    [nmea('GPRMC,123519,A,4860.000,N,01131.000,E,0,0,230394,,'), 'BAD_FIELD'], // 60 minutes
    [nmea('GPGGA,123519,9100.000,N,01131.000,E,1,04,2.0,0,M,,M,,'), 'BAD_FIELD'], // 91°
    [nmea('GPGGA,123519,4807.038,N,01131.000,E,x,04,2.0,0,M,,M,,'), 'BAD_FIELD'],
    ['$GPRMC,123519,A,4807.038,N,01131.000,E,0,0,230394,,*00', 'BAD_CHECKSUM'],
    [nmea('GPZDA,201530.00,04,07,2002,00,00'), 'NOT_POSITION'],
    ['garbage', 'NOT_NMEA'],
    ['$' + 'A'.repeat(5000), 'NOT_NMEA'],
  ];
  for (const [line, code] of rows) {
    const got = parseNmeaPosition(line);
    t.equal(got instanceof NmeaError ? got.code : 'position', code, line.slice(0, 60));
  }
});

t.test(
  'positions from a receiver on a pty, windowed with the CAN signals; no fix and runaway lines counted',
  async (t) => {
    const pty = await openPtyPair();
    t.teardown(() => pty.close());
    const corrector = new ClockCorrector('boot', systemClock, { driftPpm: 50, windowMs: 3_600_000 }, () => undefined);
    const gnss = new GnssReceiver(
      corrector,
      systemClock,
      { path: pty.gatewayEnd, baudRate: 9600, errorMs: 1000 },
      () => undefined,
    );
    gnss.start();
    t.teardown(() => gnss.stop());
    const settings = referenceVehicleSettings({ mqttUrl: 'mqtt://127.0.0.1:1', windowMs: 1000 });
    const pipeline = settings.pipeline as { fields: Record<string, unknown> };
    const config = validateConfig(
      {
        ...settings,
        pipeline: {
          ...pipeline,
          fields: { ...pipeline.fields, gpsLatitude: { signal: latitude }, gpsLongitude: { signal: longitude } },
        },
      },
      'test',
    );
    const frames = new Subject<CanFrame>();
    const records = lastValueFrom(
      telemetryPipeline(frames, {
        config,
        decoder: loadDecoder(config.dbc),
        clock: systemClock,
        counters: newPipelineCounters(),
        bootId: 'b',
        firstSequence: 1,
        live: true,
        sideSignals: gnssFrames(gnss.positions),
      }).pipe(toArray()),
    );
    const { SerialPort } = await import('serialport');
    const device = new SerialPort({ path: pty.adapterEnd, baudRate: 9600 });
    t.teardown(() => new Promise<void>((resolve) => device.close(() => resolve())));
    await new Promise((resolve) => device.once('open', resolve));
    // A receiver gone mad: 20 KB without a line end. Dropped and counted, not buffered for ever.
    device.write('A'.repeat(20_000));
    await waitUntil('the runaway line dropped', () => gnss.counters.errors >= 1, 5000);
    device.write(
      [
        '', // ends what is left of the runaway line
        nmea('GPGGA,123519,,,,,0,00,99.9,,M,,M,,'),
        nmea('GPGGA,123519,0000.000,N,00000.000,E,1,04,2.0,0,M,,M,,'),
        nmea('GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W'),
        nmea('GPGGA,123520,4807.100,N,01131.100,E,1,09,0.9,545.4,M,46.9,M,,'),
      ].join('\r\n') + '\r\n',
    );
    await waitUntil('two positions', () => gnss.counters.positions >= 2, 5000);
    t.same([gnss.counters.positions, gnss.counters.noFix], [2, 2], 'two positions; no fix and 0,0 counted');
    frames.complete();
    await gnss.stop();
    const out = await records;
    const withGps = out.filter((r) => r.gps !== undefined);
    t.equal(withGps.length, 1, 'one window with a position');
    t.ok(Math.abs((withGps[0]?.gps?.latitudeDeg ?? 0) - (48 + 7.1 / 60)) < 1e-9, 'the last latitude of the window');
    t.equal(withGps[0]?.signals[satellites]?.last, 9, 'satellites windowed as a signal');
    t.notOk(
      out.some((r) => r.gps?.latitudeDeg === 0 && r.gps.longitudeDeg === 0),
      'never 0,0',
    );
  },
);
