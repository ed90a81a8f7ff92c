//! Calendar days and date windows. Pure: no SPI, no time zones — a wh day is a UTC
//! calendar day, `[day 00:00 UTC, next day 00:00 UTC)`.

use crate::pure::error::{WhError, WhResult};

/// Days since 1970-01-01 (proleptic Gregorian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub i32);

/// The longest window one call may cover unless the caller raises it.
pub const DEFAULT_MAX_WINDOW_DAYS: i32 = 3660;
/// Days wh accepts: 1900-01-01 ..= 2199-12-31.
const MIN_YEAR: i32 = 1900;
const MAX_YEAR: i32 = 2199;

impl Day {
    pub fn from_ymd(y: i32, m: u32, d: u32) -> WhResult<Day> {
        if !(MIN_YEAR..=MAX_YEAR).contains(&y) {
            return Err(WhError::invalid(
                "date",
                format!("year {y} is outside {MIN_YEAR}..{MAX_YEAR}"),
            ));
        }
        if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
            return Err(WhError::invalid(
                "date",
                format!("{y:04}-{m:02}-{d:02} is not a calendar day"),
            ));
        }
        // Howard Hinnant's days_from_civil.
        let y2 = if m <= 2 { y - 1 } else { y };
        let era = if y2 >= 0 { y2 } else { y2 - 399 } / 400;
        let yoe = y2 - era * 400;
        let mp = (m as i32 + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d as i32 - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        Ok(Day(era * 146097 + doe - 719468))
    }

    /// Strict ISO `YYYY-MM-DD`: exactly ten characters, digits and hyphens.
    pub fn parse(s: &str) -> WhResult<Day> {
        let b = s.as_bytes();
        let shape = b.len() == 10
            && b[4] == b'-'
            && b[7] == b'-'
            && b.iter()
                .enumerate()
                .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
        if !shape {
            return Err(WhError::invalid(
                "date",
                format!("{s:?} is not an ISO date YYYY-MM-DD"),
            ));
        }
        let y = s[0..4].parse().unwrap();
        let m = s[5..7].parse().unwrap();
        let d = s[8..10].parse().unwrap();
        Day::from_ymd(y, m, d)
    }

    pub fn ymd(self) -> (i32, u32, u32) {
        // Howard Hinnant's civil_from_days.
        let z = self.0 + 719468;
        let era = if z >= 0 { z } else { z - 146096 } / 146097;
        let doe = z - era * 146097;
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        let y = yoe + era * 400;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        (if m <= 2 { y + 1 } else { y }, m, d)
    }

    pub fn year(self) -> i32 {
        self.ymd().0
    }

    /// `YYYY-MM-DD`, the only text that ever replaces `{TARGET_DATE}`.
    pub fn iso(self) -> String {
        let (y, m, d) = self.ymd();
        format!("{y:04}-{m:02}-{d:02}")
    }

    /// `YYYY_MM_DD`, the suffix of a day partition.
    pub fn suffix(self) -> String {
        let (y, m, d) = self.ymd();
        format!("{y:04}_{m:02}_{d:02}")
    }

    pub fn succ(self) -> Day {
        Day(self.0 + 1)
    }
    pub fn minus(self, n: i32) -> Day {
        Day(self.0 - n)
    }

    /// Days since 2000-01-01, PostgreSQL's date epoch.
    pub fn pg_epoch_days(self) -> i32 {
        self.0 - 10957
    }
    pub fn from_pg_epoch_days(d: i32) -> Day {
        Day(d + 10957)
    }

    pub fn first_of_year(y: i32) -> WhResult<Day> {
        Day::from_ymd(y, 1, 1)
    }

    /// The first day of this day's month.
    pub fn first_of_month(self) -> Day {
        Day(self.0 - (self.ymd().2 as i32 - 1))
    }

    /// The first day of the next month.
    pub fn next_month(self) -> Day {
        let (y, m, _) = self.ymd();
        let last = days_in_month(y, m) as i32;
        Day(self.first_of_month().0 + last)
    }
}

/// How `public.<template>` is partitioned on its time column: one partition per month
/// (the default) or per year. A folded past year is one partition whatever the grain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grain {
    Month,
    Year,
}

impl Grain {
    pub fn parse(s: &str) -> WhResult<Grain> {
        match s {
            "month" => Ok(Grain::Month),
            "year" => Ok(Grain::Year),
            other => Err(WhError::invalid(
                "partition_grain",
                format!("{other:?} is not 'month' or 'year'"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Grain::Month => "month",
            Grain::Year => "year",
        }
    }

    /// The partition `[lo, hi)` that holds `day`.
    pub fn span(self, day: Day) -> (Day, Day) {
        match self {
            Grain::Month => (day.first_of_month(), day.next_month()),
            Grain::Year => year_span(day.year()),
        }
    }

    /// The partitions covering `[lo, hi)`, in order.
    pub fn spans(self, lo: Day, hi: Day) -> Vec<(Day, Day)> {
        let mut out = Vec::new();
        let mut d = lo;
        while d < hi {
            let s = self.span(d);
            out.push(s);
            d = s.1;
        }
        out
    }
}

/// `[1 January year, 1 January year + 1)`.
pub fn year_span(year: i32) -> (Day, Day) {
    let lo = Day::from_ymd(year, 1, 1).unwrap_or(Day(0));
    let hi = Day::from_ymd(year + 1, 1, 1).unwrap_or(Day(lo.0 + 365));
    (lo, hi)
}

/// The longest run of days one remote query fetches.
pub const DEFAULT_CHUNK_DAYS: usize = 31;

/// Split sorted days into chunks of at most `max` days that stay inside one calendar
/// month: one remote query each, committed each by the procedures.
pub fn chunks(days: &[Day], max: usize) -> Vec<Vec<Day>> {
    let max = max.max(1);
    let mut out: Vec<Vec<Day>> = Vec::new();
    for &d in days {
        match out.last_mut() {
            Some(c) if c.len() < max && c[0].first_of_month() == d.first_of_month() => c.push(d),
            _ => out.push(vec![d]),
        }
    }
    out
}

impl std::fmt::Display for Day {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.iso())
    }
}

fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        _ => 28,
    }
}

/// The inclusive day window `[start, end]` of one call, validated.
pub fn window(start: Option<Day>, end: Option<Day>, max_days: i32) -> WhResult<Vec<Day>> {
    let start = start.ok_or(WhError::NullArgument { what: "start_date" })?;
    let end = end.ok_or(WhError::NullArgument { what: "end_date" })?;
    let bad = |reason: String| WhError::InvalidWindow {
        start: start.iso(),
        end: end.iso(),
        reason,
    };
    if end < start {
        return Err(bad("end_date is before start_date".into()));
    }
    let n = end.0 - start.0 + 1;
    if n > max_days {
        return Err(bad(format!(
            "{n} days is over the limit of {max_days} (raise max_days to allow it)"
        )));
    }
    Ok((start.0..=end.0).map(Day).collect())
}

/// The days `update_mv_by_template` touches: the target day, then `lookback` earlier days.
pub fn refresh_days(target: Day, lookback: i32) -> Vec<Day> {
    (0..=lookback.max(0)).map(|i| target.minus(i)).collect()
}

/// Refuse days too far in the future to hold data yet.
pub fn check_not_future(day: Day, today: Day, slack_days: i32) -> WhResult<()> {
    if day.0 > today.0 + slack_days {
        return Err(WhError::invalid(
            "target_date",
            format!("{day} is more than {slack_days} day(s) after today ({today} UTC)"),
        ));
    }
    Ok(())
}

/// `2025-02-01..2025-02-28`, or the one day.
pub fn days_span(days: &[Day]) -> String {
    match (days.first(), days.last()) {
        (Some(a), Some(b)) if a != b => format!("{}..{}", a.iso(), b.iso()),
        (Some(a), _) => a.iso(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grains_and_chunks() {
        let d = |s: &str| Day::parse(s).unwrap();
        assert_eq!(
            Grain::Month.span(d("2024-02-29")),
            (d("2024-02-01"), d("2024-03-01"))
        );
        assert_eq!(
            Grain::Month.span(d("2025-12-31")),
            (d("2025-12-01"), d("2026-01-01"))
        );
        assert_eq!(
            Grain::Year.span(d("2025-06-30")),
            (d("2025-01-01"), d("2026-01-01"))
        );
        assert_eq!(
            Grain::Month.spans(d("2025-01-15"), d("2025-03-02")).len(),
            3
        );
        assert_eq!(Grain::Year.spans(d("2024-12-31"), d("2025-01-02")).len(), 2);
        assert!(Grain::parse("week").is_err());
        assert_eq!(Grain::parse("year").unwrap().as_str(), "year");
        let days: Vec<Day> = (d("2025-01-20").0..d("2025-03-10").0).map(Day).collect();
        let c = chunks(&days, 31);
        assert_eq!(c.iter().map(Vec::len).collect::<Vec<_>>(), vec![12, 28, 9]);
        assert_eq!(chunks(&days, 5)[0].len(), 5);
        assert!(chunks(&[], 31).is_empty());
    }

    #[test]
    fn round_trips_every_day_of_two_centuries() {
        let mut d = Day::from_ymd(1900, 1, 1).unwrap();
        let end = Day::from_ymd(2100, 12, 31).unwrap();
        while d <= end {
            assert_eq!(Day::parse(&d.iso()).unwrap(), d);
            d = d.succ();
        }
        assert_eq!(Day::from_ymd(1970, 1, 1).unwrap(), Day(0));
        assert_eq!(Day::from_ymd(2000, 1, 1).unwrap().pg_epoch_days(), 0);
    }

    #[test]
    fn parse_is_strict() {
        for bad in [
            "2025-9-24",
            "2025-09-24 ",
            "20250924",
            "2025-02-30",
            "2025-13-01",
            "1'; drop",
            "",
            "2025/09/24",
            "+025-09-24",
            "9999-01-01",
        ] {
            assert!(Day::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Day::parse("2024-02-29").unwrap().suffix(), "2024_02_29");
        assert!(Day::parse("2023-02-29").is_err());
    }

    #[test]
    fn windows() {
        let a = Day::parse("2025-01-30").unwrap();
        let b = Day::parse("2025-02-02").unwrap();
        let w = window(Some(a), Some(b), 100).unwrap();
        assert_eq!(
            w.iter().map(|d| d.iso()).collect::<Vec<_>>(),
            ["2025-01-30", "2025-01-31", "2025-02-01", "2025-02-02"]
        );
        assert!(matches!(
            window(Some(b), Some(a), 100),
            Err(WhError::InvalidWindow { .. })
        ));
        assert!(matches!(
            window(None, Some(a), 100),
            Err(WhError::NullArgument { what: "start_date" })
        ));
        assert!(matches!(
            window(Some(a), Some(b), 3),
            Err(WhError::InvalidWindow { .. })
        ));
        assert_eq!(window(Some(a), Some(a), 1).unwrap().len(), 1);
    }

    #[test]
    fn refresh_days_look_back() {
        let d = Day::parse("2025-03-01").unwrap();
        let days: Vec<String> = refresh_days(d, 1).iter().map(|d| d.iso()).collect();
        assert_eq!(days, ["2025-03-01", "2025-02-28"]);
        assert_eq!(refresh_days(d, 0).len(), 1);
    }

    #[test]
    fn future_days_are_refused() {
        let today = Day::parse("2025-03-01").unwrap();
        assert!(check_not_future(today.succ(), today, 1).is_ok());
        assert!(check_not_future(Day(today.0 + 2), today, 1).is_err());
    }
}
