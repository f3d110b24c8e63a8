// SLCAN (Lawicel ASCII) line codec: pure functions, errors as values (STYLE §1).
import {
  type CanFrame,
  DLC_TO_LENGTH,
  MAX_EXT_ID,
  MAX_STD_ID,
  MalformedLine,
  hexAt,
  hexBytesAt,
  lengthToDlc,
  toHex,
  bytesToHex,
} from './can-frame.js';

/** Longest valid line without its `\r`: `D` + 8-digit id + DLC + 64 bytes + 4-digit timestamp. */
export const SLCAN_MAX_LINE = 1 + 8 + 1 + 128 + 4;
/** The adapter's error reply (BEL) in place of `\r`. */
export const SLCAN_BEL = '\x07';
/** Adapter timestamps count milliseconds modulo one minute. */
const MAX_TIMESTAMP = 0xea5f;

/**
 * Parses one SLCAN line (without its `\r` terminator). Returns the frame, a MalformedLine, or
 * null for an adapter reply that carries no frame (`\r` ack, `z`/`Z`, `V…`, `N…`, `F…`).
 */
export function parseSlcanLine(line: string, tsMono = 0, bus: string | null = null): CanFrame | MalformedLine | null {
  if (line.length === 0) return null;
  if (line.length > SLCAN_MAX_LINE)
    return bad('too-long', `line of ${line.length} characters exceeds the SLCAN maximum of ${SLCAN_MAX_LINE}`, line);
  const cmd = line[0] as string;
  let extended: boolean;
  let rtr = false;
  let fd = false;
  let brs = false;
  switch (cmd) {
    case 't':
      extended = false;
      break;
    case 'T':
      extended = true;
      break;
    case 'r':
      extended = false;
      rtr = true;
      break;
    case 'R':
      extended = true;
      rtr = true;
      break;
    case 'd':
      extended = false;
      fd = true;
      break;
    case 'D':
      extended = true;
      fd = true;
      break;
    case 'b':
      extended = false;
      fd = true;
      brs = true;
      break;
    case 'B':
      extended = true;
      fd = true;
      brs = true;
      break;
    case 'z':
    case 'Z':
    case 'V':
    case 'v':
    case 'N':
    case 'F':
      return null;
    default:
      return bad(
        'unknown-command',
        `unknown SLCAN command '${printable(cmd)}'; expected t, T, r, R, d, D, b or B`,
        line,
      );
  }
  const idLen = extended ? 8 : 3;
  if (line.length < 2 + idLen)
    return bad(
      'too-short',
      `line of ${line.length} characters is shorter than command, ${idLen}-digit id and DLC`,
      line,
    );
  const id = hexAt(line, 1, idLen);
  if (id < 0) return bad('non-hex', `id '${line.slice(1, 1 + idLen)}' is not hexadecimal`, line);
  const maxId = extended ? MAX_EXT_ID : MAX_STD_ID;
  if (id > maxId)
    return bad(
      'id-out-of-range',
      `id 0x${line.slice(1, 1 + idLen)} exceeds the ${extended ? '29' : '11'}-bit maximum 0x${maxId.toString(16)}`,
      line,
    );
  const dlc = hexAt(line, 1 + idLen, 1);
  if (dlc < 0) return bad('bad-dlc', `DLC '${printable(line[1 + idLen] as string)}' is not a hexadecimal digit`, line);
  if (!fd && dlc > 8) return bad('bad-dlc', `DLC ${dlc} exceeds 8 on a classic CAN frame`, line);
  const length = DLC_TO_LENGTH[dlc] as number;
  const dataStart = 2 + idLen;
  const dataChars = rtr ? 0 : 2 * length;
  const rest = line.length - dataStart - dataChars;
  if (rest !== 0 && rest !== 4) {
    return bad(
      'dlc-data-mismatch',
      `DLC ${dlc} announces ${rtr ? 'no data (remote frame)' : `${length} data bytes (${dataChars} hex digits)`} but ${line.length - dataStart} characters follow it`,
      line,
    );
  }
  let data: Uint8Array;
  if (rtr) data = new Uint8Array(length);
  else {
    const bytes = hexBytesAt(line, dataStart, length);
    if (bytes === null) return bad('non-hex', 'data is not hexadecimal', line);
    data = bytes;
  }
  if (rest === 4) {
    const ts = hexAt(line, dataStart + dataChars, 4);
    if (ts < 0) return bad('non-hex', 'timestamp is not hexadecimal', line);
    if (ts > MAX_TIMESTAMP)
      return bad('bad-timestamp', `timestamp ${ts} ms exceeds 59999 (adapter timestamps wrap each minute)`, line);
  }
  return { bus, id, extended, rtr, fd, brs, error: false, data, tsMono, tsWall: null };
}

/**
 * Encodes a frame as an SLCAN line with its `\r`, upper-case hex. A remote frame's DLC is its
 * data length (the data itself is not sent). `timestampMs` adds the 4-digit adapter timestamp.
 */
export function formatSlcanFrame(frame: CanFrame, timestampMs?: number): string {
  let cmd = frame.fd ? (frame.brs ? 'b' : 'd') : frame.rtr ? 'r' : 't';
  if (frame.extended) cmd = cmd.toUpperCase();
  const dlc = lengthToDlc(frame.data.length);
  if (dlc < 0 || (!frame.fd && dlc > 8))
    throw new RangeError(`no ${frame.fd ? 'CAN FD' : 'classic CAN'} DLC encodes ${frame.data.length} bytes`);
  let s = cmd + toHex(frame.id, frame.extended ? 8 : 3) + toHex(dlc, 1);
  if (!frame.rtr) s += bytesToHex(frame.data);
  if (timestampMs !== undefined) s += toHex(Math.floor(timestampMs) % 60000, 4);
  return s + '\r';
}

/** The SLCAN `S<n>` code for a bitrate, or undefined when the protocol has none for it. */
export function slcanBitrateCode(bitrate: number): string | undefined {
  const codes: Record<number, string> = {
    10000: 'S0',
    20000: 'S1',
    50000: 'S2',
    100000: 'S3',
    125000: 'S4',
    250000: 'S5',
    500000: 'S6',
    800000: 'S7',
    1000000: 'S8',
  };
  return codes[bitrate];
}

function bad(code: MalformedLine['code'], reason: string, line: string): MalformedLine {
  return new MalformedLine(code, reason, line);
}

function printable(c: string): string {
  const code = c.charCodeAt(0);
  return code < 32 || code > 126 ? `\\x${code.toString(16).padStart(2, '0')}` : c;
}
