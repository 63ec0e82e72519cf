//! The calendar of an automatic top-up, as pure functions of the schedule and a time: when
//! period `n` is due, whether it exists, and the clock the scheduler reads (injected, so that
//! tests run a year of monthly top-ups without sleeping).
//!
//! ```text
//! period n (1-based) is due at  start + (n - 1) x recurringPeriod
//!   weekly       7 days        fortnightly  14 days
//!   monthly      the same day of the month, in the offset of validFor.startDateTime;
//!                a day the month lacks is its last day, and every due date is computed
//!                from the start (31 Jan -> 28/29 Feb -> 31 Mar -> 30 Apr), never from the
//!                previous due date (which would drift to the 28th)
//! period n exists while  n <= numberOfPeriods (absent: unlimited)
//!                  and   due(n) < validFor.endDateTime (absent: no end)
//! ```

use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use time::{Date, Duration, OffsetDateTime, UtcOffset};
use utoipa::ToSchema;

/// How often an automatic top-up runs (TMF654 `recurringPeriod`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RecurringPeriod {
    Weekly,
    Fortnightly,
    Monthly,
}

impl RecurringPeriod {
    pub fn name(self) -> &'static str {
        match self {
            Self::Weekly => "weekly",
            Self::Fortnightly => "fortnightly",
            Self::Monthly => "monthly",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "weekly" => Self::Weekly,
            "fortnightly" => Self::Fortnightly,
            "monthly" => Self::Monthly,
            _ => return None,
        })
    }
}

/// The calendar of an automatic top-up and how far it has run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    pub period: RecurringPeriod,
    /// Due time of period 1 (ms since the epoch) and the UTC offset it was given in (seconds):
    /// monthly dates are counted in that offset.
    pub start_ms: i64,
    pub offset_s: i32,
    /// `numberOfPeriods`; `None`: unlimited.
    pub periods: Option<u32>,
    /// `validFor.endDateTime` (ms): no period due at or after it runs.
    pub end_ms: Option<i64>,
    /// The next period to run (1-based). Periods before it have each run once.
    pub next: u32,
}

impl Schedule {
    /// When period `n` (1-based) is due, or `None` if it does not exist (past the number of
    /// periods or the end, or beyond the calendar).
    pub fn due(&self, n: u32) -> Option<i64> {
        if n == 0 || self.periods.is_some_and(|p| n > p) {
            return None;
        }
        let at = due_at(self.period, self.start(), n - 1)?;
        let ms = to_ms(at);
        if self.end_ms.is_some_and(|end| ms >= end) {
            return None;
        }
        Some(ms)
    }

    /// When the next period is due, or `None` when every period has run.
    pub fn next_due(&self) -> Option<i64> {
        self.due(self.next)
    }

    fn start(&self) -> OffsetDateTime {
        let offset = UtcOffset::from_whole_seconds(self.offset_s).unwrap_or(UtcOffset::UTC);
        from_ms(self.start_ms).to_offset(offset)
    }
}

/// `start` plus `k` periods; `None` past the calendar's range.
pub fn due_at(period: RecurringPeriod, start: OffsetDateTime, k: u32) -> Option<OffsetDateTime> {
    match period {
        RecurringPeriod::Weekly => start.checked_add(Duration::days(7 * i64::from(k))),
        RecurringPeriod::Fortnightly => start.checked_add(Duration::days(14 * i64::from(k))),
        RecurringPeriod::Monthly => add_months(start, k),
    }
}

/// `t` plus `months` calendar months, the day clamped to the last day of the target month
/// (31 Jan + 1 = 28 Feb, or 29 in a leap year), the time of day and offset kept.
pub fn add_months(t: OffsetDateTime, months: u32) -> Option<OffsetDateTime> {
    let index = i64::from(t.year()) * 12 + i64::from(u8::from(t.month())) - 1 + i64::from(months);
    let year = i32::try_from(index.div_euclid(12)).ok()?;
    let month = time::Month::try_from(u8::try_from(index.rem_euclid(12) + 1).ok()?).ok()?;
    let day = t.day().min(month.length(year));
    let date = Date::from_calendar_date(year, month, day).ok()?;
    Some(t.replace_date(date))
}

/// Milliseconds since the epoch.
pub fn to_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The instant `ms` milliseconds after the epoch (UTC); the epoch itself if out of range.
pub fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// RFC 3339 text of `ms`: UTC, always with milliseconds (`2025-02-28T10:00:00.000Z`, the one
/// form of every body, [`crate::api::datetime`]).
pub fn rfc3339(ms: i64) -> String {
    crate::api::datetime::format_ms(ms)
}

/// What the scheduler (and the handlers) read the time from.
pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;

    fn now_ms(&self) -> i64 {
        to_ms(self.now())
    }
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that moves only when told (tests, simulations).
#[derive(Debug)]
pub struct ManualClock(Mutex<OffsetDateTime>);

impl ManualClock {
    pub fn new(at: OffsetDateTime) -> Self {
        Self(Mutex::new(at))
    }

    pub fn set(&self, at: OffsetDateTime) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn monthly(start: OffsetDateTime) -> Schedule {
        Schedule {
            period: RecurringPeriod::Monthly,
            start_ms: to_ms(start),
            offset_s: start.offset().whole_seconds(),
            periods: None,
            end_ms: None,
            next: 1,
        }
    }

    #[test]
    fn months_clamp_to_the_last_day_and_never_drift() {
        let jan31 = datetime!(2025-01-31 10:00 UTC);
        let expect = [
            datetime!(2025-01-31 10:00 UTC),
            datetime!(2025-02-28 10:00 UTC),
            datetime!(2025-03-31 10:00 UTC),
            datetime!(2025-04-30 10:00 UTC),
            datetime!(2025-05-31 10:00 UTC),
        ];
        for (k, want) in expect.iter().enumerate() {
            assert_eq!(add_months(jan31, k as u32), Some(*want), "+{k} months");
        }
        let s = monthly(jan31);
        assert_eq!(s.due(2), Some(to_ms(datetime!(2025-02-28 10:00 UTC))));
        assert_eq!(s.due(3), Some(to_ms(datetime!(2025-03-31 10:00 UTC))));
        // Leap years: 29 February exists in 2024, not in 2025.
        assert_eq!(
            add_months(datetime!(2024-01-31 00:00 UTC), 1),
            Some(datetime!(2024-02-29 00:00 UTC))
        );
        assert_eq!(
            add_months(datetime!(2024-02-29 00:00 UTC), 12),
            Some(datetime!(2025-02-28 00:00 UTC))
        );
        // Across the year end, and 13 months on.
        assert_eq!(
            add_months(datetime!(2025-12-15 08:30 UTC), 1),
            Some(datetime!(2026-01-15 08:30 UTC))
        );
        assert_eq!(
            add_months(datetime!(2025-01-31 00:00 UTC), 13),
            Some(datetime!(2026-02-28 00:00 UTC))
        );
    }

    #[test]
    fn months_are_counted_in_the_offset_given() {
        // 1 March 00:30 at +02:00 is 28 February 22:30 UTC: the next period is 1 April
        // 00:30 at +02:00, not 28 March.
        let start = datetime!(2025-03-01 00:30 +02:00);
        let s = monthly(start);
        assert_eq!(s.due(2), Some(to_ms(datetime!(2025-04-01 00:30 +02:00))));
    }

    #[test]
    fn weeks_fortnights_counts_and_end() {
        let start = datetime!(2025-01-01 12:00 UTC);
        let mut s = monthly(start);
        s.period = RecurringPeriod::Weekly;
        assert_eq!(s.due(1), Some(to_ms(start)));
        assert_eq!(s.due(3), Some(to_ms(datetime!(2025-01-15 12:00 UTC))));
        s.period = RecurringPeriod::Fortnightly;
        assert_eq!(s.due(3), Some(to_ms(datetime!(2025-01-29 12:00 UTC))));
        assert_eq!(s.due(0), None);
        s.periods = Some(3);
        assert!(s.due(3).is_some());
        assert_eq!(s.due(4), None);
        // The end is exclusive: a period due exactly at it does not run.
        s.periods = None;
        s.end_ms = Some(to_ms(datetime!(2025-01-29 12:00 UTC)));
        assert!(s.due(2).is_some());
        assert_eq!(s.due(3), None);
        s.next = 3;
        assert_eq!(s.next_due(), None);
        // Far beyond the calendar: none, no panic.
        s.end_ms = None;
        s.period = RecurringPeriod::Monthly;
        assert_eq!(s.due(u32::MAX), None);
    }

    #[test]
    fn names_round_trip_and_clocks() {
        for p in [
            RecurringPeriod::Weekly,
            RecurringPeriod::Fortnightly,
            RecurringPeriod::Monthly,
        ] {
            assert_eq!(RecurringPeriod::from_name(p.name()), Some(p));
        }
        assert_eq!(RecurringPeriod::from_name("daily"), None);
        let c = ManualClock::new(datetime!(2025-01-31 10:00 UTC));
        assert_eq!(c.now_ms(), to_ms(datetime!(2025-01-31 10:00 UTC)));
        c.set(datetime!(2025-02-28 10:00 UTC));
        assert_eq!(rfc3339(c.now_ms()), "2025-02-28T10:00:00.000Z");
        assert!(SystemClock.now_ms() > to_ms(datetime!(2024-01-01 0:00 UTC)));
    }
}
