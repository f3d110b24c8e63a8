// Records the gateway will never be able to send (larger than any packet the broker accepts,
// refused by the offload receiver on their own, or damaged in the store) are moved here, one JSON
// line each with the reason, instead of being retried in a loop or dropped.
import { closeSync, fchmodSync, fsyncSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { VehicleTelemetry } from '../../proto/telemetry-codec.js';

export interface DeadLetter {
  reason: string;
  /** Where it could not go: an MQTT topic or an offload URL path. */
  topic: string;
  /** For packet-size refusals. */
  packetBytes?: number;
  maxPacketBytes?: number;
  /** For refusals by the receiver: what it said. */
  detail?: string;
  record: VehicleTelemetry;
}

export class DeadLetterFile {
  /** Records moved here, by reason. */
  readonly counts = new Map<string, number>();

  constructor(readonly path: string) {}

  /** Appends and syncs, so the record is on the medium before it leaves the outbox. */
  write(letter: DeadLetter, atMs: number): void {
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    const fd = openSync(this.path, 'a', 0o600);
    try {
      // Owner-only whatever the umask, and a file from an older version is tightened too.
      fchmodSync(fd, 0o600);
      writeSync(fd, `${JSON.stringify({ time: new Date(atMs).toISOString(), ...letter })}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    this.counts.set(letter.reason, (this.counts.get(letter.reason) ?? 0) + 1);
  }
}
