// Makes the J1939 reference truck's recorded drive (drivers/reference-truck/drive.log.gz) from a
// small model and a seeded random source: the common PGNs at their J1939-71 rates, each ECU's DM1
// every second (multi-packet BAM when it has two or more faults), a service tool's RTS/CTS request,
// an aborted transfer and a lost BAM packet. `node dist/bench/generate-truck.js [OUT]`.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseDbc } from '../drivers/dbc/parser.js';
import { encodeMessage } from '../drivers/dbc/encoder.js';
import { formatCandumpLog } from '../drivers/candump.js';
import type { DbcMessage } from '../drivers/dbc/model.js';
import { projectRoot } from '../core/project-root.js';
import { mulberry32 } from './rig/seeded-random.js';
import { writeGzippedTrace } from './rig/write-trace.js';

const DURATION_S = 600;
const START_WALL_S = Date.UTC(2026, 3, 2, 5, 10, 0) / 1000;
/** Target speed (km/h) from each time (s) on: yard, town, motorway, roadworks, motorway, exit, depot. */
const PROFILE: ReadonlyArray<readonly [number, number]> = [
  [0, 0],
  [30, 40],
  [90, 85],
  [250, 88],
  [330, 60],
  [400, 85],
  [520, 30],
  [570, 0],
];
const ENGINE = 0x00;
const TRANSMISSION = 0x03;
const BRAKES = 0x0b;
const SERVICE_TOOL = 0xf9;
/** DBC message, its period (ms) and sender. */
const SCHEDULE: ReadonlyArray<readonly [string, number, number]> = [
  ['EEC1', 20, ENGINE],
  ['CCVS1', 100, ENGINE],
  ['LFE1', 100, ENGINE],
  ['ET1', 1000, ENGINE],
  ['DD1', 1000, 0x17],
  ['VDHR', 1000, 0xee],
  ['VEP1', 1000, ENGINE],
];

interface Dtc {
  spn: number;
  fmi: number;
  oc: number;
}

/** Each ECU's active faults and lamps (MIL, red, amber, protect: 1 = on) at time t (s). */
function faults(sa: number, t: number, coolant: number): { lamps: number[]; dtcs: Dtc[] } {
  const dtcs: Dtc[] = [];
  const lamps = [0, 0, 0, 0];
  if (sa === ENGINE) {
    if (coolant >= 100) dtcs.push({ spn: 110, fmi: 0, oc: 1 });
    if (t >= 240 && t < 330) dtcs.push({ spn: 100, fmi: 1, oc: 2 });
    if (t >= 480) dtcs.push({ spn: 3226, fmi: 2, oc: 1 });
    if (t >= 480) lamps[0] = 1;
    if (t >= 240 && t < 330) lamps[1] = 1;
    if (coolant >= 100) lamps[2] = 1;
  } else if (sa === TRANSMISSION && t >= 300) {
    dtcs.push({ spn: 177, fmi: 0, oc: 1 });
    lamps[2] = 1;
  } else if (sa === BRAKES && t >= 420) {
    dtcs.push({ spn: 789, fmi: 5, oc: 3 }, { spn: 790, fmi: 5, oc: 3 }, { spn: 1808, fmi: 14, oc: 1 });
    lamps[2] = 1;
  }
  return { lamps, dtcs };
}

/** The DM1 payload (J1939-73): lamp byte, flash byte, 4 bytes per DTC; one all-zero slot when none. */
function dm1Payload({ lamps, dtcs }: { lamps: number[]; dtcs: Dtc[] }): Uint8Array {
  const status =
    ((lamps[0] as number) << 6) | ((lamps[1] as number) << 4) | ((lamps[2] as number) << 2) | (lamps[3] as number);
  const slots = dtcs.length === 0 ? [{ spn: 0, fmi: 0, oc: 0 }] : dtcs;
  const out = new Uint8Array(Math.max(8, 2 + 4 * slots.length)).fill(0xff);
  out[0] = status;
  slots.forEach(({ spn, fmi, oc }, i) => {
    out.set([spn & 0xff, (spn >> 8) & 0xff, ((spn >> 16) << 5) | fmi, oc], 2 + 4 * i);
  });
  return out;
}

const cmId = (sa: number, da: number): number => 0x1cec0000 | (da << 8) | sa;
const dtId = (sa: number, da: number): number => 0x1ceb0000 | (da << 8) | sa;

function controlFrame(control: number, a: number, b: number, c: number, pgn: number): Uint8Array {
  return Uint8Array.of(control, a & 0xff, (a >> 8) & 0xff, b, c, pgn & 0xff, (pgn >> 8) & 0xff, pgn >> 16);
}

/** The data packets of a transfer: sequence number, 7 bytes, 0xFF after the end. */
function dataPackets(data: Uint8Array): Uint8Array[] {
  const packets: Uint8Array[] = [];
  for (let seq = 1; (seq - 1) * 7 < data.length; seq++) {
    const p = new Uint8Array(8).fill(0xff);
    p[0] = seq;
    p.set(data.subarray((seq - 1) * 7, seq * 7), 1);
    packets.push(p);
  }
  return packets;
}

interface Emitted {
  ms: number;
  id: number;
  data: Uint8Array;
}

/** Yields the drive as `candump -L` lines, in time order. */
export function* generateTruckDrive(seed = 20260402): Generator<string> {
  const dbc = parseDbc(
    readFileSync(join(projectRoot(), 'drivers', 'reference-truck', 'v2c-reference-truck.dbc'), 'utf8'),
  );
  const byName = new Map(dbc.messages.map((m) => [m.name, m] as [string, DbcMessage]));
  const rnd = mulberry32(seed);
  const noise = (amp: number): number => (rnd() * 2 - 1) * amp;
  const out: Emitted[] = [];
  const emit = (ms: number, id: number, data: Uint8Array): void => {
    out.push({ ms: ms + 0.3 + noise(0.2), id, data });
  };
  let speed = 0;
  let coolant = 24;
  let fuel = 71.2;
  let odometerKm = 412_345.6;
  let tripKm = 0;
  for (let tMs = 0; tMs < DURATION_S * 1000; tMs += 10) {
    const t = tMs / 1000;
    let target = 0;
    for (const [from, v] of PROFILE) if (t >= from) target = v;
    speed = Math.max(0, speed + Math.max(-5, Math.min(2, target - speed)) * 0.01);
    const overheating = t >= 180 && t < 260;
    coolant += ((overheating ? 104 : 86) - coolant) * 0.01 * (overheating ? 0.05 : 0.012);
    const rpm = speed < 2 ? 650 + noise(10) : 900 + speed * 11 + noise(15);
    const torque = speed < 2 ? 8 : Math.min(95, 20 + Math.max(0, target - speed) * 6 + speed * 0.3);
    const fuelRate = (rpm * torque) / 2600;
    fuel -= (fuelRate / 3600 / 4) * 0.01;
    odometerKm += (speed / 3600) * 0.01;
    tripKm += (speed / 3600) * 0.01;
    for (const [name, period, sa] of SCHEDULE) {
      if (tMs % period !== 0) continue;
      const msg = byName.get(name) as DbcMessage;
      const values: Record<string, Record<string, number>> = {
        EEC1: {
          EngTorqueMode: 0,
          ActualEngPercentTorque: torque,
          EngSpeed: rpm,
          SrcAddrssOfCntrllngDvcFrEngCtrl: 0,
          EngStarterMode: 15,
        },
        CCVS1: {
          ParkingBrakeSwitch: speed < 0.5 ? 1 : 0,
          WheelBasedVehicleSpeed: speed,
          CruiseCtrlActive: speed > 80 ? 1 : 0,
          BrakeSwitch: target < speed - 1 ? 1 : 0,
        },
        LFE1: {
          EngFuelRate: fuelRate,
          EngInstantaneousFuelEconomy: speed > 2 ? Math.min(125, speed / Math.max(fuelRate, 0.1)) : 0,
          EngThrottleValve1Pos1: Math.min(100, torque),
        },
        ET1: { EngCoolantTemp: Math.round(coolant), EngFuelTemp1: 30, EngOilTemp1: coolant + 6 + noise(0.5) },
        DD1: { FuelLevel1: fuel },
        VDHR: { HiResTotalVehicleDistance: odometerKm, HiResTripDistance: tripKm },
        VEP1: {
          NetBatteryCurrent: 4 + noise(1),
          AlternatorCurrent: 28,
          ChargingSystemPotential: 28.1 + noise(0.05),
          BatteryPotentialPowerInput1: 27.9 + noise(0.05),
          KeyswitchBatteryPotential: 27.8,
        },
      };
      const id = (msg.id & 0x1fffff00) | sa;
      emit(tMs + (sa % 7), id, encodeMessage(msg, values[name] as Record<string, number>));
    }
    if (tMs % 1000 === 500) {
      for (const sa of [ENGINE, TRANSMISSION, BRAKES]) {
        const payload = dm1Payload(faults(sa, t, coolant));
        const at = tMs + sa * 3;
        if (payload.length === 8) {
          emit(at, 0x18feca00 | sa, payload);
          continue;
        }
        // Two or more faults: BAM, data packets 50 ms apart (J1939-21: 50-200 ms).
        const packets = dataPackets(payload);
        emit(at, cmId(sa, 0xff), controlFrame(32, payload.length, packets.length, 0xff, 0xfeca));
        packets.forEach((p, i) => {
          // One packet lost on the bus (the brakes' first BAM packet at 450.5 s): a sequence error.
          if (!(sa === BRAKES && tMs === 450_500 && i === 0)) emit(at + 50 * (i + 1), dtId(sa, 0xff), p);
        });
      }
    }
    if (tMs === 150_000 || tMs === 350_000) {
      // A service tool asks the engine for its component identification (PGN 65259); the answer
      // is 35 bytes, so RTS/CTS, 2 packets per CTS. The second time the tool aborts after one block.
      const answer = Buffer.from('V2C*TRK-ECU-7*SN00412345*V2CREFTRK*', 'latin1');
      const packets = dataPackets(answer);
      let at = tMs + 3;
      emit(at, 0x18ea0000 | (ENGINE << 8) | SERVICE_TOOL, Uint8Array.of(0xeb, 0xfe, 0x00));
      emit((at += 20), cmId(ENGINE, SERVICE_TOOL), controlFrame(16, answer.length, packets.length, 2, 0xfeeb));
      for (let next = 1; next <= packets.length; next += 2) {
        emit((at += 10), cmId(SERVICE_TOOL, ENGINE), controlFrame(17, 2 | (next << 8), 0xff, 0xff, 0xfeeb));
        for (const p of packets.slice(next - 1, next + 1)) emit((at += 5), dtId(ENGINE, SERVICE_TOOL), p);
        if (tMs === 350_000) {
          emit((at += 10), cmId(SERVICE_TOOL, ENGINE), controlFrame(255, 0xff02, 0xff, 0xff, 0xfeeb));
          break;
        }
      }
      if (tMs === 150_000)
        emit((at += 10), cmId(SERVICE_TOOL, ENGINE), controlFrame(19, answer.length, packets.length, 0xff, 0xfeeb));
    }
  }
  out.sort((a, b) => a.ms - b.ms);
  for (const e of out) {
    const tWall = START_WALL_S + e.ms / 1000;
    const frame = {
      bus: 'can0',
      id: e.id,
      extended: true,
      rtr: false,
      fd: false,
      brs: false,
      error: false,
      data: e.data,
      tsMono: 0,
      tsWall: tWall,
    };
    yield formatCandumpLog(frame, tWall);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url))
  await writeGzippedTrace(
    generateTruckDrive(),
    process.argv[2] ?? join(projectRoot(), 'drivers', 'reference-truck', 'drive.log.gz'),
  );
