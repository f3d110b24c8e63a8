// How a live record (P0, P1 sent singly) goes on the wire. Compact (issue 15): its values on
// telemetry/compact, after the layout they follow has been published, retained, on
// telemetry/layout/<id> (once; again when the broker may have lost it or after a day). Row-wise
// protobuf on telemetry/vehicle when configured so, or when the broker keeps no retained messages
// (CONNACK Retain Available = 0): a receiver could never learn a layout there.
import { CompactEncoder } from '../../proto/compact-record.js';
import type { ResolutionTable } from '../../proto/record-columns.js';
import { encodeLayout, encodeTelemetry, SCHEMA_VERSION, type VehicleTelemetry } from '../../proto/telemetry-codec.js';
import type { PublishProperties } from '../session/mqtt-session.js';
import type { Clock } from '../../core/clock.js';

export type LiveEncodingMode = 'compact' | 'row';

export interface LiveEncodingSettings {
  mode: LiveEncodingMode;
  /** Row-wise records. */
  vehicleTopic: string;
  /** Compact records. */
  compactTopic: string;
  /** Where the layout with this key (hex) is published, retained. */
  layoutTopic: (key: string) => string;
  resolution: ResolutionTable;
}

/** One PUBLISH: where, what, with which properties. */
export interface LiveMessage {
  topic: string;
  payload: Uint8Array;
  properties: PublishProperties;
}

/** A layout announced this long ago is announced again, so a retained copy never expires in use. */
const REANNOUNCE_MS = 24 * 3600 * 1000;
/** The broker drops a retained layout after this (seconds): a run's layouts do not pile up for ever. */
const LAYOUT_EXPIRY_S = 7 * 24 * 3600;

export class LiveEncoding {
  private readonly encoder: CompactEncoder;
  /** Layouts the broker holds, by key, with when they were published. */
  private readonly announced = new Map<string, number>();

  constructor(
    private readonly settings: LiveEncodingSettings,
    private readonly clock: Clock,
  ) {
    this.encoder = new CompactEncoder(settings.resolution);
  }

  /**
   * The messages for a live record: its layout first when the broker may not hold it, then the
   * record. Row-wise when configured, or when `compactPossible` is false (the broker keeps no
   * retained messages, or a layout exceeds its packet limit).
   */
  encode(record: VehicleTelemetry, compactPossible: boolean): { layout: LiveMessage | null; record: LiveMessage } {
    const s = this.settings;
    if (s.mode === 'row' || !compactPossible)
      return {
        layout: null,
        record: {
          topic: s.vehicleTopic,
          payload: encodeTelemetry(record),
          properties: { contentType: 'application/x-protobuf', userProperties: { schema_version: SCHEMA_VERSION } },
        },
      };
    const { layout, key, payload } = this.encoder.encode(record);
    const at = this.announced.get(key);
    const due = at === undefined || this.clock.monoMs() - at > REANNOUNCE_MS;
    return {
      layout: due
        ? {
            topic: s.layoutTopic(key),
            payload: encodeLayout(layout),
            properties: {
              contentType: 'application/x-protobuf',
              userProperties: { schema_version: SCHEMA_VERSION },
              messageExpiryInterval: LAYOUT_EXPIRY_S,
            },
          }
        : null,
      record: { topic: s.compactTopic, payload, properties: { userProperties: {} } },
    };
  }

  /** The broker acknowledged a layout (`topic` as `encode` gave it). */
  layoutPublished(topic: string): void {
    this.announced.set(topic.slice(topic.lastIndexOf('/') + 1), this.clock.monoMs());
  }

  /** The broker started a new session for us: it may have restarted and lost what it retained. */
  forgetLayouts(): void {
    this.announced.clear();
  }
}
