// zstd at a chosen level. @mongodb-js/zstd 1.2.2's `compress(buf, level)` drops the level before
// calling its native binding (it always compresses at the default, 3); the binding itself honours
// it, so we call the binding and keep the wrapper's error wording.
import { createRequire } from 'node:module';

interface ZstdBinding {
  compress(data: Buffer, level?: number): Promise<Buffer>;
  decompress(data: Buffer): Promise<Buffer>;
}

const binding = createRequire(import.meta.url)('@mongodb-js/zstd/bindings.js') as ZstdBinding;

export const ZSTD_MIN_LEVEL = 1;
export const ZSTD_MAX_LEVEL = 22;

/** Data zstd could not decompress (not a zstd frame, truncated, corrupt). */
export class ZstdError extends Error {
  readonly code = 'ZSTD_FAILED';
  constructor(message: string) {
    super(message);
    this.name = 'ZstdError';
  }
}

export async function zstdCompress(data: Uint8Array, level: number): Promise<Buffer> {
  if (!Number.isInteger(level) || level < ZSTD_MIN_LEVEL || level > ZSTD_MAX_LEVEL) throw new RangeError(`zstd level must be an integer ${ZSTD_MIN_LEVEL}..${ZSTD_MAX_LEVEL}, got ${level}`);
  return binding.compress(toBuffer(data), level);
}

/**
 * Decompresses and refuses results over `maxBytes`. The binding writes streaming frames without a
 * content size, so the bound can only be applied afterwards; inputs are bounded by the MQTT packet size.
 */
export async function zstdDecompress(data: Uint8Array, maxBytes: number): Promise<Buffer> {
  let out: Buffer;
  try {
    out = await binding.decompress(toBuffer(data));
  } catch (err) {
    throw new ZstdError(`zstd: ${(err as Error).message}`);
  }
  if (out.byteLength > maxBytes) throw new ZstdError(`zstd: ${out.byteLength} bytes decompressed, more than the ${maxBytes} allowed`);
  return out;
}

function toBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

