// The device certificate's metrics: days to expiry and renewals by outcome.
import type { MetricsRegistry } from '../core/metrics-registry.js';
import type { CertificateLifecycle } from './certificate-lifecycle.js';

export function registerCertificateMetrics(m: MetricsRegistry, certificate: CertificateLifecycle): void {
  m.gauge('v2c_certificate_expiry_days', 'Days until the device certificate expires (negative: expired)', [], () => [
    [{}, Math.round(certificate.daysToExpiry() * 100) / 100],
  ]);
  m.counter('v2c_certificate_renewals_total', 'Certificate renewals by outcome', ['result'], () =>
    Object.entries(certificate.counters).map(([result, n]): [Record<string, string>, number] => [
      { result },
      Number(n),
    ]),
  );
}
