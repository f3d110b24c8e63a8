// Makes the reference vehicle's recorded drive (drive.log.gz) from a small vehicle model and a
// seeded random source, so the trace is reproducible: `node dist/bench/generate-drive.js OUT`.
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

/** Target speed (km/h) from each time (s) on: idle, town, a red light, town, motorway, exit, stop. */
const PROFILE: Array<[number, number]> = [
  [0, 0],
  [45, 50],
  [120, 0],
  [150, 45],
  [240, 100],
  [270, 112],
  [360, 122],
  [450, 90],
  [500, 50],
  [560, 0],
];
const DURATION_S = 630;
const START_WALL_S = Date.UTC(2026, 2, 14, 7, 42, 10) / 1000;
const GEAR_RATIOS = [3.5, 2.1, 1.4, 1.0, 0.8, 0.65];
const GEAR_UP_KMH = [15, 30, 50, 70, 95];
const FINAL_DRIVE = 3.5;
const WHEEL_CIRCUMFERENCE_M = 2.0;
/** Messages and their periods in ms (10-100 Hz, as on a real powertrain bus). */
const SCHEDULE: Array<[string, number]> = [
  ['ECM_EngineStatus', 20],
  ['ABS_WheelSpeeds', 20],
  ['TCM_Transmission', 50],
  ['BMS_Battery12V', 100],
  ['ECM_Fuel', 100],
  ['IPC_Odometer', 100],
  ['TPMS_Status', 100],
  ['GNSS_Position', 100],
  ['GNSS_Status', 100],
  ['ECM_Diagnostics', 100],
];
const DTC_P0217 = 0x0217;

function targetSpeed(t: number): number {
  let v = 0;
  for (const [from, speed] of PROFILE) if (t >= from) v = speed;
  return v;
}

interface VehicleState {
  t: number;
  speed: number;
  accel: number;
  rpm: number;
  gear: number;
  coolant: number;
  transOil: number;
  fuel: number;
  battery: number;
  current: number;
  soc: number;
  odometer: number;
  trip: number;
  lat: number;
  lon: number;
  heading: number;
  tyreP: number[];
  tyreT: number[];
  dtc: number;
  mil: boolean;
  throttle: number;
  alive: number;
}

/** Yields the drive as `candump -L` lines, in time order. */
export function* generateDrive(seed = 20260314): Generator<string> {
  const dbc = parseDbc(readFileSync(join(projectRoot(), 'drivers', 'reference-vehicle', 'v2c-reference.dbc'), 'utf8'));
  const byName = new Map(dbc.messages.map((m) => [m.name, m] as [string, DbcMessage]));
  const rnd = mulberry32(seed);
  const noise = (amp: number): number => (rnd() * 2 - 1) * amp;
  const s: VehicleState = {
    t: 0,
    speed: 0,
    accel: 0,
    rpm: 0,
    gear: 7,
    coolant: 18,
    transOil: 18,
    fuel: 62.0,
    battery: 12.45,
    current: 0,
    soc: 82,
    odometer: 48213.7,
    trip: 0,
    lat: 48.1372,
    lon: 11.5756,
    heading: 72,
    tyreP: [230, 232, 228, 229],
    tyreT: [14, 14, 15, 14],
    dtc: 0,
    mil: false,
    throttle: 0,
    alive: 0,
  };
  const phase = SCHEDULE.map((_, i) => (i * 1.7) % 10);
  let tpmsIndex = 0;
  const dtMs = 10;
  for (let tick = 0; tick * dtMs < DURATION_S * 1000; tick++) {
    const tMs = tick * dtMs;
    step(s, tMs / 1000, dtMs / 1000, noise);
    const due: Array<[number, string]> = [];
    SCHEDULE.forEach(([name, period], i) => {
      if (tMs % period !== 0) return;
      const msg = byName.get(name) as DbcMessage;
      let values: Record<string, number>;
      if (name === 'TPMS_Status') {
        const k = tpmsIndex++ % 4;
        const suffix = ['FL', 'FR', 'RL', 'RR'][k] as string;
        values = {
          TyreIndex: k,
          [`TyrePressure${suffix}`]: s.tyreP[k] as number,
          [`TyreTemp${suffix}`]: s.tyreT[k] as number,
        };
      } else values = signalsOf(name, s, noise);
      const tWall = START_WALL_S + (tMs + (phase[i] as number) + noise(0.2)) / 1000;
      const frame = {
        bus: 'can0',
        id: msg.id,
        extended: msg.extended,
        rtr: false,
        fd: false,
        brs: false,
        error: false,
        data: encodeMessage(msg, values),
        tsMono: 0,
        tsWall: tWall,
      };
      due.push([tWall, formatCandumpLog(frame, tWall)]);
    });
    due.sort((a, b) => a[0] - b[0]);
    for (const [, line] of due) yield line;
  }
}

function step(s: VehicleState, t: number, dt: number, noise: (a: number) => number): void {
  s.t = t;
  const engineOn = t >= 1.0;
  const cranking = t >= 1.0 && t < 1.8;
  const target = targetSpeed(t);
  const diff = target - s.speed;
  const wanted = Math.max(-10.8, Math.min(8.5, diff * 0.8)); // km/h per s
  s.accel = wanted / 3.6;
  s.speed = Math.max(0, s.speed + wanted * dt);
  s.throttle = Math.max(0, Math.min(100, (wanted > 0 ? wanted * 9 : 0) + (s.speed > 1 ? 12 + s.speed * 0.12 : 0)));
  if (t < 40 || t >= 620) s.gear = 7;
  else if (s.speed < 0.5 && s.gear === 7) s.gear = 1;
  else {
    let g = 1;
    for (const up of GEAR_UP_KMH) if (s.speed >= up) g++;
    s.gear = g;
  }
  const coldIdle = 800 + Math.max(0, (60 - s.coolant) * 6);
  if (!engineOn) s.rpm = 0;
  else if (cranking) s.rpm = 180 + noise(20);
  else if (s.gear === 7 || s.speed < 8) s.rpm = coldIdle + noise(15);
  else {
    const wheelRpm = (s.speed / 3.6 / WHEEL_CIRCUMFERENCE_M) * 60;
    s.rpm = Math.max(coldIdle, wheelRpm * (GEAR_RATIOS[s.gear - 1] as number) * FINAL_DRIVE) + noise(10);
  }
  // Coolant warms towards the thermostat's 90 degC; a stuck thermostat overheats it on the motorway.
  const overheating = t >= 380 && t < 470;
  const coolantTarget = !engineOn ? 18 : overheating ? 112 : 90;
  s.coolant += (coolantTarget - s.coolant) * dt * (overheating ? 0.035 : 0.011 + s.throttle * 0.0001);
  s.transOil += ((engineOn ? 78 : 18) - s.transOil) * dt * 0.004;
  if (s.coolant >= 106 && s.dtc === 0) {
    s.dtc = DTC_P0217;
    s.mil = true;
  }
  s.fuel -= (engineOn ? 0.0009 + s.throttle * 0.00003 : 0) * dt;
  if (cranking) {
    s.battery = 10.4 + noise(0.08);
    s.current = -150 + noise(10);
  } else if (engineOn) {
    s.battery = 14.15 + noise(0.05);
    s.current = 3 + 17 * Math.exp(-(t - 1.8) / 60) + noise(0.5);
  } else {
    s.battery = 12.45 + noise(0.02);
    s.current = -2 + noise(0.2);
  }
  s.soc = Math.min(100, Math.max(0, s.soc + (s.current * dt) / 3600 / 0.7));
  const dKm = (s.speed / 3600) * dt;
  s.odometer += dKm;
  s.trip += dKm;
  s.heading = (s.heading + (s.speed > 5 ? Math.sin(t / 40) * 0.05 : 0) + 360) % 360;
  const rad = (s.heading * Math.PI) / 180;
  s.lat += (dKm * Math.cos(rad)) / 111.32;
  s.lon += (dKm * Math.sin(rad)) / (111.32 * Math.cos((s.lat * Math.PI) / 180));
  for (let k = 0; k < 4; k++) {
    s.tyreT[k] = (s.tyreT[k] as number) + (14 + s.speed * 0.15 - (s.tyreT[k] as number)) * dt * 0.003;
    s.tyreP[k] = [230, 232, 228, 229][k]! + ((s.tyreT[k] as number) - 14) * 0.6;
  }
}

function signalsOf(name: string, s: VehicleState, noise: (a: number) => number): Record<string, number> {
  // Wheel sensors read zero at standstill and jitter a little when rolling.
  const wheel = (): number => (s.speed > 0.5 ? s.speed + noise(0.05) : 0);
  switch (name) {
    case 'ECM_EngineStatus':
      s.alive = (s.alive + 1) % 16;
      return {
        EngineSpeed: Math.max(0, s.rpm),
        ThrottlePosition: s.throttle,
        EngineLoad: Math.min(100, s.throttle * 0.8 + (s.rpm > 0 ? 18 : 0)),
        CoolantTemp: s.coolant,
        MilOn: s.mil ? 1 : 0,
        AliveCounter: s.alive,
      };
    case 'ABS_WheelSpeeds':
      return { VehicleSpeed: s.speed, WheelSpeedFL: wheel(), WheelSpeedFR: wheel(), LongAccel: s.accel + noise(0.02) };
    case 'TCM_Transmission':
      return {
        GearPosition: s.gear,
        TransOilTemp: s.transOil,
        TorqueConverterLocked: s.gear >= 4 && s.gear <= 6 ? 1 : 0,
      };
    case 'BMS_Battery12V':
      return { Battery12V: s.battery, StateOfCharge: s.soc, BatteryCurrent: s.current };
    case 'ECM_Fuel':
      return { FuelLevel: s.fuel, FuelRate: s.rpm > 0 ? 0.6 + s.throttle * 0.12 : 0, AmbientTemp: 12.5 };
    case 'IPC_Odometer':
      return { Odometer: s.odometer, TripDistance: s.trip };
    case 'GNSS_Position':
      return { Latitude: s.lat, Longitude: s.lon };
    case 'GNSS_Status':
      return {
        FixType: 2,
        Satellites: 9 + Math.round(Math.abs(noise(3))),
        Heading: s.heading,
        GnssSpeed: Math.max(0, s.speed + noise(0.3)),
        UtcSecondOfDay: Math.floor((START_WALL_S + s.t) % 86400),
      };
    case 'ECM_Diagnostics':
      return { DtcCount: s.dtc === 0 ? 0 : 1, ActiveDtc: s.dtc, MilRequest: s.mil ? 1 : 0 };
    default:
      throw new Error(`no model for message ${name}`);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url))
  await writeGzippedTrace(
    generateDrive(),
    process.argv[2] ?? join(projectRoot(), 'drivers', 'reference-vehicle', 'drive.log.gz'),
  );
