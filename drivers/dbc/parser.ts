// DBC text → DbcDatabase. A small tokenizer plus one reader per statement kind; statements the
// decoder does not need (attributes, comments, groups…) are skipped to their `;`.
import { type DbcDatabase, type DbcMessage, type DbcSignal, DbcSyntaxError } from './model.js';

type TokenKind = 'ident' | 'number' | 'string' | 'punct';
interface Token {
  kind: TokenKind;
  text: string;
  line: number;
  col: number;
}

/** Statements we read only to skip: they end at their `;`. */
const SKIPPED = new Set([
  'CM_', 'BA_DEF_', 'BA_', 'BA_DEF_DEF_', 'VAL_TABLE_', 'BO_TX_BU_', 'SIG_GROUP_', 'EV_', 'ENVVAR_DATA_',
  'SGTYPE_', 'SGTYPE_VAL_', 'BA_DEF_SGTYPE_', 'BA_SGTYPE_', 'SIG_TYPE_REF_', 'BA_DEF_REL_', 'BA_REL_',
  'BA_DEF_DEF_REL_', 'BU_SG_REL_', 'BU_EV_REL_', 'BU_BO_REL_', 'SG_MUL_VAL_', 'CAT_DEF_', 'CAT_', 'FILTER',
  'SIGTYPE_VALTYPE_', 'EV_DATA_', 'NS_DESC_',
]);

/** Vector's placeholder message for signals that belong to no message. */
const INDEPENDENT_SIGNALS_ID = 0xc0000000;
const EXTENDED_FLAG = 0x80000000;

function tokenize(text: string, file: string): Token[] {
  const tokens: Token[] = [];
  let line = 1;
  let lineStart = 0;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i] as string;
    if (c === '\n') { line++; i++; lineStart = i; continue; }
    if (c === ' ' || c === '\t' || c === '\r') { i++; continue; }
    const col = i - lineStart;
    if (c === '/' && text[i + 1] === '/') {
      while (i < n && text[i] !== '\n') i++;
      continue;
    }
    if (c === '"') {
      const startLine = line;
      let s = '';
      i++;
      while (i < n && text[i] !== '"') {
        if (text[i] === '\\' && i + 1 < n) { s += text[i + 1]; i += 2; continue; }
        if (text[i] === '\n') { line++; lineStart = i + 1; }
        s += text[i];
        i++;
      }
      if (i >= n) throw new DbcSyntaxError(file, startLine, 'unterminated string: expected a closing "');
      i++;
      tokens.push({ kind: 'string', text: s, line: startLine, col });
      continue;
    }
    const next = text[i + 1] ?? '';
    if (isDigit(c) || ((c === '-' || c === '+') && (isDigit(next) || next === '.')) || (c === '.' && isDigit(next))) {
      const m = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?/.exec(text.slice(i, i + 64));
      const numText = (m as RegExpExecArray)[0];
      tokens.push({ kind: 'number', text: numText, line, col });
      i += numText.length;
      continue;
    }
    if (/[A-Za-z_]/.test(c)) {
      let j = i + 1;
      while (j < n && /[A-Za-z0-9_]/.test(text[j] as string)) j++;
      tokens.push({ kind: 'ident', text: text.slice(i, j), line, col });
      i = j;
      continue;
    }
    tokens.push({ kind: 'punct', text: c, line, col });
    i++;
  }
  return tokens;
}

function isDigit(c: string): boolean {
  return c >= '0' && c <= '9';
}

class TokenReader {
  pos = 0;
  constructor(
    private readonly tokens: Token[],
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
    if (tok?.kind === 'punct' && tok.text === text) { this.pos++; return true; }
    return false;
  }
  /** Skips the rest of a `;`-terminated statement. */
  skipStatement(keyword: Token): void {
    while (this.pos < this.tokens.length) {
      const tok = this.tokens[this.pos++] as Token;
      if (tok.kind === 'punct' && tok.text === ';') return;
    }
    throw new DbcSyntaxError(this.file, keyword.line, `${keyword.text} statement has no terminating ';'`);
  }
  /** Tokens up to the end of the given line. */
  restOfLine(line: number): Token[] {
    const out: Token[] = [];
    while (this.peek()?.line === line) out.push(this.tokens[this.pos++] as Token);
    return out;
  }
}

/** Parses DBC text. Throws DbcSyntaxError naming `file` and the line for anything it cannot read. */
export function parseDbc(text: string, file = '<dbc>'): DbcDatabase {
  const r = new TokenReader(tokenize(text, file), file);
  const db: DbcDatabase = { file, version: '', nodes: [], messages: [], warnings: [] };
  const byId = new Map<number, DbcMessage>();
  const valueTypes: Array<{ id: number; signal: string; type: number; line: number }> = [];
  const choices: Array<{ id: number; signal: string; table: Map<number, string>; line: number }> = [];
  let current: DbcMessage | null = null;
  let skippingMessage = false;

  for (let tok = r.peek(); tok !== undefined; tok = r.peek()) {
    if (tok.kind !== 'ident') r.fail('a DBC keyword (BO_, SG_, VAL_, …)');
    r.pos++;
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
        db.nodes = r.restOfLine(tok.line).filter((t) => t.kind === 'ident').map((t) => t.text);
        break;
      case 'BO_': {
        const msg = readMessage(r, tok, db);
        skippingMessage = msg === null;
        current = msg;
        if (msg !== null) {
          if (byId.has(msg.id)) throw new DbcSyntaxError(file, tok.line, `message id 0x${msg.id.toString(16)} is defined twice (also by ${byId.get(msg.id)?.name})`);
          byId.set(msg.id, msg);
          db.messages.push(msg);
        }
        break;
      }
      case 'SG_': {
        if (current === null && !skippingMessage) throw new DbcSyntaxError(file, tok.line, 'SG_ outside a message: expected a BO_ before it');
        const sig = readSignal(r, tok);
        if (current !== null) {
          checkSignalFits(sig, current, file);
          current.signals.push(sig);
        }
        break;
      }
      case 'VAL_': {
        const first = r.peek();
        if (first?.kind !== 'number') { r.skipStatement(tok); break; } // environment-variable table
        const id = r.integer('a message id');
        const signal = r.ident('a signal name');
        const table = new Map<number, string>();
        while (!r.optionalPunct(';')) {
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
      default:
        if (!SKIPPED.has(tok.text)) throw new DbcSyntaxError(file, tok.line, `unknown keyword '${tok.text}': expected BO_, SG_, VAL_, SIG_VALTYPE_, CM_, BA_… `);
        r.skipStatement(tok);
    }
  }

  const find = (rawId: number, signal: string, line: number, what: string): DbcSignal | undefined => {
    const msg = byId.get(normaliseId(rawId, line, db).id);
    const sig = msg?.signals.find((s) => s.name === signal);
    if (sig === undefined) db.warnings.push(`${file}:${line}: ${what} for unknown signal ${signal} of message ${rawId}; ignored`);
    return sig;
  };
  for (const v of valueTypes) {
    const sig = find(v.id, v.signal, v.line, 'SIG_VALTYPE_');
    if (sig === undefined) continue;
    if (v.type === 1 || v.type === 2) {
      const bits = v.type === 1 ? 32 : 64;
      if (sig.length !== bits) throw new DbcSyntaxError(file, v.line, `signal ${sig.name} is ${sig.length} bits but SIG_VALTYPE_ ${v.type} needs ${bits}`);
      sig.valueType = v.type === 1 ? 'float32' : 'double';
    } else if (v.type !== 0) throw new DbcSyntaxError(file, v.line, `SIG_VALTYPE_ ${v.type}: expected 0, 1 or 2`);
  }
  for (const c of choices) {
    const sig = find(c.id, c.signal, c.line, 'VAL_');
    if (sig !== undefined) sig.choices = c.table;
  }
  return db;
}

/**
 * DBC ids carry the extended flag in bit 31. Some files (e.g. opendbc's Toyota) have ids above
 * 0x7FF without it; we read those as 29-bit extended ids (dropping bits 29-30) and say so.
 */
function normaliseId(raw: number, line: number, db: DbcDatabase): { id: number; extended: boolean } {
  if (raw >= EXTENDED_FLAG) return { id: (raw - EXTENDED_FLAG) & 0x1fffffff, extended: true };
  if (raw > 0x7ff) {
    const id = raw & 0x1fffffff;
    if (id !== raw) db.warnings.push(`${db.file}:${line}: id ${raw} (0x${raw.toString(16)}) has bits above 29 without the extended flag; read as extended 0x${id.toString(16)}`);
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
  if (rawId === INDEPENDENT_SIGNALS_ID) return null;
  if (rawId < 0 || rawId > 0xffffffff) throw new DbcSyntaxError(r.file, tok.line, `message id ${rawId} is out of range`);
  if (length < 0 || length > 64) throw new DbcSyntaxError(r.file, tok.line, `message ${name} length ${length}: expected 0-64 bytes`);
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
  const unit = r.next('string', 'a quoted unit').text;
  const receivers = r.restOfLine(r.lastLine).filter((t) => t.kind === 'ident').map((t) => t.text);
  if (length < 1 || length > 64) throw new DbcSyntaxError(r.file, tok.line, `signal ${name} length ${length}: expected 1-64 bits`);
  return {
    name, startBit, length, littleEndian: orderTok.text === '1', signed: signTok.text === '-', valueType: 'integer',
    factor, offset, min, max, unit, receivers, isMultiplexer, multiplexValue, choices: null, line: tok.line,
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
    throw new DbcSyntaxError(file, sig.line, `signal ${sig.name} (start ${sig.startBit}, ${sig.length} bits, ${sig.littleEndian ? 'little' : 'big'} endian) reaches bit ${outside}, outside message ${msg.name}'s ${msg.length} bytes`);
  }
}
