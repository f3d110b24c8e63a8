// J1939-21 transport protocol, observed passively: BAM broadcasts and RTS/CTS connections
// (TP.CM / TP.DT) between other nodes, reassembled into messages of up to 1,785 bytes. We never
// answer (a listener that sent CTS or aborts would disturb the connection it watches).
import { GLOBAL_ADDRESS, parseJ1939Id } from './j1939-id.js';

export const PGN_TP_CM = 0xec00;
export const PGN_TP_DT = 0xeb00;
/** 255 packets of 7 bytes. */
export const MAX_TRANSPORT_BYTES = 1785;

const CM_RTS = 16;
const CM_CTS = 17;
const CM_END_OF_MESSAGE_ACK = 19;
const CM_BAM = 32;
const CM_ABORT = 255;

/** J1939-21 T1: a receiver gives up 750 ms after the last data packet (BAM, or RTS/CTS mid-block). */
const T1_MS = 750;
/** J1939-21 T2/T3: 1,250 ms waiting for data after a CTS, or for a CTS after data or the RTS. */
const T2_MS = 1250;
/** Sessions open at once; each holds its announced size, so hostile traffic is bounded to ~114 KiB. */
export const MAX_SESSIONS = 64;

export type TransportKind = 'bam' | 'rts-cts';

/** A reassembled transport-protocol message. */
export interface TransportMessage {
  pgn: number;
  sa: number;
  /** 255 (global) for BAM. */
  da: number;
  transport: TransportKind;
  data: Uint8Array;
  /** Capture time of its last packet. */
  tsMono: number;
}

/** Every way a transfer can end other than complete, counted (the FMEA's "counters for every failure"). */
// A type, not an interface: metrics read it as a record of counts (Object.entries keeps the number type).
export type TransportCounters = {
  bam: number;
  rtsCts: number;
  /** A TP.CM_Abort from either end. */
  aborted: number;
  /** A session with no packet within T1/T2. */
  timedOut: number;
  /** A data packet out of order: ends a BAM; an RTS/CTS waits for the receiver's next CTS. */
  sequenceErrors: number;
  /** A BAM or RTS whose size and packet count disagree, or outside 1–1,785 bytes. */
  badAnnouncements: number;
  /** A data packet, CTS or abort for no open session (or for another PGN than the open one). */
  orphans: number;
  /** An open session replaced by a new BAM or RTS from the same sender to the same receiver. */
  replaced: number;
  /** An announcement refused because MAX_SESSIONS were open. */
  overflow: number;
  /** A TP.CM or TP.DT frame shorter than 8 bytes. */
  shortFrames: number;
  /** A TP.CM with a control byte J1939-21 does not define. */
  unknownControl: number;
};

export function newTransportCounters(): TransportCounters {
  return {
    bam: 0,
    rtsCts: 0,
    aborted: 0,
    timedOut: 0,
    sequenceErrors: 0,
    badAnnouncements: 0,
    orphans: 0,
    replaced: 0,
    overflow: 0,
    shortFrames: 0,
    unknownControl: 0,
  };
}

interface Session {
  kind: TransportKind;
  pgn: number;
  sa: number;
  da: number;
  data: Uint8Array;
  packets: number;
  /** Sequence number of the next data packet expected. */
  next: number;
  deadline: number;
}

function pgnAt(d: Uint8Array): number {
  return (d[5] as number) | ((d[6] as number) << 8) | ((d[7] as number) << 16);
}

/**
 * Reassembles transport-protocol transfers from frames in capture order. Time is the frames' own
 * (tsMono), so a replayed trace times out exactly as it did on the bus.
 */
export class TransportReassembler {
  readonly counters = newTransportCounters();
  /** Keyed by sender * 256 + receiver: J1939-21 allows one transfer per direction of each pair. */
  private readonly sessions = new Map<number, Session>();
  private nextDeadline = Infinity;

  /**
   * Takes one frame's identifier, payload and time; returns the message it completes, or null.
   * Frames that are not TP.CM / TP.DT return null at the cost of one comparison.
   */
  accept(id: number, data: Uint8Array, tsMono: number): TransportMessage | null {
    const pf = (id >>> 16) & 0x3ff;
    if (pf !== PGN_TP_CM >> 8 && pf !== PGN_TP_DT >> 8) return null;
    this.expire(tsMono);
    if (data.length < 8) {
      this.counters.shortFrames++;
      return null;
    }
    const { sa, da } = parseJ1939Id(id);
    const to = da ?? GLOBAL_ADDRESS;
    return pf === PGN_TP_DT >> 8 ? this.dataPacket(sa, to, data, tsMono) : this.control(sa, to, data, tsMono);
  }

  /** Ends the sessions whose time ran out by `tsMono` (also done on every transport frame). */
  expire(tsMono: number): void {
    if (tsMono <= this.nextDeadline) return;
    this.nextDeadline = Infinity;
    for (const [key, s] of this.sessions) {
      if (s.deadline < tsMono) {
        this.sessions.delete(key);
        this.counters.timedOut++;
      } else this.nextDeadline = Math.min(this.nextDeadline, s.deadline);
    }
  }

  /** Sessions open now. */
  get open(): number {
    return this.sessions.size;
  }

  private arm(s: Session, deadline: number): void {
    s.deadline = deadline;
    this.nextDeadline = Math.min(this.nextDeadline, deadline);
  }

  private control(sa: number, da: number, d: Uint8Array, tsMono: number): null {
    const cmd = d[0] as number;
    if (cmd === CM_BAM || cmd === CM_RTS) {
      this.announce(cmd === CM_BAM ? 'bam' : 'rts-cts', sa, cmd === CM_BAM ? GLOBAL_ADDRESS : da, d, tsMono);
      return null;
    }
    // The transfer completed on its last data packet; the receiver's acknowledgement adds nothing.
    if (cmd === CM_END_OF_MESSAGE_ACK) return null;
    if (cmd !== CM_CTS && cmd !== CM_ABORT) {
      this.counters.unknownControl++;
      return null;
    }
    // CTS and abort travel from the receiver back to the sender, except an abort the sender
    // itself sends: try the sender's direction first.
    const key = cmd === CM_ABORT && this.sessions.has(sa * 256 + da) ? sa * 256 + da : da * 256 + sa;
    const s = this.sessions.get(key);
    if (s === undefined || s.kind === 'bam' || s.pgn !== pgnAt(d)) {
      this.counters.orphans++;
      return null;
    }
    if (cmd === CM_ABORT) {
      this.sessions.delete(key);
      this.counters.aborted++;
    } else {
      // A CTS for 0 packets holds the transfer; one for earlier packets asks for them again.
      const from = d[2] as number;
      if ((d[1] as number) > 0 && from >= 1 && from <= s.next) s.next = from;
      this.arm(s, tsMono + T2_MS);
    }
    return null;
  }

  private announce(kind: TransportKind, sa: number, da: number, d: Uint8Array, tsMono: number): void {
    const size = (d[1] as number) | ((d[2] as number) << 8);
    const packets = d[3] as number;
    if (size < 1 || size > MAX_TRANSPORT_BYTES || packets !== Math.ceil(size / 7)) {
      this.counters.badAnnouncements++;
      return;
    }
    const key = sa * 256 + da;
    if (this.sessions.has(key)) this.counters.replaced++;
    else if (this.sessions.size >= MAX_SESSIONS) {
      this.counters.overflow++;
      return;
    }
    const s: Session = { kind, pgn: pgnAt(d), sa, da, data: new Uint8Array(size), packets, next: 1, deadline: 0 };
    this.sessions.set(key, s);
    this.arm(s, tsMono + (kind === 'bam' ? T1_MS : T2_MS));
  }

  private dataPacket(sa: number, da: number, d: Uint8Array, tsMono: number): TransportMessage | null {
    const key = sa * 256 + da;
    const s = this.sessions.get(key);
    if (s === undefined) {
      this.counters.orphans++;
      return null;
    }
    const seq = d[0] as number;
    if (seq !== s.next) {
      this.counters.sequenceErrors++;
      if (s.kind === 'bam') this.sessions.delete(key);
      return null;
    }
    const offset = (seq - 1) * 7;
    s.data.set(d.subarray(1, 1 + Math.min(7, s.data.length - offset)), offset);
    if (seq < s.packets) {
      s.next++;
      this.arm(s, tsMono + T1_MS);
      return null;
    }
    this.sessions.delete(key);
    if (s.kind === 'bam') this.counters.bam++;
    else this.counters.rtsCts++;
    return { pgn: s.pgn, sa: s.sa, da: s.da, transport: s.kind, data: s.data, tsMono };
  }
}
