//! pg_cron schedules and job names. Pure: no SPI.

use crate::pure::error::{WhError, WhResult};
use crate::pure::names::{quote_literal, CheckedName};

/// What a wh job does: the last part of a template job's name (`wh:<template>:<kind>`)
/// and of every job's run lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// One tenant: today and the template's lookback days.
    Tenant,
    /// Every tenant of the template at once (a committing fan-out).
    All,
    /// Last year folded, once.
    Fold,
    /// Every tenant's recent days verified.
    Verify,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Tenant => "tenant",
            JobKind::All => "all",
            JobKind::Fold => "fold",
            JobKind::Verify => "verify",
        }
    }
}

/// `wh:<template>:<tenant>`
pub fn job_name(template: &CheckedName, tenant: &CheckedName) -> String {
    format!("wh:{template}:{tenant}")
}
/// `wh:<template>:all` (one job for every tenant) and `wh:<template>:fold`.
pub fn template_job_name(template: &CheckedName, kind: JobKind) -> String {
    format!("wh:{template}:{}", kind.as_str())
}
pub const MAINTENANCE_JOB: &str = "wh:maintenance";

/// pg_cron's shorthands and the five fields each stands for.
const SHORTHANDS: &[(&str, &str)] = &[
    ("@hourly", "0 * * * *"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@weekly", "0 0 * * 0"),
    ("@monthly", "0 0 1 * *"),
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
];

/// Each field's name, range and the names it accepts (cron's order).
const FIELDS: [(&str, u32, u32, &[&str]); 5] = [
    ("minute", 0, 59, &[]),
    ("hour", 0, 23, &[]),
    ("day of month", 1, 31, &[]),
    (
        "month",
        1,
        12,
        &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ],
    ),
    (
        "day of week",
        0,
        7,
        &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    ),
];

/// The five fields of a cron schedule (a shorthand such as `@hourly` expanded), each
/// checked against its range, so a schedule pg_cron would refuse is refused here with
/// the field and value named.
pub fn check_schedule(schedule: &str) -> WhResult<Vec<String>> {
    let bad = |why: String| WhError::invalid("schedule", format!("{schedule:?}: {why}"));
    let trimmed = schedule.trim();
    let expanded = if trimmed.starts_with('@') {
        let lower = trimmed.to_ascii_lowercase();
        match SHORTHANDS.iter().find(|(s, _)| *s == lower) {
            Some((_, fields)) => fields.to_string(),
            None => {
                let known: Vec<&str> = SHORTHANDS.iter().map(|(s, _)| *s).collect();
                return Err(bad(format!(
                    "not one of pg_cron's shorthands ({})",
                    known.join(", ")
                )));
            }
        }
    } else {
        trimmed.to_string()
    };
    let fields: Vec<String> = expanded.split_whitespace().map(str::to_string).collect();
    if fields.len() != 5 {
        return Err(bad(
            "a cron schedule has five fields: minute hour day month weekday (or @hourly, @daily, …)"
                .into(),
        ));
    }
    if !fields.iter().all(|f| {
        f.chars()
            .all(|c| c.is_ascii_alphanumeric() || "*/,-".contains(c))
    }) {
        return Err(bad(
            "only digits, names, '*', '/', ',' and '-' are allowed".into()
        ));
    }
    for (field, (what, lo, hi, names)) in fields.iter().zip(FIELDS) {
        check_field(field, lo, hi, names).map_err(|why| bad(format!("{what} {field:?}: {why}")))?;
    }
    Ok(fields)
}

/// One field: a comma list of `*`, `n`, `a-b`, each with an optional `/step`.
fn check_field(field: &str, lo: u32, hi: u32, names: &[&str]) -> Result<(), String> {
    let value = |v: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(v)) {
            return Ok(i as u32 + lo);
        }
        let n: u32 = v.parse().map_err(|_| {
            format!(
                "{v:?} is not a number{}",
                if names.is_empty() { "" } else { " or a name" }
            )
        })?;
        if n < lo || n > hi {
            return Err(format!("{n} is not in {lo}..{hi}"));
        }
        Ok(n)
    };
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        if let Some(s) = step {
            match s.parse::<u32>() {
                Ok(n) if n >= 1 && n <= hi => {}
                _ => return Err(format!("step {s:?} is not in 1..{hi}")),
            }
        }
        if range == "*" {
            continue;
        }
        match range.split_once('-') {
            Some((a, b)) => {
                if value(a)? > value(b)? {
                    return Err(format!("range {range:?} runs backwards"));
                }
            }
            None => {
                value(range)?;
            }
        }
    }
    Ok(())
}

/// A schedule that fires at a fixed period: every `minutes`, the first firing
/// `first_minute` minutes after 2024-01-01 00:00 UTC (so a period that divides a day keeps
/// its minute of the hour, a daily one its time of day, a weekly one its weekday).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub minutes: u32,
    pub first_minute: u32,
}

/// The period of a schedule, when every gap between two firings across two years (2024,
/// a leap year, and 2025) is the same: `'10 */4 * * *'` is every 240 minutes, `@daily` every 1,440, a
/// weekday's schedule every 10,080. None for one whose gaps differ (`'0 9 * * 1-5'`, a day
/// of the month, a list of hours not evenly spaced) or that fires less than three times in them.
pub fn period(schedule: &str) -> WhResult<Option<Period>> {
    let fields = check_schedule(schedule)?;
    let sets: Vec<u64> = fields
        .iter()
        .zip(FIELDS)
        .map(|(f, (_, lo, hi, names))| allowed(f, lo, hi, names))
        .collect();
    let dow = if sets[4] & 1 << 7 != 0 {
        sets[4] | 1
    } else {
        sets[4]
    };
    // cron: with both day fields restricted, a day matches either; else both must.
    let either = !fields[2].starts_with('*') && !fields[4].starts_with('*');
    let start = crate::pure::dates::Day::from_ymd(2024, 1, 1)?;
    let mut fires: Vec<u32> = Vec::new();
    for i in 0..731u32 {
        let (_, month, dom) = crate::pure::dates::Day(start.0 + i as i32).ymd();
        let weekday = (1 + i) % 7; // 2024-01-01 was a Monday
        let by_dom = sets[2] & 1 << dom != 0;
        let by_dow = dow & 1 << weekday != 0;
        let day_ok = if either {
            by_dom || by_dow
        } else {
            by_dom && by_dow
        };
        if !day_ok || sets[3] & 1 << month == 0 {
            continue;
        }
        for hour in (0..24).filter(|h| sets[1] & 1 << h != 0) {
            for minute in (0..60).filter(|m| sets[0] & 1 << m != 0) {
                fires.push(i * 1440 + hour * 60 + minute);
            }
        }
    }
    let gaps: Vec<u32> = fires.windows(2).map(|w| w[1] - w[0]).collect();
    Ok(match (fires.first(), gaps.first()) {
        (Some(&first), Some(&minutes)) if gaps.len() > 1 && gaps.iter().all(|g| *g == minutes) => {
            Some(Period {
                minutes,
                first_minute: first,
            })
        }
        _ => None,
    })
}

/// The values one checked field allows, as bits (`n/s` runs from n to the top).
fn allowed(field: &str, lo: u32, hi: u32, names: &[&str]) -> u64 {
    let value = |v: &str| {
        names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(v))
            .map(|i| i as u32 + lo)
            .or_else(|| v.parse().ok())
            .unwrap_or(lo)
    };
    let mut bits = 0u64;
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().unwrap_or(1).max(1)),
            None => (item, 1),
        };
        let (a, b) = match range.split_once('-') {
            _ if range == "*" => (lo, hi),
            Some((a, b)) => (value(a), value(b)),
            None if step > 1 => (value(range), hi),
            None => (value(range), value(range)),
        };
        for v in (a..=b).step_by(step as usize) {
            bits |= 1 << v;
        }
    }
    bits
}

/// Spread `n` tenants across the hour: tenant `i` gets minute `(base + i*60/n) % 60`,
/// keeping the other four fields. Needs a plain numeric minute.
pub fn staggered(schedule: &str, i: usize, n: usize) -> WhResult<String> {
    let mut fields = check_schedule(schedule)?;
    let base: usize = fields[0].parse().map_err(|_| {
        WhError::invalid("schedule", format!("{schedule:?}: stagger needs a plain minute (e.g. '10 */4 * * *'), or pass stagger => false"))
    })?;
    if base > 59 {
        return Err(WhError::invalid(
            "schedule",
            format!("{schedule:?}: minute {base} is not 0..59"),
        ));
    }
    let n = n.max(1);
    fields[0] = ((base + i * 60 / n) % 60).to_string();
    Ok(fields.join(" "))
}

/// What a tenant job runs: a procedure that commits its run log, then fails the job if
/// any day failed (so a failed refresh never shows as succeeded in pg_cron).
pub fn tenant_command(template: &CheckedName, tenant: &CheckedName) -> String {
    format!(
        "CALL _wh.run_scheduled({}, {})",
        quote_literal(template.as_str()),
        quote_literal(tenant.as_str())
    )
}
pub fn template_command(template: &CheckedName) -> String {
    format!(
        "CALL _wh.run_scheduled_all({})",
        quote_literal(template.as_str())
    )
}
pub fn fold_command(template: &CheckedName) -> String {
    format!(
        "CALL _wh.run_scheduled_fold({})",
        quote_literal(template.as_str())
    )
}
pub fn verify_command(template: &CheckedName, lookback: &str, repair: bool) -> String {
    format!(
        "CALL _wh.run_scheduled_verify({}, {}, {repair})",
        quote_literal(template.as_str()),
        quote_literal(lookback)
    )
}
pub const MAINTENANCE_COMMAND: &str = "SELECT _wh.run_maintenance()";

/// The refresh pool's worker `k` (`wh:pool:<k>`), looking for due tenants every minute.
pub fn pool_job_name(k: usize) -> String {
    format!("wh:pool:{k}")
}
pub fn pool_command(k: usize) -> String {
    format!("CALL _wh.run_pool({k})")
}
pub const POOL_SCHEDULE: &str = "* * * * *";

/// Whether a job name is a pool worker's (`wh:pool:<number>`; no tenant's name is a number).
pub fn is_pool_job_name(name: &str) -> bool {
    name.strip_prefix("wh:pool:")
        .is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> CheckedName {
        CheckedName::template(Some(s)).unwrap()
    }

    #[test]
    fn names_and_commands() {
        let t = CheckedName::tenant(Some("tenant_a")).unwrap();
        assert_eq!(job_name(&n("foodlogstats"), &t), "wh:foodlogstats:tenant_a");
        assert_eq!(
            tenant_command(&n("foodlogstats"), &t),
            "CALL _wh.run_scheduled('foodlogstats', 'tenant_a')"
        );
    }

    #[test]
    fn stagger_spreads_minutes() {
        let m: Vec<String> = (0..3)
            .map(|i| staggered("10 */4 * * *", i, 3).unwrap())
            .collect();
        assert_eq!(m, ["10 */4 * * *", "30 */4 * * *", "50 */4 * * *"]);
        assert_eq!(staggered("45 * * * *", 1, 2).unwrap(), "15 * * * *");
        let distinct: std::collections::HashSet<String> = (0..60)
            .map(|i| staggered("0 * * * *", i, 60).unwrap())
            .collect();
        assert_eq!(distinct.len(), 60);
        assert!(staggered("*/5 * * * *", 0, 3).is_err());
    }

    #[test]
    fn schedules_are_checked() {
        assert!(check_schedule("10 */4 * * *").is_ok());
        assert!(check_schedule("10 */4 * *").is_err());
        assert!(check_schedule("10 */4 * * *; drop").is_err());
        assert!(check_schedule("10 */4 * * '").is_err());
        assert_eq!(
            check_schedule("@hourly").unwrap(),
            ["0", "*", "*", "*", "*"]
        );
        assert_eq!(check_schedule("@Daily").unwrap().join(" "), "0 0 * * *");
        assert!(check_schedule("@reboot").is_err());
        assert!(check_schedule("0-59/15 1,2,3 1-31 jan-dec mon-fri").is_ok());
        assert!(check_schedule("0 0 * * 7").is_ok());
        for (bad, says) in [
            ("0 25 * * *", "hour \"25\": 25 is not in 0..23"),
            ("60 * * * *", "minute"),
            ("0 0 0 * *", "day of month"),
            ("0 0 * 13 *", "month"),
            ("0 0 * * 8", "day of week"),
            ("*/0 * * * *", "step"),
            ("30-10 * * * *", "backwards"),
            ("0 0 * * funday", "not a number or a name"),
        ] {
            let e = check_schedule(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert_eq!(staggered("@hourly", 1, 4).unwrap(), "15 * * * *");
    }

    #[test]
    fn pool_workers_are_named_by_number() {
        assert_eq!(pool_job_name(3), "wh:pool:3");
        assert!(is_pool_job_name(&pool_job_name(12)));
        assert!(!is_pool_job_name("wh:pool:tenant_a"));
        assert!(!is_pool_job_name("wh:pool:"));
        assert!(!is_pool_job_name("wh:other:1"));
    }

    #[test]
    fn periods_of_schedules() {
        let p = |s: &str| period(s).unwrap().map(|p| (p.minutes, p.first_minute));
        assert_eq!(p("10 */4 * * *"), Some((240, 10)));
        assert_eq!(p("@hourly"), Some((60, 0)));
        assert_eq!(p("*/15 * * * *"), Some((15, 0)));
        assert_eq!(p("5,35 * * * *"), Some((30, 5)));
        assert_eq!(p("30 2 * * *"), Some((1440, 150)));
        // Sundays at 03:00: 2024-01-07 is the first.
        assert_eq!(p("0 3 * * 0"), Some((10080, 6 * 1440 + 180)));
        assert_eq!(p("0 3 * * 7"), p("0 3 * * sun"));
        for irregular in [
            "0 9 * * 1-5",
            "0 0 1 * *",
            "0 1,2,7 * * *",
            "@yearly",
            "0 0 * 1-6 *",
        ] {
            assert_eq!(p(irregular), None, "{irregular}");
        }
        assert!(period("0 25 * * *").is_err());
    }
}
