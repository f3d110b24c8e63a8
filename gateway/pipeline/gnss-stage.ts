// GNSS positions (the modem's receiver, NMEA) as decoded frames: latitude, longitude, speed over
// ground, heading, fix quality, satellites and HDOP are windowed like any signal.
import { map, type Observable } from 'rxjs';
import { GNSS_SIGNALS } from '../../drivers/nmea.js';
import type { GnssFix } from '../../sync/time/time-sources.js';
import type { DecodedFrame } from './decode-stage.js';
import { virtualMessage } from './protocol-reader.js';

export const GNSS_MESSAGE = virtualMessage('GNSS', Object.values(GNSS_SIGNALS));

/** Each fix as a frame of live time (a receiver's position is only merged with live capture). */
export function gnssFrames(fixes: Observable<GnssFix>): Observable<DecodedFrame> {
  return fixes.pipe(
    map((fix): DecodedFrame => ({
      kind: 'frame',
      tsMono: fix.monoMs,
      wall: null,
      signals: fix.signals,
      message: GNSS_MESSAGE,
    })),
  );
}
