// What the gateway needs of the board's GPIO lines, whatever drives them (onoff on a board, files
// and code on a bench): the link policy reads the ignition, the session state drives the LED.
import type { Observable } from 'rxjs';

export interface IgnitionSense {
  readonly changes: Observable<boolean>;
  readonly isOn: boolean;
  /** How long the ignition has been off (0 while on). */
  offForMs(): number;
  stop(): void;
}

export type LedMode = 'online' | 'offline' | 'error';

export interface StatusLed {
  show(mode: LedMode): void;
  stop(): void;
}
