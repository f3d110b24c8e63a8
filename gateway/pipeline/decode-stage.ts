// Stage 1: CAN frames (and lines no parser understood) to decoded signal values.
import { Observable, type OperatorFunction } from 'rxjs';
import { MalformedLine, type CanFrame } from '../../drivers/can-frame.js';
import type { DbcMessage } from '../../drivers/dbc/model.js';
import { DecodeError, type DbcDecoder, type DecodeErrorCode, type SignalValue } from '../../drivers/dbc/decoder.js';
import { DM1_MESSAGE, TRANSPORT_FRAME, type J1939Diagnostics } from './j1939-diagnostics.js';

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
  /** By SPN then FMI, without repeats: "SPN110-FMI0". */
  dtcs: readonly string[];
}

/** One decoded frame: its capture time and its signals' scaled values. */
export interface DecodedFrame {
  kind: 'frame';
  tsMono: number;
  /** The latest frame up to this one that carried a wall-clock time; null for live sources. */
  wall: WallAnchor | null;
  signals: Readonly<Record<string, SignalValue>>;
  /** The DBC message the frame was decoded with (DM1_MESSAGE for a J1939 DM1). */
  message: DbcMessage;
  /** The vehicle's active faults, on frames that report them (J1939 DM1). */
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
 * passed on. With `j1939`, 29-bit transport-protocol frames and DM1s go to it instead.
 */
export function decodeFrames(
  decoder: DbcDecoder,
  counters: DecodeCounters,
  j1939: J1939Diagnostics | null = null,
): OperatorFunction<CanFrame | MalformedLine, DecodedFrame> {
  return (source) =>
    new Observable<DecodedFrame>((subscriber) => {
      let wall: WallAnchor | null = null;
      return source.subscribe({
        next: (item) => {
          if (item instanceof MalformedLine) {
            counters.malformed++;
            return;
          }
          counters.frames++;
          const dm1 = j1939 !== null && item.extended && !item.error && !item.rtr ? j1939.accept(item) : null;
          if (dm1 === TRANSPORT_FRAME) return;
          if (dm1 !== null) {
            if (item.tsWall !== null) wall = { mono: item.tsMono, wallMs: item.tsWall * 1000 };
            subscriber.next({ kind: 'frame', tsMono: item.tsMono, wall, ...dm1, message: DM1_MESSAGE });
            return;
          }
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
