// Keeps the link decision current: the link monitor, the ignition, the day's cellular bytes and the
// backlog go into decideLink (link-policy.ts) whenever one of them changes, and the outbox asks
// `current` before each message. Metered bytes are counted here.
import { BehaviorSubject, distinctUntilChanged, type Observable, type Subscription } from 'rxjs';
import { rateLimited } from '../../core/log.js';
import type { CellularBudget } from './cellular-budget.js';
import type { LinkMonitor } from './link-monitor.js';
import { decideLink, type LinkDecision, type LinkState, type PolicySettings } from './link-policy.js';
import type { IgnitionSense } from '../../core/hardware.js';

export class LinkController {
  private readonly subject: BehaviorSubject<LinkDecision>;
  private readonly subscriptions: Subscription[] = [];
  private timer: NodeJS.Timeout | null = null;
  private backlog = 0;
  private backlogCountedAtMs = -Infinity;
  private counting = false;
  private readonly countLog: (msg: string) => void;

  constructor(
    readonly monitor: LinkMonitor,
    readonly ignition: IgnitionSense | null,
    readonly budget: CellularBudget,
    private readonly settings: PolicySettings,
    private readonly countBacklog: () => Promise<number>,
    private readonly log: (msg: string) => void,
    private readonly now: () => number,
    private readonly tickMs = 1000,
    /** Counting a large store reads its whole index: the backlog is refreshed this seldom. */
    private readonly backlogRefreshMs = 30_000,
  ) {
    this.subject = new BehaviorSubject(this.decide());
    this.countLog = rateLimited(log, 60_000);
  }

  get current(): LinkDecision {
    return this.subject.value;
  }

  get link(): LinkState {
    return this.monitor.current;
  }

  /** Each new decision (a change of mode, bulk permission or reason). */
  get decisions(): Observable<LinkDecision> {
    return this.subject.pipe(
      distinctUntilChanged((a, b) => a.mode === b.mode && a.sendBulk === b.sendBulk && a.metered === b.metered),
    );
  }

  start(): void {
    this.monitor.start();
    this.subscriptions.push(this.monitor.links.subscribe(() => this.update()));
    if (this.ignition !== null) this.subscriptions.push(this.ignition.changes.subscribe(() => this.update()));
    this.subscriptions.push(
      this.decisions.subscribe((d) =>
        this.log(`link: ${describeLink(this.monitor.current)} -> ${d.mode}: ${d.reason}`),
      ),
    );
    // Parking is a duration and the budget a day: both change without an event.
    this.timer = setInterval(() => {
      this.update();
      if (this.counting || this.now() - this.backlogCountedAtMs < this.backlogRefreshMs) return;
      this.counting = true;
      this.backlogCountedAtMs = this.now();
      void this.countBacklog()
        .then(
          (n) => {
            this.backlog = n;
            this.update();
          },
          (err: unknown) =>
            this.countLog(
              `link: cannot count the backlog: ${(err as Error).message}; the policy keeps the last count (${this.backlog})`,
            ),
        )
        .finally(() => {
          this.counting = false;
        });
    }, this.tickMs);
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    for (const s of this.subscriptions) s.unsubscribe();
    this.monitor.stop();
    this.ignition?.stop();
    this.budget.persist();
  }

  /** Counts bytes sent under the current decision; a metered link's budget may run out here. */
  meter(bytes: number): void {
    if (!this.current.metered) return;
    this.budget.add(bytes);
    if (this.current.sendBulk && this.budget.usedToday() >= this.budget.budgetBytes) this.update();
  }

  private update(): void {
    if (!this.subject.closed) this.subject.next(this.decide());
  }

  private decide(): LinkDecision {
    return decideLink(
      {
        link: this.monitor.current,
        ignitionOn: this.ignition?.isOn ?? null,
        ignitionOffForMs: this.ignition?.offForMs() ?? 0,
        backlogRecords: this.backlog,
        cellularBytesToday: this.budget.usedToday(),
      },
      this.settings,
    );
  }
}

export function describeLink(link: LinkState): string {
  if (link.kind === 'wifi') return `WiFi "${link.ssid ?? ''}"`;
  if (link.kind === 'cellular') return `cellular (${link.iface ?? '?'})`;
  return link.kind === 'none' ? 'no link' : 'link unknown';
}
