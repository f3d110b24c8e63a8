// Protocols read beside the DBC (J1939 transport and DM1, OBD-II answers): frames they own are
// theirs; what they read enters the pipeline as signals under a message of their own.
import type { CanFrame } from '../../drivers/can-frame.js';
import type { DbcMessage, DbcSignal } from '../../drivers/dbc/model.js';
import type { DiagnosticReport } from './decode-stage.js';

/** What a protocol read from the frame that completed something. */
export interface ProtocolReading {
  signals: Record<string, number>;
  diagnostics?: DiagnosticReport;
}

/** A frame of the protocol that completes nothing (a transport packet, part of an answer). */
export const CONSUMED = 'consumed';

export interface ProtocolReader {
  /** The message its readings are decoded frames of. */
  readonly message: DbcMessage;
  /** A reading, CONSUMED for the protocol's other frames, null for frames it does not own (decoded with the DBC). */
  accept(frame: CanFrame): ProtocolReading | typeof CONSUMED | null;
}

function virtualSignal(name: string): DbcSignal {
  return {
    name,
    startBit: 0,
    length: 0,
    littleEndian: true,
    signed: false,
    valueType: 'integer',
    factor: 1,
    offset: 0,
    min: 0,
    max: 0,
    unit: '',
    receivers: [],
    isMultiplexer: false,
    multiplexValue: null,
    multiplexer: null,
    choices: null,
    line: 0,
  };
}

/**
 * What values from outside the DBC (J1939 DM1, OBD-II answers) stand for to the stages after
 * decoding: a message with no bits, only the names of the signals the event stage may watch.
 */
export function virtualMessage(name: string, signals: readonly string[]): DbcMessage {
  return { id: 0, extended: true, name, length: 0, transmitter: '', signals: signals.map(virtualSignal), line: 0 };
}
