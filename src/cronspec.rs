//! pg_cron schedules and job names. Pure: no SPI.

use crate::error::{WhError, WhResult};
use crate::names::{quote_literal, CheckedName};

/// `wh:<template>:<tenant>`
pub fn job_name(template: &CheckedName, tenant: &CheckedName) -> String {
    format!("wh:{template}:{tenant}")
}
/// `wh:<template>:all` (one job for every tenant) and `wh:<template>:fold`.
pub fn template_job_name(template: &CheckedName, what: &str) -> String {
    format!("wh:{template}:{what}")
}
pub const MAINTENANCE_JOB: &str = "wh:maintenance";

/// The five fields of a cron schedule, each checked for cron's alphabet.
pub fn check_schedule(schedule: &str) -> WhResult<Vec<String>> {
    let fields: Vec<String> = schedule.split_whitespace().map(str::to_string).collect();
    let bad = |why: &str| WhError::invalid("schedule", format!("{schedule:?}: {why}"));
    if fields.len() != 5 {
        return Err(bad(
            "a cron schedule has five fields: minute hour day month weekday",
        ));
    }
    if !fields.iter().all(|f| {
        f.chars()
            .all(|c| c.is_ascii_alphanumeric() || "*/,-".contains(c))
    }) {
        return Err(bad("only digits, names, '*', '/', ',' and '-' are allowed"));
    }
    Ok(fields)
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
    }
}
