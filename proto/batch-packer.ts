// A batch as it travels: records → columns → TelemetryBatch protobuf → zstd, with the digests the
// receiver checks, and the reverse with every check the spec's validator makes (issue 4, FMEA
// "batch decompression failure"): payload digest before decompressing, batch digest after.
import { createHash } from 'node:crypto';
import { fromColumns, RecordColumnsError, toColumns, type ResolutionTable } from './record-columns.js';
import {
  decodeBatch,
  encodeBatch,
  SCHEMA_VERSION,
  TelemetryDecodeError,
  type TelemetryBatch,
  type VehicleTelemetry,
} from './telemetry-codec.js';
import { ZstdError, zstdCompress, zstdCompressedBound, zstdDecompress, type ZstdCodec } from './zstd.js';

export const BATCH_CONTENT_TYPE = 'application/x-protobuf+zstd';

export interface PackedBatch {
  batchId: string;
  payload: Buffer;
  /** MQTT 5 user properties (and HTTP headers for the offload path). */
  userProperties: Record<string, string>;
  uncompressedBytes: number;
  recordIds: string[];
}

export interface PackOptions {
  vehicleId: string;
  createdMs: number;
  resolution: ResolutionTable;
  zstdLevel: number;
  /** The zstd implementation; the one chosen for this machine when left out. */
  zstd?: ZstdCodec;
}

export type BatchRejectReason = 'checksum' | 'decompress' | 'decode' | 'schema' | 'count' | 'columns';

/** A batch the receiver must not accept, with the reason for the dead-letter record. */
export class BatchRejectedError extends Error {
  readonly code = 'BATCH_REJECTED';
  constructor(
    readonly reason: BatchRejectReason,
    message: string,
  ) {
    super(message);
    this.name = 'BatchRejectedError';
  }
}

export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The same record ids always give the same batch id, so a resent batch is recognisably the same. */
export function batchIdOf(recordIds: readonly string[]): string {
  const hex = createHash('sha256').update(recordIds.join('\n')).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-8${hex.slice(13, 16)}-${((parseInt(hex.slice(16, 18), 16) & 0x3f) | 0x80).toString(16)}${hex.slice(18, 20)}-${hex.slice(20, 32)}`;
}

/** A batch encoded and not yet compressed: all that is left of its records. */
export interface EncodedBatch {
  batchId: string;
  recordIds: string[];
  plain: Uint8Array;
  /** The largest its packed payload can be (zstd's bound): a batch that fits so fits once packed. */
  maxPayloadBytes: number;
}

/** The records as an uncompressed TelemetryBatch (columns), at once. */
export function encodeRecords(
  records: readonly VehicleTelemetry[],
  options: Pick<PackOptions, 'vehicleId' | 'createdMs' | 'resolution'>,
): EncodedBatch {
  const recordIds = records.map((r) => r.messageId);
  const batchId = batchIdOf(recordIds);
  const batch: TelemetryBatch = {
    batchId,
    vehicleId: options.vehicleId,
    schemaVersion: SCHEMA_VERSION,
    createdMs: options.createdMs,
    records: [],
    columns: toColumns(records, options.resolution),
  };
  const plain = encodeBatch(batch);
  return { batchId, recordIds, plain, maxPayloadBytes: zstdCompressedBound(plain.byteLength) };
}

const DIGEST_PLACEHOLDER = '0'.repeat(64);

/**
 * The user properties of a packed batch (MQTT 5, and the offload's HTTP headers). Without its
 * payload, placeholders of the digests' size: to size the packet before compressing.
 */
export function batchProperties(encoded: EncodedBatch, payload?: Uint8Array): Record<string, string> {
  return {
    schema_version: SCHEMA_VERSION,
    compression: 'zstd',
    message_count: String(encoded.recordIds.length),
    sha256: payload === undefined ? DIGEST_PLACEHOLDER : sha256Hex(encoded.plain),
    payload_sha256: payload === undefined ? DIGEST_PLACEHOLDER : sha256Hex(payload),
  };
}

/** An encoded batch compressed, with its digests. */
export async function compressBatch(
  encoded: EncodedBatch,
  options: Pick<PackOptions, 'zstdLevel' | 'zstd'>,
): Promise<PackedBatch> {
  const payload = await zstdCompress(encoded.plain, options.zstdLevel, options.zstd);
  return {
    batchId: encoded.batchId,
    payload,
    uncompressedBytes: encoded.plain.byteLength,
    recordIds: encoded.recordIds,
    userProperties: batchProperties(encoded, payload),
  };
}

/**
 * Records → the batch the receiver gets. Not an async function, which would hold the records (and
 * their columns) until the compression is done: they are garbage once encoded (issue 14).
 */
export function packBatch(records: readonly VehicleTelemetry[], options: PackOptions): Promise<PackedBatch> {
  try {
    return compressBatch(encodeRecords(records, options), options);
  } catch (err) {
    // A rejection, as an async function gives: a record that cannot be encoded fails like a compression.
    return Promise.reject(err);
  }
}

export interface UnpackOptions {
  /** Refuse frames that would decompress to more than this. */
  maxUncompressedBytes: number;
  acceptedSchemaVersions: readonly string[];
  zstd?: ZstdCodec;
}

/** Verifies and opens a batch; throws BatchRejectedError naming the first check that failed. */
export async function unpackBatch(
  payload: Uint8Array,
  props: Readonly<Record<string, string | string[] | undefined>>,
  options: UnpackOptions,
): Promise<TelemetryBatch> {
  const prop = (name: string): string | undefined => {
    const v = props[name];
    return Array.isArray(v) ? v[0] : v;
  };
  const payloadDigest = prop('payload_sha256');
  if (payloadDigest !== undefined && payloadDigest !== sha256Hex(payload))
    throw new BatchRejectedError('checksum', 'payload_sha256 does not match the payload as received');
  const compression = prop('compression') ?? 'none';
  let plain: Uint8Array;
  if (compression === 'zstd') {
    try {
      plain = await zstdDecompress(payload, options.maxUncompressedBytes, options.zstd);
    } catch (err) {
      if (err instanceof ZstdError) throw new BatchRejectedError('decompress', err.message);
      throw err;
    }
  } else if (compression === 'none') {
    plain = payload;
  } else {
    throw new BatchRejectedError('decompress', `unknown compression "${compression}" (expected zstd or none)`);
  }
  const digest = prop('sha256');
  if (digest === undefined) throw new BatchRejectedError('checksum', 'no sha256 user property');
  if (digest !== sha256Hex(plain))
    throw new BatchRejectedError('checksum', 'sha256 does not match the uncompressed batch');
  let batch: TelemetryBatch;
  try {
    batch = decodeBatch(plain);
  } catch (err) {
    if (err instanceof TelemetryDecodeError) throw new BatchRejectedError('decode', err.message);
    throw err;
  }
  if (!options.acceptedSchemaVersions.includes(batch.schemaVersion))
    throw new BatchRejectedError(
      'schema',
      `schema_version "${batch.schemaVersion}" is not one of ${options.acceptedSchemaVersions.join(', ')}`,
    );
  if (batch.columns !== undefined && batch.columns !== null) {
    try {
      batch.records = [...batch.records, ...fromColumns(batch.columns)];
    } catch (err) {
      if (err instanceof RecordColumnsError) throw new BatchRejectedError('columns', err.message);
      throw err;
    }
    delete batch.columns;
  }
  const declared = prop('message_count');
  if (declared !== undefined && Number(declared) !== batch.records.length)
    throw new BatchRejectedError('count', `message_count says ${declared}, the batch holds ${batch.records.length}`);
  return batch;
}
