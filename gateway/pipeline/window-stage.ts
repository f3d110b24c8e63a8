// Stage 3: decoded frames into aligned windows of capture time (min/max/mean/last/count per
// signal); each event leaves with the open window's latest values, the vehicle's state when it fired.
import { Observable, type OperatorFunction } from 'rxjs';
import { WindowAggregator, type ClosedWindow } from './aggregation.js';
import type { DecodedFrame, DiagnosticReport, WallAnchor } from './decode-stage.js';
import type { EventFired } from './event-stage.js';
import type { Clock } from '../../core/clock.js';

/** A window that closed, and where wall-clock time was known when it did. */
export interface WindowClosed {
  kind: 'window';
  window: ClosedWindow;
  wall: WallAnchor | null;
  /** The last fault report in the window (J1939 DM1), or null when none came. */
  diagnostics: DiagnosticReport | null;
}

/** An event with the latest value of each signal in the open window (its frame's included). */
export interface EventInWindow extends EventFired {
  latest: ReadonlyMap<string, number>;
  /** The event frame's fault report, or else the open window's last one. */
  diagnostics: DiagnosticReport | null;
}

export interface WindowOptions {
  windowMs: number;
  /** Close the open window after this much silence on `clock` (live sources); 0 or absent: only on data time. */
  idleFlushMs?: number;
  clock?: Clock;
}

/**
 * Closes each window on the first frame past it and passes events on with their context;
 * completing the input closes the open window at its last sample.
 */
export function windowSignals(
  options: WindowOptions,
  counters: { windows: number },
): OperatorFunction<DecodedFrame | EventFired, WindowClosed | EventInWindow> {
  return (source) =>
    new Observable<WindowClosed | EventInWindow>((subscriber) => {
      const windows = new WindowAggregator(options.windowMs);
      let wall: WallAnchor | null = null;
      let diagnostics: DiagnosticReport | null = null;
      const emit = (window: ClosedWindow | null): void => {
        if (window === null) return;
        counters.windows++;
        subscriber.next({ kind: 'window', window, wall, diagnostics });
        diagnostics = null;
      };
      const { idleFlushMs = 0, clock } = options;
      const idle =
        idleFlushMs > 0 && clock !== undefined
          ? setInterval(
              () => {
                if (windows.expiredBy(clock.monoMs() - idleFlushMs)) emit(windows.close(false));
              },
              Math.min(1000, idleFlushMs),
            )
          : null;
      const subscription = source.subscribe({
        next: (item) => {
          if (item.kind === 'event') {
            subscriber.next({
              ...item,
              latest: windows.lastValues(),
              diagnostics: item.frame.diagnostics ?? diagnostics,
            });
            return;
          }
          wall = item.wall;
          for (const name in item.signals) emit(windows.add(item.tsMono, name, Number(item.signals[name])));
          // After the signals: a frame that closed the last window reports on the next one.
          if (item.diagnostics !== undefined) diagnostics = item.diagnostics;
        },
        error: (err: unknown) => subscriber.error(err),
        complete: () => {
          emit(windows.close(true));
          subscriber.complete();
        },
      });
      return () => {
        if (idle !== null) clearInterval(idle);
        subscription.unsubscribe();
      };
    });
}
