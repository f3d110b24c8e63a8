// The outbox's metrics: what it published and how, what it holds back, and the drain's pacing.
import type { MetricsRegistry } from '../../core/metrics-registry.js';
import type { DrainPacer } from '../drain-pacer.js';
import type { OutboxSender } from '../outbox-sender.js';

export function registerOutboxMetrics(
  m: MetricsRegistry,
  sender: OutboxSender,
  pacer: DrainPacer,
  region: string,
): void {
  m.counter(
    'v2c_telemetry_publish_total',
    'Telemetry messages published by path and outcome',
    ['region', 'topic', 'status'],
    () => [
      [{ region, topic: 'individual', status: 'sent' }, sender.counters.singles],
      [{ region, topic: 'batch', status: 'sent' }, sender.counters.batches],
      [{ region, topic: 'offload', status: 'sent' }, sender.counters.uploads],
      [{ region, topic: 'any', status: 'failure' }, sender.counters.failed],
    ],
  );
  m.counter('v2c_telemetry_records_acked_total', 'Records whose PUBACK arrived', ['topic'], () => [
    [
      { topic: 'individual' },
      sender.counters.acked - sender.counters.batchAckedRecords - sender.counters.uploadedRecords,
    ],
    [{ topic: 'batch' }, sender.counters.batchAckedRecords],
    [{ topic: 'offload' }, sender.counters.uploadedRecords],
  ]);
  m.gauge('v2c_batch_compression_ratio', 'Compressed / uncompressed bytes of the batches sent', [], () => [
    [{}, sender.counters.batchPlainBytes === 0 ? 0 : sender.counters.batchWireBytes / sender.counters.batchPlainBytes],
  ]);
  m.counter('v2c_batch_splits_total', "Batches split to fit the broker's maximum packet size", [], () => [
    [{}, sender.counters.splits],
  ]);
  m.counter('v2c_drain_paced_total', 'Times a batch was held back to keep CPU for live records', [], () => [
    [{}, pacer.counters.holds],
  ]);
  m.counter(
    'v2c_security_events_total',
    'Publishes the broker refused as not authorised (PUBACK 0x87)',
    ['kind'],
    () => [[{ kind: 'publish_not_authorised' }, sender.counters.notAuthorised]],
  );
  m.gauge(
    'v2c_parked_records',
    "Records kept but not sent: their topic is not authorised, or they exceed this broker's maximum packet size",
    ['reason'],
    () => {
      const parked = sender.parkedByReason;
      return [
        [{ reason: 'not_authorised' }, parked.notAuthorised],
        [{ reason: 'exceeds_broker_packet_size' }, parked.exceedsBrokerPacketSize],
      ];
    },
  );
  m.gauge(
    'v2c_unremoved_records',
    'Records delivered or dead-lettered that the store failed to remove: not sent again, removal retried',
    [],
    () => [[{}, sender.unremovedRecords]],
  );
  m.counter(
    'v2c_publish_resends_total',
    'Records published again with DUP (after a lost connection or a PUBACK timeout)',
    [],
    () => [[{}, sender.counters.resends]],
  );
}
