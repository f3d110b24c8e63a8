// OBD-II answers on the pipeline's input, whoever asked (our poller, or a scan tool seen in a
// trace): each ECU's ISO-TP stream reassembled, read as J1979, and turned into `OBD_*` signals;
// DTC answers fold into the vehicle's fault report like a J1939 DM1.
import type { CanFrame } from '../../drivers/can-frame.js';
import type { DbcMessage } from '../../drivers/dbc/model.js';
import { respondingEcu } from '../../drivers/obd/addressing.js';
import { IsoTpReceiver } from '../../drivers/obd/iso-tp.js';
import { PIDS, ObdResponseError, parseObdResponse, type ObdResponse } from '../../drivers/obd/pids.js';
import type { DiagnosticReport } from './decode-stage.js';
import { CONSUMED, virtualMessage, type ProtocolReader } from './protocol-reader.js';

/** Signals from DTC answers: how many codes of each kind; `dtc` rules on the stored count fire per code. */
export const OBD_DTC_SIGNALS = {
  stored: 'OBD_StoredDtcs',
  pending: 'OBD_PendingDtcs',
  permanent: 'OBD_PermanentDtcs',
} as const;

/** What OBD answers stand for to the stages after decoding (its signals: every PID's). */
export const OBD_MESSAGE: DbcMessage = virtualMessage(
  'OBD',
  PIDS.map((p) => p.signal),
);

export interface ObdCounters {
  /** Answers read (positive and negative). */
  answers: number;
  negative: number;
  /** Frames or answers that could not be read (ISO-TP errors, short or malformed answers). */
  errors: number;
}

/** An answer, read, with the signals and fault report it gives (none for a VIN or a refusal). */
export interface ObdUpdate {
  ecu: number;
  response: ObdResponse;
  signals: Record<string, number>;
  diagnostics?: DiagnosticReport;
}

interface EcuDtcs {
  stored: readonly string[];
  pending: readonly string[];
  permanent: readonly string[];
}

export class ObdResponses implements ProtocolReader {
  readonly message = OBD_MESSAGE;
  readonly counters: ObdCounters = { answers: 0, negative: 0, errors: 0 };
  /** The VIN the vehicle gave, once it has. */
  vin: string | null = null;
  private readonly receivers = new Map<number, IsoTpReceiver>();
  private readonly dtcs = new Map<number, EcuDtcs>();
  private milOn = false;

  /**
   * The answer a frame completes; CONSUMED for the other frames of an answer and for frames that
   * cannot be read (counted); null for frames that are not OBD answers.
   */
  accept(frame: CanFrame): ObdUpdate | typeof CONSUMED | null {
    const ecu = respondingEcu(frame.id, frame.extended);
    if (ecu === null || frame.rtr || frame.error) return null;
    const key = frame.extended ? frame.id + 0x20000000 : frame.id;
    let receiver = this.receivers.get(key);
    if (receiver === undefined) {
      receiver = new IsoTpReceiver({ blockSize: 0, stMin: 0, active: false });
      this.receivers.set(key, receiver);
    }
    const got = receiver.accept(frame.data, frame.tsMono);
    if (got === null || got.kind === 'flow-control') return CONSUMED;
    if (got.kind === 'error') {
      this.counters.errors++;
      return CONSUMED;
    }
    const response = parseObdResponse(got.payload);
    if (response instanceof ObdResponseError) {
      this.counters.errors++;
      return CONSUMED;
    }
    this.counters.answers++;
    return this.update(ecu, response);
  }

  private update(ecu: number, response: ObdResponse): ObdUpdate {
    const out: ObdUpdate = { ecu, response, signals: {} };
    if (response.kind === 'negative') this.counters.negative++;
    else if (response.kind === 'vin') this.vin = response.vin;
    else if (response.kind === 'pid') {
      out.signals[response.name] = response.value;
      if (response.pid === 0x01) this.milOn = response.value === 1;
    } else if (response.kind === 'dtcs') {
      const was = this.dtcs.get(ecu) ?? { stored: [], pending: [], permanent: [] };
      this.dtcs.set(ecu, { ...was, [response.dtcKind]: response.dtcs });
      const all = { stored: new Set<string>(), pending: new Set<string>(), permanent: new Set<string>() };
      for (const lists of this.dtcs.values())
        for (const kind of ['stored', 'pending', 'permanent'] as const) for (const d of lists[kind]) all[kind].add(d);
      out.signals[OBD_DTC_SIGNALS[response.dtcKind]] = all[response.dtcKind].size;
      // The record's list: confirmed (stored) codes and permanent ones the ECU still holds.
      out.diagnostics = {
        signal: OBD_DTC_SIGNALS.stored,
        milOn: this.milOn,
        dtcs: [...new Set([...all.stored, ...all.permanent])].sort(),
      };
    }
    return out;
  }
}
