// What a part of the gateway needs to publish its counters: each registers its own metrics next to
// the code that counts (gateway/metrics.ts serves them as Prometheus text). Values are read at
// scrape time, so the hot path keeps plain integer increments.

/** One series of a metric: its labels and its value now. */
export type MetricSample = [Record<string, string>, number];

export interface MetricsRegistry {
  /** A counter whose value is read from `read` at each scrape. */
  counter(name: string, help: string, labelNames: string[], read: () => MetricSample[]): void;
  /** A gauge whose value is read from `read` at each scrape. */
  gauge(name: string, help: string, labelNames: string[], read: () => MetricSample[] | Promise<MetricSample[]>): void;
}
