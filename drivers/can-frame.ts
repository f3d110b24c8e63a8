/** One CAN or CAN FD frame as every source delivers it (DESIGN §3). */
export interface CanFrame {
  /** Interface name from a log (`can0`) or the configured adapter name; null when unknown. */
  bus: string | null;
  id: number;
  extended: boolean;
  rtr: boolean;
  fd: boolean;
  /** CAN FD bit-rate switch. */
  brs: boolean;
  /** Error frame (SocketCAN CAN_ERR_FLAG); never decoded as a message. */
  error: boolean;
  data: Uint8Array;
  /** Capture time on the monotonic clock, in milliseconds. */
  tsMono: number;
  /** Wall-clock capture time in seconds, when the source recorded one (candump -L). */
  tsWall: number | null;
}

/** A line a parser could not turn into a frame: a value, never an exception (STYLE §1). */
export class MalformedLine {
  constructor(
    readonly code: MalformedCode,
    readonly reason: string,
    readonly line: string,
  ) {}
}

export type MalformedCode =
  | 'empty'
  | 'unknown-command'
  | 'non-hex'
  | 'id-out-of-range'
  | 'bad-dlc'
  | 'dlc-data-mismatch'
  | 'too-short'
  | 'too-long'
  | 'bad-timestamp'
  | 'time-jump'
  | 'bad-syntax';

export const MAX_STD_ID = 0x7ff;
export const MAX_EXT_ID = 0x1fffffff;

/** CAN FD DLC code → payload length (ISO 11898-1:2015). */
export const DLC_TO_LENGTH: readonly number[] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64];

/** Payload length → CAN FD DLC code, or -1 when no DLC encodes that length. */
export function lengthToDlc(length: number): number {
  return DLC_TO_LENGTH.indexOf(length);
}

const HEX_VALUE = new Int8Array(128).fill(-1);
for (let i = 0; i < 10; i++) HEX_VALUE[48 + i] = i;
for (let i = 0; i < 6; i++) {
  HEX_VALUE[65 + i] = 10 + i;
  HEX_VALUE[97 + i] = 10 + i;
}

/** Value of `len` hex digits at `start`, or -1 if any is not a hex digit. */
export function hexAt(s: string, start: number, len: number): number {
  let v = 0;
  for (let i = start; i < start + len; i++) {
    const c = s.charCodeAt(i);
    const d = c < 128 ? (HEX_VALUE[c] as number) : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

/** Bytes from `count` pairs of hex digits at `start`, or null if any digit is not hex. */
export function hexBytesAt(s: string, start: number, count: number): Uint8Array | null {
  const out = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const b = hexAt(s, start + 2 * i, 2);
    if (b < 0) return null;
    out[i] = b;
  }
  return out;
}

const HEX_UPPER = '0123456789ABCDEF';

/** Upper-case hex of `v`, left-padded with zeros to `width` digits. */
export function toHex(v: number, width: number): string {
  let s = '';
  for (let i = width - 1; i >= 0; i--) s += HEX_UPPER[Math.floor(v / 16 ** i) % 16];
  return s;
}

/** Upper-case hex of a byte array, with an optional separator between bytes. */
export function bytesToHex(data: Uint8Array, separator = ''): string {
  let s = '';
  for (let i = 0; i < data.length; i++) {
    if (i > 0) s += separator;
    const b = data[i] as number;
    s += (HEX_UPPER[b >> 4] as string) + (HEX_UPPER[b & 15] as string);
  }
  return s;
}
