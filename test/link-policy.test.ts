// The link policy, table-driven: link × ignition × budget -> what may be sent.
import t from 'tap';
import { decideLink, type LinkDecision, type PolicyInput } from '../sync/link/link-policy.js';

const settings = {
  allowedSsids: ['Depot-5G'],
  parkedAfterMs: 300_000,
  dailyCellularBudgetBytes: 1_000_000,
  batchMaxRecords: 50,
  offloadBatchRecords: 500,
};
const base: PolicyInput = {
  link: { kind: 'cellular', iface: 'wwan0' },
  ignitionOn: true,
  ignitionOffForMs: 0,
  backlogRecords: 120,
  cellularBytesToday: 0,
};

const rows: [
  string,
  Partial<PolicyInput>,
  Pick<LinkDecision, 'mode' | 'sendBulk' | 'metered' | 'batchMaxRecords' | 'drainAll'>,
  RegExp,
][] = [
  [
    'cellular, budget left',
    {},
    { mode: 'realtime', sendBulk: true, metered: true, batchMaxRecords: 50, drainAll: false },
    /cellular: P0\/P1 now, P2 in batches/,
  ],
  [
    'cellular, budget used',
    { cellularBytesToday: 1_000_000 },
    { mode: 'realtime', sendBulk: false, metered: true, batchMaxRecords: 50, drainAll: false },
    /daily budget of 1000000 bytes used; P2 waits/,
  ],
  [
    'cellular, parked: still metered',
    { ignitionOn: false, ignitionOffForMs: 3_600_000 },
    { mode: 'realtime', sendBulk: true, metered: true, batchMaxRecords: 50, drainAll: false },
    /cellular/,
  ],
  [
    'allow-listed WiFi while driving',
    { link: { kind: 'wifi', ssid: 'Depot-5G' } },
    { mode: 'offload', sendBulk: true, metered: false, batchMaxRecords: 500, drainAll: true },
    /allow-listed WiFi "Depot-5G": offloading 120 records/,
  ],
  [
    'allow-listed WiFi, budget used: offload anyway',
    { link: { kind: 'wifi', ssid: 'Depot-5G' }, cellularBytesToday: 5_000_000 },
    { mode: 'offload', sendBulk: true, metered: false, batchMaxRecords: 500, drainAll: true },
    /offloading/,
  ],
  [
    'other WiFi while driving: metered like cellular',
    { link: { kind: 'wifi', ssid: 'PhoneHotspot' } },
    { mode: 'realtime', sendBulk: true, metered: true, batchMaxRecords: 50, drainAll: false },
    /untrusted WiFi "PhoneHotspot"/,
  ],
  [
    'other WiFi, ignition off 4 min: not parked yet',
    { link: { kind: 'wifi', ssid: 'Cafe' }, ignitionOn: false, ignitionOffForMs: 240_000 },
    { mode: 'realtime', sendBulk: true, metered: true, batchMaxRecords: 50, drainAll: false },
    /untrusted WiFi/,
  ],
  [
    'other WiFi, parked 5 min: offload',
    { link: { kind: 'wifi', ssid: 'Cafe' }, ignitionOn: false, ignitionOffForMs: 300_000 },
    { mode: 'offload', sendBulk: true, metered: false, batchMaxRecords: 500, drainAll: true },
    /parked on WiFi "Cafe"/,
  ],
  [
    'other WiFi, no ignition line: never parked',
    { link: { kind: 'wifi', ssid: 'Cafe' }, ignitionOn: null, ignitionOffForMs: 0 },
    { mode: 'realtime', sendBulk: true, metered: true, batchMaxRecords: 50, drainAll: false },
    /untrusted/,
  ],
  [
    'no link',
    { link: { kind: 'none' } },
    { mode: 'store', sendBulk: false, metered: false, batchMaxRecords: 50, drainAll: false },
    /no link: storing/,
  ],
  [
    'no link, parked',
    { link: { kind: 'none' }, ignitionOn: false, ignitionOffForMs: 9e9 },
    { mode: 'store', sendBulk: false, metered: false, batchMaxRecords: 50, drainAll: false },
    /storing/,
  ],
  [
    'link unknown (no nmcli, no modem interface)',
    { link: { kind: 'unknown' } },
    { mode: 'realtime', sendBulk: true, metered: false, batchMaxRecords: 50, drainAll: false },
    /link unknown/,
  ],
];

for (const [name, input, expected, reason] of rows) {
  const d = decideLink({ ...base, ...input }, settings);
  t.same(
    {
      mode: d.mode,
      sendBulk: d.sendBulk,
      metered: d.metered,
      batchMaxRecords: d.batchMaxRecords,
      drainAll: d.drainAll,
    },
    expected,
    name,
  );
  t.match(d.reason, reason, `${name}: reason`);
}
