import type { CanFrame } from '../drivers/can-frame.js';

/** A frame from hex data, for table-driven tests. */
export function frame(id: number, hex: string, opts: Partial<CanFrame> = {}): CanFrame {
  const data = Uint8Array.from(Buffer.from(hex.replace(/\s+/g, ''), 'hex'));
  return { bus: null, id, extended: false, rtr: false, fd: false, brs: false, error: false, data, tsMono: 0, tsWall: null, ...opts };
}

/** The fields of a frame worth comparing in a table (data as upper-case hex). */
export function frameView(f: CanFrame): Record<string, unknown> {
  return { id: f.id, extended: f.extended, rtr: f.rtr, fd: f.fd, brs: f.brs, error: f.error, data: Buffer.from(f.data).toString('hex').toUpperCase(), bus: f.bus, tsWall: f.tsWall };
}
