// A generated drive written as the shipped traces are: one `candump -L` line each, gzip level 9.
import { createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';

export async function writeGzippedTrace(lines: Iterable<string>, out: string): Promise<void> {
  const text = Readable.from(
    (function* () {
      for (const l of lines) yield l + '\n';
    })(),
  );
  await pipeline(text, createGzip({ level: 9 }), createWriteStream(out));
  console.error(`wrote ${out}`);
}
