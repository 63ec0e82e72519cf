//! Date-times in REST bodies: one RFC 3339 form (section 5.6, `date-time`) for every family,
//! always with milliseconds, so that one body never mixes precisions.
//!
//! ```text
//! 2026-12-02T10:11:28.700Z         what the gateway stamps (UTC)
//! 2026-12-02T11:11:28.700+01:00    a client's date-time echoed back (its offset kept)
//!                     ^^^ always three digits: .000 on a whole second, never trimmed
//! ```
//!
//! `time`'s `well_known::Rfc3339` writes as few fraction digits as the value needs (`28.7Z`
//! next to `28.703Z`, `28Z`); these descriptions fix them at three. A finer fraction a client
//! sent is cut to the millisecond, the precision the gateway stores.

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

const UTC: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

const WITH_OFFSET: &[BorrowedFormatItem<'static>] = format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3][offset_hour sign:mandatory]:[offset_minute]"
);

/// `t` in the fixed form, in its own offset (`Z` when UTC); empty if `time` cannot write it.
pub fn format(t: OffsetDateTime) -> String {
    let written = if t.offset() == UtcOffset::UTC {
        t.format(UTC)
    } else {
        t.format(WITH_OFFSET)
    };
    written.unwrap_or_default()
}

/// `ms` since the Unix epoch, in UTC, in the fixed form. Empty when out of range.
pub fn format_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(format)
        .unwrap_or_default()
}

/// Whether `s` is in the fixed form: an RFC 3339 date-time with exactly three fraction digits
/// and a zone (`Z` or `+hh:mm`). Tests of every family check their bodies with it.
pub fn is_fixed_form(s: &str) -> bool {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .is_ok_and(|t| format(t) == s)
}

/// Every date-time of a JSON body (a string under a key ending in `Date` or `DateTime`, at
/// any depth), with its path: what the families' tests hold to the fixed form.
#[cfg(test)]
pub(crate) fn date_times(v: &serde_json::Value) -> Vec<(String, String)> {
    fn walk(v: &serde_json::Value, path: &str, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    let p = format!("{path}.{k}");
                    match x {
                        serde_json::Value::String(s)
                            if k.ends_with("Date") || k.ends_with("DateTime") =>
                        {
                            out.push((p, s.clone()));
                        }
                        _ => walk(x, &p, out),
                    }
                }
            }
            serde_json::Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    walk(x, &format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, "", &mut out);
    out
}

/// Asserts that every date-time of `body` is in the fixed form; how many there are.
#[cfg(test)]
pub(crate) fn assert_fixed_form(body: &serde_json::Value) -> usize {
    let all = date_times(body);
    for (path, s) in &all {
        assert!(
            is_fixed_form(s),
            "{path} = {s:?} is not in the fixed form: {body}"
        );
    }
    all.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn always_three_fraction_digits() {
        assert_eq!(
            format(datetime!(2026-12-02 10:11:28.7 UTC)),
            "2026-12-02T10:11:28.700Z"
        );
        assert_eq!(
            format(datetime!(2026-12-02 10:11:28.703 UTC)),
            "2026-12-02T10:11:28.703Z"
        );
        assert_eq!(
            format(datetime!(2026-12-02 10:11:28 UTC)),
            "2026-12-02T10:11:28.000Z"
        );
        assert_eq!(
            format(datetime!(2026-12-02 10:11:28.123456789 UTC)),
            "2026-12-02T10:11:28.123Z",
            "cut to the millisecond, not rounded up"
        );
        assert_eq!(
            format(datetime!(2026-12-02 11:11:28.5 +01:00)),
            "2026-12-02T11:11:28.500+01:00"
        );
        assert_eq!(
            format(datetime!(2026-12-02 05:41:28 -04:30)),
            "2026-12-02T05:41:28.000-04:30"
        );
        assert_eq!(format_ms(1_796_206_288_700), "2026-12-02T10:11:28.700Z");
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ms(i64::MAX), "", "out of range: nothing, no panic");
    }

    #[test]
    fn the_date_times_of_a_body_are_found_at_any_depth() {
        let body = serde_json::json!({
            "paymentCreationDate": "2026-12-02T10:11:28.700Z",
            "validFor": {"startDateTime": "2026-12-02T10:11:28.7Z"},
            "items": [{"refundDate": "x"}, {"name": "Date"}],
            "updateDate": 5,
        });
        let found: Vec<String> = date_times(&body).into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            found,
            [
                ".paymentCreationDate",
                ".validFor.startDateTime",
                ".items[0].refundDate"
            ]
        );
    }

    #[test]
    fn the_fixed_form_is_recognised() {
        for good in ["2026-12-02T10:11:28.700Z", "2026-12-02T10:11:28.000+01:00"] {
            assert!(is_fixed_form(good), "{good}");
        }
        for bad in [
            "2026-12-02T10:11:28.7Z",
            "2026-12-02T10:11:28Z",
            "2026-12-02T10:11:28.7000Z",
            "2026-12-02T10:11:28.700z",
            "2026-12-02T10:11:28.700+00:00",
            "2026-12-02 10:11:28.700Z",
            "tomorrow",
            "",
        ] {
            assert!(!is_fixed_form(bad), "{bad}");
        }
    }
}
