// Typed errors of the durable store: each names the database file and what the operator can do.

export type StorageErrorCode =
  | 'STORAGE_FULL'
  | 'STORAGE_READ_ONLY'
  | 'STORAGE_CORRUPT'
  | 'STORAGE_IO'
  | 'STORAGE_OPEN_FAILED'
  | 'STORAGE_SCHEMA_MISMATCH'
  | 'STORAGE_ATTACHMENTS_UNSUPPORTED'
  | 'STORAGE_CLOSED';

export class StorageError extends Error {
  constructor(
    readonly code: StorageErrorCode,
    readonly path: string,
    readonly problem: string,
    readonly hint: string,
    readonly sqliteCode?: string,
  ) {
    super(`${path}: ${problem}; ${hint}`);
    this.name = 'StorageError';
  }
}

/** The hint printed with each kind of failure: what to do about it, in one line. */
const hints: Record<StorageErrorCode, string> = {
  STORAGE_FULL:
    'free space on the device or raise store.maxBytes; new records evict the oldest of the lowest priority meanwhile',
  STORAGE_READ_ONLY:
    'make the file and its directory writable by the gateway user and check the filesystem is mounted read-write (`mount | grep " ro,"`)',
  STORAGE_CORRUPT: 'the file was moved aside and a new one started; keep the moved file for analysis',
  STORAGE_IO: 'the storage device reported an I/O error; check `dmesg` for failing flash or a loose connection',
  STORAGE_OPEN_FAILED: 'check that store.dir exists or can be created and is writable by the gateway user',
  STORAGE_SCHEMA_MISMATCH: 'a collection changed its indexes without a new schema version; bump the schema version',
  STORAGE_ATTACHMENTS_UNSUPPORTED: 'this storage keeps no attachments; remove "attachments" from the schema',
  STORAGE_CLOSED: 'the storage instance was closed; open it again',
};

export function storageError(code: StorageErrorCode, path: string, problem: string, sqliteCode?: string): StorageError {
  return new StorageError(code, path, problem, hints[code], sqliteCode);
}

/** Maps a better-sqlite3 error (its `code` is SQLite's extended result code name) onto a typed error. */
export function fromSqliteError(err: unknown, path: string): Error {
  if (err instanceof StorageError) return err;
  const code = typeof (err as { code?: unknown })?.code === 'string' ? (err as { code: string }).code : '';
  const message = err instanceof Error ? err.message : String(err);
  if (code === 'SQLITE_FULL') return storageError('STORAGE_FULL', path, `database or disk is full (${message})`, code);
  if (code.startsWith('SQLITE_READONLY'))
    return storageError('STORAGE_READ_ONLY', path, `cannot write (${message})`, code);
  if (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB')
    return storageError('STORAGE_CORRUPT', path, `not a valid database (${message})`, code);
  if (code.startsWith('SQLITE_IOERR')) return storageError('STORAGE_IO', path, `I/O error (${message})`, code);
  if (code.startsWith('SQLITE_CANTOPEN'))
    return storageError('STORAGE_OPEN_FAILED', path, `cannot open (${message})`, code);
  return err instanceof Error ? err : new Error(message);
}
