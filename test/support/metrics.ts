// An OpenTelemetry MeterProvider with a pull reader, for reading the library's metrics in tests.
import { MeterProvider, MetricReader, type DataPoint, type Histogram, type MetricData } from '@opentelemetry/sdk-metrics';

class PullReader extends MetricReader {
  protected async onShutdown(): Promise<void> {}
  protected async onForceFlush(): Promise<void> {}
}

export interface TestMeter {
  provider: MeterProvider;
  /** Every metric collected now, by name. */
  collect(): Promise<Map<string, MetricData>>;
  close(): Promise<void>;
}

export function testMeter(): TestMeter {
  const reader = new PullReader();
  const provider = new MeterProvider({ readers: [reader] });
  return {
    provider,
    async collect() {
      const { resourceMetrics } = await reader.collect();
      const byName = new Map<string, MetricData>();
      for (const scope of resourceMetrics.scopeMetrics) for (const metric of scope.metrics) byName.set(metric.descriptor.name, metric);
      return byName;
    },
    close: () => provider.shutdown(),
  };
}

/** The data points of `name` whose attributes include `match`. */
export function points(metrics: Map<string, MetricData>, name: string, match: Record<string, string> = {}): DataPoint<unknown>[] {
  const metric = metrics.get(name);
  if (!metric) return [];
  return (metric.dataPoints as DataPoint<unknown>[]).filter((p) => Object.entries(match).every(([k, v]) => p.attributes[k] === v));
}

/** Sum of a counter's points matching `match`. */
export function counted(metrics: Map<string, MetricData>, name: string, match: Record<string, string> = {}): number {
  return points(metrics, name, match).reduce((sum, p) => sum + (p.value as number), 0);
}

/** Number of recordings of a histogram matching `match`. */
export function recorded(metrics: Map<string, MetricData>, name: string, match: Record<string, string> = {}): number {
  return points(metrics, name, match).reduce((sum, p) => sum + (p.value as Histogram).count, 0);
}
