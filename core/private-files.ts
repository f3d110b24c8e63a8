// Telemetry holds positions and driving behaviour: personal data. What the gateway keeps on disk is
// for its own user only (files 0600 in a 0700 directory), whatever the umask it was started with.
import { chmodSync, existsSync, mkdirSync, statSync } from 'node:fs';

/** Creates `dir` (and its parents) and makes the directory itself owner-only. */
export function makePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  restrict(dir, 0o700);
}

/**
 * Takes group and other permissions away from an existing file (owner bits stay as they are, so a
 * file made read-only on purpose stays read-only). A file we do not own is left alone: opening it
 * will say what is wrong.
 */
export function restrictToOwner(path: string): void {
  if (existsSync(path)) restrict(path, 0o700);
}

function restrict(path: string, keep: number): void {
  try {
    const mode = statSync(path).mode & 0o7777;
    if ((mode & ~keep) !== 0) chmodSync(path, mode & keep);
  } catch {
    // Not ours to change (another owner, a read-only filesystem): the caller's own open reports it.
  }
}
