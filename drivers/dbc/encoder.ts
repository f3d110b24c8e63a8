// Physical values → frame payload, the inverse of the decoder. Used by the trace generator, the
// simulator's tests and the table-driven decoder tests; not on the hot path.
import type { DbcMessage, DbcSignal } from './model.js';
import { signalBitPositions } from './parser.js';

/** A value outside what the signal's bits can carry. */
export class SignalRangeError extends RangeError {
  readonly code = 'SIGNAL_RANGE';
}

function rawBits(sig: DbcSignal, value: number | bigint): bigint {
  const scratch = new DataView(new ArrayBuffer(8));
  if (sig.valueType === 'float32') {
    scratch.setFloat32(0, Number(value));
    return BigInt(scratch.getUint32(0));
  }
  if (sig.valueType === 'double') {
    scratch.setFloat64(0, Number(value));
    return scratch.getBigUint64(0);
  }
  const raw = typeof value === 'bigint' ? value : BigInt(Math.round((value - sig.offset) / sig.factor));
  const lo = sig.signed ? -(1n << BigInt(sig.length - 1)) : 0n;
  const hi = sig.signed ? (1n << BigInt(sig.length - 1)) - 1n : (1n << BigInt(sig.length)) - 1n;
  if (raw < lo || raw > hi)
    throw new SignalRangeError(
      `${sig.name}: value ${value} (raw ${raw}) does not fit ${sig.length} ${sig.signed ? 'signed' : 'unsigned'} bits`,
    );
  return BigInt.asUintN(sig.length, raw);
}

/**
 * Encodes `values` (physical values by signal name; a bigint is taken as the raw integer) into a
 * payload of the message's length. Missing signals are zero; for a multiplexed message, set the
 * multiplexer and only the signals it selects.
 */
export function encodeMessage(message: DbcMessage, values: Record<string, number | bigint>): Uint8Array {
  const data = new Uint8Array(message.length);
  for (const sig of message.signals) {
    const value = values[sig.name];
    if (value === undefined) continue;
    const raw = rawBits(sig, value);
    const bits = signalBitPositions(sig);
    for (let k = 0; k < bits.length; k++) {
      if ((raw >> BigInt(k)) & 1n) {
        const pos = bits[k] as number;
        data[pos >> 3] = (data[pos >> 3] as number) | (1 << (pos & 7));
      }
    }
  }
  return data;
}
