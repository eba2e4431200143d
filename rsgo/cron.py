"""Cron expressions in an IANA time zone, with daylight-saving behaviour people expect
(docs/design.md#windows).

Five fields (minute hour day-of-month month day-of-week; ``*``, ``a-b``, ``*/n``, ``a,b``,
names like ``SUN`` or ``JAN``; day-of-week 0 and 7 are Sunday). Times are wall-clock
times in the zone:
- a time that does not exist on the day clocks go forward (02:30 in Europe/Berlin on the
  last Sunday of March) happens at the first instant after the gap (03:00 local), once;
- a time that exists twice on the day clocks go back happens once, at its first instant.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_MONTHS = {name: number for number, name in enumerate(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], start=1)}
_DAYS = {name: number for number, name in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}
_FIELDS = (("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}), ("month", 1, 12, _MONTHS),
           ("day of week", 0, 7, _DAYS))


class CronError(ValueError):
    pass


def _values(text: str, name: str, low: int, high: int, names: dict) -> set[int]:
    result: set[int] = set()
    for part in text.upper().split(","):
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) < 1:
                raise CronError(f"{name}: bad step {step_text!r}")
            step = int(step_text)

        def number(token: str) -> int:
            if token in names:
                return names[token]
            if not token.isdigit():
                raise CronError(f"{name}: {token!r} is not a number{' or name' if names else ''}")
            value = int(token)
            if not low <= value <= high:
                raise CronError(f"{name}: {value} is outside {low}-{high}")
            return value

        if base == "*":
            first, last = low, high
        elif "-" in base:
            start, _, end = base.partition("-")
            first, last = number(start), number(end)
            if first > last:
                raise CronError(f"{name}: range {base} runs backwards")
        else:
            first = last = number(base)
            if step_text:
                last = high
        result.update(range(first, last + 1, step))
    return result


@dataclass(frozen=True)
class Cron:
    expression: str
    zone: ZoneInfo
    minutes: frozenset
    hours: frozenset
    days: frozenset
    months: frozenset
    weekdays: frozenset  # 0 = Sunday
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, expression: str, timezone: str) -> Cron:
        fields = expression.split()
        if len(fields) != 5:
            raise CronError(f"{expression!r} needs 5 fields (minute hour day-of-month month day-of-week)")
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise CronError(f"unknown time zone {timezone!r} (use an IANA name like Europe/Berlin)") from None
        parsed = [_values(text, *spec) for text, spec in zip(fields, _FIELDS, strict=True)]
        weekdays = frozenset(0 if day == 7 else day for day in parsed[4])
        return cls(expression, zone, frozenset(parsed[0]), frozenset(parsed[1]), frozenset(parsed[2]),
                   frozenset(parsed[3]), weekdays, fields[2] == "*", fields[4] == "*")

    def _day_matches(self, day: dt.date) -> bool:
        if day.month not in self.months:
            return False
        in_month = day.day in self.days
        in_week = (day.isoweekday() % 7) in self.weekdays
        # Classic cron: when both day fields are restricted, either one matching is enough.
        if self.any_day or self.any_weekday:
            return in_month and in_week
        return in_month or in_week

    def _instants_on(self, day: dt.date) -> list[dt.datetime]:
        instants = []
        for hour in sorted(self.hours):
            for minute in sorted(self.minutes):
                wall = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=self.zone)
                instants.append(_resolve(wall))
        return sorted(set(instants))

    def occurrences_after(self, after: dt.datetime, count: int, limit_days: int = 3660) -> list[dt.datetime]:
        """The next ``count`` start instants strictly after ``after`` (aware), in the zone."""
        found: list[dt.datetime] = []
        day = after.astimezone(self.zone).date()
        for _ in range(limit_days):
            if self._day_matches(day):
                found.extend(instant for instant in self._instants_on(day) if instant > after)
                if len(found) >= count:
                    return found[:count]
            day += dt.timedelta(days=1)
        return found

    def last_occurrence_at_or_before(self, moment: dt.datetime, lookback: dt.timedelta) -> dt.datetime | None:
        day = moment.astimezone(self.zone).date()
        earliest = (moment - lookback).astimezone(self.zone).date()
        while day >= earliest:
            if self._day_matches(day):
                candidates = [i for i in self._instants_on(day) if moment - lookback <= i <= moment]
                if candidates:
                    return max(candidates)
            day -= dt.timedelta(days=1)
        return None


def _resolve(wall: dt.datetime) -> dt.datetime:
    """A wall-clock time in its zone → the instant it names (see the module docstring for gaps and folds)."""
    first = wall.replace(fold=0)
    round_trip = first.astimezone(dt.UTC).astimezone(wall.tzinfo)
    if round_trip.replace(tzinfo=None) != first.replace(tzinfo=None):
        return _gap_end(wall)
    return first.astimezone(dt.UTC)


def _gap_end(wall: dt.datetime) -> dt.datetime:
    """The first existing wall-clock minute after ``wall``, which lies in a gap (a gap is at most hours)."""
    zone = wall.tzinfo
    probe = wall.replace(tzinfo=None)
    for _ in range(24 * 60):
        probe += dt.timedelta(minutes=1)
        candidate = probe.replace(tzinfo=zone)
        if candidate.astimezone(dt.UTC).astimezone(zone).replace(tzinfo=None) == probe:
            return candidate.astimezone(dt.UTC)
    raise CronError(f"no valid time after {wall.replace(tzinfo=None)} in {zone}")
