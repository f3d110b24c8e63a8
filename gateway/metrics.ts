// Prometheus endpoint (loopback by default). Counters are read from the stages' own counter
// objects at scrape time, so the hot path keeps plain integer increments.
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { MetricSample as Sample, MetricsRegistry } from '../core/metrics-registry.js';

export class GatewayMetrics implements MetricsRegistry {
  readonly registry = new Registry();
  readonly publishLatency: Histogram;
  private server: Server | null = null;

  constructor() {
    this.publishLatency = new Histogram({
      name: 'v2c_telemetry_latency_seconds',
      help: 'Time from PUBLISH to PUBACK',
      labelNames: ['topic'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10],
      registers: [this.registry],
    });
  }

  /** A counter whose value is read from `read` at each scrape. */
  counter(name: string, help: string, labelNames: string[], read: () => Sample[]): void {
    new Counter({
      name,
      help,
      labelNames,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [labels, value] of read()) this.inc(labels, value);
      },
    });
  }

  /** A gauge whose value is read from `read` at each scrape. */
  gauge(name: string, help: string, labelNames: string[], read: () => Sample[] | Promise<Sample[]>): void {
    new Gauge({
      name,
      help,
      labelNames,
      registers: [this.registry],
      async collect() {
        this.reset();
        for (const [labels, value] of await read()) this.set(labels, value);
      },
    });
  }

  async text(): Promise<string> {
    return this.registry.metrics();
  }

  /** Serves /metrics; port 0 in the config means no endpoint. Resolves with the bound port. */
  async listen(host: string, port: number): Promise<number> {
    const server = createServer((req, res) => {
      if (req.url !== '/metrics') {
        res.writeHead(404).end('try /metrics\n');
        return;
      }
      this.text().then(
        (body) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(body),
        (err: Error) => res.writeHead(500).end(err.message),
      );
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    const address = server.address();
    return typeof address === 'object' && address !== null ? address.port : port;
  }

  async close(): Promise<void> {
    const server = this.server;
    if (server !== null) await new Promise((resolve) => server.close(resolve));
  }
}
