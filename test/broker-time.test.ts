// The broker time source after stop: a subscription acknowledged late must not ask again (and arm
// an hour's timer that kept a stopped gateway's process alive: https-offload hung in CI so).
import t from 'tap';
import { Subject } from 'rxjs';
import { systemClock } from '../core/clock.js';
import { BrokerTimeSource } from '../sync/session/broker-time.js';
import type { MqttSession } from '../sync/session/mqtt-session.js';
import type { ClockCorrector } from '../sync/time/clock-corrector.js';

t.test('a subscription acknowledged after stop asks nothing', async (t) => {
  const subscribed: Array<() => void> = [];
  let requests = 0;
  const session = {
    messages: new Subject(),
    isConnected: true,
    keepSubscribed: (_topic: string, onSubscribed: () => void) => {
      subscribed.push(onSubscribed);
      return { unsubscribe: () => undefined };
    },
    publish: () => {
      requests++;
      return Promise.resolve();
    },
  };
  const source = new BrokerTimeSource(
    session as unknown as MqttSession,
    { request: 'time/request', response: 'time/response' },
    {} as ClockCorrector,
    systemClock,
    3_600_000,
    () => undefined,
  );
  source.start();
  for (const ack of subscribed) ack();
  t.equal(requests, 1, 'asked once subscribed');
  source.stop();
  for (const ack of subscribed) ack();
  t.equal(requests, 1, 'nothing asked after stop');
  t.equal(source.counters.requests, 1);
});
