// zstd at a chosen level, from the first implementation that loads here: @mongodb-js/zstd's native
// binding (off the event loop, in libuv's pool) where it ships a binary, else zstd compiled to
// WebAssembly (@bokuweb/zstd-wasm: no install step, runs on armv7, where @mongodb-js/zstd has no
// binary). Both write standard zstd frames: the bytes on the wire mean the same to any receiver.
// Loaded on first use only, so a command that never compresses never needs either.
import { createRequire } from 'node:module';
import { ZstdError, ZstdUnavailableError } from './zstd-error.js';
import { zstdDecompressedBound } from './zstd-frame.js';

export { ZstdError, ZstdUnavailableError } from './zstd-error.js';
export { zstdCompressedBound, zstdDecompressedBound } from './zstd-frame.js';

export const ZSTD_MIN_LEVEL = 1;
export const ZSTD_MAX_LEVEL = 22;

export type ZstdImplementation = 'native' | 'wasm';
export const ZSTD_IMPLEMENTATIONS: readonly ZstdImplementation[] = ['native', 'wasm'];

/** One implementation. `decompress` writes into at most `capacity` bytes (the frame-header bound). */
export interface ZstdCodec {
  readonly implementation: ZstdImplementation;
  compress(data: Buffer, level: number): Promise<Buffer>;
  decompress(data: Buffer, capacity: number): Promise<Buffer>;
}

const require = createRequire(import.meta.url);

interface NativeZstd {
  compress(data: Buffer, level: number): Promise<Buffer>;
  decompress(data: Buffer): Promise<Buffer>;
}

/**
 * The binding from its platform package. On Linux @mongodb-js/zstd's own loader tells glibc from
 * musl with process.report.getReport(), and a report waits for every worker thread: with the store's
 * integrity check busy in a large file, start-up stalled for as long as the check ran (3.6 s on a
 * 200,000-record store in the Pi envelope; at 1,000,000 the first PUBACK came at 70.8 s, 37.1 s without it).
 */
function nativeBinding(): NativeZstd {
  if (process.platform !== 'linux') return require('@mongodb-js/zstd/bindings.js') as NativeZstd;
  const tried: string[] = [];
  // A binary for the other C library fails to load; one of the two is the right one.
  for (const libc of ['gnu', 'musl']) {
    const pkg = `@mongodb-js/zstd-linux-${process.arch}-${libc}`;
    try {
      return require(pkg) as NativeZstd;
    } catch (err) {
      tried.push(`${pkg}: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  throw new Error(`no native zstd binary loads (${tried.join('; ')})`);
}

/**
 * @mongodb-js/zstd 1.2.2's `compress(buf, level)` drops the level before calling its native binding
 * (it always compresses at the default, 3); the binding itself honours it, so we call the binding.
 */
function loadNative(): Promise<ZstdCodec> {
  const binding = nativeBinding();
  return Promise.resolve({
    implementation: 'native',
    compress: (data, level) => binding.compress(data, level),
    decompress: (data) => binding.decompress(data),
  });
}

/** Synchronous on the calling thread: a fallback for boards without the native binary. */
async function loadWasm(): Promise<ZstdCodec> {
  const wasm = require('@bokuweb/zstd-wasm') as {
    init(): Promise<void>;
    compress(data: Uint8Array, level: number): Uint8Array;
    decompress(data: Uint8Array, options: { defaultHeapSize: number }): Uint8Array;
  };
  await wasm.init();
  const wrap = (u8: Uint8Array): Buffer => Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
  return {
    implementation: 'wasm',
    compress: (data, level) => Promise.resolve(wrap(wasm.compress(data, level))),
    // Frames without a content size get `capacity` as their output buffer.
    decompress: (data, capacity) =>
      Promise.resolve(wrap(wasm.decompress(data, { defaultHeapSize: Math.max(1, capacity) }))),
  };
}

const loaders: Record<ZstdImplementation, () => Promise<ZstdCodec>> = { native: loadNative, wasm: loadWasm };
const loaded = new Map<ZstdImplementation, Promise<ZstdCodec>>();

/** One implementation by name (tests and benches compare them); rejects when it cannot load here. */
export function loadZstd(implementation: ZstdImplementation): Promise<ZstdCodec> {
  let codec = loaded.get(implementation);
  if (codec === undefined) {
    codec = Promise.resolve().then(loaders[implementation]);
    loaded.set(implementation, codec);
  }
  return codec;
}

/** What `zstd()` chose, and why it passed over the ones before it. */
export interface ZstdChoice {
  codec: ZstdCodec;
  passedOver: string[];
}

let choice: Promise<ZstdChoice> | null = null;

/** The first of `candidates` that loads; ZstdUnavailableError naming every failure when none does. */
export async function chooseZstd(
  candidates: ReadonlyArray<{ name: string; load: () => Promise<ZstdCodec> }>,
): Promise<ZstdChoice> {
  const passedOver: string[] = [];
  for (const candidate of candidates) {
    try {
      return { codec: await candidate.load(), passedOver };
    } catch (err) {
      passedOver.push(`${candidate.name}: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  throw new ZstdUnavailableError(`no zstd implementation loads on this machine (${passedOver.join('; ')})`);
}

/** The implementation batches use here: native where it loads, else WebAssembly; chosen once. */
export function zstdChoice(): Promise<ZstdChoice> {
  choice ??= chooseZstd(ZSTD_IMPLEMENTATIONS.map((name) => ({ name, load: () => loadZstd(name) })));
  return choice;
}

export async function zstdCompress(data: Uint8Array, level: number, codec?: ZstdCodec): Promise<Buffer> {
  if (!Number.isInteger(level) || level < ZSTD_MIN_LEVEL || level > ZSTD_MAX_LEVEL)
    throw new RangeError(`zstd level must be an integer ${ZSTD_MIN_LEVEL}..${ZSTD_MAX_LEVEL}, got ${level}`);
  return (codec ?? (await zstdChoice()).codec).compress(toBuffer(data), level);
}

/**
 * Decompresses, refusing before any work a payload that could expand past `maxBytes` (a zstd bomb:
 * 38 KB can declare 1.2 GB). The implementations decompress whole buffers only, and our own frames
 * carry no content size, so the bound comes from the frame and block headers.
 */
export async function zstdDecompress(data: Uint8Array, maxBytes: number, codec?: ZstdCodec): Promise<Buffer> {
  const bound = zstdDecompressedBound(data);
  if (bound instanceof ZstdError) throw bound;
  if (bound > maxBytes)
    throw new ZstdError(
      `zstd: the frames could expand to ${bound} bytes, more than the ${maxBytes} allowed; not decompressed`,
    );
  const use = codec ?? (await zstdChoice()).codec;
  let out: Buffer;
  try {
    out = await use.decompress(toBuffer(data), bound);
  } catch (err) {
    throw new ZstdError(`zstd: ${(err as Error).message}`);
  }
  if (out.byteLength > maxBytes)
    throw new ZstdError(`zstd: ${out.byteLength} bytes decompressed, more than the ${maxBytes} allowed`);
  return out;
}

function toBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}
