// SAE J2012 diagnostic trouble codes as OBD-II (and DBC signals) carry them: two bytes.

/** SAE J2012 two-byte DTC → text, e.g. 0x0217 → "P0217". */
export function formatDtc(code: number): string {
  const letter = 'PCBU'[(code >> 14) & 3] as string;
  return letter + ((code >> 12) & 3).toString() + (code & 0xfff).toString(16).toUpperCase().padStart(3, '0');
}
