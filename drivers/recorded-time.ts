// Recorded traces carry their own wall time, and one absurd timestamp (a flipped digit, a
// 309-digit number) must not break the windows of everything after it. Timestamps outside a
// plausible calendar range are refused; a frame that jumps away from the trace's timeline is held
// until `confirmFrames` frames in a row agree on the new timeline (a real gap in the recording: all
// released, nothing lost) or dropped as an outlier. Pure: no I/O, no clock.
import { EARLIEST_RECORD_MS, LATEST_RECORD_MS } from '../proto/record-time.js';
import { type CanFrame, MalformedLine } from './can-frame.js';
/** Frames of one bus interleaved from several interfaces may step back a little. */
const BACKWARD_TOLERANCE_MS = 1000;

export interface RecordedTimeCounters {
  outOfRange: number;
  /** Frames dropped because they left the timeline and nothing followed them. */
  outliers: number;
  /** New timelines adopted (gaps or steps in the recording that several frames confirmed). */
  timelineChanges: number;
}

export class RecordedTimeGuard {
  readonly counters: RecordedTimeCounters = { outOfRange: 0, outliers: 0, timelineChanges: 0 };
  private lastMs: number | null = null;
  /** Frames off the timeline, waiting for confirmation (at most `confirmFrames - 1`). */
  private suspects: CanFrame[] = [];

  constructor(
    private readonly maxJumpMs: number,
    private readonly confirmFrames: number,
  ) {}

  /** What to pass on for this frame: nothing yet, the frame, held frames now confirmed, or refusals. */
  push(frame: CanFrame): Array<CanFrame | MalformedLine> {
    if (frame.tsWall === null) return [frame];
    const t = frame.tsWall * 1000;
    if (!Number.isFinite(t) || t < EARLIEST_RECORD_MS || t >= LATEST_RECORD_MS) {
      this.counters.outOfRange++;
      return [refusal('bad-timestamp', frame, `recorded time ${String(frame.tsWall)} s is outside 2000-2100`)];
    }
    const out: Array<CanFrame | MalformedLine> = [];
    if (this.lastMs === null || follows(t, this.lastMs, this.maxJumpMs)) {
      out.push(...this.dropSuspects());
      this.lastMs = this.lastMs === null ? t : Math.max(this.lastMs, t);
      out.push(frame);
      return out;
    }
    const previous = this.suspects[this.suspects.length - 1];
    if (previous !== undefined && !follows(t, (previous.tsWall as number) * 1000, this.maxJumpMs))
      out.push(...this.dropSuspects());
    this.suspects.push(frame);
    if (this.suspects.length >= this.confirmFrames) {
      this.counters.timelineChanges++;
      this.lastMs = Math.max(...this.suspects.map((f) => (f.tsWall as number) * 1000));
      out.push(...this.suspects);
      this.suspects = [];
    }
    return out;
  }

  /** The end of the trace: frames still held never found a timeline. */
  end(): MalformedLine[] {
    return this.dropSuspects();
  }

  private dropSuspects(): MalformedLine[] {
    const dropped = this.suspects.map((f) =>
      refusal(
        'time-jump',
        f,
        `recorded time ${String(f.tsWall)} s jumps more than ${this.maxJumpMs / 1000} s from the trace's timeline`,
      ),
    );
    this.counters.outliers += dropped.length;
    this.suspects = [];
    return dropped;
  }
}

function follows(t: number, lastMs: number, maxJumpMs: number): boolean {
  return t >= lastMs - BACKWARD_TOLERANCE_MS && t <= lastMs + maxJumpMs;
}

function refusal(code: 'bad-timestamp' | 'time-jump', frame: CanFrame, reason: string): MalformedLine {
  return new MalformedLine(
    code,
    reason,
    `(${String(frame.tsWall)}) ${frame.bus ?? ''} ${frame.id.toString(16).toUpperCase()}`,
  );
}
