// The pipeline from CAN frames to telemetry records, composed of its stages (gateway/pipeline/):
// decode → events → windows → records. Each stage is an RxJS operator with its own tests.
import { EMPTY, merge, type Observable } from 'rxjs';
import { decodeFrames, type DecodeCounters, type DecodedFrame } from './pipeline/decode-stage.js';
import { detectEvents } from './pipeline/event-stage.js';
import { J1939Diagnostics, type J1939Counters } from './pipeline/j1939-diagnostics.js';
import { ObdResponses, type ObdCounters } from './pipeline/obd-responses.js';
import type { ProtocolReader } from './pipeline/protocol-reader.js';
import { buildRecords } from './pipeline/record-stage.js';
import { windowSignals } from './pipeline/window-stage.js';
import type { CanFrame, MalformedLine } from '../drivers/can-frame.js';
import type { DbcDecoder } from '../drivers/dbc/decoder.js';
import type { TransportCounters } from '../drivers/j1939/transport.js';
import type { GatewayConfig } from '../core/config.js';
import type { Clock } from '../core/clock.js';
import type { VehicleTelemetry } from '../proto/telemetry-codec.js';

export interface PipelineCounters extends DecodeCounters {
  windows: number;
  events: number;
  /** Transport-protocol and DM1 counts, with J1939 on (`can.protocols`); null otherwise. */
  j1939: { transport: TransportCounters; dm1: J1939Counters } | null;
  /** OBD-II answers read, with `obd` on; null otherwise. */
  obd: ObdCounters | null;
}

export function newPipelineCounters(): PipelineCounters {
  return {
    frames: 0,
    malformed: 0,
    decoded: 0,
    decodeErrors: { 'unknown-id': 0, 'wrong-length': 0, 'error-frame': 0, 'remote-frame': 0 },
    windows: 0,
    events: 0,
    j1939: null,
    obd: null,
  };
}

export interface PipelineContext {
  config: GatewayConfig;
  decoder: DbcDecoder;
  clock: Clock;
  counters: PipelineCounters;
  bootId: string;
  /** First sequence number to use (continues the store's). */
  firstSequence: number;
  /** Live sources (serial) close windows after silence; replays close them on data time only. */
  live: boolean;
  /** Signals from beside the CAN bus (GNSS positions), live sources only; must end when the frames do. */
  sideSignals?: Observable<DecodedFrame>;
}

/** Frames (and malformed lines) in, telemetry records out. Completing the input flushes the open window. */
export function telemetryPipeline(
  frames: Observable<CanFrame | MalformedLine>,
  ctx: PipelineContext,
): Observable<VehicleTelemetry> {
  const { config, counters, clock } = ctx;
  const { windowMs, idleFlushMs, events, fields, exclude } = config.pipeline;
  const protocols: ProtocolReader[] = [];
  if (config.can.protocols.includes('j1939')) {
    const j1939 = new J1939Diagnostics();
    counters.j1939 = { transport: j1939.transport.counters, dm1: j1939.counters };
    protocols.push(j1939);
  }
  if (config.can.protocols.includes('obd')) {
    const obd = new ObdResponses();
    counters.obd = obd.counters;
    protocols.push(obd);
  }
  return merge(frames.pipe(decodeFrames(ctx.decoder, counters, protocols)), ctx.sideSignals ?? EMPTY).pipe(
    detectEvents(events, counters),
    windowSignals({ windowMs, idleFlushMs: ctx.live ? idleFlushMs : 0, clock }, counters),
    buildRecords({
      vehicleId: config.vehicle.id,
      fields,
      exclude,
      clock,
      bootId: ctx.bootId,
      firstSequence: ctx.firstSequence,
    }),
  );
}
