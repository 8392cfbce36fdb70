import { InvalidStartTime } from "./errors.js";

/** The offset of `zone` from UTC at `at`, in ms (positive east of Greenwich). */
function zoneOffsetMs(zone: string, at: Date): number {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone: zone,
    hourCycle: "h23",
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  }).formatToParts(at);
  const get = (type: string) => Number(parts.find((p) => p.type === type)?.value);
  const asUtc = Date.UTC(get("year"), get("month") - 1, get("day"), get("hour"), get("minute"), get("second"));
  return asUtc - Math.floor(at.getTime() / 1000) * 1000;
}

/** The instant a wall-clock time in `zone` names (the later reading when a DST change makes it ambiguous). */
function wallTimeIn(zone: string, y: number, mo: number, d: number, h: number, mi: number): Date {
  const guess = Date.UTC(y, mo - 1, d, h, mi);
  // Two rounds settle the offset across a DST change.
  let at = guess - zoneOffsetMs(zone, new Date(guess));
  at = guess - zoneOffsetMs(zone, new Date(at));
  return new Date(at);
}

/**
 * The start of a scheduled request: `22:00` (today in the requester's zone), or an ISO date-time
 * (`2026-12-03T22:00`, in the zone; with `Z` or an offset, as written). A time that has passed is
 * refused, not moved to tomorrow: the requester says which day.
 */
export function parseStartTime(text: string, zone: string, now: Date): Date {
  const clock = /^([01]?\d|2[0-3]):([0-5]\d)$/.exec(text);
  let at: Date;
  if (clock) {
    const day = new Intl.DateTimeFormat("en-CA", { timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit" }).format(now);
    const [y, mo, d] = day.split("-").map(Number) as [number, number, number];
    at = wallTimeIn(zone, y, mo, d, Number(clock[1]), Number(clock[2]));
    if (at.getTime() <= now.getTime()) {
      throw new InvalidStartTime(`${text} today (${zone}) has already passed; give the day too, like from ${nextDay(day)}T${text}`);
    }
    return at;
  }
  const iso = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2}))?(Z|[+-]\d{2}:?\d{2})?$/.exec(text);
  if (!iso) {
    throw new InvalidStartTime(`"${text}" is not a start time: write from 22:00 (today, ${zone}) or from 2026-12-03T22:00 (an ISO date-time)`);
  }
  const [, y, mo, d, h, mi, s, offset] = iso;
  if (Number(mo) < 1 || Number(mo) > 12 || Number(d) < 1 || Number(d) > 31 || Number(h) > 23 || Number(mi) > 59) {
    throw new InvalidStartTime(`"${text}" is not a valid date-time`);
  }
  if (offset) {
    at = new Date(`${y}-${mo}-${d}T${h}:${mi}:${s ?? "00"}${offset.length === 5 ? `${offset.slice(0, 3)}:${offset.slice(3)}` : offset}`);
  } else {
    at = wallTimeIn(zone, Number(y), Number(mo), Number(d), Number(h), Number(mi));
  }
  if (Number.isNaN(at.getTime())) throw new InvalidStartTime(`"${text}" is not a valid date-time`);
  if (at.getTime() <= now.getTime()) throw new InvalidStartTime(`the start time ${text} (${offset ? "as written" : zone}) has already passed`);
  return at;
}

function nextDay(day: string): string {
  const [y, mo, d] = day.split("-").map(Number) as [number, number, number];
  return new Date(Date.UTC(y, mo - 1, d + 1)).toISOString().slice(0, 10);
}
