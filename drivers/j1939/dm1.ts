// J1939-73 DM1 (active diagnostic trouble codes, PGN 65226): lamp status, then one 4-byte DTC
// per active fault as SPN / FMI / occurrence count. Pure; a payload it cannot read is a value.

export const PGN_DM1 = 0xfeca;

/** A lamp's state: on, off, or null when the ECU reports an error or "not available". */
export type LampState = boolean | null;

export interface Dm1Lamps {
  mil: LampState;
  red: LampState;
  amber: LampState;
  protect: LampState;
}

export interface J1939Dtc {
  /** Suspect parameter number, 19 bits. */
  spn: number;
  /** Failure mode identifier, 5 bits. */
  fmi: number;
  /** Occurrence count, 7 bits (127: not available). */
  oc: number;
}

export interface Dm1 {
  lamps: Dm1Lamps;
  dtcs: J1939Dtc[];
}

export class Dm1Error {
  readonly code = 'DM1_TOO_SHORT';
  constructor(readonly reason: string) {}
}

function lamp(bits: number): LampState {
  return bits === 1 ? true : bits === 0 ? false : null;
}

/**
 * Reads a DM1 payload. SPNs use conversion method 4 (CM bit 0), the only one J1939-73 has allowed
 * since 1996; a DTC with CM 1 is read the same way rather than dropped. Slots of all zeros ("no
 * active fault" in a single-frame DM1) and of all ones (padding) are not faults.
 */
export function decodeDm1(data: Uint8Array): Dm1 | Dm1Error {
  if (data.length < 6)
    return new Dm1Error(`DM1 of ${data.length} bytes: expected at least 6 (2 lamp bytes and one 4-byte DTC)`);
  const status = data[0] as number;
  const lamps = {
    mil: lamp((status >> 6) & 3),
    red: lamp((status >> 4) & 3),
    amber: lamp((status >> 2) & 3),
    protect: lamp(status & 3),
  };
  const dtcs: J1939Dtc[] = [];
  for (let i = 2; i + 4 <= data.length; i += 4) {
    const b2 = data[i] as number;
    const b3 = data[i + 1] as number;
    const b4 = data[i + 2] as number;
    const b5 = data[i + 3] as number;
    const all = b2 | b3 | b4 | b5;
    if (all === 0 || (b2 & b3 & b4 & b5) === 0xff) continue;
    dtcs.push({ spn: b2 | (b3 << 8) | ((b4 >> 5) << 16), fmi: b4 & 0x1f, oc: b5 & 0x7f });
  }
  return { lamps, dtcs };
}

/** A J1939 DTC as the record's diagnostics list carries it: "SPN110-FMI0" (never forced into a P-code). */
export function formatJ1939Dtc(dtc: J1939Dtc): string {
  return `SPN${dtc.spn}-FMI${dtc.fmi}`;
}
