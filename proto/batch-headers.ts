// A batch over HTTPS (WiFi offload) carries the user properties it has over MQTT as headers:
// `sha256` <-> `x-v2c-sha256`. Both ends use this file, so the two mappings cannot drift apart.
import { BATCH_CONTENT_TYPE, type PackedBatch } from './batch-packer.js';

/** The batch's user properties as HTTP headers: `sha256` -> `x-v2c-sha256`. */
export function batchHeaders(batch: PackedBatch): Record<string, string> {
  const headers: Record<string, string> = {
    'content-type': BATCH_CONTENT_TYPE,
    'content-length': String(batch.payload.byteLength),
  };
  for (const [k, v] of Object.entries(batch.userProperties)) headers[`x-v2c-${k.replace(/_/g, '-')}`] = v;
  return headers;
}

/** The headers back into the batch's user properties (the receiving side). */
export function headersToProperties(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const props: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (k.startsWith('x-v2c-') && typeof v === 'string') props[k.slice(6).replace(/-/g, '_')] = v;
  }
  return props;
}
