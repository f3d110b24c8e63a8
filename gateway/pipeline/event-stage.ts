// Stage 2: event rules evaluated on every decoded value of the signals they watch.
import { Observable, type OperatorFunction } from 'rxjs';
import { EventDetector } from './aggregation.js';
import type { DecodedFrame } from './decode-stage.js';
import type { EventRule } from '../../core/config.js';
import type { DbcMessage } from '../../drivers/dbc/model.js';
import type { TelemetryEvent } from '../../proto/telemetry-codec.js';

/** An event and the frame it fired on. */
export interface EventFired {
  kind: 'event';
  event: TelemetryEvent;
  frame: DecodedFrame;
}

/** Passes each frame on, then the events it fired (in the DBC's signal order). */
export function detectEvents(
  rules: readonly EventRule[],
  counters: { events: number },
): OperatorFunction<DecodedFrame, DecodedFrame | EventFired> {
  return (source) =>
    new Observable<DecodedFrame | EventFired>((subscriber) => {
      const events = new EventDetector(rules);
      // Per DBC message, the signals a rule watches: most messages carry none, and looking each
      // decoded value up cost 15 % of the ingest path (bench -- ingest).
      const plans = new Map<DbcMessage, readonly string[]>();
      const planOf = (message: DbcMessage): readonly string[] => {
        let plan = plans.get(message);
        if (plan === undefined) {
          plan = message.signals.map((s) => s.name).filter((name) => events.watches(name));
          plans.set(message, plan);
        }
        return plan;
      };
      const fire = (event: TelemetryEvent, frame: DecodedFrame): void => {
        counters.events++;
        subscriber.next({ kind: 'event', event, frame });
      };
      return source.subscribe({
        next: (frame) => {
          subscriber.next(frame);
          if (frame.diagnostics !== undefined)
            for (const event of events.checkDtcSet(frame.diagnostics.signal, frame.diagnostics.dtcs))
              fire(event, frame);
          const plan = planOf(frame.message);
          for (let i = 0; i < plan.length; i++) {
            const name = plan[i] as string;
            const raw = frame.signals[name];
            // A multiplexed signal is absent from frames of another mux value.
            if (raw === undefined) continue;
            for (const event of events.check(name, Number(raw))) fire(event, frame);
          }
        },
        error: (err: unknown) => subscriber.error(err),
        complete: () => subscriber.complete(),
      });
    });
}
