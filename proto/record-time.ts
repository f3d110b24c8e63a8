// The wall-time range a telemetry record may carry (2000-01-01 to 2100-01-01 UTC). Anything outside
// is a broken clock or trace. Its own module: trace replay needs it without loading the codec.
export const EARLIEST_RECORD_MS = Date.UTC(2000, 0, 1);
export const LATEST_RECORD_MS = Date.UTC(2100, 0, 1);
