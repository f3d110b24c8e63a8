// A bench stand-in for the USB SLCAN adapter: answers the adapter commands on a serial port
// (one end of a socat pty pair) and, while the channel is open, plays a recorded trace into it.
import { writeFileSync } from 'node:fs';
import { SerialPort } from 'serialport';
import { ReadlineParser } from '@serialport/parser-readline';
import { MalformedLine } from './can-frame.js';
import { formatSlcanFrame, parseSlcanLine, slcanBitrateCode } from './slcan.js';
import type { SimulatedObdVehicle } from './obd/simulated-ecu.js';
import { openTrace, paceReplay, readTrace, type TraceLine } from './trace-source.js';
import type { Clock } from '../core/clock.js';

export interface SimulatorOptions {
  port: string;
  trace: string;
  speed: number;
  /** Add the adapter's 4-digit millisecond timestamp to frames (as `Z1` would). */
  timestamps: boolean;
  /** The bench ignition line: "1" written while the drive plays, "0" when it ends (gpio.benchIgnitionFile). */
  ignitionFile?: string;
  /**
   * Be the vehicle's OBD-II ECUs instead of its powertrain bus: the trace drives their model and
   * only their answers to the gateway's requests reach the port.
   */
  ecu?: SimulatedObdVehicle;
}

export interface SimulatorResult {
  framesSent: number;
  /** Frames the gateway transmitted (OBD-II requests and flow control). */
  framesReceived: number;
  /** Trace lines that were not frames (comments, malformed): not sent. */
  skippedLines: number;
  commands: number;
}

const VALID_BITRATE_CODES = new Set(
  [10000, 20000, 50000, 100000, 125000, 250000, 500000, 800000, 1000000].map((b) => slcanBitrateCode(b)),
);

/** Runs until the trace has been played once through an opened channel; resolves with counts. */
export async function runSimulator(
  options: SimulatorOptions,
  clock: Clock,
  log: (msg: string) => void,
): Promise<SimulatorResult> {
  const port = new SerialPort({ path: options.port, baudRate: 115200, autoOpen: false });
  await new Promise<void>((resolve, reject) =>
    port.open((err) => (err ? reject(new Error(`cannot open ${options.port}: ${err.message}`)) : resolve())),
  );
  const result: SimulatorResult = { framesSent: 0, framesReceived: 0, skippedLines: 0, commands: 0 };
  const ecu = options.ecu;
  let channelOpen = false;
  let timestamps = options.timestamps;
  let wake: (() => void) | null = null;
  const reply = (ok: boolean, text = ''): void => {
    port.write(ok ? `${text}\r` : '\x07');
  };
  const parser = port.pipe(new ReadlineParser({ delimiter: '\r', encoding: 'latin1' }));
  parser.on('data', (line: string) => {
    result.commands++;
    const cmd = line[0];
    if (cmd === 'V') reply(true, 'V1013');
    else if (cmd === 'N') reply(true, 'NV2C1');
    else if (cmd === 'S') reply(VALID_BITRATE_CODES.has(line) && !channelOpen);
    else if (cmd === 'Z') {
      timestamps = line === 'Z1';
      reply(line === 'Z0' || line === 'Z1');
    } else if (cmd === 'O') {
      reply(!channelOpen);
      channelOpen = true;
      wake?.();
    } else if (cmd === 'C') {
      reply(true);
      channelOpen = false;
    } else if ((cmd === 't' || cmd === 'T') && ecu !== undefined && channelOpen) {
      const frame = parseSlcanLine(line, clock.monoMs());
      if (frame === null || frame instanceof MalformedLine) return reply(false);
      // A transmit is acknowledged with z (standard) or Z (extended), as Lawicel adapters do.
      port.write(cmd === 't' ? 'z\r' : 'Z\r');
      result.framesReceived++;
      for (const answer of ecu.onFrame(frame)) {
        const text = formatSlcanFrame({ ...frame, ...answer, tsMono: 0 });
        setTimeout(() => {
          if (!channelOpen) return;
          port.write(text, 'latin1');
          result.framesSent++;
        }, answer.atMs);
      }
    } else reply(false);
  });

  log(`simulator: ready on ${options.port}`);
  const waitOpen = (): Promise<void> =>
    channelOpen
      ? Promise.resolve()
      : new Promise((resolve) => {
          wake = resolve;
        });
  await waitOpen();
  log(
    `simulator: channel open on ${options.port}; playing ${options.trace} at ${options.speed > 0 ? `${options.speed}x` : 'full speed'}`,
  );
  const started = clock.monoMs();
  if (options.ignitionFile !== undefined) writeFileSync(options.ignitionFile, '1\n');
  const lines = paceReplay(readTrace(openTrace(options.trace), 'candump', clock), frameTime, options.speed, clock);
  for await (const line of lines) {
    const frame = line.parsed;
    if (frame === null || frame instanceof MalformedLine) {
      result.skippedLines++;
      continue;
    }
    if (!channelOpen) await waitOpen();
    if (ecu !== undefined) {
      ecu.observe(frame);
      continue;
    }
    const text = formatSlcanFrame(frame, timestamps ? clock.monoMs() - started : undefined);
    if (!port.write(text, 'latin1')) await new Promise<void>((resolve) => port.once('drain', () => resolve()));
    result.framesSent++;
  }
  // The drive is over: ignition off (the gateway counts parking time from here).
  if (options.ignitionFile !== undefined) writeFileSync(options.ignitionFile, '0\n');
  // Everything queued must reach the pty before the port closes.
  while (port.writableLength > 0) await clock.sleep(10);
  await new Promise<void>((resolve) => port.drain(() => resolve()));
  await new Promise<void>((resolve) => port.close(() => resolve()));
  return result;
}

function frameTime(line: TraceLine): number | null {
  const p = line.parsed;
  return p !== null && !(p instanceof MalformedLine) && p.tsWall !== null ? p.tsWall * 1000 : null;
}
