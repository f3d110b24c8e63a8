// Compiles each DBC message once into a flat bit-extraction plan (DESIGN §3): the per-frame
// path reads bytes through precomputed segments and allocates only the returned object.
import type { CanFrame } from '../can-frame.js';
import type { DbcDatabase, DbcMessage, DbcSignal } from './model.js';
import { signalBitPositions } from './parser.js';

export type SignalValue = number | bigint | string;

export interface DecodedMessage {
  name: string;
  id: number;
  extended: boolean;
  signals: Record<string, SignalValue>;
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
  multiplexValue: number | null;
  /** Flat (byte, shift, mask, destination bit) quadruples for value bits 0-31, then 32-63. */
  lo: Int32Array;
  hi: Int32Array;
}

interface CompiledMessage {
  message: DbcMessage;
  signals: CompiledSignal[];
  multiplexer: CompiledSignal | null;
}

const TWO_32 = 4294967296;
// Scratch for reinterpreting raw bits as IEEE floats; shared, so decoding stays allocation-free.
const scratch = new DataView(new ArrayBuffer(8));

function compileSignal(sig: DbcSignal): CompiledSignal {
  const bits = signalBitPositions(sig);
  const lo: number[] = [];
  const hi: number[] = [];
  // Group runs of value bits that sit next to each other in one byte (LSB first).
  for (let k = 0; k < bits.length; ) {
    const pos = bits[k] as number;
    const byte = pos >> 3;
    const shift = pos & 7;
    let n = 1;
    while (k + n < bits.length && bits[k + n] === pos + n && (pos + n) >> 3 === byte && (k + n) % 32 !== 0) n++;
    (k < 32 ? lo : hi).push(byte, shift, (1 << n) - 1, k % 32);
    k += n;
  }
  return {
    name: sig.name, length: sig.length, signed: sig.signed, valueType: sig.valueType, factor: sig.factor, offset: sig.offset,
    choices: sig.choices, multiplexValue: sig.multiplexValue, lo: Int32Array.from(lo), hi: Int32Array.from(hi),
  };
}

function gather(data: Uint8Array, segs: Int32Array): number {
  let v = 0;
  for (let i = 0; i < segs.length; i += 4) {
    v |= (((data[segs[i] as number] as number) >>> (segs[i + 1] as number)) & (segs[i + 2] as number)) << (segs[i + 3] as number);
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

function key(id: number, extended: boolean): number {
  return extended ? id + 0x20000000 : id;
}

/** Decodes frames with a compiled DBC database. */
export class DbcDecoder {
  private readonly messages = new Map<number, CompiledMessage>();

  constructor(readonly db: DbcDatabase) {
    for (const message of db.messages) {
      const signals = message.signals.map(compileSignal);
      const muxIndex = message.signals.findIndex((s) => s.isMultiplexer && s.multiplexValue === null);
      this.messages.set(key(message.id, message.extended), { message, signals, multiplexer: muxIndex >= 0 ? (signals[muxIndex] as CompiledSignal) : null });
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
    const compiled = this.messages.get(key(frame.id, frame.extended));
    if (compiled === undefined) return new DecodeError('unknown-id', `no message with ${frame.extended ? 'extended' : 'standard'} id 0x${frame.id.toString(16).toUpperCase()} in the DBC`);
    const msg = compiled.message;
    if (frame.rtr) return new DecodeError('remote-frame', `remote frame for ${msg.name}: carries no data`);
    if (frame.data.length !== msg.length) return new DecodeError('wrong-length', `${msg.name} (0x${frame.id.toString(16).toUpperCase()}) has ${msg.length} bytes in the DBC but the frame has ${frame.data.length}`);
    const data = frame.data;
    const mux = compiled.multiplexer === null ? null : Number(rawValue(compiled.multiplexer, data));
    const out: Record<string, SignalValue> = {};
    for (const sig of compiled.signals) {
      if (sig.multiplexValue !== null && sig.multiplexValue !== mux) continue;
      out[sig.name] = physical(sig, rawValue(sig, data), choices);
    }
    return { name: msg.name, id: msg.id, extended: msg.extended, signals: out };
  }
}
