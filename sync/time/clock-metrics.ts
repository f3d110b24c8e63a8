// The clock correction's metrics: the offset and quality of time now, references refused, records flagged.
import { TimeQuality } from '../../proto/telemetry-codec.js';
import type { MetricsRegistry } from '../../core/metrics-registry.js';
import type { ClockCorrector } from './clock-corrector.js';

export function registerClockMetrics(m: MetricsRegistry, corrector: ClockCorrector): void {
  m.gauge(
    'v2c_clock_offset_seconds',
    'True time minus the system clock, from the best reference of this boot (0 before one)',
    [],
    () => [[{}, (corrector.offsetMs() ?? 0) / 1000]],
  );
  m.gauge('v2c_time_quality', '1 for the quality of the time records get now', ['quality'], () => [
    [{ quality: corrector.quality() === TimeQuality.Synced ? 'synced' : 'unsynced' }, 1],
  ]);
  m.gauge(
    'v2c_time_reference_error_seconds',
    'Error bound of the best time reference now, drift included (-1 before one)',
    [],
    () => [[{}, corrector.reference === null ? -1 : corrector.reference.errorMs / 1000]],
  );
  m.counter(
    'v2c_time_references_refused_total',
    'Time references refused: implausible (outside 2025-2100) or disagreeing with the reference held',
    ['reason'],
    () => [...corrector.counters.refused].map(([reason, n]) => [{ reason }, n]),
  );
  m.counter(
    'v2c_time_outside_window_total',
    'Records sent with a corrected time more than the window from true time (flagged, not dropped)',
    [],
    () => [[{}, corrector.counters.flagged]],
  );
}
