// DBC text → DbcDatabase. A small tokenizer plus one reader per statement kind; statements the
// decoder does not need (attributes, comments, groups…) are skipped to their `;`. Files in the wild
// are often slightly broken: the parser is lenient per statement and strict per message. A
// statement it cannot read is skipped to the next statement, a message with a signal it cannot
// read (or that does not fit) is refused whole, and every skip is a warning naming file:line.
import { type DbcDatabase, type DbcMessage, type DbcSignal, DbcSyntaxError } from './model.js';

type TokenKind = 'ident' | 'number' | 'string' | 'punct';
interface Token {
  kind: TokenKind;
  text: string;
  line: number;
  col: number;
  /** The first token on its line: where a statement may start. */
  first: boolean;
}

/** Statements we read only to skip: they end at their `;`. */
const SKIPPED = new Set([
  'CM_',
  'BA_DEF_',
  'BA_',
  'BA_DEF_DEF_',
  'VAL_TABLE_',
  'BO_TX_BU_',
  'SIG_GROUP_',
  'EV_',
  'ENVVAR_DATA_',
  'SGTYPE_',
  'SGTYPE_VAL_',
  'BA_DEF_SGTYPE_',
  'BA_SGTYPE_',
  'SIG_TYPE_REF_',
  'BA_DEF_REL_',
  'BA_REL_',
  'BA_DEF_DEF_REL_',
  'BU_SG_REL_',
  'BU_EV_REL_',
  'BU_BO_REL_',
  'CAT_DEF_',
  'CAT_',
  'FILTER',
  'SIGTYPE_VALTYPE_',
  'EV_DATA_',
  'NS_DESC_',
]);

/** Keywords of the statements the parser reads itself. */
const READ = new Set(['VERSION', 'NS_', 'BS_', 'BU_', 'BO_', 'SG_', 'VAL_', 'SIG_VALTYPE_', 'SG_MUL_VAL_']);
/** A line inside a string that starts like one of these is a statement: the string was never closed. */
const STATEMENT_START =
  /^[ \t]*(BO_|SG_|CM_|BA_|BA_DEF_|BA_DEF_DEF_|VAL_|VAL_TABLE_|SIG_VALTYPE_|BO_TX_BU_|SG_MUL_VAL_)[ \t]/;

/** Vector's placeholder message for signals that belong to no message (by id, or by name in newer files). */
const INDEPENDENT_SIGNALS_ID = 0xc0000000;
const INDEPENDENT_SIGNALS_NAME = 'VECTOR__INDEPENDENT_SIG_MSG';
const EXTENDED_FLAG = 0x80000000;

function tokenize(source: string, file: string, warnings: string[]): Token[] {
  // CR-only (classic Mac) and CRLF line endings become LF: lines are what statements start on.
  const text = source.replace(/\r\n?/g, '\n');
  const tokens: Token[] = [];
  let line = 1;
  let lineStart = 0;
  let i = 0;
  const n = text.length;
  const push = (kind: TokenKind, tokenText: string, tokenLine: number, col: number): void => {
    const previous = tokens[tokens.length - 1];
    tokens.push({
      kind,
      text: tokenText,
      line: tokenLine,
      col,
      first: previous === undefined || previous.line !== tokenLine,
    });
  };
  while (i < n) {
    const c = text[i] as string;
    if (c === '\n') {
      line++;
      i++;
      lineStart = i;
      continue;
    }
    if (c === ' ' || c === '\t') {
      i++;
      continue;
    }
    const col = i - lineStart;
    if (c === '/' && text[i + 1] === '/') {
      while (i < n && text[i] !== '\n') i++;
      continue;
    }
    if (c === '"') {
      const startLine = line;
      let str = '';
      i++;
      let closed = false;
      while (i < n) {
        const ch = text[i] as string;
        if (ch === '"') {
          closed = true;
          i++;
          break;
        }
        if (ch === '\\' && i + 1 < n) {
          str += text[i + 1];
          i += 2;
          continue;
        }
        if (ch === '\n') {
          // A statement on the next line: this string was never closed. End it here, keep what follows.
          if (STATEMENT_START.test(text.slice(i + 1, i + 40))) break;
          line++;
          lineStart = i + 1;
        }
        str += ch;
        i++;
      }
      if (!closed)
        warnings.push(
          `${file}:${startLine}: unterminated string: expected a closing "; ended at ${i >= n ? 'the end of the file' : `line ${line}`}`,
        );
      push('string', str, startLine, col);
      continue;
    }
    const next = text[i + 1] ?? '';
    const afterDot = text[i + 2] ?? '';
    if (
      isDigit(c) ||
      ((c === '-' || c === '+') && (isDigit(next) || (next === '.' && isDigit(afterDot)))) ||
      (c === '.' && isDigit(next))
    ) {
      const m = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?/.exec(text.slice(i, i + 64));
      const numText = (m as RegExpExecArray)[0];
      push('number', numText, line, col);
      i += numText.length;
      continue;
    }
    if (/[A-Za-z_]/.test(c)) {
      let j = i + 1;
      while (j < n && /[A-Za-z0-9_]/.test(text[j] as string)) j++;
      push('ident', text.slice(i, j), line, col);
      i = j;
      continue;
    }
    push('punct', c, line, col);
    i++;
  }
  return tokens;
}

/** A token that begins a statement: a known keyword, first on its line. */
function startsStatement(tok: Token): boolean {
  return tok.kind === 'ident' && tok.first && (READ.has(tok.text) || SKIPPED.has(tok.text));
}

function isDigit(c: string): boolean {
  return c >= '0' && c <= '9';
}

class TokenReader {
  pos = 0;
  constructor(
    readonly tokens: Token[],
    readonly file: string,
  ) {}
  peek(): Token | undefined {
    return this.tokens[this.pos];
  }
  get lastLine(): number {
    return this.tokens[Math.min(this.pos, this.tokens.length - 1)]?.line ?? 1;
  }
  fail(expected: string, at?: Token): never {
    const tok = at ?? this.peek();
    const found = tok === undefined ? 'end of file' : tok.kind === 'string' ? `string "${tok.text}"` : `'${tok.text}'`;
    throw new DbcSyntaxError(this.file, tok?.line ?? this.lastLine, `expected ${expected}, found ${found}`);
  }
  next(kind: TokenKind, expected: string, text?: string): Token {
    const tok = this.peek();
    if (tok === undefined || tok.kind !== kind || (text !== undefined && tok.text !== text)) this.fail(expected, tok);
    this.pos++;
    return tok;
  }
  punct(text: string): void {
    this.next('punct', `'${text}'`, text);
  }
  number(expected: string): number {
    return Number(this.next('number', expected).text);
  }
  integer(expected: string): number {
    const tok = this.next('number', expected);
    if (!/^[+-]?\d+$/.test(tok.text)) this.fail(expected, tok);
    return Number(tok.text);
  }
  ident(expected: string): string {
    return this.next('ident', expected).text;
  }
  optionalPunct(text: string): boolean {
    const tok = this.peek();
    if (tok?.kind === 'punct' && tok.text === text) {
      this.pos++;
      return true;
    }
    return false;
  }
  /**
   * Skips the rest of a `;`-terminated statement. One without its `;` ends where the next statement
   * starts (never swallowing the messages after it), with a warning.
   */
  skipStatement(keyword: Token, warnings: string[]): void {
    while (this.pos < this.tokens.length) {
      const tok = this.tokens[this.pos] as Token;
      if (startsStatement(tok) && this.pos > 0) break;
      this.pos++;
      if (tok.kind === 'punct' && tok.text === ';') return;
    }
    warnings.push(
      `${this.file}:${keyword.line}: ${keyword.text} statement has no terminating ';'; read up to ${this.pos < this.tokens.length ? `line ${(this.tokens[this.pos] as Token).line}` : 'the end of the file'}`,
    );
  }
  /** After a statement that could not be read: on to the next statement. */
  skipToNextStatement(): void {
    while (this.pos < this.tokens.length && !startsStatement(this.tokens[this.pos] as Token)) this.pos++;
  }
  /** Tokens up to the next statement (a node list may continue over several lines). */
  untilNextStatement(): Token[] {
    const out: Token[] = [];
    while (this.pos < this.tokens.length && !startsStatement(this.tokens[this.pos] as Token))
      out.push(this.tokens[this.pos++] as Token);
    return out;
  }
  /** Tokens up to the end of the given line. */
  restOfLine(line: number): Token[] {
    const out: Token[] = [];
    while (this.peek()?.line === line) out.push(this.tokens[this.pos++] as Token);
    return out;
  }
}

/**
 * Parses DBC text. What it cannot read is skipped and reported in `warnings` (file:line and what
 * was expected): a statement, or a whole message when one of its signals is broken. Throws
 * DbcSyntaxError only when nothing usable is left (no message at all).
 */
export function parseDbc(text: string, file = '<dbc>'): DbcDatabase {
  const db: DbcDatabase = { file, version: '', nodes: [], messages: [], warnings: [] };
  const r = new TokenReader(tokenize(text, file, db.warnings), file);
  const byId = new Map<number, DbcMessage>();
  const refused = new Set<DbcMessage>();
  const valueTypes: Array<{ id: number; signal: string; type: number; line: number }> = [];
  const choices: Array<{ id: number; signal: string; table: Map<number, string>; line: number }> = [];
  const longNames: LongName[] = [];
  const extendedMux: Array<{
    id: number;
    signal: string;
    switchName: string;
    ranges: Array<[number, number]>;
    line: number;
  }> = [];
  let current: DbcMessage | null = null;
  let skippingMessage = false;
  let statements = 0;
  const refuse = (msg: DbcMessage, why: string): void => {
    if (refused.has(msg)) return;
    refused.add(msg);
    db.warnings.push(`${why}; message ${msg.name} (0x${msg.id.toString(16)}) refused`);
  };

  while (r.peek() !== undefined) {
    const tok = r.peek() as Token;
    try {
      if (tok.kind !== 'ident') r.fail('a DBC keyword (BO_, SG_, VAL_, …)');
      r.pos++;
      statements++;
      switch (tok.text) {
        case 'VERSION':
          db.version = r.next('string', 'a quoted version string').text;
          break;
        case 'NS_':
          r.punct(':');
          // The new-symbols list is indented; it ends at the next token in column 0.
          while (r.peek() !== undefined && (r.peek() as Token).col > 0) r.pos++;
          break;
        case 'BS_':
          r.punct(':');
          r.restOfLine(tok.line);
          break;
        case 'BU_':
          r.punct(':');
          db.nodes = r
            .untilNextStatement()
            .filter((t) => t.kind === 'ident')
            .map((t) => t.text);
          break;
        case 'BO_': {
          current = null;
          skippingMessage = true;
          const msg = readMessage(r, tok, db);
          if (msg === null) break;
          const twin = byId.get(msg.id);
          if (twin !== undefined) {
            db.warnings.push(
              `${file}:${tok.line}: message id 0x${msg.id.toString(16)} is defined twice (also by ${twin.name} at line ${twin.line}); this one refused`,
            );
            break;
          }
          skippingMessage = false;
          current = msg;
          byId.set(msg.id, msg);
          db.messages.push(msg);
          break;
        }
        case 'SG_': {
          if (current === null && !skippingMessage)
            throw new DbcSyntaxError(file, tok.line, 'SG_ outside a message: expected a BO_ before it');
          const target = current;
          try {
            const sig = readSignal(r, tok);
            if (target !== null) {
              checkSignalFits(sig, target, file);
              target.signals.push(sig);
            }
          } catch (err) {
            if (!(err instanceof DbcSyntaxError) || target === null) throw err;
            refuse(target, err.message);
            r.skipToNextStatement();
          }
          break;
        }
        case 'VAL_': {
          const first = r.peek();
          if (first?.kind !== 'number') {
            r.skipStatement(tok, db.warnings);
            break;
          } // environment-variable table
          const id = r.integer('a message id');
          const signal = r.ident('a signal name');
          const table = new Map<number, string>();
          for (;;) {
            if (r.optionalPunct(';')) break;
            const next = r.peek();
            // A table without its ';' (often at the end of a file): keep what was read.
            if (next === undefined || startsStatement(next)) {
              db.warnings.push(
                `${file}:${tok.line}: VAL_ for ${signal} has no terminating ';'; read up to ${next === undefined ? 'the end of the file' : `line ${next.line}`}`,
              );
              break;
            }
            const value = r.number('a raw value or ;');
            table.set(value, r.next('string', 'a quoted value description').text);
          }
          choices.push({ id, signal, table, line: tok.line });
          break;
        }
        case 'SIG_VALTYPE_': {
          const id = r.integer('a message id');
          const signal = r.ident('a signal name');
          r.optionalPunct(':');
          const type = r.integer('a value type (0 integer, 1 float32, 2 double)');
          r.punct(';');
          valueTypes.push({ id, signal, type, line: tok.line });
          break;
        }
        case 'SG_MUL_VAL_': {
          const id = r.integer('a message id');
          const signal = r.ident('a multiplexed signal name');
          const switchName = r.ident('its multiplexor switch name');
          const ranges: Array<[number, number]> = [];
          do {
            const lo = r.integer('a range start');
            // `3-5` is read as the numbers 3 and -5 (or 3, '-', 5 when spaced).
            r.optionalPunct('-');
            const hi = Math.abs(r.integer('a range end'));
            ranges.push([lo, hi]);
          } while (r.optionalPunct(','));
          r.punct(';');
          extendedMux.push({ id, signal, switchName, ranges, line: tok.line });
          break;
        }
        case 'BA_': {
          const longName = readLongName(r, tok);
          if (longName !== null) longNames.push(longName);
          else r.skipStatement(tok, db.warnings);
          break;
        }
        default:
          if (!SKIPPED.has(tok.text))
            throw new DbcSyntaxError(
              file,
              tok.line,
              `unknown keyword '${tok.text}': expected BO_, SG_, VAL_, SIG_VALTYPE_, CM_, BA_… `,
            );
          r.skipStatement(tok, db.warnings);
      }
    } catch (err) {
      if (!(err instanceof DbcSyntaxError)) throw err;
      db.warnings.push(`${err.message}; statement skipped`);
      // A broken message header: its signals belong to no message and are skipped with it.
      if (tok.text === 'BO_') skippingMessage = true;
      if (r.peek() === tok) r.pos++;
      r.skipToNextStatement();
    }
  }

  const find = (rawId: number, signal: string, line: number, what: string): DbcSignal | undefined => {
    const msg = byId.get(normaliseId(rawId, line, db).id);
    const sig = msg?.signals.find((s) => s.name === signal);
    if (sig === undefined)
      db.warnings.push(`${file}:${line}: ${what} for unknown signal ${signal} of message ${rawId}; ignored`);
    return sig;
  };
  for (const v of valueTypes) {
    const sig = find(v.id, v.signal, v.line, 'SIG_VALTYPE_');
    if (sig === undefined) continue;
    const msg = byId.get(normaliseId(v.id, v.line, db).id) as DbcMessage;
    if (v.type === 1 || v.type === 2) {
      const bits = v.type === 1 ? 32 : 64;
      if (sig.length !== bits) {
        refuse(
          msg,
          `${file}:${v.line}: signal ${sig.name} is ${sig.length} bits but SIG_VALTYPE_ ${v.type} needs ${bits}`,
        );
        continue;
      }
      sig.valueType = v.type === 1 ? 'float32' : 'double';
    } else if (v.type !== 0) refuse(msg, `${file}:${v.line}: SIG_VALTYPE_ ${v.type}: expected 0, 1 or 2`);
  }
  for (const c of choices) {
    const sig = find(c.id, c.signal, c.line, 'VAL_');
    if (sig !== undefined) sig.choices = c.table;
  }
  for (const m of extendedMux) {
    const sig = find(m.id, m.signal, m.line, 'SG_MUL_VAL_');
    const msg = byId.get(normaliseId(m.id, m.line, db).id);
    if (sig === undefined || msg === undefined) continue;
    const sw = msg.signals.find((s) => s.name === m.switchName);
    if (sw === undefined || !sw.isMultiplexer) {
      refuse(
        msg,
        `${file}:${m.line}: SG_MUL_VAL_ names ${m.switchName} as the switch of ${m.signal}, but it is not a multiplexor (M) of ${msg.name}`,
      );
      continue;
    }
    sig.multiplexer = { switchName: m.switchName, ranges: m.ranges };
  }
  for (const msg of [...byId.values()]) {
    const cycle = multiplexCycle(msg);
    if (cycle !== null)
      refuse(msg, `${file}:${msg.line}: the multiplexors of ${msg.name} select each other (${cycle})`);
  }
  for (const msg of refused) {
    const at = db.messages.indexOf(msg);
    if (at >= 0) db.messages.splice(at, 1);
    byId.delete(msg.id);
  }
  applyLongNames(longNames, byId, db);
  if (db.messages.length === 0) {
    const why =
      db.warnings.length > 0
        ? `; ${db.warnings.length} problem(s), the first: ${db.warnings[0]}`
        : statements === 0
          ? ': the file is empty'
          : '';
    throw new DbcSyntaxError(file, r.lastLine, `no usable message (BO_) in the file${why}`);
  }
  return db;
}

/** A chain of SG_MUL_VAL_ switches that comes back to itself, or null. */
function multiplexCycle(msg: DbcMessage): string | null {
  const byName = new Map(msg.signals.map((s) => [s.name, s]));
  for (const start of msg.signals) {
    const seen: string[] = [];
    for (let s: DbcSignal | undefined = start; s?.multiplexer != null; s = byName.get(s.multiplexer.switchName)) {
      if (seen.includes(s.name)) return [...seen, s.name].join(' -> ');
      seen.push(s.name);
    }
  }
  return null;
}

interface LongName {
  kind: 'message' | 'signal';
  rawId: number;
  signal: string | null;
  name: string;
  line: number;
}

/**
 * Vector's long names: names over 32 characters are cut in BO_/SG_ and given whole in
 * `BA_ "SystemMessageLongSymbol" BO_ id "name";` / `BA_ "SystemSignalLongSymbol" SG_ id sig "name";`.
 * Null (nothing consumed beyond the keyword) for any other attribute.
 */
function readLongName(r: TokenReader, tok: Token): LongName | null {
  const attr = r.peek();
  if (attr?.kind !== 'string' || (attr.text !== 'SystemMessageLongSymbol' && attr.text !== 'SystemSignalLongSymbol'))
    return null;
  r.pos++;
  const signal = attr.text === 'SystemSignalLongSymbol';
  r.next('ident', signal ? 'SG_' : 'BO_', signal ? 'SG_' : 'BO_');
  const rawId = r.integer('a message id');
  const sigName = signal ? r.ident('a signal name') : null;
  const name = r.next('string', 'the long name').text;
  r.punct(';');
  return { kind: signal ? 'signal' : 'message', rawId, signal: sigName, name, line: tok.line };
}

function applyLongNames(longNames: readonly LongName[], byId: ReadonlyMap<number, DbcMessage>, db: DbcDatabase): void {
  for (const l of longNames) {
    const msg = byId.get(normaliseId(l.rawId, l.line, db).id);
    const target = l.kind === 'message' ? msg : msg?.signals.find((s) => s.name === l.signal);
    if (target === undefined) {
      db.warnings.push(`${db.file}:${l.line}: long name "${l.name}" for an unknown ${l.kind}; ignored`);
      continue;
    }
    target.name = l.name;
  }
}

/**
 * DBC ids carry the extended flag in bit 31. Some files (e.g. opendbc's Toyota) have ids above
 * 0x7FF without it; we read those as 29-bit extended ids (dropping bits 29-30) and say so.
 */
function normaliseId(raw: number, line: number, db: DbcDatabase): { id: number; extended: boolean } {
  if (raw >= EXTENDED_FLAG) return { id: (raw - EXTENDED_FLAG) & 0x1fffffff, extended: true };
  if (raw > 0x7ff) {
    const id = raw & 0x1fffffff;
    if (id !== raw)
      db.warnings.push(
        `${db.file}:${line}: id ${raw} (0x${raw.toString(16)}) has bits above 29 without the extended flag; read as extended 0x${id.toString(16)}`,
      );
    return { id, extended: true };
  }
  return { id: raw, extended: false };
}

function readMessage(r: TokenReader, tok: Token, db: DbcDatabase): DbcMessage | null {
  const rawId = r.integer('a message id after BO_');
  const name = r.ident('a message name');
  r.punct(':');
  const length = r.integer('the message length in bytes');
  const transmitter = r.ident('a transmitter node name');
  if (rawId === INDEPENDENT_SIGNALS_ID || name === INDEPENDENT_SIGNALS_NAME) return null;
  if (rawId < 0 || rawId > 0xffffffff)
    throw new DbcSyntaxError(r.file, tok.line, `message id ${rawId} is out of range`);
  if (length < 0 || length > 64)
    throw new DbcSyntaxError(r.file, tok.line, `message ${name} length ${length}: expected 0-64 bytes`);
  const { id, extended } = normaliseId(rawId, tok.line, db);
  return { id, extended, name, length, transmitter, signals: [], line: tok.line };
}

function readSignal(r: TokenReader, tok: Token): DbcSignal {
  const name = r.ident('a signal name after SG_');
  let isMultiplexer = false;
  let multiplexValue: number | null = null;
  const muxTok = r.peek();
  if (muxTok?.kind === 'ident') {
    r.pos++;
    const m = /^(?:m(\d+))?(M)?$/.exec(muxTok.text);
    if (m === null || muxTok.text === '') r.fail("a multiplex indicator (M or mN) or ':'", muxTok);
    if (m[1] !== undefined) multiplexValue = Number(m[1]);
    isMultiplexer = m[2] !== undefined;
  }
  r.punct(':');
  const startBit = r.integer('the start bit');
  r.punct('|');
  const length = r.integer('the signal length in bits');
  r.punct('@');
  const orderTok = r.next('number', 'byte order 0 (big endian) or 1 (little endian)');
  if (orderTok.text !== '0' && orderTok.text !== '1') r.fail('byte order 0 or 1', orderTok);
  const signTok = r.next('punct', "a sign '+' or '-'");
  if (signTok.text !== '+' && signTok.text !== '-') r.fail("a sign '+' or '-'", signTok);
  r.punct('(');
  const factor = r.number('the scale factor');
  r.punct(',');
  const offset = r.number('the offset');
  r.punct(')');
  r.punct('[');
  const min = r.number('the minimum');
  r.punct('|');
  const max = r.number('the maximum');
  r.punct(']');
  const unitTok = r.next('string', 'a quoted unit');
  const unit = unitTok.text;
  const receivers = r
    .restOfLine(unitTok.line)
    .filter((t) => t.kind === 'ident')
    .map((t) => t.text);
  if (length < 1 || length > 64)
    throw new DbcSyntaxError(r.file, tok.line, `signal ${name} length ${length}: expected 1-64 bits`);
  return {
    name,
    startBit,
    length,
    littleEndian: orderTok.text === '1',
    signed: signTok.text === '-',
    valueType: 'integer',
    factor,
    offset,
    min,
    max,
    unit,
    receivers,
    isMultiplexer,
    multiplexValue,
    multiplexer: null,
    choices: null,
    line: tok.line,
  };
}

/** Bit positions (LSB-first linear numbering) a signal covers, LSB of the value first. */
export function signalBitPositions(sig: Pick<DbcSignal, 'startBit' | 'length' | 'littleEndian'>): number[] {
  const bits: number[] = new Array<number>(sig.length);
  if (sig.littleEndian) {
    for (let i = 0; i < sig.length; i++) bits[i] = sig.startBit + i;
    return bits;
  }
  // Motorola: the start bit is the MSB; walk towards the LSB across the DBC's sawtooth numbering.
  let pos = sig.startBit;
  for (let k = sig.length - 1; k >= 0; k--) {
    bits[k] = pos;
    pos = pos % 8 === 0 ? pos + 15 : pos - 1;
  }
  return bits;
}

function checkSignalFits(sig: DbcSignal, msg: DbcMessage, file: string): void {
  const bits = signalBitPositions(sig);
  const outside = bits.find((b) => b < 0 || b >= msg.length * 8);
  if (outside !== undefined) {
    throw new DbcSyntaxError(
      file,
      sig.line,
      `signal ${sig.name} (start ${sig.startBit}, ${sig.length} bits, ${sig.littleEndian ? 'little' : 'big'} endian) reaches bit ${outside}, outside message ${msg.name}'s ${msg.length} bytes`,
    );
  }
}

const UTF8_BOM = [0xef, 0xbb, 0xbf];

/**
 * A DBC file's text. Vector tools write Windows-1252 (the de-facto DBC encoding: “ ” € in
 * comments and units); some files are UTF-8, with or without a BOM. Valid UTF-8 is read as UTF-8,
 * anything else as Windows-1252.
 */
export function decodeDbcBytes(bytes: Uint8Array): string {
  if (UTF8_BOM.every((b, i) => bytes[i] === b)) return new TextDecoder('utf-8').decode(bytes.subarray(3));
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return decodeWindows1252(bytes);
  }
}

/** Windows-1252's characters for bytes 0x80-0x9F (0 = undefined, kept as the C1 code point). */
const CP1252_HIGH = [
  0x20ac, 0, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160, 0x2039, 0x0152, 0, 0x017d, 0, 0,
  0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014, 0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0, 0x017e, 0x0178,
];

/** Node's TextDecoder('windows-1252') decodes as ISO-8859-1 (C1 controls for 0x80-0x9F): mapped here. */
function decodeWindows1252(bytes: Uint8Array): string {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
  return text.replace(/[\u0080-\u009f]/g, (c) =>
    String.fromCharCode(CP1252_HIGH[c.charCodeAt(0) - 0x80] || c.charCodeAt(0)),
  );
}
