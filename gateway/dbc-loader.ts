// Loading a DBC file for the gateway and `decode`: read (bounded, regular files only), decoded from
// Windows-1252 or UTF-8, parsed and compiled; kept apart so `decode` loads nothing else.
import { DbcDecoder, type DecoderOptions } from '../drivers/dbc/decoder.js';
import { DbcSyntaxError } from '../drivers/dbc/model.js';
import { decodeDbcBytes, parseDbc } from '../drivers/dbc/parser.js';
import { readInputFile } from '../core/input-file.js';

/** The largest DBC we read (real ones are up to a few MB). */
const MAX_DBC_BYTES = 64 << 20;

/** A DBC that cannot be read, with the file named. */
export class DbcLoadError extends Error {
  readonly code = 'DBC_LOAD';
}

export function loadDecoder(path: string | undefined, options: DecoderOptions = {}): DbcDecoder {
  // A vehicle read only through OBD-II or J1939 has no DBC: every frame is left to those protocols.
  if (path === undefined)
    return new DbcDecoder({ file: '', version: '', nodes: [], messages: [], warnings: [] }, options);
  let text: string;
  try {
    text = decodeDbcBytes(readInputFile(path, MAX_DBC_BYTES));
  } catch (err) {
    throw new DbcLoadError(`cannot read DBC ${path}: ${(err as Error).message}`);
  }
  try {
    return new DbcDecoder(parseDbc(text, path), options);
  } catch (err) {
    if (err instanceof DbcSyntaxError) throw new DbcLoadError(err.message);
    throw err;
  }
}
