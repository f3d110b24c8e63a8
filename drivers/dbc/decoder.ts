// Compiles each DBC message once into a flat bit-extraction plan (DESIGN §3): the per-frame
// path reads bytes through precomputed segments and allocates only the returned object.
import type { CanFrame } from '../can-frame.js';
import type { DbcDatabase, DbcMessage, DbcSignal } from './model.js';
import { signalBitPositions } from './parser.js';
import { pgnOf } from '../j1939/j1939-id.js';

export type SignalValue = number | bigint | string;

export interface DecodedMessage {
  name: string;
  id: number;
  extended: boolean;
  signals: Record<string, SignalValue>;
  /** The DBC message it was decoded with. */
  message: DbcMessage;
}

export type DecodeErrorCode = 'unknown-id' | 'wrong-length' | 'error-frame' | 'remote-frame';

/** A frame the database cannot decode: a value, never a guess. */
export class DecodeError {
  constructor(
    readonly code: DecodeErrorCode,
    readonly reason: string,
  ) {}
}

interface CompiledSignal {
  name: string;
  length: number;
  signed: boolean;
  valueType: DbcSignal['valueType'];
  factor: number;
  offset: number;
  choices: Map<number, string> | null;
  isSwitch: boolean;
  /** Index (in the compiled order) of the switch that selects this signal; -1 for a plain signal. */
  switchIndex: number;
  /** Selected when the switch's raw value is this (`mN`)… */
  multiplexValue: number | null;
  /** …or in one of these inclusive [lo, hi] pairs (SG_MUL_VAL_). */
  ranges: Float64Array | null;
  /** Flat (byte, shift, mask, destination bit) quadruples for value bits 0-31, then 32-63. */
  lo: Int32Array;
  hi: Int32Array;
}

interface CompiledMessage {
  message: DbcMessage;
  /** In the DBC's order (the order of the decoded output). */
  signals: CompiledSignal[];
  /** Indices of the switches, each after the switch that selects it. */
  switchOrder: Int32Array;
  /** Per-decode scratch: whether each signal is present, and each switch's raw value. */
  present: Uint8Array;
  switchValues: Float64Array;
}

const TWO_32 = 4294967296;
// Scratch for reinterpreting raw bits as IEEE floats; shared, so decoding stays allocation-free.
const scratch = new DataView(new ArrayBuffer(8));

function compileSignal(sig: DbcSignal, switchIndex: number): CompiledSignal {
  const bits = signalBitPositions(sig);
  const lo: number[] = [];
  const hi: number[] = [];
  // Group runs of value bits that sit next to each other in one byte (LSB first).
  for (let k = 0; k < bits.length;) {
    const pos = bits[k] as number;
    const byte = pos >> 3;
    const shift = pos & 7;
    let n = 1;
    while (k + n < bits.length && bits[k + n] === pos + n && (pos + n) >> 3 === byte && (k + n) % 32 !== 0) n++;
    (k < 32 ? lo : hi).push(byte, shift, (1 << n) - 1, k % 32);
    k += n;
  }
  return {
    name: sig.name,
    length: sig.length,
    signed: sig.signed,
    valueType: sig.valueType,
    factor: sig.factor,
    offset: sig.offset,
    choices: sig.choices,
    isSwitch: sig.isMultiplexer,
    switchIndex,
    multiplexValue: sig.multiplexValue,
    ranges: sig.multiplexer === null ? null : Float64Array.from(sig.multiplexer.ranges.flat()),
    lo: Int32Array.from(lo),
    hi: Int32Array.from(hi),
  };
}

function gather(data: Uint8Array, segs: Int32Array): number {
  let v = 0;
  for (let i = 0; i < segs.length; i += 4) {
    v |=
      (((data[segs[i] as number] as number) >>> (segs[i + 1] as number)) & (segs[i + 2] as number)) <<
      (segs[i + 3] as number);
  }
  return v >>> 0;
}

/** Raw (unscaled) value: a number, or a bigint for integers beyond 2^53. */
function rawValue(sig: CompiledSignal, data: Uint8Array): number | bigint {
  const lo = gather(data, sig.lo);
  if (sig.valueType === 'float32') {
    scratch.setUint32(0, lo);
    return scratch.getFloat32(0);
  }
  const len = sig.length;
  if (len <= 32) {
    if (sig.signed && len > 0 && lo >= 2 ** (len - 1)) return lo - 2 ** len;
    return lo;
  }
  const hi = gather(data, sig.hi);
  if (sig.valueType === 'double') {
    scratch.setUint32(0, hi);
    scratch.setUint32(4, lo);
    return scratch.getFloat64(0);
  }
  if (len <= 53) {
    const v = hi * TWO_32 + lo;
    return sig.signed && v >= 2 ** (len - 1) ? v - 2 ** len : v;
  }
  const big = (BigInt(hi) << 32n) | BigInt(lo);
  const v = sig.signed ? BigInt.asIntN(len, big) : big;
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function physical(sig: CompiledSignal, raw: number | bigint, choices: boolean): SignalValue {
  if (choices && sig.choices !== null) {
    const name = sig.choices.get(Number(raw));
    if (name !== undefined) return name;
  }
  if (typeof raw === 'bigint') {
    // Integers beyond 2^53 stay exact only when unscaled.
    if (sig.factor === 1 && sig.offset === 0) return raw;
    return Number(raw) * sig.factor + sig.offset;
  }
  return raw * sig.factor + sig.offset;
}

/** 1 when `sig` is in this frame: plain, or its switch is present with a value that selects it (`mN`, or a SG_MUL_VAL_ range). */
function isPresent(sig: CompiledSignal, present: Uint8Array, switchValues: Float64Array): number {
  if (sig.switchIndex < 0) return 1;
  if (sig.switchIndex >= present.length || present[sig.switchIndex] !== 1) return 0;
  const v = switchValues[sig.switchIndex] as number;
  const r = sig.ranges;
  if (r === null) return sig.multiplexValue === v ? 1 : 0;
  for (let k = 0; k < r.length; k += 2) if (v >= (r[k] as number) && v <= (r[k + 1] as number)) return 1;
  return 0;
}

/**
 * A message's signals, each knowing its switch: the SG_MUL_VAL_ one (extended multiplexing, nested
 * `mNM` switches included), or else the message's top-level `M` switch; and the order in which the
 * switches are read (a switch after the one that selects it; the parser refuses cycles).
 */
function compileMessage(message: DbcMessage): { signals: CompiledSignal[]; switchOrder: Int32Array } {
  const all = message.signals;
  const topSwitch = all.find((s) => s.isMultiplexer && s.multiplexValue === null && s.multiplexer === null);
  const switchOf = (s: DbcSignal): number => {
    if (s.multiplexer !== null) return all.findIndex((x) => x.name === s.multiplexer?.switchName);
    if (s.multiplexValue === null || s === topSwitch) return -1;
    // `mN` without any `M` in the message: never present.
    return topSwitch === undefined ? all.length : all.indexOf(topSwitch);
  };
  const signals = all.map((s) => compileSignal(s, switchOf(s)));
  const order: number[] = [];
  const visit = (i: number): void => {
    if (i < 0 || i >= all.length || order.includes(i)) return;
    visit((signals[i] as CompiledSignal).switchIndex);
    order.push(i);
  };
  signals.forEach((sig, i) => {
    if (sig.isSwitch) visit(i);
  });
  return { signals, switchOrder: Int32Array.from(order.filter((i) => (signals[i] as CompiledSignal).isSwitch)) };
}

function key(id: number, extended: boolean): number {
  return extended ? id + 0x20000000 : id;
}

export interface DecoderOptions {
  /**
   * J1939: a 29-bit frame no DBC id matches exactly is matched by its PGN, as J1939 DBCs name each
   * message with one sender's id (priority and source address differ on the bus).
   */
  j1939?: boolean;
}

/** Decodes frames with a compiled DBC database. */
export class DbcDecoder {
  private readonly messages = new Map<number, CompiledMessage>();
  /** Extended messages by PGN (the first in the DBC wins); null without the J1939 option. */
  private readonly byPgn: Map<number, CompiledMessage> | null;

  constructor(
    readonly db: DbcDatabase,
    options: DecoderOptions = {},
  ) {
    this.byPgn = options.j1939 === true ? new Map() : null;
    for (const message of db.messages) {
      const { signals, switchOrder } = compileMessage(message);
      const compiled = {
        message,
        signals,
        switchOrder,
        present: new Uint8Array(signals.length),
        switchValues: new Float64Array(signals.length),
      };
      this.messages.set(key(message.id, message.extended), compiled);
      const pgn = pgnOf(message.id);
      if (this.byPgn !== null && message.extended && !this.byPgn.has(pgn)) this.byPgn.set(pgn, compiled);
    }
  }

  /** The DBC message for an id, if any. */
  message(id: number, extended: boolean): DbcMessage | undefined {
    return this.messages.get(key(id, extended))?.message;
  }

  /**
   * Decodes one frame. With `choices`, signals with a value table give the table's name when the
   * raw value is in it (as DBC tools do); without, always the scaled number.
   */
  decode(frame: CanFrame, choices = true): DecodedMessage | DecodeError {
    if (frame.error) return new DecodeError('error-frame', 'error frame: carries no message');
    const compiled =
      this.messages.get(key(frame.id, frame.extended)) ??
      (frame.extended ? this.byPgn?.get(pgnOf(frame.id)) : undefined);
    if (compiled === undefined)
      return new DecodeError(
        'unknown-id',
        `no message with ${frame.extended ? 'extended' : 'standard'} id 0x${frame.id.toString(16).toUpperCase()} in the DBC`,
      );
    const msg = compiled.message;
    if (frame.rtr) return new DecodeError('remote-frame', `remote frame for ${msg.name}: carries no data`);
    if (frame.data.length !== msg.length)
      return new DecodeError(
        'wrong-length',
        `${msg.name} (0x${frame.id.toString(16).toUpperCase()}) has ${msg.length} bytes in the DBC but the frame has ${frame.data.length}`,
      );
    const data = frame.data;
    const { signals, switchOrder, present, switchValues } = compiled;
    // Switches first (outer before inner), then every signal in the DBC's order.
    for (let k = 0; k < switchOrder.length; k++) {
      const i = switchOrder[k] as number;
      const sw = signals[i] as CompiledSignal;
      present[i] = isPresent(sw, present, switchValues);
      if (present[i] === 1) switchValues[i] = Number(rawValue(sw, data));
    }
    const out: Record<string, SignalValue> = {};
    for (let i = 0; i < signals.length; i++) {
      const sig = signals[i] as CompiledSignal;
      if (sig.isSwitch ? present[i] === 0 : isPresent(sig, present, switchValues) === 0) continue;
      out[sig.name] = physical(sig, rawValue(sig, data), choices);
    }
    return { name: msg.name, id: msg.id, extended: msg.extended, signals: out, message: msg };
  }
}
