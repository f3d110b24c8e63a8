// The broker time reference: an MQTT 5 request on …/time/request with a response topic and
// correlation data; the cloud answers `{"now_ms"}` on …/time/response. Half the round trip is the
// error bound, and the reference instant is the middle of the round trip. A reconnect asks only
// when the last answer is an interval old: the monotonic clock did not stop with the link, and
// each exchange costs a cellular link about 350 B.
import { randomBytes } from 'node:crypto';
import { filter, type Subscription } from 'rxjs';
import type { Clock } from '../../core/clock.js';
import type { MqttSession } from './mqtt-session.js';
import type { ClockCorrector } from '../time/clock-corrector.js';

export function timeTopics(region: string, vehicleId: string): { request: string; response: string } {
  return {
    request: `v2c/v1/${region}/${vehicleId}/time/request`,
    response: `v2c/v1/${region}/${vehicleId}/time/response`,
  };
}

export class BrokerTimeSource {
  private pending: { correlation: Buffer; sentMonoMs: number } | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** When the last answered request was sent. */
  private lastAnswerMonoMs: number | null = null;
  private readonly subscriptions: Subscription[] = [];
  readonly counters = { requests: 0, answers: 0, ignored: 0 };

  constructor(
    private readonly session: MqttSession,
    private readonly topics: { request: string; response: string },
    private readonly corrector: ClockCorrector,
    private readonly clock: Clock,
    private readonly intervalMs: number,
    private readonly log: (msg: string) => void,
  ) {}

  start(): void {
    this.subscriptions.push(
      this.session.messages
        .pipe(filter((m) => m.topic === this.topics.response))
        .subscribe((m) => this.onAnswer(m.payload, m.packet.properties?.correlationData)),
    );
    this.subscriptions.push(this.session.keepSubscribed(this.topics.response, () => this.askIfDue()));
  }

  stop(): void {
    // A (re)subscription acknowledged after this would otherwise ask again and arm an hour's timer
    // that kept a stopped gateway's process alive.
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    for (const s of this.subscriptions) s.unsubscribe();
  }

  private askIfDue(): void {
    const last = this.lastAnswerMonoMs;
    if (last === null || this.clock.monoMs() - last >= this.intervalMs) this.ask();
  }

  /** Asks now, and again an interval later (a connect in between asks if that one went unanswered). */
  ask(): void {
    if (this.stopped) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.ask(), this.intervalMs);
    if (!this.session.isConnected) return;
    const correlation = randomBytes(8);
    this.pending = { correlation, sentMonoMs: this.clock.monoMs() };
    this.counters.requests++;
    this.session
      .publish(this.topics.request, Buffer.from('{}'), {
        contentType: 'application/json',
        userProperties: {},
        responseTopic: this.topics.response,
        correlationData: correlation,
      })
      .catch((err: unknown) => this.log(`clock: time request not delivered: ${(err as Error).message}`));
  }

  private onAnswer(payload: Buffer, correlation: Buffer | undefined): void {
    const pending = this.pending;
    const now = this.clock.monoMs();
    let nowMs: unknown;
    try {
      nowMs = (JSON.parse(payload.toString('utf8')) as { now_ms?: unknown }).now_ms;
    } catch {
      nowMs = undefined;
    }
    if (
      pending === null ||
      correlation === undefined ||
      !pending.correlation.equals(correlation) ||
      typeof nowMs !== 'number' ||
      !Number.isFinite(nowMs)
    ) {
      this.counters.ignored++;
      return;
    }
    this.pending = null;
    this.counters.answers++;
    // From when it was asked: an answer redelivered after an outage is an old one.
    this.lastAnswerMonoMs = pending.sentMonoMs;
    const halfRtt = (now - pending.sentMonoMs) / 2;
    // +1 ms: the answer's clock counts whole milliseconds.
    this.corrector.offer({
      source: 'broker',
      wallMs: nowMs,
      monoMs: pending.sentMonoMs + halfRtt,
      errorMs: halfRtt + 1,
    });
  }
}
