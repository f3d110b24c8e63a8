// J1939 on the pipeline's input: transport-protocol frames reassembled, and each ECU's DM1 (single
// frame or reassembled) folded into the vehicle's active-fault set, which leaves as signals plus
// the set itself (a J1939 DTC is SPN/FMI, not a number a window could average).
import type { CanFrame } from '../../drivers/can-frame.js';
import type { DbcMessage } from '../../drivers/dbc/model.js';
import { CONSUMED, virtualMessage, type ProtocolReader, type ProtocolReading } from './protocol-reader.js';
import { PGN_DM1, decodeDm1, Dm1Error, formatJ1939Dtc, type Dm1, type J1939Dtc } from '../../drivers/j1939/dm1.js';
import { pgnOf } from '../../drivers/j1939/j1939-id.js';
import { PGN_TP_CM, PGN_TP_DT, TransportReassembler } from '../../drivers/j1939/transport.js';

/** Signals a DM1 produces (vehicle-wide: a lamp is on when any ECU reports it on). */
export const DM1_SIGNALS = {
  milOn: 'DM1_MilOn',
  redStop: 'DM1_RedStopLamp',
  amberWarning: 'DM1_AmberWarningLamp',
  protect: 'DM1_ProtectLamp',
  /** Number of active DTCs; a `dtc` rule on it fires once per DTC that appears in the set. */
  activeDtcs: 'DM1_ActiveDtcs',
} as const;

/** An ECU whose DM1 (sent every second, J1939-73) has not come for this long no longer counts. */
export const DM1_SOURCE_STALE_MS = 5000;

/** DM1 reports; its signal list names the lamps only: the DTC count's `dtc` rules read the set instead. */
export const DM1_MESSAGE: DbcMessage = virtualMessage('DM1', [
  DM1_SIGNALS.milOn,
  DM1_SIGNALS.redStop,
  DM1_SIGNALS.amberWarning,
  DM1_SIGNALS.protect,
]);

export interface J1939Counters {
  /** DM1s read (single-frame and reassembled). */
  dm1: number;
  /** DM1s too short to read. */
  dm1Errors: number;
}

interface SourceFaults {
  dm1: Dm1;
  atMono: number;
}

const on = (v: boolean | null): boolean => v === true;

export class J1939Diagnostics implements ProtocolReader {
  readonly message = DM1_MESSAGE;
  readonly transport = new TransportReassembler();
  readonly counters: J1939Counters = { dm1: 0, dm1Errors: 0 };
  private readonly sources = new Map<number, SourceFaults>();

  /**
   * The fault report of a DM1 frame or of the last packet of a DM1 transfer; CONSUMED for other
   * transport-protocol frames; null for every other frame (decoded with the DBC as usual).
   */
  accept(frame: CanFrame): ProtocolReading | typeof CONSUMED | null {
    const pgn = pgnOf(frame.id);
    if (pgn === PGN_TP_CM || pgn === PGN_TP_DT) {
      const message = this.transport.accept(frame.id, frame.data, frame.tsMono);
      return message !== null && message.pgn === PGN_DM1
        ? this.update(message.sa, message.data, frame.tsMono)
        : CONSUMED;
    }
    return pgn === PGN_DM1 ? this.update(frame.id & 0xff, frame.data, frame.tsMono) : null;
  }

  private update(sa: number, data: Uint8Array, tsMono: number): ProtocolReading | typeof CONSUMED {
    const dm1 = decodeDm1(data);
    if (dm1 instanceof Dm1Error) {
      this.counters.dm1Errors++;
      return CONSUMED;
    }
    this.counters.dm1++;
    this.sources.set(sa, { dm1, atMono: tsMono });
    const lamps = { mil: false, red: false, amber: false, protect: false };
    const dtcs = new Map<string, J1939Dtc>();
    for (const [source, faults] of this.sources) {
      if (tsMono - faults.atMono > DM1_SOURCE_STALE_MS) {
        this.sources.delete(source);
        continue;
      }
      const l = faults.dm1.lamps;
      lamps.mil ||= on(l.mil);
      lamps.red ||= on(l.red);
      lamps.amber ||= on(l.amber);
      lamps.protect ||= on(l.protect);
      for (const dtc of faults.dm1.dtcs) dtcs.set(formatJ1939Dtc(dtc), dtc);
    }
    return {
      signals: {
        [DM1_SIGNALS.milOn]: Number(lamps.mil),
        [DM1_SIGNALS.redStop]: Number(lamps.red),
        [DM1_SIGNALS.amberWarning]: Number(lamps.amber),
        [DM1_SIGNALS.protect]: Number(lamps.protect),
        [DM1_SIGNALS.activeDtcs]: dtcs.size,
      },
      diagnostics: {
        signal: DM1_SIGNALS.activeDtcs,
        milOn: lamps.mil,
        dtcs: [...dtcs.entries()].sort(([, a], [, b]) => a.spn - b.spn || a.fmi - b.fmi).map(([text]) => text),
      },
    };
  }
}
