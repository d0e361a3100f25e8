/**
 * The availability objective (`--slo`) as a gauge, so burn-rate alert rules can
 * read it next to the error ratio instead of hard-coding it. Registered on the
 * per-instance registry passed in, never on prom-client's global one.
 */
import { Gauge, type Registry } from 'prom-client';

export const SLO_OBJECTIVE_METRIC = 'metrics_proxy_slo_objective_ratio';
export const DEFAULT_SLO_OBJECTIVE = 0.999;

export function createSloMetric(registry: Registry, objective: number): void {
  const gauge = new Gauge({
    name: SLO_OBJECTIVE_METRIC,
    help: 'Availability objective (--slo) that the burn-rate alert rules compare the error ratio against.',
    registers: [registry],
    // Every worker of a cluster has the same objective: a sum over workers would be meaningless.
    aggregator: 'first',
  });
  gauge.set(objective);
}
