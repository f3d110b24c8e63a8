// Recorded-trace source: candump logs (plain or .gz, or stdin) replayed as fast as possible or
// at recorded pace. Reading and pacing are separate stages; pacing is only for recorded traces.
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { createGunzip } from 'node:zlib';
import type { Readable } from 'node:stream';
import { Observable } from 'rxjs';
import type { CanFrame, MalformedLine } from './can-frame.js';
import { parseCandumpLine } from './candump.js';
import { parseSlcanLine } from './slcan.js';
import type { Clock } from '../gateway/clock.js';

export type TraceFormat = 'candump' | 'slcan';

export interface TraceLine {
  /** 1-based line number in the input, for error messages. */
  lineNo: number;
  text: string;
  parsed: CanFrame | MalformedLine | null;
}

/** Opens a trace file (gunzipping `.gz`), or stdin for `-`. */
export function openTrace(path: string): Readable {
  if (path === '-') return process.stdin;
  const file = createReadStream(path);
  return path.endsWith('.gz') ? file.pipe(createGunzip()) : file;
}

/** Lines of a trace, parsed in the given format. Frames without a recorded time get the clock's. */
export async function* readTrace(input: Readable, format: TraceFormat, clock: Clock, bus: string | null = null): AsyncGenerator<TraceLine> {
  const lines = createInterface({ input, crlfDelay: Infinity });
  let lineNo = 0;
  for await (const text of lines) {
    lineNo++;
    const parsed = format === 'candump' ? parseCandumpLine(text, clock.monoMs()) : parseSlcanLine(text.replace(/\r$/, ''), clock.monoMs(), bus);
    yield { lineNo, text, parsed };
  }
}

/**
 * Releases items no faster than their recorded time divided by `speed` (speed 0 = as fast as
 * possible). Sleeps only when more than 2 ms ahead, so pacing costs nothing per frame.
 */
export async function* paceReplay<T>(items: AsyncIterable<T>, timeMsOf: (item: T) => number | null, speed: number, clock: Clock): AsyncGenerator<T> {
  let first: number | null = null;
  const start = clock.monoMs();
  for await (const item of items) {
    const t = speed > 0 ? timeMsOf(item) : null;
    if (t !== null) {
      first ??= t;
      const ahead = (t - first) / speed - (clock.monoMs() - start);
      if (ahead > 2) await clock.sleep(ahead);
    }
    yield item;
  }
}

/** An async iterable as an Observable that stops reading when unsubscribed. */
export function fromAsync<T>(iterable: AsyncIterable<T>): Observable<T> {
  return new Observable<T>((subscriber) => {
    let stopped = false;
    (async () => {
      for await (const item of iterable) {
        if (stopped) return;
        subscriber.next(item);
      }
      subscriber.complete();
    })().catch((err: unknown) => subscriber.error(err));
    return () => {
      stopped = true;
    };
  });
}

/** A recorded trace as a frame stream (the replay FrameSource). */
export function traceFrames(path: string, format: TraceFormat, speed: number, clock: Clock): Observable<CanFrame | MalformedLine> {
  const lines = readTrace(openTrace(path), format, clock);
  const parsed = (async function* () {
    for await (const l of lines) if (l.parsed !== null) yield l.parsed;
  })();
  return fromAsync(paceReplay(parsed, (p) => ('tsWall' in p && p.tsWall !== null ? p.tsWall * 1000 : null), speed, clock));
}
