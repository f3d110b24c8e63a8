// NMEA 0183 time sentences from a serial GPS: RMC (time + date, with a validity flag) and ZDA
// (time + full date). Pure parsing; a bad sentence is a value, never an exception.

export type NmeaErrorCode = 'NOT_NMEA' | 'BAD_CHECKSUM' | 'NOT_TIME' | 'NO_FIX' | 'BAD_FIELD';

export class NmeaError {
  constructor(
    readonly code: NmeaErrorCode,
    readonly message: string,
  ) {}
}

export interface NmeaTime {
  /** UTC milliseconds since the epoch of the fix the sentence reports. */
  utcMs: number;
  sentence: 'RMC' | 'ZDA';
}

const SENTENCE = /^\$([A-Z]{2})([A-Z]{3}),(.*)\*([0-9A-Fa-f]{2})$/;

function checksum(body: string): number {
  let x = 0;
  for (let i = 0; i < body.length; i++) x ^= body.charCodeAt(i);
  return x;
}

/** hhmmss(.sss) and a date into UTC ms, or null when a field is out of range. */
function utc(time: string, year: number, month: number, day: number): number | null {
  const m = /^(\d{2})(\d{2})(\d{2}(?:\.\d{1,3})?)$/.exec(time);
  if (m === null) return null;
  const [h, min, s] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (h > 23 || min > 59 || s >= 61 || month < 1 || month > 12 || day < 1 || day > 31) return null;
  return Date.UTC(year, month - 1, day, h, min, 0) + Math.round(s * 1000);
}

export function parseNmeaTime(line: string): NmeaTime | NmeaError {
  const m = SENTENCE.exec(line.trim());
  if (m === null) return new NmeaError('NOT_NMEA', `not an NMEA sentence: ${JSON.stringify(line.slice(0, 40))}`);
  const [, talker = '', type = '', fieldsText = '', sum = ''] = m;
  const expected = checksum(`${talker}${type},${fieldsText}`);
  if (expected !== Number.parseInt(sum, 16))
    return new NmeaError(
      'BAD_CHECKSUM',
      `checksum ${sum.toUpperCase()}, expected ${expected.toString(16).toUpperCase().padStart(2, '0')}`,
    );
  const f = fieldsText.split(',');
  if (type === 'RMC') {
    if (f[1] !== 'A') return new NmeaError('NO_FIX', `RMC status ${JSON.stringify(f[1] ?? '')}: no valid fix`);
    const date = /^(\d{2})(\d{2})(\d{2})$/.exec(f[8] ?? '');
    // Two-digit years: 80–99 are 1980–1999 (GPS epoch), the rest 2000–2079.
    const ms =
      date === null
        ? null
        : utc(
            f[0] ?? '',
            Number(date[3]) >= 80 ? 1900 + Number(date[3]) : 2000 + Number(date[3]),
            Number(date[2]),
            Number(date[1]),
          );
    return ms === null
      ? new NmeaError('BAD_FIELD', `RMC time/date ${JSON.stringify(`${f[0] ?? ''} ${f[8] ?? ''}`)}`)
      : { utcMs: ms, sentence: 'RMC' };
  }
  if (type === 'ZDA') {
    const ms = /^\d{4}$/.test(f[3] ?? '') ? utc(f[0] ?? '', Number(f[3]), Number(f[2]), Number(f[1])) : null;
    return ms === null
      ? new NmeaError('BAD_FIELD', `ZDA time/date ${JSON.stringify(f.slice(0, 4).join(','))}`)
      : { utcMs: ms, sentence: 'ZDA' };
  }
  return new NmeaError('NOT_TIME', `${talker}${type} carries no time`);
}
