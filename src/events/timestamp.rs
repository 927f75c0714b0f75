//! Timestamps as hookline writes them: RFC 3339 in UTC with exactly three
//! fractional digits. An event's rewritten `timestamp` and the `dlq.*_at`
//! headers use the same form, so both sort as text.

use std::time::SystemTime;

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

/// RFC 3339 in UTC with exactly three fractional digits, e.g.
/// `2026-11-28T10:00:00.000Z`. The fixed width keeps the strings sortable as
/// text, which trimmed fractions (`…00Z` after `…00.5Z`) would not be.
const RFC3339_UTC_MILLIS: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// Formats an instant as RFC 3339 in UTC with millisecond precision, or
/// `None` when its UTC date falls outside years 0000–9999: RFC 3339 cannot
/// write those, and an instant given with an offset near either end (a
/// producer's `9999-12-31T23:00:00-02:00`) can land there.
pub fn format_rfc3339_millis(instant: OffsetDateTime) -> Option<String> {
    let utc = instant.checked_to_offset(UtcOffset::UTC)?;
    if utc.year() < 0 {
        return None;
    }
    // `YYYY-MM-DDTHH:MM:SS.mmmZ`, written into a buffer of its final size
    // (formatting into a fresh one grows it three times).
    let mut formatted = Vec::with_capacity(24);
    utc.format_into(&mut formatted, RFC3339_UTC_MILLIS)
        // Formatting fails only for components the value lacks; an
        // OffsetDateTime has all of them.
        .expect("an OffsetDateTime has every component of the format");
    Some(String::from_utf8(formatted).expect("the format writes ASCII"))
}

/// A `SystemTime` as RFC 3339 (see [`format_rfc3339_millis`]), or `None`
/// for an instant beyond year 9999, which `time` cannot represent; a caller
/// leaves the value out rather than bring the process down over a broken
/// clock.
pub fn format_system_time(instant: SystemTime) -> Option<String> {
    let nanos = match instant.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_nanos()).ok()?,
        Err(before) => -i128::try_from(before.duration().as_nanos()).ok()?,
    };
    format_unix_nanos(nanos)
}

/// A Kafka record timestamp (milliseconds since the Unix epoch) as RFC 3339
/// (see [`format_rfc3339_millis`]), or `None` outside years 0000–9999.
pub fn format_unix_millis(millis: i64) -> Option<String> {
    format_unix_nanos(i128::from(millis) * 1_000_000)
}

fn format_unix_nanos(nanos: i128) -> Option<String> {
    format_rfc3339_millis(OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()?)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn system_times_before_the_epoch_are_formatted() {
        let before = SystemTime::UNIX_EPOCH - Duration::from_millis(1_500);
        assert_eq!(
            format_system_time(before).as_deref(),
            Some("1969-12-31T23:59:58.500Z")
        );
    }

    #[test]
    fn record_timestamps_are_formatted_from_milliseconds() {
        assert_eq!(
            format_unix_millis(1_795_860_000_123).as_deref(),
            Some("2026-11-28T10:00:00.123Z")
        );
        assert_eq!(format_unix_millis(i64::MAX), None);
    }

    #[test]
    fn system_times_beyond_year_9999_are_not_formatted() {
        let far_future = SystemTime::UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert_eq!(format_system_time(far_future), None);
    }

    #[test]
    fn instants_outside_rfc3339_years_are_not_formatted() {
        let offset = UtcOffset::from_hms(-2, 0, 0).unwrap();
        let last_year = time::Date::from_calendar_date(9999, time::Month::December, 31)
            .unwrap()
            .with_hms(23, 0, 0)
            .unwrap()
            .assume_offset(offset);
        assert_eq!(format_rfc3339_millis(last_year), None);
        let first_year = time::Date::from_calendar_date(0, time::Month::January, 1)
            .unwrap()
            .midnight()
            .assume_offset(UtcOffset::from_hms(1, 0, 0).unwrap());
        assert_eq!(format_rfc3339_millis(first_year), None);
        let year_zero = time::Date::from_calendar_date(0, time::Month::January, 1)
            .unwrap()
            .midnight()
            .assume_utc();
        assert_eq!(
            format_rfc3339_millis(year_zero).as_deref(),
            Some("0000-01-01T00:00:00.000Z")
        );
    }

    #[test]
    fn rfc3339_has_fixed_millisecond_width() {
        let format = |instant| format_rfc3339_millis(instant).unwrap();
        assert_eq!(
            format(OffsetDateTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000Z"
        );
        let offset = OffsetDateTime::UNIX_EPOCH.to_offset(UtcOffset::from_hms(2, 0, 0).unwrap());
        assert_eq!(format(offset), "1970-01-01T00:00:00.000Z");
        let sub_millisecond = OffsetDateTime::UNIX_EPOCH + Duration::from_nanos(1_999_999);
        assert_eq!(format(sub_millisecond), "1970-01-01T00:00:00.001Z");
    }
}
