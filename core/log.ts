// The log every stage writes to: one line per call (the CLI prints them as JSON on stderr).
export type Log = (msg: string) => void;

/** At most one line per `intervalMs`; the next line says how many were left out (a fault that repeats per record must not flood the log). */
export function rateLimited(log: Log, intervalMs: number): Log {
  let last = -Infinity;
  let suppressed = 0;
  return (msg) => {
    const now = Date.now();
    if (now - last < intervalMs) {
      suppressed++;
      return;
    }
    last = now;
    log(suppressed > 0 ? `${msg} (${suppressed} similar lines left out)` : msg);
    suppressed = 0;
  };
}
