// The USB SLCAN adapter as a frame source: opens the adapter (C, S<n>, O), splits its byte
// stream into lines with ReadlineParser, reopens with growing delay when the device disappears,
// and reopens a port that stays open but goes silent (STYLE §5).
import { SerialPort } from 'serialport';
import { SerialPortStream } from '@serialport/stream';
import { ReadlineParser } from '@serialport/parser-readline';
import { coalescingBinding } from './coalescing-binding.js';
import { Subject, type Observable } from 'rxjs';
import { type CanFrame, MalformedLine } from './can-frame.js';
import { SLCAN_BEL, SLCAN_MAX_LINE, formatSlcanFrame, parseSlcanLine, slcanBitrateCode } from './slcan.js';
import type { Clock } from '../core/clock.js';

export interface SlcanSourceOptions {
  path: string;
  /** CAN bitrate for `S<n>`. */
  bitrate: number;
  /** Serial speed of the USB link (ignored by USB CDC adapters and ptys). */
  baudRate: number;
  bus: string;
  /** Reopen when no line arrives for this long while open. */
  watchdogMs: number;
  /** Delays before successive reopen attempts; the last one repeats. */
  reopenDelaysMs: number[];
  /** After a read that returned data, the next read waits this long (0: read at once). */
  readIntervalMs: number;
}

export interface SlcanSourceCounters {
  frames: number;
  malformed: number;
  /** BEL replies: the adapter refused a command or overflowed. */
  adapterErrors: number;
  reopens: number;
  watchdogReopens: number;
  /** Frames transmitted (OBD-II requests and flow control). */
  sent: number;
}

export class SlcanConfigError extends Error {
  readonly code = 'SLCAN_CONFIG';
}

export type SlcanSourceEvent =
  { kind: 'open' } | { kind: 'closed'; reason: string } | { kind: 'retry'; delayMs: number; reason: string };

export class SlcanSerialSource {
  readonly counters: SlcanSourceCounters = {
    frames: 0,
    malformed: 0,
    adapterErrors: 0,
    reopens: 0,
    watchdogReopens: 0,
    sent: 0,
  };
  private readonly out = new Subject<CanFrame | MalformedLine>();
  private readonly status = new Subject<SlcanSourceEvent>();
  private port: SerialPortStream | null = null;
  private stopped = true;
  private attempt = 0;
  private lastLineAt = 0;
  private bytesSinceDelimiter = 0;
  private watchdog: NodeJS.Timeout | null = null;
  private reopenTimer: NodeJS.Timeout | null = null;
  private readonly bitrateCommand: string;

  constructor(
    private readonly options: SlcanSourceOptions,
    private readonly clock: Clock,
  ) {
    const code = slcanBitrateCode(options.bitrate);
    if (code === undefined)
      throw new SlcanConfigError(
        `can.bitrate ${options.bitrate}: expected one of 10000, 20000, 50000, 100000, 125000, 250000, 500000, 800000, 1000000`,
      );
    this.bitrateCommand = code;
  }

  /** Frames and malformed lines, in arrival order. Completes on stop(). */
  get frames(): Observable<CanFrame | MalformedLine> {
    return this.out.asObservable();
  }

  get events(): Observable<SlcanSourceEvent> {
    return this.status.asObservable();
  }

  /**
   * Transmits a classic CAN frame (an OBD-II request or flow control). False when the adapter is
   * not open (it is reopening): the caller decides whether to ask again.
   */
  send(frame: { id: number; extended: boolean; data: Uint8Array }): boolean {
    const port = this.port;
    if (port === null || !port.isOpen || this.stopped) return false;
    port.write(
      formatSlcanFrame({
        ...frame,
        bus: null,
        rtr: false,
        fd: false,
        brs: false,
        error: false,
        tsMono: 0,
        tsWall: null,
      }),
      'latin1',
    );
    this.counters.sent++;
    return true;
  }

  start(): void {
    this.stopped = false;
    this.open();
    this.watchdog = setInterval(() => this.checkSilence(), Math.max(50, Math.floor(this.options.watchdogMs / 4)));
    this.watchdog.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.watchdog !== null) clearInterval(this.watchdog);
    if (this.reopenTimer !== null) clearTimeout(this.reopenTimer);
    const port = this.port;
    this.port = null;
    if (port?.isOpen === true) {
      await new Promise<void>((resolve) => port.write('C\r', () => port.drain(() => resolve())));
      await new Promise<void>((resolve) => port.close(() => resolve()));
    }
    this.out.complete();
    this.status.complete();
  }

  private open(): void {
    const binding =
      this.options.readIntervalMs > 0
        ? coalescingBinding(SerialPort.binding, this.options.readIntervalMs)
        : SerialPort.binding;
    const port = new SerialPortStream({
      binding,
      path: this.options.path,
      baudRate: this.options.baudRate,
      autoOpen: false,
    });
    const parser = new ReadlineParser({ delimiter: '\r', encoding: 'latin1' });
    parser.on('data', (line: string) => this.onLine(line));
    port.on('data', (chunk: Buffer) => this.onChunk(chunk, parser));
    port.on('close', () => this.onClosed(port, 'port closed (device removed?)'));
    port.on('error', (err: Error) => this.onClosed(port, err.message));
    this.port = port;
    port.open((err) => {
      if (err) {
        this.onClosed(port, err.message);
        return;
      }
      this.attempt = 0;
      this.lastLineAt = this.clock.monoMs();
      // Close first: the adapter may still be open from a previous run.
      port.write(`C\r${this.bitrateCommand}\rO\r`);
      this.status.next({ kind: 'open' });
    });
  }

  private onChunk(chunk: Buffer, parser: ReadlineParser): void {
    const cr = chunk.lastIndexOf(13);
    this.bytesSinceDelimiter = cr < 0 ? this.bytesSinceDelimiter + chunk.length : chunk.length - cr - 1;
    parser.write(chunk);
    // ReadlineParser buffers until a delimiter; a stream without one must not grow without bound.
    if (this.bytesSinceDelimiter > 4 * SLCAN_MAX_LINE) {
      const head = parser.buffer.subarray(0, 40).toString('latin1');
      parser.buffer = Buffer.alloc(0);
      this.bytesSinceDelimiter = 0;
      this.counters.malformed++;
      this.out.next(
        new MalformedLine(
          'too-long',
          `more than ${4 * SLCAN_MAX_LINE} bytes without a \\r terminator; discarded`,
          head,
        ),
      );
    }
  }

  private onLine(raw: string): void {
    this.lastLineAt = this.clock.monoMs();
    let line = raw;
    // BEL replaces `\r` as the error reply, so it arrives glued to the front of the next line.
    while (line.startsWith(SLCAN_BEL)) {
      this.counters.adapterErrors++;
      line = line.slice(1);
    }
    const parsed = parseSlcanLine(line, this.lastLineAt, this.options.bus);
    if (parsed === null) return;
    if (parsed instanceof MalformedLine) this.counters.malformed++;
    else this.counters.frames++;
    this.out.next(parsed);
  }

  private checkSilence(): void {
    const port = this.port;
    if (this.stopped || port === null || !port.isOpen) return;
    if (this.clock.monoMs() - this.lastLineAt < this.options.watchdogMs) return;
    this.counters.watchdogReopens++;
    port.close(() => undefined);
    this.onClosed(port, `no data for ${this.options.watchdogMs} ms (watchdog)`);
  }

  private onClosed(port: SerialPortStream, reason: string): void {
    if (this.port !== port || this.stopped) return;
    this.port = null;
    port.removeAllListeners();
    port.on('error', () => undefined);
    if (port.isOpen) port.close(() => undefined);
    const delays = this.options.reopenDelaysMs;
    const delayMs = delays[Math.min(this.attempt, delays.length - 1)] ?? 1000;
    this.attempt++;
    this.counters.reopens++;
    this.status.next({ kind: 'closed', reason });
    this.status.next({ kind: 'retry', delayMs, reason });
    this.reopenTimer = setTimeout(() => {
      if (!this.stopped) this.open();
    }, delayMs);
  }
}
