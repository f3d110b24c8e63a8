// SAE J1939-21 identifiers: a 29-bit CAN id read as priority, parameter group number (PGN),
// destination (PDU1 only) and source address.

/** Global destination address: a PDU1 message to every node, and every PDU2 message. */
export const GLOBAL_ADDRESS = 0xff;

export interface J1939Id {
  priority: number;
  /** Parameter group number: data page bits and PDU format, plus the group extension for PDU2. */
  pgn: number;
  /** Destination address of a PDU1 (PDU format < 240) message; null for PDU2 (always global). */
  da: number | null;
  sa: number;
}

/** Reads a 29-bit identifier; callers pass extended frames only (J1939 has no 11-bit ids). */
export function parseJ1939Id(id: number): J1939Id {
  const pf = (id >>> 16) & 0xff;
  const ps = (id >>> 8) & 0xff;
  const page = (id >>> 24) & 0x3;
  const pdu1 = pf < 240;
  return {
    priority: (id >>> 26) & 0x7,
    pgn: (page << 16) | (pf << 8) | (pdu1 ? 0 : ps),
    da: pdu1 ? ps : null,
    sa: id & 0xff,
  };
}

/** The PGN of a 29-bit identifier (the destination of a PDU1 message is not part of it). */
export function pgnOf(id: number): number {
  const pf = (id >>> 16) & 0xff;
  return ((id >>> 8) & (pf < 240 ? 0x3ff00 : 0x3ffff)) >>> 0;
}
