// ISO 15765-4 addressing of OBD-II on CAN: functional requests to every ECU, physical requests
// to one, and the ids ECUs answer on; 11-bit (0x7DF / 0x7E0+n / 0x7E8+n) and 29-bit normal fixed
// (0x18DB33F1 / 0x18DAnnF1 / 0x18DAF1nn) addressing.

export type ObdAddressing = '11bit' | '29bit';

/** The external test equipment's address in 29-bit addressing. */
const TESTER = 0xf1;

export interface CanId {
  id: number;
  extended: boolean;
}

/** The functional (broadcast) request id. */
export function functionalRequestId(addressing: ObdAddressing): CanId {
  return addressing === '11bit' ? { id: 0x7df, extended: false } : { id: 0x18db33f1, extended: true };
}

/**
 * The physical request id for the ECU that answered on `ecu` (0–7 for 11-bit: 0x7E8+n answers,
 * 0x7E0+n is asked; the ECU's source address for 29-bit).
 */
export function physicalRequestId(addressing: ObdAddressing, ecu: number): CanId {
  return addressing === '11bit'
    ? { id: 0x7e0 + ecu, extended: false }
    : { id: 0x18da0000 | (ecu << 8) | TESTER, extended: true };
}

/** The ECU an answer frame comes from, or null when the frame is not an OBD answer. */
export function respondingEcu(id: number, extended: boolean): number | null {
  if (!extended) return id >= 0x7e8 && id <= 0x7ef ? id - 0x7e8 : null;
  return (id & 0x1fffff00) === 0x18daf100 ? id & 0xff : null;
}

/** The ECU a tester's physical request goes to, 'functional' for a broadcast, null for other frames. */
export function requestTarget(id: number, extended: boolean): number | 'functional' | null {
  if (!extended) {
    if (id === 0x7df) return 'functional';
    return id >= 0x7e0 && id <= 0x7e7 ? id - 0x7e0 : null;
  }
  if (id === 0x18db33f1) return 'functional';
  return (id & 0x1fff00ff) === 0x18da00f1 ? (id >> 8) & 0xff : null;
}

/** The id an ECU answers on (the simulated ECU uses it). */
export function responseId(addressing: ObdAddressing, ecu: number): CanId {
  return addressing === '11bit' ? { id: 0x7e8 + ecu, extended: false } : { id: 0x18daf100 | ecu, extended: true };
}
