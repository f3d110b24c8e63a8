// Recorded-trace source: candump logs (plain or .gz, or stdin) replayed as fast as possible or
// at recorded pace. Reading and pacing are separate stages; pacing is only for recorded traces.
import { createReadStream } from 'node:fs';
import { readBoundedLines } from './line-reader.js';
import { createGunzip } from 'node:zlib';
import type { Readable } from 'node:stream';
import { Observable } from 'rxjs';
import { type CanFrame, MalformedLine } from './can-frame.js';
import { parseCandumpLine } from './candump.js';
import { RecordedTimeGuard } from './recorded-time.js';
import { parseSlcanLine } from './slcan.js';
import type { Clock } from '../core/clock.js';

export type TraceFormat = 'candump' | 'slcan';

/** Longer lines are cut (and reported too long by the parsers, whose own limits are lower). */
export const MAX_TRACE_LINE_CHARS = 1024;

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
  if (!path.endsWith('.gz')) return file;
  const gunzip = file.pipe(createGunzip());
  // Destroying the reader ends the file's read too.
  gunzip.once('close', () => file.destroy());
  return gunzip;
}

/** Lines of a trace, parsed in the given format. Frames without a recorded time get the clock's. */
export async function* readTrace(
  input: Readable,
  format: TraceFormat,
  clock: Clock,
  bus: string | null = null,
): AsyncGenerator<TraceLine> {
  let lineNo = 0;
  for await (const text of readBoundedLines(input, MAX_TRACE_LINE_CHARS)) {
    lineNo++;
    const parsed =
      format === 'candump'
        ? parseCandumpLine(text, clock.monoMs())
        : parseSlcanLine(text.replace(/\r$/, ''), clock.monoMs(), bus);
    yield { lineNo, text, parsed };
  }
}

/**
 * Releases items no faster than their recorded time divided by `speed` (speed 0 = as fast as
 * possible). Sleeps only when more than 2 ms ahead, so pacing costs nothing per frame.
 */
export async function* paceReplay<T>(
  items: AsyncIterable<T>,
  timeMsOf: (item: T) => number | null,
  speed: number,
  clock: Clock,
): AsyncGenerator<T> {
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

/**
 * An async iterable as an Observable that stops reading when unsubscribed. `release` frees what the
 * iterable reads from (a pending read would otherwise keep, say, stdin and the process alive).
 */
export function fromAsync<T>(iterable: AsyncIterable<T>, release: () => void = () => undefined): Observable<T> {
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
      release();
    };
  });
}

/** A recorded gap or step longer than this is adopted only once frames after it confirm it. */
const MAX_RECORDED_JUMP_MS = 60_000;
const CONFIRM_FRAMES = 3;

/**
 * A trace as a frame stream (the replay FrameSource). A file is a recording: frames keep their
 * recorded time, guarded against absurd values and jumps. Standard input is a live pipe
 * (`candump -L can0 | v2c-gateway run`): frames are timed by their arrival, on this boot's
 * monotonic clock like the serial adapter's, so one time domain holds for every record.
 */
export function traceFrames(
  path: string,
  format: TraceFormat,
  speed: number,
  clock: Clock,
): Observable<CanFrame | MalformedLine> {
  const live = path === '-';
  const input = openTrace(path);
  const lines = readTrace(input, format, clock);
  const guard = new RecordedTimeGuard(MAX_RECORDED_JUMP_MS, CONFIRM_FRAMES);
  const parsed = (async function* () {
    for await (const l of lines) {
      const p = l.parsed;
      if (p === null) continue;
      if (p instanceof MalformedLine) yield p;
      else if (live) {
        p.tsWall = null;
        p.tsMono = clock.monoMs();
        yield p;
      } else yield* guard.push(p);
    }
    yield* guard.end();
  })();
  return fromAsync(
    live
      ? parsed
      : paceReplay(parsed, (p) => ('tsWall' in p && p.tsWall !== null ? p.tsWall * 1000 : null), speed, clock),
    () => input.destroy(),
  );
}
