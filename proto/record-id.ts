// Record ids derived from the capture run and the record's sequence. A batch carries each run once
// and every record's sequence; the receiver re-derives message_id and trace_id for de-duplication,
// so no 36-character random id travels per record (issue 4).

/**
 * The record id: the run's UUID with its last 56 bits replaced by the sequence, marked as a
 * UUID version 8 (RFC 9562, custom layout). Unique per (run, sequence); runs differ in 62 random bits.
 */
export function recordId(runId: string, sequence: number): string {
  if (!Number.isSafeInteger(sequence) || sequence < 0)
    throw new RangeError(`sequence must be a non-negative safe integer, got ${sequence}`);
  const bytes = uuidBytes(runId);
  bytes[6] = ((bytes[6] as number) & 0x0f) | 0x80;
  bytes[8] = ((bytes[8] as number) & 0x3f) | 0x80;
  let rest = BigInt(sequence);
  for (let i = 15; i >= 9; i--) {
    bytes[i] = Number(rest & 0xffn);
    rest >>= 8n;
  }
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** True when `messageId` is the id derived from this run and sequence (false for any malformed input). */
export function isDerivedRecordId(messageId: string, runId: string, sequence: number): boolean {
  try {
    return messageId === recordId(runId, sequence);
  } catch {
    return false;
  }
}

/** The W3C trace id that starts at a record: its id's 16 bytes in hex. */
export function traceIdOf(messageId: string): string {
  return messageId.replaceAll('-', '');
}

function uuidBytes(uuid: string): Buffer {
  const hex = uuid.replaceAll('-', '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new RangeError(`expected a UUID as the run id, got "${uuid}"`);
  return Buffer.from(hex, 'hex');
}
