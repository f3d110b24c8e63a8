// The store's metrics: its depth, what it dropped or could not write, its file's state, dead letters.
import type { MetricsRegistry } from '../../core/metrics-registry.js';
import type { DeadLetterFile } from './dead-letter.js';
import type { TelemetryStore } from './telemetry-store.js';

export function registerStoreMetrics(
  m: MetricsRegistry,
  store: TelemetryStore,
  deadLetters: DeadLetterFile,
  vehicleId: string,
): void {
  m.counter('v2c_dead_letter_total', 'Records moved to the dead-letter file', ['reason'], () =>
    [...deadLetters.counts].map(([reason, n]) => [{ reason }, n]),
  );
  m.gauge('v2c_local_buffer_depth', 'Records stored and not yet acknowledged', ['vehicle_id'], async () => [
    [{ vehicle_id: vehicleId }, await store.count()],
  ]);
  m.counter('v2c_dropped_total', 'Records dropped before delivery', ['priority', 'reason'], () =>
    store.counters.dropped.samples('priority', 'reason'),
  );
  m.counter('v2c_store_write_errors_total', 'Records the store could not write', [], () => [
    [{}, store.counters.writeErrors],
  ]);
  m.gauge(
    'v2c_store_degraded',
    '1 while records are kept in memory because the database cannot be used',
    ['reason'],
    () => [[{ reason: store.counters.degraded ?? 'none' }, store.counters.degraded === null ? 0 : 1]],
  );
  m.gauge('v2c_store_integrity', '1 for the state the database file check is in', ['state'], () => [
    [{ state: store.counters.integrity }, 1],
  ]);
  m.gauge('v2c_store_used_bytes', 'Bytes of live pages in the local database', [], () => [
    [{}, store.usedBytes() ?? 0],
  ]);
}
