// Stage 1: CAN frames (and lines no parser understood) to decoded signal values.
import { Observable, type OperatorFunction } from 'rxjs';
import { MalformedLine, type CanFrame } from '../../drivers/can-frame.js';
import type { DbcMessage } from '../../drivers/dbc/model.js';
import { DecodeError, type DbcDecoder, type DecodeErrorCode, type SignalValue } from '../../drivers/dbc/decoder.js';
import { CONSUMED, type ProtocolReader } from './protocol-reader.js';

/** Where wall-clock time was last known: a frame's monotonic and wall capture times (candump -L). */
export interface WallAnchor {
  mono: number;
  wallMs: number;
}

/** The vehicle's diagnostic state as of one frame: every ECU's active faults together (J1939 DM1, OBD-II DTC answers). */
export interface DiagnosticReport {
  /** The signal that counts the set: `dtc` rules on it fire for each code that appears. */
  signal: string;
  milOn: boolean;
  /** Without repeats: J1939 by SPN then FMI ("SPN110-FMI0"), OBD-II in text order ("P0217"). */
  dtcs: readonly string[];
}

/** One decoded frame: its capture time and its signals' scaled values. */
export interface DecodedFrame {
  kind: 'frame';
  tsMono: number;
  /** The latest frame up to this one that carried a wall-clock time; null for live sources. */
  wall: WallAnchor | null;
  signals: Readonly<Record<string, SignalValue>>;
  /** The DBC message the frame was decoded with, or the virtual message of a protocol (DM1, OBD, GNSS). */
  message: DbcMessage;
  /** The vehicle's active faults, on frames that report them (J1939 DM1, OBD-II DTC answers). */
  diagnostics?: DiagnosticReport;
}

export interface DecodeCounters {
  frames: number;
  malformed: number;
  decoded: number;
  decodeErrors: Record<DecodeErrorCode, number>;
}

/**
 * Decodes each frame with the DBC; malformed lines and frames it cannot decode are counted, not
 * passed on. The `protocols` (J1939, OBD-II) see each frame first and keep those they own.
 */
export function decodeFrames(
  decoder: DbcDecoder,
  counters: DecodeCounters,
  protocols: readonly ProtocolReader[] = [],
): OperatorFunction<CanFrame | MalformedLine, DecodedFrame> {
  return (source) =>
    new Observable<DecodedFrame>((subscriber) => {
      let wall: WallAnchor | null = null;
      /** Whether a protocol owned the frame (and passed on what it completed). */
      const readProtocols = (frame: CanFrame): boolean => {
        if (frame.error || frame.rtr) return false;
        for (const protocol of protocols) {
          const reading = protocol.accept(frame);
          if (reading === null) continue;
          if (frame.tsWall !== null) wall = { mono: frame.tsMono, wallMs: frame.tsWall * 1000 };
          if (reading === CONSUMED) return true;
          const { signals, diagnostics } = reading;
          if (diagnostics !== undefined || Object.keys(signals).length > 0)
            subscriber.next({
              kind: 'frame',
              tsMono: frame.tsMono,
              wall,
              signals,
              ...(diagnostics !== undefined ? { diagnostics } : {}),
              message: protocol.message,
            });
          return true;
        }
        return false;
      };
      return source.subscribe({
        next: (item) => {
          if (item instanceof MalformedLine) {
            counters.malformed++;
            return;
          }
          counters.frames++;
          if (protocols.length > 0 && readProtocols(item)) return;
          const decoded = decoder.decode(item, false);
          if (decoded instanceof DecodeError) {
            counters.decodeErrors[decoded.code]++;
            return;
          }
          counters.decoded++;
          if (item.tsWall !== null) wall = { mono: item.tsMono, wallMs: item.tsWall * 1000 };
          subscriber.next({
            kind: 'frame',
            tsMono: item.tsMono,
            wall,
            signals: decoded.signals,
            message: decoded.message,
          });
        },
        error: (err: unknown) => subscriber.error(err),
        complete: () => subscriber.complete(),
      });
    });
}
