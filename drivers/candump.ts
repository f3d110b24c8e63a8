// can-utils candump line codec: the `-L` log format and the default screen format. Pure
// functions, errors as values (STYLE §1).
import {
  type CanFrame,
  MAX_EXT_ID,
  MAX_STD_ID,
  MalformedLine,
  bytesToHex,
  hexAt,
  hexBytesAt,
  lengthToDlc,
  toHex,
} from './can-frame.js';

/** SocketCAN flags carried in the high bits of a logged id. */
const CAN_ERR_FLAG = 0x20000000;
const CANFD_BRS = 0x1;
const MAX_LINE = 512;

/**
 * Parses one candump line: `(sec.usec) iface id#data` / `id##<flags><data>` / `id#R[len]`, or the
 * screen format `[(sec.usec)] iface id [len] bytes…`. Blank lines and `#` comments give null.
 * `tsMono` is used when the line carries no time; otherwise the logged time (in ms) is used.
 */
export function parseCandumpLine(line: string, tsMono = 0): CanFrame | MalformedLine | null {
  if (line.length > MAX_LINE)
    return new MalformedLine('too-long', `line of ${line.length} characters exceeds ${MAX_LINE}`, line);
  const trimmed = line.trim();
  if (trimmed.length === 0 || trimmed[0] === '#') return null;
  const tokens = trimmed.split(/\s+/);
  let tsWall: number | null = null;
  let i = 0;
  const first = tokens[0] as string;
  if (first[0] === '(') {
    // `candump -t A` writes local date and time with a space inside the parentheses.
    i = !first.endsWith(')') && tokens[1]?.endsWith(')') === true ? 2 : 1;
    const stamp = tokens.slice(0, i).join(' ');
    tsWall = parseCandumpTime(stamp.slice(1, -1));
    if (tsWall === null)
      return new MalformedLine(
        'bad-timestamp',
        `timestamp '${stamp}' is not (seconds.fraction) or (YYYY-MM-DD hh:mm:ss.fraction)`,
        line,
      );
  }
  const time = tsWall === null ? tsMono : tsWall * 1000;
  const bus = tokens[i];
  const body = tokens[i + 1];
  if (bus === undefined || body === undefined)
    return new MalformedLine('too-short', 'expected an interface name and a frame after the timestamp', line);
  const frame = body.includes('#') ? parseLogFrame(body, line) : parseScreenFrame(tokens, i + 1, line);
  if (frame instanceof MalformedLine) return frame;
  frame.bus = bus;
  frame.tsWall = tsWall;
  frame.tsMono = time;
  return frame;
}

const ABSOLUTE_TIME = /^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{1,9})$/;

/**
 * A candump time in seconds since the epoch: `-L`/`-t a` write seconds.fraction, `-t A` the local
 * date and time (candump uses localtime, so this machine's time zone reads it back). Null if neither.
 */
export function parseCandumpTime(text: string): number | null {
  if (/^\d+\.\d+$/.test(text)) return Number(text);
  const m = ABSOLUTE_TIME.exec(text);
  if (m === null) return null;
  const [, y, mo, d, h, mi, s] = m.map(Number);
  const ms = new Date(y as number, (mo as number) - 1, d, h, mi, s).getTime();
  const date = new Date(ms);
  // Rejects 2020-02-31 and 25:00:00, which Date would roll over into another day.
  if (Number.isNaN(ms) || date.getMonth() !== (mo as number) - 1 || date.getHours() !== h || date.getMinutes() !== mi)
    return null;
  return ms / 1000 + Number(`0.${m[7] as string}`);
}

function parseId(text: string, line: string): { id: number; extended: boolean; error: boolean } | MalformedLine {
  if (text.length !== 3 && text.length !== 8)
    return new MalformedLine('bad-syntax', `id '${text}' must have 3 (standard) or 8 (extended) hex digits`, line);
  const raw = hexAt(text, 0, text.length);
  if (raw < 0) return new MalformedLine('non-hex', `id '${text}' is not hexadecimal`, line);
  if (text.length === 3) {
    if (raw > MAX_STD_ID) return new MalformedLine('id-out-of-range', `standard id 0x${text} exceeds 0x7FF`, line);
    return { id: raw, extended: false, error: false };
  }
  const error = (raw & CAN_ERR_FLAG) !== 0;
  const id = error ? raw & MAX_EXT_ID & ~CAN_ERR_FLAG : raw;
  if (!error && raw > MAX_EXT_ID)
    return new MalformedLine('id-out-of-range', `extended id 0x${text} exceeds 0x1FFFFFFF`, line);
  return { id, extended: !error, error };
}

function frameOf(
  id: { id: number; extended: boolean; error: boolean },
  data: Uint8Array,
  rtr: boolean,
  fd: boolean,
  brs: boolean,
): CanFrame {
  return { bus: null, id: id.id, extended: id.extended, rtr, fd, brs, error: id.error, data, tsMono: 0, tsWall: null };
}

function parseLogFrame(body: string, line: string): CanFrame | MalformedLine {
  const hash = body.indexOf('#');
  const id = parseId(body.slice(0, hash), line);
  if (id instanceof MalformedLine) return id;
  let rest = body.slice(hash + 1);
  if (rest[0] === '#') {
    const flags = hexAt(rest, 1, 1);
    if (flags < 0) return new MalformedLine('non-hex', `CAN FD flags '${rest.slice(1, 2)}' are not a hex digit`, line);
    const data = dataOf(rest.slice(2), true, line);
    if (data instanceof MalformedLine) return data;
    return frameOf(id, data, false, true, (flags & CANFD_BRS) !== 0);
  }
  if (rest[0] === 'R' || rest[0] === 'r') {
    const len = rest.length > 1 ? hexAt(rest, 1, 1) : 0;
    if (len < 0 || len > 8 || rest.length > 2)
      return new MalformedLine('bad-dlc', `remote frame length '${rest.slice(1)}' must be one digit 0-8`, line);
    return frameOf(id, new Uint8Array(len), true, false, false);
  }
  // Classic frames may end in `_<dlc>` (len8_dlc, DLC 9-F on an 8-byte frame): the data is what counts.
  const underscore = rest.indexOf('_');
  if (underscore >= 0) rest = rest.slice(0, underscore);
  const data = dataOf(rest, false, line);
  if (data instanceof MalformedLine) return data;
  return frameOf(id, data, false, false, false);
}

function dataOf(hex: string, fd: boolean, line: string): Uint8Array | MalformedLine {
  if (hex.length % 2 !== 0)
    return new MalformedLine('dlc-data-mismatch', `data '${hex}' has an odd number of hex digits`, line);
  const length = hex.length / 2;
  if (!fd && length > 8)
    return new MalformedLine('bad-dlc', `${length} data bytes exceed 8 on a classic CAN frame`, line);
  if (fd && lengthToDlc(length) < 0)
    return new MalformedLine(
      'bad-dlc',
      `${length} data bytes is not a CAN FD length (0-8, 12, 16, 20, 24, 32, 48, 64)`,
      line,
    );
  const data = hexBytesAt(hex, 0, length);
  return data ?? new MalformedLine('non-hex', `data '${hex}' is not hexadecimal`, line);
}

function parseScreenFrame(tokens: string[], at: number, line: string): CanFrame | MalformedLine {
  const lenToken = tokens[at + 1];
  const lenMatch = lenToken === undefined ? null : /^\[(\d{1,2})\]$/.exec(lenToken);
  if (lenMatch === null)
    return new MalformedLine(
      'bad-syntax',
      "expected 'id#data' (candump -L) or 'id [len] bytes' (candump screen format)",
      line,
    );
  const id = parseId(tokens[at] as string, line);
  if (id instanceof MalformedLine) return id;
  const digits = lenMatch[1] as string;
  const length = Number(digits);
  // candump prints a CAN FD length with two digits ([08], [12]) and a classic one with one.
  const fd = digits.length === 2;
  if (!fd && length > 8) return new MalformedLine('bad-dlc', `length ${length} exceeds 8 on a classic CAN frame`, line);
  if (fd && lengthToDlc(length) < 0)
    return new MalformedLine('bad-dlc', `length ${length} is not a CAN FD length`, line);
  if (tokens[at + 2] === 'remote') return frameOf(id, new Uint8Array(length), true, false, false);
  const bytes = tokens.slice(at + 2, at + 2 + length);
  if (bytes.length !== length || bytes.some((b) => b.length !== 2)) {
    return new MalformedLine(
      'dlc-data-mismatch',
      `length [${length}] announces ${length} bytes but ${bytes.filter((b) => b.length === 2).length} follow`,
      line,
    );
  }
  const data = hexBytesAt(bytes.join(''), 0, length);
  if (data === null) return new MalformedLine('non-hex', 'data is not hexadecimal', line);
  return frameOf(id, data, false, fd, false);
}

/** Encodes a frame as a `candump -L` line (without newline); `bus` defaults to `can0`. */
export function formatCandumpLog(frame: CanFrame, tsWallSeconds: number): string {
  const id = frame.error ? toHex((frame.id | CAN_ERR_FLAG) >>> 0, 8) : toHex(frame.id, frame.extended ? 8 : 3);
  let body: string;
  if (frame.fd) body = `${id}##${frame.brs ? '1' : '0'}${bytesToHex(frame.data)}`;
  else if (frame.rtr) body = `${id}#R${frame.data.length > 0 ? frame.data.length : ''}`;
  else body = `${id}#${bytesToHex(frame.data)}`;
  return `(${tsWallSeconds.toFixed(6)}) ${frame.bus ?? 'can0'} ${body}`;
}
