// Bytes sent over a metered link per UTC day, kept in a small file beside the store so a restart
// does not hand out a fresh budget. Written at most every `persistEveryMs` (flash wear), and at stop.
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Clock } from '../../core/clock.js';

interface BudgetFile {
  day: string;
  bytes: number;
}

export class CellularBudget {
  private day: string;
  private bytes = 0;
  private lastWriteMs = -Infinity;
  private failing = false;

  constructor(
    private readonly file: string,
    readonly budgetBytes: number,
    private readonly clock: Clock,
    private readonly log: (msg: string) => void,
    private readonly persistEveryMs = 10_000,
  ) {
    this.day = this.today();
    try {
      const saved = JSON.parse(readFileSync(file, 'utf8')) as Partial<BudgetFile>;
      if (saved.day === this.day && typeof saved.bytes === 'number' && saved.bytes >= 0) this.bytes = saved.bytes;
    } catch {
      // No file yet, or a damaged one: today starts at 0.
    }
  }

  /** Bytes counted today (UTC, by the system clock). */
  usedToday(): number {
    this.rollOver();
    return this.bytes;
  }

  add(bytes: number): void {
    this.rollOver();
    this.bytes += bytes;
    if (this.clock.monoMs() - this.lastWriteMs >= this.persistEveryMs) this.persist();
  }

  /**
   * Writes the count (atomically, owner-only). A full or read-only disk must not stop sending or
   * stopping: the count stays in memory, the failure is logged once until a write succeeds again.
   */
  persist(): boolean {
    this.lastWriteMs = this.clock.monoMs();
    const tmp = `${this.file}.tmp`;
    try {
      mkdirSync(dirname(this.file), { recursive: true, mode: 0o700 });
      writeFileSync(tmp, JSON.stringify({ day: this.day, bytes: this.bytes } satisfies BudgetFile), { mode: 0o600 });
      renameSync(tmp, this.file);
      this.failing = false;
      return true;
    } catch (err) {
      rmSync(tmp, { force: true });
      if (!this.failing)
        this.log(
          `link: cannot save the cellular byte count to ${this.file} (${(err as Error).message}); counting in memory`,
        );
      this.failing = true;
      return false;
    }
  }

  private today(): string {
    return new Date(this.clock.wallMs()).toISOString().slice(0, 10);
  }

  private rollOver(): void {
    const today = this.today();
    if (today === this.day) return;
    this.day = today;
    this.bytes = 0;
  }
}
