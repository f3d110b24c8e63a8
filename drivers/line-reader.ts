// Lines of a text stream with a bound on each: readline keeps a whole line in memory however long
// it is (a 50 MB line without a newline took 415 MB), so a trace or a pipe is split here instead.
// A line over `maxChars` is cut to `maxChars + 1` characters (so parsers still report it as too
// long) and the rest of it is dropped as it arrives.
import { StringDecoder } from 'node:string_decoder';
import type { Readable } from 'node:stream';

export async function* readBoundedLines(input: Readable, maxChars: number): AsyncGenerator<string> {
  const decoder = new StringDecoder('utf8');
  let partial = '';
  let overflow = false;
  for await (const chunk of input as AsyncIterable<Buffer | string>) {
    const text = typeof chunk === 'string' ? chunk : decoder.write(chunk);
    let start = 0;
    for (let nl = text.indexOf('\n', start); nl !== -1; nl = text.indexOf('\n', start)) {
      const line = overflow ? partial : partial + text.slice(start, nl);
      partial = '';
      overflow = false;
      start = nl + 1;
      yield stripCr(line.length > maxChars ? line.slice(0, maxChars + 1) : line);
    }
    if (!overflow) {
      partial += text.slice(start);
      if (partial.length > maxChars) {
        partial = partial.slice(0, maxChars + 1);
        overflow = true;
      }
    }
  }
  partial += overflow ? '' : decoder.end();
  if (partial.length > 0) yield stripCr(partial);
}

function stripCr(line: string): string {
  return line.endsWith('\r') ? line.slice(0, -1) : line;
}
