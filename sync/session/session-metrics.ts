// The MQTT session's metrics: connections and their refusals, PUBACK timeouts, heartbeats, commands.
import type { MetricsRegistry } from '../../core/metrics-registry.js';
import type { CommandHandler } from './command-handler.js';
import type { Heartbeat } from './heartbeat.js';
import type { MqttSession } from './mqtt-session.js';

export function registerSessionMetrics(
  m: MetricsRegistry,
  session: MqttSession,
  heartbeat: Heartbeat,
  commands: CommandHandler,
  labels: { region: string; vehicleModel: string },
): void {
  const { region, vehicleModel } = labels;
  m.counter('v2c_puback_timeouts_total', 'PUBACKs that did not arrive in time', [], () => [
    [{}, session.counters.pubackTimeouts],
  ]);
  m.counter('v2c_connection_attempts_total', 'MQTT connection attempts', ['region', 'vehicle_model', 'result'], () => [
    [{ region, vehicle_model: vehicleModel, result: 'success' }, session.counters.successes],
    [
      { region, vehicle_model: vehicleModel, result: 'failure' },
      Math.max(0, session.counters.attempts - session.counters.successes - (session.state === 'connecting' ? 1 : 0)),
    ],
  ]);
  m.counter('v2c_connack_refusals_total', 'CONNACKs refusing the connection, by reason code', ['reason_code'], () =>
    [...session.counters.connackRefusals].map(([code, n]) => [{ reason_code: `0x${code.toString(16)}` }, n]),
  );
  m.counter('v2c_server_disconnects_total', 'DISCONNECTs sent by the broker, by reason code', ['reason_code'], () =>
    [...session.counters.serverDisconnects].map(([code, n]) => [{ reason_code: `0x${code.toString(16)}` }, n]),
  );
  m.counter(
    'v2c_tls_handshakes_total',
    'TLS handshakes with the broker, full or resumed from a ticket',
    ['kind'],
    () => [
      [{ kind: 'full' }, session.counters.tlsHandshakes.full],
      [{ kind: 'resumed' }, session.counters.tlsHandshakes.resumed],
    ],
  );
  m.gauge('v2c_mqtt_connected', '1 while the MQTT session is up', [], () => [[{}, session.isConnected ? 1 : 0]]);
  m.gauge('v2c_mqtt_state', '1 for the state the MQTT session is in', ['state'], () => [[{ state: session.state }, 1]]);
  m.gauge(
    'v2c_certificate_renewal_required',
    '1 while the broker refuses our credentials (CONNACK 0x86/0x87/0x8C, TLS certificate errors)',
    [],
    () => [[{}, session.state === 'certificate-renewal' ? 1 : 0]],
  );
  m.counter('v2c_heartbeats_total', 'Application heartbeats by outcome', ['result'], () => [
    [{ result: 'acked' }, heartbeat.counters.acked],
    [{ result: 'missed' }, heartbeat.counters.missed],
    // Not sent: another PUBACK within the interval had shown the connection alive.
    [{ result: 'skipped' }, heartbeat.counters.skipped],
  ]);
  m.counter('v2c_commands_total', 'Remote commands by command and result', ['command', 'result'], () =>
    commands.counts.samples('command', 'result'),
  );
}
