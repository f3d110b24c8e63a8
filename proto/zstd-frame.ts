// What a zstd payload can decompress to, read from its frame and block headers alone (RFC 8878):
// the guard against zstd bombs, whichever implementation then decompresses.
import { ZstdError } from './zstd-error.js';

const ZSTD_MAGIC = 0xfd2fb528;
const SKIPPABLE_MAGIC_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;
const MAX_BLOCK_BYTES = 128 * 1024;

/**
 * The most bytes zstd can compress `plainBytes` to (ZSTD_COMPRESSBOUND in zstd.h): incompressible
 * input grows by its block headers.
 */
export function zstdCompressedBound(plainBytes: number): number {
  const small = plainBytes < MAX_BLOCK_BYTES ? (MAX_BLOCK_BYTES - plainBytes) >> 11 : 0;
  return plainBytes + (plainBytes >> 8) + small;
}

/**
 * The most bytes `data` can decompress to, read from its headers alone (RFC 8878): a raw block
 * gives its size, an RLE block its regenerated size, a compressed block at most the block maximum
 * (the window size, capped at 128 KiB); a frame's declared content size bounds it too. Malformed
 * or truncated headers give a ZstdError. Reads only headers: cheap on any input.
 */
export function zstdDecompressedBound(data: Uint8Array): number | ZstdError {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const fail = (why: string): ZstdError => new ZstdError(`zstd: ${why}`);
  let at = 0;
  let total = 0;
  if (data.byteLength === 0) return fail('empty input');
  while (at < data.byteLength) {
    if (at + 4 > data.byteLength) return fail('truncated frame magic');
    const magic = view.getUint32(at, true);
    if ((magic & SKIPPABLE_MAGIC_MASK) === SKIPPABLE_MAGIC) {
      if (at + 8 > data.byteLength) return fail('truncated skippable frame');
      at += 8 + view.getUint32(at + 4, true);
      continue;
    }
    if (magic !== ZSTD_MAGIC) return fail(`not a zstd frame at byte ${at}`);
    at += 4;
    if (at >= data.byteLength) return fail('truncated frame header');
    const descriptor = data[at++] as number;
    const fcsFlag = descriptor >> 6;
    const singleSegment = (descriptor & 0x20) !== 0;
    const checksum = (descriptor & 0x04) !== 0;
    const dictBytes = [0, 1, 2, 4][descriptor & 0x03] as number;
    let windowSize = Infinity;
    if (!singleSegment) {
      if (at >= data.byteLength) return fail('truncated window descriptor');
      const wd = data[at++] as number;
      const base = 2 ** (10 + (wd >> 3));
      windowSize = base + (base / 8) * (wd & 0x07);
    }
    at += dictBytes;
    const fcsBytes = fcsFlag === 0 ? (singleSegment ? 1 : 0) : ([0, 2, 4, 8][fcsFlag] as number);
    let contentSize = Infinity;
    if (fcsBytes > 0) {
      if (at + fcsBytes > data.byteLength) return fail('truncated content size');
      contentSize =
        fcsBytes === 1
          ? view.getUint8(at)
          : fcsBytes === 2
            ? view.getUint16(at, true) + 256
            : fcsBytes === 4
              ? view.getUint32(at, true)
              : Number(view.getBigUint64(at, true));
      at += fcsBytes;
    }
    if (singleSegment) windowSize = contentSize;
    const blockMax = Math.min(windowSize, MAX_BLOCK_BYTES);
    let frameBound = 0;
    for (let last = false; !last;) {
      if (at + 3 > data.byteLength) return fail('truncated block header');
      const header = (data[at] as number) | ((data[at + 1] as number) << 8) | ((data[at + 2] as number) << 16);
      at += 3;
      last = (header & 1) === 1;
      const type = (header >> 1) & 0x03;
      const size = header >>> 3;
      if (type === 3) return fail('reserved block type');
      if (type === 0) {
        frameBound += size;
        at += size;
      } else if (type === 1) {
        frameBound += size;
        at += 1;
      } else {
        frameBound += blockMax;
        at += size;
      }
      if (at > data.byteLength) return fail('truncated block');
    }
    if (checksum) at += 4;
    if (at > data.byteLength) return fail('truncated checksum');
    total += Math.min(frameBound, contentSize);
  }
  return total;
}
