// NMEA 0183 from the modem's GNSS receiver: time (RMC with its validity flag, ZDA) and position
// (RMC, GGA, VTG). Pure parsing; a bad sentence is a value, never an exception.

export type NmeaErrorCode = 'NOT_NMEA' | 'BAD_CHECKSUM' | 'NOT_TIME' | 'NOT_POSITION' | 'NO_FIX' | 'BAD_FIELD';

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

/** A sentence's type and fields once its checksum holds. */
function sentence(line: string): { talker: string; type: string; f: string[] } | NmeaError {
  const m = SENTENCE.exec(line.trim());
  if (m === null) return new NmeaError('NOT_NMEA', `not an NMEA sentence: ${JSON.stringify(line.slice(0, 40))}`);
  const [, talker = '', type = '', fieldsText = '', sum = ''] = m;
  const expected = checksum(`${talker}${type},${fieldsText}`);
  if (expected !== Number.parseInt(sum, 16))
    return new NmeaError(
      'BAD_CHECKSUM',
      `checksum ${sum.toUpperCase()}, expected ${expected.toString(16).toUpperCase().padStart(2, '0')}`,
    );
  return { talker, type, f: fieldsText.split(',') };
}

export function parseNmeaTime(line: string): NmeaTime | NmeaError {
  const parsed = sentence(line);
  if (parsed instanceof NmeaError) return parsed;
  const { talker, type, f } = parsed;
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

/** Signals a GNSS receiver gives the pipeline (windowed like any CAN signal). */
export const GNSS_SIGNALS = {
  latitude: 'GNSS_Latitude',
  longitude: 'GNSS_Longitude',
  speedKmh: 'GNSS_SpeedKmh',
  heading: 'GNSS_Heading',
  fixQuality: 'GNSS_FixQuality',
  satellites: 'GNSS_Satellites',
  hdop: 'GNSS_Hdop',
} as const;

/** What one position sentence says, as signal values. */
export interface NmeaPosition {
  sentence: 'RMC' | 'GGA' | 'VTG';
  signals: Record<string, number>;
}

const KNOTS_TO_KMH = 1.852;

/** ddmm.mmmm (or dddmm.mmmm) and a hemisphere into signed degrees, or null when out of range. */
function degrees(value: string, hemisphere: string, maxDegrees: number): number | null {
  const m = /^(\d{2,3})(\d{2}(?:\.\d+)?)$/.exec(value);
  if (m === null || !['N', 'S', 'E', 'W'].includes(hemisphere)) return null;
  const deg = Number(m[1]) + Number(m[2]) / 60;
  if (Number(m[2]) >= 60 || deg > maxDegrees) return null;
  return hemisphere === 'S' || hemisphere === 'W' ? -deg : deg;
}

/** A number field, or null when empty or not a number. */
function num(field: string | undefined): number | null {
  if (field === undefined || field === '' || !/^-?\d+(\.\d+)?$/.test(field)) return null;
  return Number(field);
}

/** Latitude and longitude fields (starting at `i`), NO_FIX for 0,0 (a receiver's empty default, never a place we report). */
function position(f: string[], i: number, type: string): Record<string, number> | NmeaError {
  const lat = degrees(f[i] ?? '', f[i + 1] ?? '', 90);
  const lon = degrees(f[i + 2] ?? '', f[i + 3] ?? '', 180);
  if ((f[i] ?? '') === '' && (f[i + 2] ?? '') === '') return new NmeaError('NO_FIX', `${type} without a position`);
  if (lat === null || lon === null)
    return new NmeaError('BAD_FIELD', `${type} position ${JSON.stringify(f.slice(i, i + 4).join(','))}`);
  if (lat === 0 && lon === 0) return new NmeaError('NO_FIX', `${type} position 0,0: no fix`);
  return { [GNSS_SIGNALS.latitude]: lat, [GNSS_SIGNALS.longitude]: lon };
}

/**
 * RMC (position, speed over ground, course), GGA (position, fix quality, satellites, HDOP) and
 * VTG (course, speed) into signals. A sentence without a valid fix is NO_FIX.
 */
export function parseNmeaPosition(line: string): NmeaPosition | NmeaError {
  const parsed = sentence(line);
  if (parsed instanceof NmeaError) return parsed;
  const { talker, type, f } = parsed;
  if (type === 'RMC') {
    if (f[1] !== 'A') return new NmeaError('NO_FIX', `RMC status ${JSON.stringify(f[1] ?? '')}: no valid fix`);
    const pos = position(f, 2, type);
    if (pos instanceof NmeaError) return pos;
    const knots = num(f[6]);
    const course = num(f[7]);
    return {
      sentence: 'RMC',
      signals: {
        ...pos,
        ...(knots !== null ? { [GNSS_SIGNALS.speedKmh]: knots * KNOTS_TO_KMH } : {}),
        ...(course !== null ? { [GNSS_SIGNALS.heading]: course } : {}),
      },
    };
  }
  if (type === 'GGA') {
    const quality = num(f[5]);
    if (quality === null) return new NmeaError('BAD_FIELD', `GGA fix quality ${JSON.stringify(f[5] ?? '')}`);
    if (quality === 0) return new NmeaError('NO_FIX', 'GGA fix quality 0: no fix');
    const pos = position(f, 1, type);
    if (pos instanceof NmeaError) return pos;
    const satellites = num(f[6]);
    const hdop = num(f[7]);
    return {
      sentence: 'GGA',
      signals: {
        ...pos,
        [GNSS_SIGNALS.fixQuality]: quality,
        ...(satellites !== null ? { [GNSS_SIGNALS.satellites]: satellites } : {}),
        ...(hdop !== null ? { [GNSS_SIGNALS.hdop]: hdop } : {}),
      },
    };
  }
  if (type === 'VTG') {
    // NMEA 2.3+ ends with a mode: N is "not valid".
    if (f[8] === 'N') return new NmeaError('NO_FIX', 'VTG mode N: not valid');
    const course = num(f[0]);
    const kmh = num(f[6]);
    if (course === null && kmh === null) return new NmeaError('NO_FIX', 'VTG without course or speed');
    return {
      sentence: 'VTG',
      signals: {
        ...(course !== null ? { [GNSS_SIGNALS.heading]: course } : {}),
        ...(kmh !== null ? { [GNSS_SIGNALS.speedKmh]: kmh } : {}),
      },
    };
  }
  return new NmeaError('NOT_POSITION', `${talker}${type} carries no position`);
}
