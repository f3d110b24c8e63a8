// The adapter simulator's vehicle as OBD-II sees it: an engine ECU and a slow transmission ECU
// that answer J1979 requests from a model kept up to date by the reference drive (its frames are
// decoded, not put on the bus: on most cars the OBD port only answers). Multi-frame answers (the
// VIN) follow the tester's flow control; the VIN first answers "response pending".
import type { CanFrame } from '../can-frame.js';
import { DecodeError, type DbcDecoder } from '../dbc/decoder.js';
import { requestTarget, responseId, type CanId, type ObdAddressing } from './addressing.js';
import { IsoTpSender, type SendStep } from './iso-tp.js';
import { PID_BY_NUMBER, isSupportBitmap, supportBitmap } from './pids.js';

interface EcuSpec {
  ecu: number;
  /** Service-01 PIDs it answers (bitmap PIDs included where a later range has some). */
  pids: ReadonlySet<number>;
  /** How long it takes to answer (the transmission is slow). */
  delayMs: number;
  /** Whether it holds the VIN and the engine's DTCs. */
  engine: boolean;
}

const ECUS: readonly EcuSpec[] = [
  {
    ecu: 0,
    pids: new Set([
      0x01, 0x04, 0x05, 0x0c, 0x0d, 0x0f, 0x10, 0x11, 0x1f, 0x20, 0x2f, 0x31, 0x40, 0x42, 0x46, 0x5e, 0x60, 0x80, 0xa0,
      0xa6,
    ]),
    delayMs: 4,
    engine: true,
  },
  { ecu: 1, pids: new Set([0x01]), delayMs: 35, engine: false },
];

/** A frame to put on the bus `atMs` from now. */
export interface ScheduledFrame extends CanId {
  atMs: number;
  data: Uint8Array;
}

/** The VIN's "response pending" lasts this long (an ECU reading its EEPROM). */
const VIN_DELAY_MS = 120;

export class SimulatedObdVehicle {
  private readonly values = new Map<string, number>();
  private engineStartMono: number | null = null;
  private odometerAtClear: number | null = null;
  private lastMono = 0;
  private readonly senders = new Map<number, IsoTpSender>();

  constructor(
    private readonly addressing: ObdAddressing,
    private readonly decoder: DbcDecoder,
    private readonly vin: string,
  ) {}

  /** One frame of the drive: the model's values move on. */
  observe(frame: CanFrame): void {
    const decoded = this.decoder.decode(frame, false);
    if (decoded instanceof DecodeError) return;
    for (const [name, v] of Object.entries(decoded.signals)) this.values.set(name, Number(v));
    this.lastMono = frame.tsMono;
    if (this.engineStartMono === null && (this.values.get('EngineSpeed') ?? 0) > 300)
      this.engineStartMono = frame.tsMono;
    if (this.odometerAtClear === null && this.values.has('Odometer'))
      this.odometerAtClear = (this.values.get('Odometer') as number) - 312;
  }

  /** The answers to a tester's frame (a request, or flow control for an answer under way). */
  onFrame(frame: CanFrame): ScheduledFrame[] {
    const target = requestTarget(frame.id, frame.extended);
    if (target === null || frame.data.length < 1) return [];
    const pci = (frame.data[0] as number) >> 4;
    if (pci === 3) {
      const sender = typeof target === 'number' ? this.senders.get(target) : undefined;
      if (sender === undefined || typeof target !== 'number') return [];
      const step = sender.onFlowControl(frame.data);
      if (sender.finished || step.kind === 'error') this.senders.delete(target);
      return this.framesOf(target, step, 0);
    }
    const length = (frame.data[0] as number) & 0x0f;
    if (pci !== 0 || length < 1 || length > 7) return [];
    const request = frame.data.subarray(1, 1 + length);
    const out: ScheduledFrame[] = [];
    for (const spec of ECUS) {
      if (target !== 'functional' && target !== spec.ecu) continue;
      out.push(...this.answer(spec, request, target === 'functional'));
    }
    return out;
  }

  private answer(spec: EcuSpec, request: Uint8Array, functional: boolean): ScheduledFrame[] {
    const service = request[0] as number;
    const pid = request[1];
    const refuse = (nrc: number): ScheduledFrame[] =>
      functional ? [] : this.send(spec, Uint8Array.of(0x7f, service, nrc), spec.delayMs);
    if (service === 0x01 && pid !== undefined) {
      if (isSupportBitmap(pid)) {
        const bitmap = supportBitmap(pid, spec.pids);
        if (pid !== 0 && bitmap.every((b) => b === 0)) return refuse(0x31);
        return this.send(spec, Uint8Array.of(0x41, pid, ...bitmap), spec.delayMs);
      }
      const value = spec.pids.has(pid) ? this.pidBytes(spec, pid) : null;
      return value === null ? refuse(0x31) : this.send(spec, Uint8Array.of(0x41, pid, ...value), spec.delayMs);
    }
    if (service === 0x03 || service === 0x07 || service === 0x0a) {
      const dtc = spec.engine && service !== 0x0a ? (this.values.get('ActiveDtc') ?? 0) : 0;
      // Overheating also leaves two pending codes (thermostat, coolant sensor range): a pending
      // list of 3 is 8 bytes, a multi-frame answer with flow control.
      const codes = dtc === 0 ? [] : service === 0x07 ? [dtc, 0x0128, 0x0116] : [dtc];
      const bytes = codes.flatMap((c) => [c >> 8, c & 0xff]);
      return this.send(spec, Uint8Array.of(service + 0x40, codes.length, ...bytes), spec.delayMs);
    }
    if (service === 0x09 && pid === 0x02 && spec.engine)
      return [
        ...this.send(spec, Uint8Array.of(0x7f, 0x09, 0x78), spec.delayMs),
        ...this.send(spec, Uint8Array.of(0x49, 0x02, 0x01, ...Buffer.from(this.vin, 'latin1')), VIN_DELAY_MS),
      ];
    return refuse(service === 0x01 || service === 0x09 ? 0x12 : 0x11);
  }

  private pidBytes(spec: EcuSpec, pid: number): number[] | null {
    const v = (name: string): number => this.values.get(name) ?? 0;
    if (pid === 0x01) {
      const count = spec.engine && v('ActiveDtc') !== 0 ? 1 : 0;
      return [(spec.engine && v('MilOn') >= 0.5 ? 0x80 : 0) | count, 0x07, 0xe5, 0x00];
    }
    const model: Record<number, number> = {
      0x04: v('EngineLoad'),
      0x05: v('CoolantTemp'),
      0x0c: v('EngineSpeed'),
      0x0d: v('VehicleSpeed'),
      0x0f: v('AmbientTemp') + 8,
      0x10: (v('EngineSpeed') * v('EngineLoad')) / 4000,
      0x11: v('ThrottlePosition'),
      0x1f: this.engineStartMono === null ? 0 : (this.lastMono - this.engineStartMono) / 1000,
      0x2f: v('FuelLevel'),
      0x31: this.odometerAtClear === null ? 0 : v('Odometer') - this.odometerAtClear,
      0x42: v('Battery12V'),
      0x46: v('AmbientTemp'),
      0x5e: v('FuelRate'),
      0xa6: v('Odometer'),
    };
    const value = model[pid];
    const def = PID_BY_NUMBER.get(pid);
    return value === undefined || def === undefined ? null : def.encode(value);
  }

  /** An answer from `spec`, segmented: a single frame, or a first frame that waits for flow control. */
  private send(spec: EcuSpec, payload: Uint8Array, delayMs: number): ScheduledFrame[] {
    const sender = new IsoTpSender(payload);
    const step = sender.start();
    if (!sender.finished) this.senders.set(spec.ecu, sender);
    return this.framesOf(spec.ecu, step, delayMs);
  }

  private framesOf(ecu: number, step: SendStep, delayMs: number): ScheduledFrame[] {
    if (step.kind !== 'send') return [];
    const id = responseId(this.addressing, ecu);
    // STmin counts from one frame to the next; a bus frame takes ~0.25 ms, so at least that.
    const gap = Math.max(step.gapMs, 0.25);
    return step.frames.map((data, i) => ({ ...id, atMs: delayMs + i * gap, data }));
  }
}
