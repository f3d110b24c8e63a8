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

/** Counts keyed by a pair of label values (`"<a>|<b>"`, e.g. priority and reason), read as one two-label counter. */
export class PairCounts extends Map<string, number> {
  add(a: string | number, b: string): void {
    const key = `${a}|${b}`;
    this.set(key, (this.get(key) ?? 0) + 1);
  }

  samples(labelA: string, labelB: string): MetricSample[] {
    return [...this].map(([key, n]) => {
      const [a = '', b = ''] = key.split('|');
      return [{ [labelA]: a, [labelB]: b }, n];
    });
  }
}
