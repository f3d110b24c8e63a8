/** A parsed DBC database: what the decoder compiles and the tests inspect. */
export interface DbcDatabase {
  file: string;
  version: string;
  nodes: string[];
  messages: DbcMessage[];
  /** Non-fatal findings (e.g. an id rule applied), one line each, naming the DBC line. */
  warnings: string[];
}

export interface DbcMessage {
  /** CAN id without flag bits. */
  id: number;
  extended: boolean;
  name: string;
  /** Payload length in bytes (the DBC's DLC field; CAN FD messages give 12…64). */
  length: number;
  transmitter: string;
  signals: DbcSignal[];
  /** Line of the `BO_` in the file, for messages that refer back to it. */
  line: number;
}

export type DbcValueType = 'integer' | 'float32' | 'double';

export interface DbcSignal {
  name: string;
  startBit: number;
  length: number;
  littleEndian: boolean;
  signed: boolean;
  valueType: DbcValueType;
  factor: number;
  offset: number;
  min: number;
  max: number;
  unit: string;
  receivers: string[];
  /** True for the multiplexer switch (`M`). */
  isMultiplexer: boolean;
  /** The multiplexer value that selects this signal (`mN`), or null for plain signals. */
  multiplexValue: number | null;
  /**
   * Extended multiplexing (`SG_MUL_VAL_`): the switch signal that selects this one and the raw
   * value ranges (inclusive) that do; null for simple multiplexing (the message's one `M` switch).
   */
  multiplexer: { switchName: string; ranges: Array<[number, number]> } | null;
  /** Value table (`VAL_`): raw value → name. */
  choices: Map<number, string> | null;
  line: number;
}

/** A DBC file that cannot be used: names the file, the line and what was expected. */
export class DbcSyntaxError extends Error {
  readonly code = 'DBC_SYNTAX';
  constructor(
    readonly file: string,
    readonly line: number,
    readonly detail: string,
  ) {
    super(`${file}:${line}: ${detail}`);
    this.name = 'DbcSyntaxError';
  }
}
