// ISO 15765-2 (ISO-TP) on classic CAN, as OBD-II (ISO 15765-4) uses it: single, first, consecutive
// and flow-control frames, block size and STmin both ways, and the N_Bs / N_Cr timeouts. Pure:
// time comes in with each frame, and what must be sent goes out as a value.

/** ISO 15765-4: every diagnostic frame has 8 data bytes; the unused ones are padding. */
export const ISO_TP_PADDING = 0xaa;
/** N_Bs / N_Cr for OBD (ISO 15765-4): 1,000 ms for the next flow control or consecutive frame. */
export const ISO_TP_TIMEOUT_MS = 1000;
/** 12-bit first-frame length; OBD answers are far shorter (a VIN is 20 bytes). */
export const ISO_TP_MAX_LENGTH = 4095;

export type IsoTpErrorCode =
  'EMPTY' | 'BAD_PCI' | 'BAD_LENGTH' | 'UNEXPECTED_CF' | 'WRONG_SEQUENCE' | 'TIMEOUT' | 'OVERFLOW' | 'FC_WAIT_LIMIT';

export class IsoTpError {
  constructor(
    readonly code: IsoTpErrorCode,
    readonly reason: string,
  ) {}
}

function padded(bytes: number[]): Uint8Array {
  const out = new Uint8Array(8).fill(ISO_TP_PADDING);
  out.set(bytes);
  return out;
}

/** A single frame for a payload of 1–7 bytes (OBD requests always are). */
export function singleFrame(payload: Uint8Array): Uint8Array {
  if (payload.length < 1 || payload.length > 7) throw new RangeError(`single frame of ${payload.length} bytes`);
  return padded([payload.length, ...payload]);
}

/** Flow status: continue to send, wait, or overflow (ISO 15765-2 Table 18). */
export const FlowStatus = { ContinueToSend: 0, Wait: 1, Overflow: 2 } as const;
export type FlowStatus = (typeof FlowStatus)[keyof typeof FlowStatus];

export function flowControlFrame(status: FlowStatus, blockSize: number, stMin: number): Uint8Array {
  return padded([0x30 | status, blockSize, stMin]);
}

/** STmin byte → milliseconds: 0x00–0x7F ms, 0xF1–0xF9 100–900 µs, reserved values as 127 ms (the standard's rule). */
export function stMinMs(byte: number): number {
  if (byte <= 0x7f) return byte;
  if (byte >= 0xf1 && byte <= 0xf9) return (byte - 0xf0) / 10;
  return 0x7f;
}

/** What a receiver makes of one frame. */
export type ReceiveResult =
  | { kind: 'message'; payload: Uint8Array }
  /** A first frame or the end of a block: the receiver must answer with this flow control. */
  | { kind: 'flow-control'; frame: Uint8Array }
  | { kind: 'error'; error: IsoTpError }
  | null;

/**
 * One receive channel (one ECU's answers). Active, it asks for flow control after a first frame
 * and after each block; passive (someone else's session on the bus), it only listens.
 */
export class IsoTpReceiver {
  private buffer: Uint8Array | null = null;
  private filled = 0;
  private nextSn = 1;
  private inBlock = 0;
  private deadline = 0;

  constructor(
    private readonly options: { blockSize: number; stMin: number; active: boolean } = {
      blockSize: 0,
      stMin: 0,
      active: true,
    },
  ) {}

  /** Whether a multi-frame message is being received. */
  get busy(): boolean {
    return this.buffer !== null;
  }

  /** An error when a message in progress timed out by `tsMono` (N_Cr); it is then dropped. */
  expire(tsMono: number): IsoTpError | null {
    if (this.buffer === null || tsMono <= this.deadline) return null;
    this.buffer = null;
    return new IsoTpError('TIMEOUT', `no consecutive frame for ${ISO_TP_TIMEOUT_MS} ms (N_Cr)`);
  }

  accept(data: Uint8Array, tsMono: number): ReceiveResult {
    if (data.length === 0) return { kind: 'error', error: new IsoTpError('EMPTY', 'frame without data') };
    const timedOut = this.expire(tsMono);
    const pci = (data[0] as number) >> 4;
    if (pci === 0) {
      const length = (data[0] as number) & 0x0f;
      // A single frame abandons a message in progress (ISO 15765-2 §9.8.3).
      this.buffer = null;
      if (length === 0 || length > 7 || length > data.length - 1)
        return {
          kind: 'error',
          error: new IsoTpError('BAD_LENGTH', `single frame of length ${length} in ${data.length} bytes`),
        };
      return { kind: 'message', payload: data.slice(1, 1 + length) };
    }
    if (pci === 1) {
      const length = (((data[0] as number) & 0x0f) << 8) | (data[1] ?? 0);
      if (length < 8 || data.length < 8)
        return {
          kind: 'error',
          error: new IsoTpError('BAD_LENGTH', `first frame of length ${length} in ${data.length} bytes`),
        };
      this.buffer = new Uint8Array(length);
      this.buffer.set(data.subarray(2, 8));
      this.filled = 6;
      this.nextSn = 1;
      this.inBlock = 0;
      this.deadline = tsMono + ISO_TP_TIMEOUT_MS;
      return this.options.active ? { kind: 'flow-control', frame: this.flowControl() } : null;
    }
    if (pci === 2) {
      if (this.buffer === null)
        return {
          kind: 'error',
          error: timedOut ?? new IsoTpError('UNEXPECTED_CF', 'consecutive frame without a first frame'),
        };
      const sn = (data[0] as number) & 0x0f;
      if (sn !== this.nextSn) {
        this.buffer = null;
        return {
          kind: 'error',
          error: new IsoTpError('WRONG_SEQUENCE', `consecutive frame ${sn}, expected ${this.nextSn}`),
        };
      }
      const take = Math.min(7, this.buffer.length - this.filled, data.length - 1);
      this.buffer.set(data.subarray(1, 1 + take), this.filled);
      this.filled += take;
      this.nextSn = (this.nextSn + 1) & 0x0f;
      this.deadline = tsMono + ISO_TP_TIMEOUT_MS;
      if (this.filled >= this.buffer.length) {
        const payload = this.buffer;
        this.buffer = null;
        return { kind: 'message', payload };
      }
      this.inBlock++;
      if (this.options.active && this.options.blockSize > 0 && this.inBlock >= this.options.blockSize) {
        this.inBlock = 0;
        return { kind: 'flow-control', frame: this.flowControl() };
      }
      return null;
    }
    if (pci === 3) return null; // Flow control travels the other way: the sender's business.
    return { kind: 'error', error: new IsoTpError('BAD_PCI', `protocol control information ${pci.toString(16)}`) };
  }

  private flowControl(): Uint8Array {
    return flowControlFrame(FlowStatus.ContinueToSend, this.options.blockSize, this.options.stMin);
  }
}

/** What a sender does next. */
export type SendStep =
  /** Send these frames, each at least `gapMs` after the one before. */
  | { kind: 'send'; frames: Uint8Array[]; gapMs: number }
  /** Wait for a flow control (N_Bs from now). */
  | { kind: 'await-flow-control' }
  | { kind: 'done' }
  | { kind: 'error'; error: IsoTpError };

/** A flow-control WAIT this many times in a row ends the transfer (ISO 15765-2 N_WFTmax). */
export const MAX_FC_WAITS = 10;

/** Segments one message and follows the receiver's flow control (block size, STmin, WAIT, OVERFLOW). */
export class IsoTpSender {
  private offset = 0;
  private sn = 1;
  private waits = 0;

  constructor(private readonly payload: Uint8Array) {
    if (payload.length < 1 || payload.length > ISO_TP_MAX_LENGTH)
      throw new RangeError(`ISO-TP message of ${payload.length} bytes`);
  }

  /** The first step: a single frame and done, or a first frame and a wait for flow control. */
  start(): SendStep {
    if (this.payload.length <= 7) {
      this.offset = this.payload.length;
      return { kind: 'send', frames: [singleFrame(this.payload)], gapMs: 0 };
    }
    this.offset = 6;
    const n = this.payload.length;
    return { kind: 'send', frames: [padded([0x10 | (n >> 8), n & 0xff, ...this.payload.subarray(0, 6)])], gapMs: 0 };
  }

  get finished(): boolean {
    return this.offset >= this.payload.length;
  }

  /** The consecutive frames one flow control allows; `await-flow-control` again after a full block. */
  onFlowControl(frame: Uint8Array): SendStep {
    const status = (frame[0] as number) & 0x0f;
    if ((frame[0] as number) >> 4 !== 3)
      return { kind: 'error', error: new IsoTpError('BAD_PCI', 'expected a flow control frame') };
    if (status === FlowStatus.Wait) {
      this.waits++;
      return this.waits > MAX_FC_WAITS
        ? { kind: 'error', error: new IsoTpError('FC_WAIT_LIMIT', `${this.waits} flow-control WAITs in a row`) }
        : { kind: 'await-flow-control' };
    }
    if (status === FlowStatus.Overflow)
      return { kind: 'error', error: new IsoTpError('OVERFLOW', `receiver cannot take ${this.payload.length} bytes`) };
    if (status !== FlowStatus.ContinueToSend)
      return { kind: 'error', error: new IsoTpError('BAD_PCI', `flow status ${status}`) };
    this.waits = 0;
    const blockSize = frame[1] ?? 0;
    const frames: Uint8Array[] = [];
    while (this.offset < this.payload.length && (blockSize === 0 || frames.length < blockSize)) {
      frames.push(padded([0x20 | this.sn, ...this.payload.subarray(this.offset, this.offset + 7)]));
      this.offset += 7;
      this.sn = (this.sn + 1) & 0x0f;
    }
    return { kind: 'send', frames, gapMs: stMinMs(frame[2] ?? 0) };
  }
}
