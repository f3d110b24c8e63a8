// `v2c-gateway decode`: one JSON object per input line, for bench engineers and for checking
// ourselves against other DBC tools.
import { MalformedLine, bytesToHex, type CanFrame } from '../drivers/can-frame.js';
import { DecodeError, type DbcDecoder } from '../drivers/dbc/decoder.js';
import { parseCandumpLine } from '../drivers/candump.js';
import { parseSlcanLine } from '../drivers/slcan.js';
import type { TraceFormat } from '../drivers/trace-source.js';
import { Dm1Error, PGN_DM1, decodeDm1, type Dm1 } from '../drivers/j1939/dm1.js';
import { parseJ1939Id } from '../drivers/j1939/j1939-id.js';
import { TransportReassembler } from '../drivers/j1939/transport.js';
import { requestTarget } from '../drivers/obd/addressing.js';
import { ObdResponses, type ObdUpdate } from './pipeline/obd-responses.js';
import { CONSUMED } from './pipeline/protocol-reader.js';

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

function rawFields(frame: CanFrame): Record<string, unknown> {
  return {
    ...frameFields(frame),
    rtr: frame.rtr,
    fd: frame.fd,
    brs: frame.brs,
    ...(frame.error ? { errorFrame: true } : {}),
    data: frame.rtr ? '' : bytesToHex(frame.data),
  };
}

/** A DM1 as `decode` prints it, or its error text. */
function dm1Field(data: Uint8Array): { dm1: Dm1 } | { dm1Error: string } {
  const dm1 = decodeDm1(data);
  return dm1 instanceof Dm1Error ? { dm1Error: dm1.reason } : { dm1 };
}

export interface TraceDecoderOptions {
  format: TraceFormat;
  decoder: DbcDecoder | null;
  /** Read 29-bit frames as J1939: PGN, addresses, transport-protocol messages and DM1s. */
  j1939?: boolean;
  /** Read OBD-II answers (ISO-TP reassembled) and requests. */
  obd?: boolean;
}

/** An OBD-II answer as `decode` prints it: the service, and what the answer says. */
function obdField(update: ObdUpdate): Record<string, unknown> {
  const { ecu, response: r } = update;
  const { kind: _kind, ...fields } = r;
  return { ecu, ...fields };
}

/**
 * `decode`'s per-line work. Stateful only with J1939 and OBD-II, whose messages span several lines:
 * a J1939 transport message is printed once more, whole, after its last packet; an OBD-II answer is
 * added to the frame that completes it.
 */
export class TraceDecoder {
  private readonly transport: TransportReassembler | null;
  private readonly obd: ObdResponses | null;

  constructor(private readonly options: TraceDecoderOptions) {
    this.transport = options.j1939 === true ? new TransportReassembler() : null;
    this.obd = options.obd === true ? new ObdResponses() : null;
  }

  /** `obd` for a frame that completes an answer, `obdRequest` for a tester's single-frame request; null otherwise. */
  private obdFields(frame: CanFrame): Record<string, unknown> | null {
    const update = this.obd?.accept(frame) ?? null;
    if (update !== null && update !== CONSUMED) return { obd: obdField(update) };
    if (update === CONSUMED) return {};
    const target = requestTarget(frame.id, frame.extended);
    const d = frame.data;
    if (target === null || d.length < 2 || (d[0] as number) >> 4 !== 0) return null;
    return { obdRequest: { to: target, service: d[1], ...((d[0] as number) >= 2 ? { pid: d[2] } : {}) } };
  }

  /** With J1939, a one-line account of the transport protocol's transfers ("bam=179 rtsCts=1 …"), else null. */
  transportSummary(): string | null {
    if (this.transport === null) return null;
    return Object.entries(this.transport.counters)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
  }

  /** The output lines for one input line: none for lines that carry nothing (blank, comments, adapter acks). */
  decode(line: string): string[] {
    const { format, decoder } = this.options;
    const parsed = format === 'candump' ? parseCandumpLine(line) : parseSlcanLine(line.replace(/\r$/, ''));
    if (parsed === null) return [];
    if (parsed instanceof MalformedLine) return [toJson({ error: `${parsed.code}: ${parsed.reason}`, line })];
    const j1939 = this.transport !== null && parsed.extended && !parsed.error && !parsed.rtr;
    const obd = this.obd === null ? null : this.obdFields(parsed);
    const decoded = decoder?.decode(parsed, true);
    // With J1939 or OBD-II a frame the DBC does not know may still mean something: it is printed raw.
    if (decoded instanceof DecodeError && !((j1939 || obd !== null) && decoded.code === 'unknown-id'))
      return [toJson({ error: `${decoded.code}: ${decoded.reason}`, line })];
    const frame = {
      ...(decoded === undefined || decoded instanceof DecodeError
        ? rawFields(parsed)
        : { ...frameFields(parsed), name: decoded.name, signals: decoded.signals }),
      ...obd,
    };
    if (!j1939 || this.transport === null) return [toJson(frame)];
    const { priority, pgn, sa, da } = parseJ1939Id(parsed.id);
    const out = [
      toJson({
        ...frame,
        pgn,
        sa,
        ...(da === null ? {} : { da }),
        priority,
        ...(pgn === PGN_DM1 ? dm1Field(parsed.data) : {}),
      }),
    ];
    const message = this.transport.accept(parsed.id, parsed.data, parsed.tsMono);
    if (message !== null)
      out.push(
        toJson({
          t: parsed.tsWall,
          bus: parsed.bus,
          pgn: message.pgn,
          sa: message.sa,
          da: message.da,
          transport: message.transport,
          length: message.data.length,
          data: bytesToHex(message.data),
          ...(message.pgn === PGN_DM1 ? dm1Field(message.data) : {}),
        }),
      );
    return out;
  }
}
