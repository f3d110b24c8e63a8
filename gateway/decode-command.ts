// `v2c-gateway decode`: one JSON object per input line, for bench engineers and for checking
// ourselves against other DBC tools.
import { MalformedLine, bytesToHex, type CanFrame } from '../drivers/can-frame.js';
import { DecodeError, type DbcDecoder } from '../drivers/dbc/decoder.js';
import { parseCandumpLine } from '../drivers/candump.js';
import { parseSlcanLine } from '../drivers/slcan.js';
import type { TraceFormat } from '../drivers/trace-source.js';

const BIG = '\u0000big:';

/**
 * JSON with bigints written as plain integers (exact signals wider than 53 bits), and IEEE float
 * signals that are NaN or infinite as the strings "NaN", "Infinity", "-Infinity" (JSON has no such
 * numbers; null would lose which one it was).
 */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    typeof v === 'bigint' ? `${BIG}${v.toString()}` : typeof v === 'number' && !Number.isFinite(v) ? String(v) : v,
  ).replace(/"\\u0000big:(-?\d+)"/g, '$1');
}

function frameFields(frame: CanFrame): { t: number | null; bus: string | null; id: number; extended: boolean } {
  return { t: frame.tsWall, bus: frame.bus, id: frame.id, extended: frame.extended };
}

/** The output line for one input line, or null for lines that carry nothing (blank, comments, adapter acks). */
export function decodeLine(line: string, format: TraceFormat, decoder: DbcDecoder | null): string | null {
  const parsed = format === 'candump' ? parseCandumpLine(line) : parseSlcanLine(line.replace(/\r$/, ''));
  if (parsed === null) return null;
  if (parsed instanceof MalformedLine) return toJson({ error: `${parsed.code}: ${parsed.reason}`, line });
  if (decoder === null) {
    return toJson({
      ...frameFields(parsed),
      rtr: parsed.rtr,
      fd: parsed.fd,
      brs: parsed.brs,
      ...(parsed.error ? { errorFrame: true } : {}),
      data: parsed.rtr ? '' : bytesToHex(parsed.data),
    });
  }
  const decoded = decoder.decode(parsed, true);
  if (decoded instanceof DecodeError) return toJson({ error: `${decoded.code}: ${decoded.reason}`, line });
  return toJson({ ...frameFields(parsed), name: decoded.name, signals: decoded.signals });
}
