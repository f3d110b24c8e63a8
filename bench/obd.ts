// `npm run bench -- obd`: the default OBD-II polling against the simulated car ECUs through a socat
// pty, in real time: each PID's answered rate against the rate asked (the baseline: the config),
// requests per second against the limit, and the bus load the polling causes.
import { referenceVehicleConfig, referenceVehicleTrace } from '../core/config.js';
import { systemClock } from '../core/clock.js';
import { SlcanSerialSource } from '../drivers/slcan-serial-source.js';
import { ObdPoller } from '../gateway/obd-poller.js';
import { openPtyPair } from './rig/pty-pair.js';
import { spawnSimulator } from './rig/simulator-process.js';

const SECONDS = 45;
const BITRATE = 500_000;

/** Bits on the wire for a classic frame of `n` data bytes, worst-case bit stuffing (Davis et al. 2007). */
function frameBits(n: number, extended: boolean): number {
  const g = extended ? 54 : 34;
  return 8 * n + g + 13 + Math.floor((g + 8 * n - 1) / 4) + 3;
}

export async function obdSection(): Promise<void> {
  console.log(
    `\nobd: default OBD-II polling of the simulated car (engine + slow transmission ECU) for ${SECONDS} s, real time`,
  );
  const pty = await openPtyPair();
  const simulator = await spawnSimulator(pty.adapterEnd, 1, systemClock, referenceVehicleTrace('obd'), ['--obd']);
  const config = referenceVehicleConfig({ mqttUrl: 'mqtt://127.0.0.1:1', vehicle: 'obd', port: pty.gatewayEnd });
  const serial = new SlcanSerialSource(
    {
      path: pty.gatewayEnd,
      bitrate: BITRATE,
      baudRate: config.can.baudRate,
      bus: 'can0',
      watchdogMs: config.can.watchdogMs,
      reopenDelaysMs: config.can.reopenDelaysMs,
      readIntervalMs: config.can.readIntervalMs,
    },
    systemClock,
  );
  const poller = new ObdPoller(config.obd, serial, systemClock, () => undefined);
  let received = 0;
  serial.frames.subscribe(() => received++);
  serial.start();
  poller.start(serial.frames);
  // Rates count from the end of discovery (its first second asks more than the steady state).
  while (poller.phase !== 'polling') await systemClock.sleep(20);
  const from = new Map([...poller.counters.perPid].map(([pid, c]) => [pid, c.answers]));
  // The window starts with polling: what discovery asked is not counted.
  const requests0 = poller.counters.requests;
  const sent0 = serial.counters.sent;
  const received0 = received;
  const started = performance.now();
  await systemClock.sleep(SECONDS * 1000);
  const seconds = (performance.now() - started) / 1000;
  const rows: string[][] = [];
  for (const { pid, intervalMs } of config.obd.pids) {
    const n = (poller.counters.perPid.get(pid)?.answers ?? 0) - (from.get(pid) ?? 0);
    // Every PID is asked at the start of polling, then once per interval.
    const expected = 1 + Math.floor((SECONDS * 1000) / intervalMs);
    const supported = [...poller.supported.values()].some((s) => s.has(pid));
    const hex = `0x${pid.toString(16).toUpperCase().padStart(2, '0')}`;
    rows.push([
      hex,
      `${intervalMs / 1000} s`,
      String(expected),
      supported ? String(n) : 'not supported',
      supported ? `${((n / expected) * 100).toFixed(0)} %` : '-',
    ]);
  }
  const requestRate = (poller.counters.requests - requests0) / seconds;
  const framesOut = (serial.counters.sent - sent0) / seconds;
  const framesIn = (received - received0) / seconds;
  const load = ((framesOut + framesIn) * frameBits(8, false)) / BITRATE;
  console.log(`  | PID | interval | answers due in ${SECONDS} s | answered | answered / due |`);
  console.log('  | --- | --- | --- | --- | --- |');
  for (const r of rows) console.log(`  | ${r.join(' | ')} |`);
  console.log(
    `  requests ${requestRate.toFixed(2)}/s (limit ${config.obd.maxRequestsPerSecond}/s), timeouts ${poller.counters.timeouts}, refusals ${JSON.stringify(poller.counters.negative)}`,
  );
  console.log(
    `  bus: ${framesOut.toFixed(1)} frames/s out, ${framesIn.toFixed(1)} in, ${frameBits(8, false)} bits each at worst-case stuffing = ${(load * 100).toFixed(2)} % of ${BITRATE / 1000} kbit/s`,
  );
  poller.stop();
  await serial.stop();
  simulator.stop();
  await pty.close();
}
