// The reference drive through the real pipeline: the records a gateway on the reference vehicle
// builds, for the wire-size tests and the bench (realistic values, not random ones).
import { lastValueFrom, toArray } from 'rxjs';
import { traceFrames } from '../../drivers/trace-source.js';
import type { VehicleTelemetry } from '../../proto/telemetry-codec.js';
import { systemClock } from '../../core/clock.js';
import { referenceVehicleConfig, type GatewayConfig } from '../../core/config.js';
import { loadDecoder } from '../../gateway/gateway.js';
import { newPipelineCounters, telemetryPipeline } from '../../gateway/telemetry-pipeline.js';
import { resolutionTable } from '../../gateway/wire-resolution.js';
import type { ResolutionTable } from '../../proto/record-columns.js';

export interface DriveRecords {
  config: GatewayConfig;
  records: VehicleTelemetry[];
  resolution: ResolutionTable;
}

/** Every record of the reference drive with windows of `windowMs` (events included). */
export async function referenceDriveRecords(windowMs: number): Promise<DriveRecords> {
  const config = referenceVehicleConfig({ mqttUrl: 'mqtt://127.0.0.1:1', windowMs });
  const decoder = loadDecoder(config.dbc);
  const frames = traceFrames(config.can.file as string, 'candump', 0, systemClock);
  const records = await lastValueFrom(
    telemetryPipeline(frames, {
      config,
      decoder,
      clock: systemClock,
      counters: newPipelineCounters(),
      bootId: '0d5e7a4c-1b2f-4c3d-8e9f-a0b1c2d3e4f5',
      firstSequence: 1,
      live: false,
    }).pipe(toArray()),
  );
  return { config, records, resolution: resolutionTable(decoder.db, config.pipeline.fields) };
}
