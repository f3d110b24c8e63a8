// systemd's service protocol for `Type=notify` and `WatchdogSec=`: READY=1 once the gateway runs,
// WATCHDOG=1 at half the watchdog period while the event loop turns, STOPPING=1 on the way out.
// Node has no unix datagram sockets, so the messages go through systemd-notify (the unit sets
// NotifyAccess=all for it; --no-block skips the barrier that waits for systemd to read each one);
// outside systemd (no NOTIFY_SOCKET) nothing is sent.
import { spawn } from 'node:child_process';

export interface ServiceNotifier {
  ready(status: string): void;
  status(text: string): void;
  stopping(): void;
  close(): void;
}

export function serviceNotifier(
  env: NodeJS.ProcessEnv,
  log: (msg: string) => void,
  command = 'systemd-notify',
): ServiceNotifier | null {
  if (env.NOTIFY_SOCKET === undefined || env.NOTIFY_SOCKET === '') return null;
  let failed = false;
  const send = (args: string[]): void => {
    if (failed) return;
    const child = spawn(command, ['--no-block', `--pid=${process.pid}`, ...args], { stdio: 'ignore', env });
    child.once('error', (err) => {
      failed = true;
      log(`systemd: cannot run ${command} (${err.message}); readiness and watchdog messages are off`);
    });
  };
  const usec = Number(env.WATCHDOG_USEC);
  const forUs = env.WATCHDOG_PID === undefined || Number(env.WATCHDOG_PID) === process.pid;
  let watchdog: NodeJS.Timeout | null = null;
  if (Number.isFinite(usec) && usec > 0 && forUs) {
    watchdog = setInterval(() => send(['WATCHDOG=1']), Math.max(50, usec / 2000));
    watchdog.unref();
  }
  return {
    ready: (status) => send(['--ready', `--status=${status}`]),
    status: (text) => send([`--status=${text}`]),
    stopping: () => send(['STOPPING=1']),
    close: () => {
      if (watchdog !== null) clearInterval(watchdog);
    },
  };
}
