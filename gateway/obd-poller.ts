// OBD-II, active: asks the vehicle's ECUs through the adapter. Discovers the supported PIDs
// (bitmaps 0x00, 0x20, …), reads the VIN, then polls the configured PIDs each at its own interval
// and the DTCs, never faster than the global request rate; sends the flow control multi-frame
// answers need. What the answers say is read by the pipeline (ObdResponses), like any frame.
import type { Observable, Subscription } from 'rxjs';
import { MalformedLine, type CanFrame } from '../drivers/can-frame.js';
import {
  functionalRequestId,
  physicalRequestId,
  respondingEcu,
  type CanId,
  type ObdAddressing,
} from '../drivers/obd/addressing.js';
import { IsoTpReceiver, singleFrame } from '../drivers/obd/iso-tp.js';
import { isSupportBitmap, ObdResponseError, parseObdResponse, type ObdResponse } from '../drivers/obd/pids.js';
import type { Clock } from '../core/clock.js';

export interface ObdPollerOptions {
  addressing: ObdAddressing;
  pids: ReadonlyArray<{ pid: number; intervalMs: number }>;
  dtcIntervalMs: number;
  maxRequestsPerSecond: number;
  responseTimeoutMs: number;
  blockSize: number;
  stMinMs: number;
  /** The configured vehicle id, compared with the VIN the vehicle gives. */
  vehicleId?: string;
}

/** Where requests go: the adapter. False when it cannot take the frame now (closed). */
export interface CanTransmitter {
  send(frame: CanId & { data: Uint8Array }): boolean;
}

/** J1979 / ISO 14229: an ECU that answers "response pending" (NRC 0x78) has P2* = 5,000 ms. */
const P2_STAR_MS = 5000;
/** A PID that went unanswered waits its interval times 2^misses, up to this. */
const MAX_BACKOFF_MS = 600_000;
/** Refusals that mean the PID or service will never be answered. */
const UNSUPPORTED_NRCS = new Set([0x11, 0x12, 0x31]);
/** A closed adapter is asked again this soon. */
const UNSENT_RETRY_MS = 250;
/** Answers the functional discovery and DTC requests wait for, from however many ECUs. */
const FUNCTIONAL = -1;

interface PollItem {
  /** Service and PID (null for services without one: 03, 07, 0A). */
  service: number;
  pid: number | null;
  intervalMs: number;
  /** ECU asked physically, or FUNCTIONAL. */
  ecu: number;
  nextDue: number;
  misses: number;
  disabled: boolean;
}

interface Outstanding {
  item: PollItem;
  sentAt: number;
  deadline: number;
  /** ECUs that answered (any: the request was answered). */
  answeredBy: Set<number>;
}

export interface PidCounts {
  requests: number;
  answers: number;
}

export interface ObdPollerCounters {
  requests: number;
  answers: number;
  /** Physical requests with no answer in time. */
  timeouts: number;
  /** Negative responses by NRC. */
  negative: Record<number, number>;
  flowControls: number;
  /** Requests the adapter could not take (closed or reopening). */
  unsent: number;
  /** Per service-01 PID (and per DTC service as 0x103, 0x107, 0x10A): what was asked and answered. */
  perPid: Map<number, PidCounts>;
}

export type ObdPhase = 'discovery' | 'vin' | 'polling' | 'paused' | 'stopped';

export class ObdPoller {
  readonly counters: ObdPollerCounters = {
    requests: 0,
    answers: 0,
    timeouts: 0,
    negative: {},
    flowControls: 0,
    unsent: 0,
    perPid: new Map(),
  };
  /** Each ECU's supported service-01 PIDs, as discovery found them. */
  readonly supported = new Map<number, Set<number>>();
  vin: string | null = null;
  phase: ObdPhase = 'discovery';
  private queue: PollItem[] = [];
  private items: PollItem[] = [];
  private outstanding: Outstanding | null = null;
  private lastSentAt = -Infinity;
  private timer: NodeJS.Timeout | null = null;
  private subscription: Subscription | null = null;
  private readonly receivers = new Map<number, IsoTpReceiver>();

  constructor(
    private readonly options: ObdPollerOptions,
    private readonly adapter: CanTransmitter,
    private readonly clock: Clock,
    private readonly log: (message: string) => void,
    /** Ignition state: polling stops while it is off (null: unknown, poll). */
    private readonly ignition: () => boolean | null = () => null,
  ) {}

  start(frames: Observable<CanFrame | MalformedLine>): void {
    this.subscription = frames.subscribe((f) => {
      if (!(f instanceof MalformedLine)) this.onFrame(f);
    });
    this.queue = [this.item(0x01, 0x00, 0, FUNCTIONAL)];
    this.schedule(0);
  }

  stop(): void {
    this.phase = 'stopped';
    this.subscription?.unsubscribe();
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private item(service: number, pid: number | null, intervalMs: number, ecu: number): PollItem {
    return { service, pid, intervalMs, ecu, nextDue: 0, misses: 0, disabled: false };
  }

  private schedule(delayMs: number): void {
    if (this.phase === 'stopped') return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.tick(), Math.max(0, Math.ceil(delayMs)));
  }

  private tick(): void {
    this.timer = null;
    const now = this.clock.monoMs();
    if (this.outstanding !== null) {
      if (now < this.outstanding.deadline) return this.schedule(this.outstanding.deadline - now);
      this.finish(now);
    }
    if (this.ignition() === false) {
      if (this.phase !== 'paused') this.log('obd: ignition off, polling paused');
      this.phase = 'paused';
      return this.schedule(1000);
    }
    if (this.phase === 'paused') {
      this.log('obd: ignition on, polling resumed');
      this.phase = this.items.length > 0 ? 'polling' : 'discovery';
    }
    const gap = 1000 / this.options.maxRequestsPerSecond;
    if (now < this.lastSentAt + gap) return this.schedule(this.lastSentAt + gap - now);
    const queued = this.queue[0];
    const next = queued ?? this.mostOverdue(now);
    if (next === null) {
      const due = Math.min(...this.items.filter((i) => !i.disabled).map((i) => i.nextDue));
      return this.schedule(Number.isFinite(due) ? due - now : 1000);
    }
    if (!this.send(next, now)) return this.schedule(UNSENT_RETRY_MS);
    if (queued !== undefined) this.queue.shift();
    this.schedule(this.options.responseTimeoutMs);
  }

  private mostOverdue(now: number): PollItem | null {
    let best: PollItem | null = null;
    for (const i of this.items)
      if (!i.disabled && i.nextDue <= now && (best === null || i.nextDue < best.nextDue)) best = i;
    return best;
  }

  /** False when the adapter could not take the request (it is opening or reopening). */
  private send(item: PollItem, now: number): boolean {
    const id =
      item.ecu === FUNCTIONAL
        ? functionalRequestId(this.options.addressing)
        : physicalRequestId(this.options.addressing, item.ecu);
    const payload = item.pid === null ? Uint8Array.of(item.service) : Uint8Array.of(item.service, item.pid);
    this.lastSentAt = now;
    if (!this.adapter.send({ ...id, data: singleFrame(payload) })) {
      this.counters.unsent++;
      return false;
    }
    this.counters.requests++;
    this.countPid(item).requests++;
    this.outstanding = {
      item,
      sentAt: now,
      deadline: now + this.options.responseTimeoutMs,
      answeredBy: new Set(),
    };
    return true;
  }

  private countPid(item: PollItem): PidCounts {
    const key = item.pid === null ? 0x100 + item.service : item.pid;
    let c = this.counters.perPid.get(key);
    if (c === undefined) {
      c = { requests: 0, answers: 0 };
      this.counters.perPid.set(key, c);
    }
    return c;
  }

  /** The outstanding request ends: answered, or timed out. */
  private finish(now: number): void {
    const o = this.outstanding;
    if (o === null) return;
    this.outstanding = null;
    const { item } = o;
    if (item.intervalMs > 0) {
      if (o.answeredBy.size > 0 || item.ecu === FUNCTIONAL) {
        item.misses = 0;
        // On time, the cadence holds (no drift); late by more than half an interval (more asked
        // than the request rate allows), the next one is due half an interval on, so every PID
        // keeps a share in proportion to its rate instead of all catching up at once.
        item.nextDue = Math.max(item.nextDue + item.intervalMs, o.sentAt + item.intervalMs / 2);
      } else {
        item.misses++;
        this.counters.timeouts++;
        item.nextDue = now + Math.min(MAX_BACKOFF_MS, item.intervalMs * 2 ** Math.min(item.misses, 10));
      }
    }
    if (this.queue.length === 0 && this.phase === 'discovery') this.afterDiscovery();
    else if (this.queue.length === 0 && this.phase === 'vin') this.startPolling();
  }

  private afterDiscovery(): void {
    const ecus = [...this.supported.keys()];
    if (ecus.length === 0) {
      // No ECU answered (ignition on but engine ECU asleep, or no OBD at all): ask again later.
      this.log('obd: no ECU answered the supported-PID request; asking again in 5 s');
      this.queue = [this.item(0x01, 0x00, 0, FUNCTIONAL)];
      // The rate limit counts from the last request: moving it on holds the next one for 5 s.
      this.lastSentAt = this.clock.monoMs() + 5000 - 1000 / this.options.maxRequestsPerSecond;
      return;
    }
    this.log(
      `obd: ${ecus.length} ECU(s): ${ecus.map((e) => `#${e} ${[...(this.supported.get(e) ?? [])].filter((p) => !isSupportBitmap(p)).length} PIDs`).join(', ')}`,
    );
    this.phase = 'vin';
    this.queue = [this.item(0x09, 0x02, 0, FUNCTIONAL)];
  }

  private startPolling(): void {
    this.phase = 'polling';
    const now = this.clock.monoMs();
    const unsupported: string[] = [];
    this.items = [];
    for (const { pid, intervalMs } of this.options.pids) {
      const ecu = [...this.supported.entries()].find(([, pids]) => pids.has(pid))?.[0];
      if (ecu === undefined) unsupported.push(`0x${pid.toString(16).toUpperCase().padStart(2, '0')}`);
      else this.items.push({ ...this.item(0x01, pid, intervalMs, ecu), nextDue: now });
    }
    // The MIL and DTC count (PID 01) and the three DTC lists, from every ECU at once.
    for (const service of [0x03, 0x07, 0x0a])
      this.items.push({ ...this.item(service, null, this.options.dtcIntervalMs, FUNCTIONAL), nextDue: now });
    const milEcu = [...this.supported.entries()].find(([, pids]) => pids.has(0x01))?.[0];
    if (milEcu !== undefined)
      this.items.push({ ...this.item(0x01, 0x01, this.options.dtcIntervalMs, milEcu), nextDue: now });
    if (unsupported.length > 0) this.log(`obd: not supported by any ECU, not polled: PIDs ${unsupported.join(', ')}`);
  }

  private onFrame(frame: CanFrame): void {
    const ecu = respondingEcu(frame.id, frame.extended);
    if (ecu === null) return;
    let receiver = this.receivers.get(ecu);
    if (receiver === undefined) {
      receiver = new IsoTpReceiver({ blockSize: this.options.blockSize, stMin: this.options.stMinMs, active: true });
      this.receivers.set(ecu, receiver);
    }
    const got = receiver.accept(frame.data, frame.tsMono);
    if (got === null || got.kind === 'error') return;
    if (got.kind === 'flow-control') {
      this.counters.flowControls++;
      this.adapter.send({ ...physicalRequestId(this.options.addressing, ecu), data: got.frame });
      // A multi-frame answer is under way: its request waits for it (N_Cr), not for P2.
      if (this.outstanding !== null)
        this.outstanding.deadline = Math.max(this.outstanding.deadline, this.clock.monoMs() + 1000);
      return;
    }
    const response = parseObdResponse(got.payload);
    if (response instanceof ObdResponseError) return;
    this.onResponse(ecu, response);
  }

  private onResponse(ecu: number, r: ObdResponse): void {
    const o = this.outstanding;
    // A refusal names the service only; an answer its service and PID.
    const answersRequest =
      o !== null && r.service === o.item.service && (o.item.pid === null || !('pid' in r) || r.pid === o.item.pid);
    if (r.kind === 'supported') {
      let set = this.supported.get(ecu);
      if (set === undefined) this.supported.set(ecu, (set = new Set()));
      for (const pid of r.supported) set.add(pid);
      // The last PID of a bitmap says whether the next bitmap exists: ask that ECU for it.
      const nextBitmap = r.pid + 0x20;
      if (r.supported.includes(nextBitmap) && this.phase === 'discovery')
        this.queue.push(this.item(0x01, nextBitmap, 0, ecu));
    } else if (r.kind === 'vin' && this.vin === null) {
      this.vin = r.vin;
      const mismatch = this.options.vehicleId !== undefined && this.options.vehicleId !== r.vin;
      this.log(
        `obd: VIN ${r.vin} (ECU #${ecu})${mismatch ? `; the configuration says vehicle.id ${this.options.vehicleId}, which the records keep carrying: is the gateway in the vehicle it was provisioned for?` : ''}`,
      );
    }
    if (!answersRequest || o === null) return;
    if (r.kind === 'negative') {
      this.counters.negative[r.nrc] = (this.counters.negative[r.nrc] ?? 0) + 1;
      if (r.nrc === 0x78) {
        o.deadline = this.clock.monoMs() + P2_STAR_MS;
        return;
      }
      if (UNSUPPORTED_NRCS.has(r.nrc) && o.item.ecu !== FUNCTIONAL) {
        o.item.disabled = true;
        this.log(
          `obd: ECU #${ecu} refuses service ${o.item.service.toString(16)} PID ${o.item.pid ?? '-'} (${r.meaning}); no longer polled`,
        );
      }
    }
    this.counters.answers++;
    if (o.answeredBy.size === 0) this.countPid(o.item).answers++;
    o.answeredBy.add(ecu);
    // A physical request is done at its answer, and so is the VIN; a functional one once every ECU
    // discovery found has answered (during discovery: at its deadline, as any ECU may answer).
    const everyEcu =
      this.phase === 'polling' &&
      this.supported.size > 0 &&
      [...this.supported.keys()].every((e) => o.answeredBy.has(e));
    if (o.item.ecu !== FUNCTIONAL || r.kind === 'vin' || everyEcu) {
      this.finish(this.clock.monoMs());
      this.schedule(0);
    }
  }
}
