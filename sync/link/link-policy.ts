// What the outbox may send over the link the vehicle has now (DESIGN §5 "Links"): a pure function
// of the link, the ignition, the backlog and the cellular bytes used today.
//
//   trusted WiFi (allow-listed SSID), or any WiFi while parked -> offload: everything, large batches
//   cellular (or WiFi that is neither)                         -> P0 and P1 at once; P2 in batches
//                                                                 while the day's budget lasts
//   no link                                                    -> store
//   link unknown (no nmcli, no configured modem interface)     -> send as before: all priorities,
//                                                                 no budget (we cannot tell the cost)

export type LinkKind = 'wifi' | 'cellular' | 'none' | 'unknown';

export interface LinkState {
  kind: LinkKind;
  /** The SSID on WiFi. */
  ssid?: string;
  /** The network interface carrying the link. */
  iface?: string;
}

export type LinkMode = 'offload' | 'realtime' | 'store';

export interface LinkDecision {
  mode: LinkMode;
  /** May P2 (bulk history) go out now? */
  sendBulk: boolean;
  /** Bytes sent now count towards the daily cellular budget. */
  metered: boolean;
  /** Records per batch. */
  batchMaxRecords: number;
  /** Send waiting records as batches at once, without waiting for a batch to fill or age. */
  drainAll: boolean;
  reason: string;
}

export interface PolicySettings {
  allowedSsids: readonly string[];
  /** Ignition off this long = parked. */
  parkedAfterMs: number;
  dailyCellularBudgetBytes: number;
  batchMaxRecords: number;
  offloadBatchRecords: number;
}

export interface PolicyInput {
  link: LinkState;
  /** null when there is no ignition line (no GPIO): never parked. */
  ignitionOn: boolean | null;
  /** How long the ignition has been off (0 while on). */
  ignitionOffForMs: number;
  backlogRecords: number;
  cellularBytesToday: number;
}

export function decideLink(input: PolicyInput, s: PolicySettings): LinkDecision {
  const parked = input.ignitionOn === false && input.ignitionOffForMs >= s.parkedAfterMs;
  const { link } = input;
  if (link.kind === 'none')
    return {
      mode: 'store',
      sendBulk: false,
      metered: false,
      batchMaxRecords: s.batchMaxRecords,
      drainAll: false,
      reason: 'no link: storing',
    };
  if (link.kind === 'unknown')
    return {
      mode: 'realtime',
      sendBulk: true,
      metered: false,
      batchMaxRecords: s.batchMaxRecords,
      drainAll: false,
      reason: 'link unknown: sending as configured, unmetered',
    };
  if (link.kind === 'wifi') {
    const trusted = link.ssid !== undefined && s.allowedSsids.includes(link.ssid);
    if (trusted || parked) {
      const why = trusted ? `allow-listed WiFi "${link.ssid ?? ''}"` : `parked on WiFi "${link.ssid ?? ''}"`;
      return {
        mode: 'offload',
        sendBulk: true,
        metered: false,
        batchMaxRecords: s.offloadBatchRecords,
        drainAll: true,
        reason: `${why}: offloading ${input.backlogRecords} records`,
      };
    }
  }
  const withinBudget = input.cellularBytesToday < s.dailyCellularBudgetBytes;
  const via = link.kind === 'wifi' ? `untrusted WiFi "${link.ssid ?? ''}" (metered like cellular)` : 'cellular';
  return {
    mode: 'realtime',
    sendBulk: withinBudget,
    metered: true,
    batchMaxRecords: s.batchMaxRecords,
    drainAll: false,
    reason: withinBudget
      ? `${via}: P0/P1 now, P2 in batches`
      : `${via}: daily budget of ${s.dailyCellularBudgetBytes} bytes used; P2 waits`,
  };
}
