// The board's two GPIO lines through onoff: the ignition-sense input (edge-triggered, debounced)
// and the status LED (on = online, slow blink = offline and buffering, fast blink = error). Where
// GPIO is not available (a bench PC) the gateway says so once and runs without them; the bench
// implementations let tests and `simulate` toggle the ignition and read the LED.
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { Gpio } from 'onoff';
import { BehaviorSubject, distinctUntilChanged, type Observable } from 'rxjs';
import type { SessionState } from '../sync/session/reconnect-policy.js';
import type { Clock } from '../core/clock.js';
import type { IgnitionSense, LedMode, StatusLed } from '../core/hardware.js';

/** Ignition state with the time of its last change, shared by the GPIO and bench inputs. */
class IgnitionState {
  private readonly subject: BehaviorSubject<boolean>;
  private changedAtMs: number;

  constructor(
    initial: boolean,
    private readonly clock: Clock,
  ) {
    this.subject = new BehaviorSubject(initial);
    this.changedAtMs = clock.monoMs();
  }

  get changes(): Observable<boolean> {
    return this.subject.pipe(distinctUntilChanged());
  }

  get isOn(): boolean {
    return this.subject.value;
  }

  set(on: boolean): void {
    if (on === this.subject.value) return;
    this.changedAtMs = this.clock.monoMs();
    this.subject.next(on);
  }

  offForMs(): number {
    return this.subject.value ? 0 : this.clock.monoMs() - this.changedAtMs;
  }

  complete(): void {
    this.subject.complete();
  }
}

export class BenchIgnition extends IgnitionState implements IgnitionSense {
  stop(): void {
    this.complete();
  }
}

export class GpioIgnition extends IgnitionState implements IgnitionSense {
  private readonly line: Gpio;

  constructor(pin: number, options: { activeLow: boolean; debounceMs: number }, clock: Clock) {
    const line = new Gpio(pin, 'in', 'both', { activeLow: options.activeLow, debounceTimeout: options.debounceMs });
    super(line.readSync() === 1, clock);
    this.line = line;
    line.watch((err, value) => {
      if (err === null || err === undefined) this.set(value === 1);
    });
  }

  stop(): void {
    this.line.unwatchAll();
    this.line.unexport();
    this.complete();
  }
}

/**
 * The bench's ignition line: a file holding "1" or "0", as a sysfs GPIO value file does, written by
 * `v2c-gateway simulate --ignition-file` (on at the start of the drive, off at its end) or by hand.
 */
export class FileIgnition extends IgnitionState implements IgnitionSense {
  constructor(
    private readonly file: string,
    clock: Clock,
    pollMs = 200,
  ) {
    super(FileIgnition.read(file) ?? false, clock);
    watchFile(file, { interval: pollMs }, () => {
      const on = FileIgnition.read(file);
      if (on !== null) this.set(on);
    });
  }

  private static read(file: string): boolean | null {
    try {
      const v = readFileSync(file, 'utf8').trim();
      return v === '1' ? true : v === '0' ? false : null;
    } catch {
      return null;
    }
  }

  stop(): void {
    unwatchFile(this.file);
    this.complete();
  }
}

/** What the LED shows for the session's state. */
export function ledModeFor(state: SessionState, storeDegraded: boolean): LedMode {
  if (state === 'certificate-renewal' || storeDegraded) return 'error';
  return state === 'online' ? 'online' : 'offline';
}

/** Toggle period of each mode; 0 = steady on. */
const BLINK_MS: Record<LedMode, number> = { online: 0, offline: 1000, error: 100 };

export class GpioStatusLed implements StatusLed {
  private readonly line: Gpio;
  private timer: NodeJS.Timeout | null = null;
  private mode: LedMode | null = null;

  constructor(pin: number) {
    this.line = new Gpio(pin, 'out');
  }

  show(mode: LedMode): void {
    if (mode === this.mode) return;
    this.mode = mode;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.line.writeSync(1);
    if (BLINK_MS[mode] > 0) {
      let lit = true;
      this.timer = setInterval(() => {
        lit = !lit;
        this.line.writeSync(lit ? 1 : 0);
      }, BLINK_MS[mode]);
      this.timer.unref();
    }
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.line.writeSync(0);
    this.line.unexport();
  }
}

export class BenchStatusLed implements StatusLed {
  readonly history: LedMode[] = [];

  get mode(): LedMode | undefined {
    return this.history[this.history.length - 1];
  }

  show(mode: LedMode): void {
    if (mode !== this.mode) this.history.push(mode);
  }

  stop(): void {}
}

export interface GpioSettings {
  ignitionPin?: number;
  benchIgnitionFile?: string;
  ledPin?: number;
  activeLow: boolean;
  debounceMs: number;
}

/** The GPIO lines the config names, or none (said once) where GPIO is not accessible. */
export function openGpio(
  settings: GpioSettings,
  clock: Clock,
  log: (msg: string) => void,
): { ignition: IgnitionSense | null; led: StatusLed | null } {
  if (settings.benchIgnitionFile !== undefined)
    return { ignition: new FileIgnition(settings.benchIgnitionFile, clock), led: null };
  if (settings.ignitionPin === undefined && settings.ledPin === undefined) return { ignition: null, led: null };
  if (!Gpio.accessible) {
    log(
      'gpio: not available on this machine (no /sys/class/gpio access); running without ignition sense and status LED',
    );
    return { ignition: null, led: null };
  }
  return {
    ignition: settings.ignitionPin === undefined ? null : new GpioIgnition(settings.ignitionPin, settings, clock),
    led: settings.ledPin === undefined ? null : new GpioStatusLed(settings.ledPin),
  };
}
