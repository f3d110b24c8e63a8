// Reads live records off the wire as a receiver does, for tools that watch MQTT traffic (a bench's
// relay, a test's subscriber): learns each layout published on telemetry/layout/<id> and decodes
// compact and row-wise records with them. Errors are the decoders' (CompactRecordError, ...).
import { decodeCompactRecord } from '../proto/compact-record.js';
import { decodeTelemetry, type VehicleTelemetry } from '../proto/telemetry-codec.js';
import { LayoutCache } from './layout-cache.js';

const LAYOUT_TOPIC = /\/telemetry\/layout\/([0-9a-f]{16})$/;

export class LiveReader {
  private readonly layouts = new LayoutCache<never>();

  /** The record a PUBLISH on `topic` carries; null for a layout or any other topic. */
  read(topic: string, payload: Uint8Array): VehicleTelemetry | null {
    const layout = LAYOUT_TOPIC.exec(topic);
    if (layout !== null) {
      this.layouts.learn(layout[1] as string, payload);
      return null;
    }
    if (topic.endsWith('/telemetry/compact')) return decodeCompactRecord(payload, this.layouts.get);
    if (topic.endsWith('/telemetry/vehicle')) return decodeTelemetry(payload);
    return null;
  }
}
