// Reads a file a user named (DBC, configuration, key, certificate). A FIFO, a device or a directory
// given by mistake must give a clear error, not block forever or read without end: the file is
// opened without blocking, checked to be a regular file of bounded size, then read.
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';

export class InputFileError extends Error {
  readonly code = 'INPUT_FILE';
}

/** What a path is, in words, for a file that is not a regular file. */
function kindOf(stat: import('node:fs').Stats): string {
  if (stat.isDirectory()) return 'a directory';
  if (stat.isFIFO()) return 'a FIFO (named pipe)';
  if (stat.isSocket()) return 'a socket';
  if (stat.isCharacterDevice() || stat.isBlockDevice()) return 'a device';
  return 'not a regular file';
}

/** The whole file; throws InputFileError saying what is wrong (its message does not repeat the path). */
export function readInputFile(path: string, maxBytes: number): Buffer {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    throw new InputFileError((err as NodeJS.ErrnoException).code ?? (err as Error).message);
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new InputFileError(`${kindOf(stat)}, expected a regular file`);
    if (stat.size > maxBytes)
      throw new InputFileError(`${stat.size} bytes, more than the ${maxBytes} a file of this kind may have`);
    const buffer = Buffer.alloc(stat.size);
    for (let at = 0; at < buffer.length;) {
      const n = readSync(fd, buffer, at, buffer.length - at, at);
      if (n === 0) break;
      at += n;
    }
    return buffer;
  } finally {
    closeSync(fd);
  }
}
