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
}
