// Time references besides the broker's: the system's NTP synchronisation state (timedatectl) and a
// serial GNSS receiver (NMEA RMC/ZDA). Each offers what it knows to the ClockCorrector; the GNSS
// receiver also gives its position to the pipeline.
import { execFile } from 'node:child_process';
import { ReadlineParser } from '@serialport/parser-readline';
import { SerialPort } from 'serialport';
import { Subject, type Observable } from 'rxjs';
import { NmeaError, parseNmeaPosition, parseNmeaTime, type NmeaPosition } from '../../drivers/nmea.js';
import type { Clock } from '../../core/clock.js';
import type { ClockCorrector } from './clock-corrector.js';

/** A failing timedatectl is asked at most this many intervals apart (an hour at the default minute). */
const MAX_NTP_BACKOFF = 64;

/**
 * While systemd-timesyncd (or chrony) says the clock is synchronised, the system clock is a
 * reference. A timedatectl that fails (no systemd: a container, a bench PC) is asked half as often
 * after each failure, so the gateway does not spawn a failing tool every minute for ever.
 */
export class NtpStateSource {
  private timer: NodeJS.Timeout | null = null;
  private unavailable = false;
  private failures = 0;
  private stopped = true;

  constructor(
    private readonly corrector: ClockCorrector,
    private readonly clock: Clock,
    private readonly settings: { intervalMs: number; errorMs: number },
    private readonly log: (msg: string) => void,
  ) {}

  start(): void {
    this.stopped = false;
    this.check();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Times timedatectl was run. */
  checks = 0;

  check(): void {
    this.checks++;
    execFile('timedatectl', ['show', '--property=NTPSynchronized', '--value'], { timeout: 5000 }, (err, stdout) => {
      if (err !== null) {
        // Not installed: not asked again (a process every interval for nothing).
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') this.stop();
        if (!this.unavailable)
          this.log(
            `clock: timedatectl cannot tell the NTP state (${err.message.split('\n')[0] ?? ''}); NTP is not used as a reference`,
          );
        this.unavailable = true;
        this.failures++;
        return this.next();
      }
      this.failures = 0;
      if (stdout.trim() === 'yes')
        this.corrector.offer({
          source: 'ntp',
          wallMs: this.clock.wallMs(),
          monoMs: this.clock.monoMs(),
          errorMs: this.settings.errorMs,
        });
      this.next();
    });
  }

  private next(): void {
    if (this.stopped) return;
    const backoff = Math.min(MAX_NTP_BACKOFF, 2 ** this.failures);
    this.timer = setTimeout(() => this.check(), this.settings.intervalMs * backoff);
    this.timer.unref();
  }
}

/** Bytes without a line end after which the GNSS line buffer is dropped (a sentence is ≤ 82). */
const MAX_NMEA_PENDING_BYTES = 4096;

/** A position sentence and when it arrived. */
export interface GnssFix extends NmeaPosition {
  monoMs: number;
}

/**
 * The modem's GNSS on a serial port: every valid RMC/ZDA sentence is a time reference (its error
 * the sentence's latency), every RMC/GGA/VTG with a fix a position for the pipeline.
 */
export class GnssReceiver {
  private port: SerialPort | null = null;
  /** `noFix`: position sentences without a valid fix (never reported as a position). */
  readonly counters = { sentences: 0, references: 0, errors: 0, positions: 0, noFix: 0 };
  private readonly fixes = new Subject<GnssFix>();

  /** Positions as they arrive; completes on stop(). */
  get positions(): Observable<GnssFix> {
    return this.fixes.asObservable();
  }

  constructor(
    private readonly corrector: ClockCorrector,
    private readonly clock: Clock,
    private readonly settings: { path: string; baudRate: number; errorMs: number },
    private readonly log: (msg: string) => void,
  ) {}

  start(): void {
    const port = new SerialPort({ path: this.settings.path, baudRate: this.settings.baudRate });
    this.port = port;
    port.on('error', (err) => this.log(`gps: ${this.settings.path}: ${err.message}`));
    const parser = port.pipe(new ReadlineParser({ delimiter: '\n' }));
    // NMEA sentences are at most 82 characters: a receiver that sends no line end must not grow
    // the parser's buffer without bound (what is dropped is counted as an error).
    port.on('data', () => {
      if (parser.buffer.length <= MAX_NMEA_PENDING_BYTES) return;
      parser.buffer = Buffer.alloc(0);
      this.counters.errors++;
    });
    parser.on('data', (line: string) => {
      this.counters.sentences++;
      this.onPosition(line);
      const time = parseNmeaTime(line);
      if (time instanceof NmeaError) {
        if (time.code !== 'NOT_TIME' && time.code !== 'NO_FIX') this.counters.errors++;
        return;
      }
      this.counters.references++;
      this.corrector.offer({
        source: 'gps',
        wallMs: time.utcMs,
        monoMs: this.clock.monoMs(),
        errorMs: this.settings.errorMs,
      });
    });
  }

  private onPosition(line: string): void {
    const fix = parseNmeaPosition(line);
    if (fix instanceof NmeaError) {
      if (fix.code === 'NO_FIX') this.counters.noFix++;
      return;
    }
    this.counters.positions++;
    this.fixes.next({ ...fix, monoMs: this.clock.monoMs() });
  }

  async stop(): Promise<void> {
    const port = this.port;
    if (port?.isOpen === true) await new Promise<void>((resolve) => port.close(() => resolve()));
    this.fixes.complete();
  }
}
