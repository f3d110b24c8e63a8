// The outbox's vocabulary: its settings and counters, the routes a message takes, and the
// collaborators it is given (narrow views of the store, the session, the link).
import type { ResolutionTable } from '../../proto/record-columns.js';
import type { VehicleTelemetry } from '../../proto/telemetry-codec.js';
import type { Clock } from '../../core/clock.js';
import type { DeadLetterFile } from '../store/dead-letter.js';
import type { MqttSession } from '../session/mqtt-session.js';
import type { LinkDecision } from '../link/link-policy.js';
import type { BatchUploader } from '../offload/https-offload.js';
import type { StoredRecord } from '../store/stored-record.js';
import type { TelemetryStore } from '../store/telemetry-store.js';
import type { DrainPacer } from '../drain-pacer.js';
import type { LiveEncodingMode } from './live-encoding.js';

export interface OutboxSettings {
  vehicleId: string;
  vehicleTopic: string;
  batchTopic: string;
  /** Live records: compact (values under a layout the receiver learns once) or row-wise protobuf. */
  liveEncoding: LiveEncodingMode;
  compactTopic: string;
  /** Layouts are published retained on `${layoutTopicPrefix}/<layout id in hex>`. */
  layoutTopicPrefix: string;
  /** Messages (single records or batches) waiting for their PUBACK at most. */
  inflight: number;
  /** A P1 backlog longer than this goes out in batches; P2 waits until it has this many... */
  batchMinRecords: number;
  batchMaxRecords: number;
  /** Batches in flight at most (part of `inflight`): what a drain holds in memory and compresses at once. */
  batchInflight: number;
  /** ...or until its oldest record is this old. */
  batchMaxAgeMs: number;
  /** Rest for records whose publish failed (PUBACK timeout, error), so failures cannot loop hot. */
  retryDelayMs: number;
  /** Times a record unanswered by a PUBACK is sent again (each on a new connection) before it rests. */
  resends: number;
  /** PUBACK 0x97 (quota exceeded): publishing pauses this long, plus up to half of it at random. */
  quotaBackoffMs: number;
  zstdLevel: number;
  resolution: ResolutionTable;
}

export interface SenderCounters {
  /** Messages published, by path. */
  singles: number;
  batches: number;
  /** Records acknowledged. */
  acked: number;
  batchAckedRecords: number;
  failed: number;
  bytesSent: number;
  /** Batches split because they exceeded the broker's maximum packet size. */
  splits: number;
  /** PUBACK 0x87 (not authorised): security events. */
  notAuthorised: number;
  quotaPauses: number;
  /** Publishes of records sent before (with DUP): after a lost connection or a PUBACK timeout. */
  resends: number;
  /** Uncompressed / compressed bytes of the batches sent. */
  batchPlainBytes: number;
  batchWireBytes: number;
  /** Batches uploaded over HTTPS (WiFi offload) and the records they carried. */
  uploads: number;
  uploadedRecords: number;
}

export type Route = 'single' | 'batch' | 'upload';

/** What the sender needs of the store: the records waiting, their removal once delivered, the ones it let go of. */
export type OutboxStore = Pick<TelemetryStore, 'inserted' | 'pending' | 'asSent' | 'remove' | 'count' | 'drops'>;
/** What it needs of the MQTT session. */
export type PublishChannel = Pick<
  MqttSession,
  'connected' | 'isConnected' | 'sendQuota' | 'publish' | 'maxPacketBytes' | 'ownMaxPacketBytes' | 'connack'
>;
export type DeadLetterSink = Pick<DeadLetterFile, 'write' | 'path'>;
/** What the link allows now (link-controller.ts), and the meter for what a metered link carries. */
export interface LinkView {
  readonly current: LinkDecision;
  meter(bytes: number): void;
}

/** The sender's collaborators; all but the first five are optional. */
export interface OutboxParts {
  store: OutboxStore;
  session: PublishChannel;
  deadLetters: DeadLetterSink;
  clock: Clock;
  log: (msg: string) => void;
  /** Without one, everything goes and nothing is metered. */
  link?: LinkView;
  /** Applied to each record as it is encoded: the clock-skew correction (clock-corrector.ts). */
  prepare?: (record: VehicleTelemetry) => VehicleTelemetry;
  /** HTTPS offload; when set, an offload decision sends every batch through it instead of MQTT. */
  uploader?: BatchUploader | null;
  /** How long P1/P2 wait for a time reference (so they go out corrected); 0 = send now. P0 never waits. */
  timeHoldMs?: () => number;
  /** Publish → PUBACK latency in seconds by path, for the metrics histogram. */
  onAck?: (route: Route, latencyS: number) => void;
  /** Holds bulk messages back while the process uses its CPU share (a drain never starves live records). */
  pacer?: Pick<DrainPacer, 'delayMs' | 'note'> | null;
  random?: () => number;
}

/** A message about to go out: one record singly, or several as a batch or an upload. */
export interface OutboxMessage {
  route: Route;
  records: StoredRecord[];
}

export function newSenderCounters(): SenderCounters {
  return {
    singles: 0,
    batches: 0,
    acked: 0,
    batchAckedRecords: 0,
    failed: 0,
    bytesSent: 0,
    splits: 0,
    notAuthorised: 0,
    quotaPauses: 0,
    resends: 0,
    batchPlainBytes: 0,
    batchWireBytes: 0,
    uploads: 0,
    uploadedRecords: 0,
  };
}

/** The collaborators with the optional ones filled in. */
export type OutboxCollaborators = Required<OutboxParts>;

export function withDefaults(parts: OutboxParts, settings: OutboxSettings): OutboxCollaborators {
  return {
    ...parts,
    link: parts.link ?? {
      current: {
        mode: 'realtime',
        sendBulk: true,
        metered: false,
        batchMaxRecords: settings.batchMaxRecords,
        drainAll: false,
        reason: 'no link policy',
      },
      meter: () => undefined,
    },
    prepare: parts.prepare ?? ((record) => record),
    uploader: parts.uploader ?? null,
    timeHoldMs: parts.timeHoldMs ?? (() => 0),
    onAck: parts.onAck ?? (() => undefined),
    pacer: parts.pacer ?? null,
    random: parts.random ?? Math.random,
  };
}
