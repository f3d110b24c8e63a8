// The link's metrics: the link the gateway has, what the policy allows, the cellular budget, ignition.
import type { MetricsRegistry } from '../../core/metrics-registry.js';
import type { LinkController } from './link-controller.js';

export function registerLinkMetrics(m: MetricsRegistry, link: LinkController): void {
  m.gauge('v2c_link_state', '1 for the link the gateway has now', ['kind'], () => [[{ kind: link.link.kind }, 1]]);
  m.gauge('v2c_link_mode', '1 for what the link policy allows now', ['mode'], () => [[{ mode: link.current.mode }, 1]]);
  m.gauge('v2c_cellular_bytes_today', 'Bytes published over a metered link this UTC day', [], () => [
    [{}, link.budget.usedToday()],
  ]);
  m.gauge('v2c_cellular_budget_bytes', 'Daily cellular byte budget for P2', [], () => [[{}, link.budget.budgetBytes]]);
  if (link.ignition !== null)
    m.gauge('v2c_ignition_on', '1 while the ignition is on', [], () => [[{}, link.ignition?.isOn === true ? 1 : 0]]);
}
