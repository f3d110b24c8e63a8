// SAE J1979 (OBD-II) service 01 PIDs we poll, with their formulas both ways (the simulated ECU
// encodes what the gateway decodes), and the answers of services 01, 03, 07, 09 and 0A. Pure.
import { formatDtc } from './dtc.js';

export interface PidDefinition {
  pid: number;
  /** Signal name in the pipeline (`OBD_` + what it is). */
  signal: string;
  unit: string;
  /** Data bytes after the PID. */
  bytes: number;
  decode(d: Uint8Array): number;
  /** Physical value → data bytes (clamped to what the bytes can carry). */
  encode(v: number): number[];
}

const clamp = (v: number, max: number): number => Math.max(0, Math.min(max, Math.round(v)));
const percent = (pid: number, signal: string): PidDefinition => ({
  pid,
  signal,
  unit: '%',
  bytes: 1,
  decode: (d) => ((d[0] as number) * 100) / 255,
  encode: (v) => [clamp((v * 255) / 100, 255)],
});
const celsius = (pid: number, signal: string): PidDefinition => ({
  pid,
  signal,
  unit: 'degC',
  bytes: 1,
  decode: (d) => (d[0] as number) - 40,
  encode: (v) => [clamp(v + 40, 255)],
});
const word = (pid: number, signal: string, unit: string, scale: number): PidDefinition => ({
  pid,
  signal,
  unit,
  bytes: 2,
  decode: (d) => (((d[0] as number) << 8) | (d[1] as number)) / scale,
  encode: (v) => {
    const raw = clamp(v * scale, 0xffff);
    return [raw >> 8, raw & 0xff];
  },
});

/** The PIDs the gateway knows (J1979 / ISO 15031-5 formulas). */
export const PIDS: readonly PidDefinition[] = [
  {
    pid: 0x01,
    signal: 'OBD_MilOn',
    unit: '',
    bytes: 4,
    decode: (d) => (d[0] as number) >> 7,
    encode: (v) => [v >= 0.5 ? 0x80 : 0, 0x07, 0xe5, 0x00],
  },
  percent(0x04, 'OBD_EngineLoad'),
  celsius(0x05, 'OBD_CoolantTemp'),
  word(0x0c, 'OBD_EngineSpeed', 'rpm', 4),
  {
    pid: 0x0d,
    signal: 'OBD_VehicleSpeed',
    unit: 'km/h',
    bytes: 1,
    decode: (d) => d[0] as number,
    encode: (v) => [clamp(v, 255)],
  },
  celsius(0x0f, 'OBD_IntakeAirTemp'),
  word(0x10, 'OBD_MafAirFlow', 'g/s', 100),
  percent(0x11, 'OBD_ThrottlePosition'),
  word(0x1f, 'OBD_RunTime', 's', 1),
  percent(0x2f, 'OBD_FuelLevel'),
  word(0x31, 'OBD_DistanceSinceCodesCleared', 'km', 1),
  word(0x42, 'OBD_ModuleVoltage', 'V', 1000),
  celsius(0x46, 'OBD_AmbientAirTemp'),
  percent(0x5b, 'OBD_HybridBatteryRemaining'),
  word(0x5e, 'OBD_FuelRate', 'L/h', 20),
  {
    pid: 0xa6,
    signal: 'OBD_Odometer',
    unit: 'km',
    bytes: 4,
    decode: (d) =>
      ((d[0] as number) * 2 ** 24 + (((d[1] as number) << 16) | ((d[2] as number) << 8) | (d[3] as number))) / 10,
    encode: (v) => {
      const raw = Math.max(0, Math.min(0xffffffff, Math.round(v * 10)));
      return [Math.floor(raw / 2 ** 24), (raw >> 16) & 0xff, (raw >> 8) & 0xff, raw & 0xff];
    },
  },
];

export const PID_BY_NUMBER: ReadonlyMap<number, PidDefinition> = new Map(PIDS.map((p) => [p.pid, p]));

/** Does a PID report which of the next 32 are supported (0x00, 0x20, … 0xE0)? */
export const isSupportBitmap = (pid: number): boolean => pid % 0x20 === 0;

/** The PIDs a support bitmap (4 bytes after PID `base`) says are supported: bit 7 of byte 0 is base + 1. */
export function supportedPids(base: number, bitmap: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < 32; i++) if (((bitmap[i >> 3] as number) >> (7 - (i & 7))) & 1) out.push(base + 1 + i);
  return out;
}

/** The 4-byte bitmap that says `pids` (those in base+1 … base+32) are supported. */
export function supportBitmap(base: number, pids: Iterable<number>): number[] {
  const out = [0, 0, 0, 0];
  for (const pid of pids) {
    const i = pid - base - 1;
    if (i >= 0 && i < 32) out[i >> 3] = (out[i >> 3] as number) | (0x80 >> (i & 7));
  }
  return out;
}

/** Services with DTC lists: stored (03), pending (07), permanent (0A). */
export const DTC_SERVICES = { 0x03: 'stored', 0x07: 'pending', 0x0a: 'permanent' } as const;
export type DtcKind = (typeof DTC_SERVICES)[keyof typeof DTC_SERVICES];

/** An OBD-II answer, read. */
export type ObdResponse =
  | { kind: 'pid'; service: 0x01; pid: number; name: string; value: number; unit: string }
  | { kind: 'supported'; service: 0x01; pid: number; supported: number[] }
  | { kind: 'vin'; service: 0x09; pid: 0x02; vin: string }
  | { kind: 'dtcs'; service: 0x03 | 0x07 | 0x0a; dtcKind: DtcKind; dtcs: string[] }
  | { kind: 'negative'; service: number; nrc: number; meaning: string }
  | { kind: 'unknown'; service: number; pid: number | null };

export class ObdResponseError {
  readonly code = 'OBD_BAD_RESPONSE';
  constructor(readonly reason: string) {}
}

/** ISO 14229 negative response codes an OBD ECU gives. */
const NRC: Record<number, string> = {
  0x10: 'general reject',
  0x11: 'service not supported',
  0x12: 'sub-function not supported',
  0x13: 'incorrect message length or invalid format',
  0x21: 'busy, repeat request',
  0x22: 'conditions not correct',
  0x31: 'request out of range',
  0x78: 'response pending',
};

/** Reads one (reassembled) ECU answer. */
export function parseObdResponse(p: Uint8Array): ObdResponse | ObdResponseError {
  const sid = p[0];
  if (sid === undefined) return new ObdResponseError('empty answer');
  if (sid === 0x7f) {
    if (p.length < 3) return new ObdResponseError(`negative response of ${p.length} bytes: expected 3`);
    const nrc = p[2] as number;
    return { kind: 'negative', service: p[1] as number, nrc, meaning: NRC[nrc] ?? 'unknown code' };
  }
  const service = sid - 0x40;
  if (service === 0x01) {
    const pid = p[1];
    if (pid === undefined) return new ObdResponseError('service 01 answer without a PID');
    const data = p.subarray(2);
    if (isSupportBitmap(pid)) {
      if (data.length < 4) return new ObdResponseError(`PID ${hex(pid)} bitmap of ${data.length} bytes: expected 4`);
      return { kind: 'supported', service, pid, supported: supportedPids(pid, data) };
    }
    const def = PID_BY_NUMBER.get(pid);
    if (def === undefined) return { kind: 'unknown', service, pid };
    if (data.length < def.bytes)
      return new ObdResponseError(`PID ${hex(pid)} with ${data.length} data bytes: expected ${def.bytes}`);
    return { kind: 'pid', service, pid, name: def.signal, value: def.decode(data), unit: def.unit };
  }
  if (service === 0x09 && p[1] === 0x02) {
    // Data item count, then 17 ASCII characters (ISO 3779).
    const vin = Buffer.from(p.subarray(3)).toString('latin1').replace(/\0/g, '');
    if (!/^[A-HJ-NPR-Z0-9]{17}$/.test(vin))
      return new ObdResponseError(`VIN ${JSON.stringify(vin)}: expected 17 characters`);
    return { kind: 'vin', service, pid: 0x02, vin };
  }
  if (service === 0x03 || service === 0x07 || service === 0x0a) {
    // On CAN the count comes first (J1979 §6.3), then two bytes per DTC.
    const count = p[1];
    if (count === undefined || p.length < 2 + 2 * count)
      return new ObdResponseError(`DTC answer of ${p.length} bytes for ${count ?? 'no'} codes`);
    const dtcs: string[] = [];
    for (let i = 0; i < count; i++) dtcs.push(formatDtc(((p[2 + 2 * i] as number) << 8) | (p[3 + 2 * i] as number)));
    return { kind: 'dtcs', service, dtcKind: DTC_SERVICES[service], dtcs };
  }
  return { kind: 'unknown', service, pid: p[1] ?? null };
}

const hex = (n: number): string => `0x${n.toString(16).toUpperCase().padStart(2, '0')}`;
