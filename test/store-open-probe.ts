// Child process for the bad-disk tests: opens the gateway's store in DIR (possibly as another user),
// stores one record and prints what happened as JSON.
import { SampleRecords } from '../bench/rig/sample-records.js';
import { TelemetryStore } from '../sync/store/telemetry-store.js';

const dir = process.argv[2];
if (!dir) throw new Error('usage: store-open-probe DIR');
const log: string[] = [];
const store = await TelemetryStore.open({ kind: 'sqlite', dir }, (m) => log.push(m));
const stored = await store.insert(new SampleRecords(7).record(0), Date.now());
const result = {
  degraded: store.counters.degraded,
  movedAside: store.counters.movedAside,
  stored,
  count: await store.count(),
  log,
};
await store.close();
process.stdout.write(`${JSON.stringify(result)}\n`);
