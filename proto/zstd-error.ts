/** Data zstd could not decompress (not a zstd frame, truncated, corrupt, too large once expanded). */
export class ZstdError extends Error {
  readonly code = 'ZSTD_FAILED';
  constructor(message: string) {
    super(message);
    this.name = 'ZstdError';
  }
}

/** No zstd implementation loads on this machine: batches cannot be packed. */
export class ZstdUnavailableError extends Error {
  readonly code = 'ZSTD_UNAVAILABLE';
  constructor(message: string) {
    super(message);
    this.name = 'ZstdUnavailableError';
  }
}
