//! A run of days of one tenant and template, with the template's rollups kept in the
//! same transaction: `Batch::run` stages, checks and applies the days, then `run` computes
//! the rollups' days whose base changed (rollups of rollups in turn) before the results are
//! logged. A rollup day that cannot be kept fails its base's days with it. Rollups are
//! declared in `ops::templates` and read from `catalog::rollups`; their days are computed
//! with `Source::Local` and never fetched.

use serde_json::{json, Value};

use crate::catalog::log_run;
use crate::catalog::registry;
use crate::catalog::rollups::{retention_horizon, rollups_of};
use crate::pipeline::slice::{Batch, Existing, Source};
use crate::pure::dates::Day;
use crate::pure::error::{raise_with_hint, WhError};
use crate::pure::report::{OpResult, Status};

/// Stage, check and apply `days` (sorted) with `batch`, keep its rollups, log every
/// result; one result per day.
pub fn run(
    batch: &Batch,
    days: &[Day],
    existing: Existing,
    wait: bool,
    operation: &str,
    source: Source,
) -> Vec<OpResult> {
    let mut ran = batch.run(days, existing, wait, operation, source);
    let kept = if ran.changed.is_empty() && ran.unchanged.is_empty() {
        Vec::new()
    } else {
        maintain(batch, &ran.changed, &ran.unchanged, operation)
    };
    // In 0.8.0's order: the days refused by their checks, those applied, then the skipped.
    for r in ran.failed.iter_mut().chain(ran.applied.iter_mut()) {
        if !kept.is_empty() {
            r.detail("rollups", json!(kept));
        }
        log_run(r);
    }
    for r in ran.done.iter().filter(|r| r.status == Status::Skipped) {
        log_run(r);
    }
    ran.results()
}

/// Keep the rollups of `base`'s template for its tenant: the days whose base rows changed
/// and the unchanged days a rollup does not hold yet, computed from the base rows as they
/// are now in this transaction. A rollup day that cannot be kept (busy, failed) fails the
/// base's days too (the caller's subtransaction rolls back): a base day never changes
/// without its rollups. Returns the rollups kept.
fn maintain(base: &Batch, changed: &[Day], unchanged: &[Day], operation: &str) -> Vec<String> {
    let rollups = rollups_of(&base.names.template);
    if rollups.is_empty() {
        return Vec::new();
    }
    // Unchanged base days leave their rollups' rows as they are, but the rollups (and
    // theirs) are as fresh as their base (`_wh.freshness`): the days they hold are marked
    // refreshed (a day another session holds is left to it).
    if !unchanged.is_empty() {
        registry::touch_rollup_days(&base.names, unchanged);
    }
    let mut kept = Vec::new();
    for r in &rollups {
        let b = Batch::load(r, &base.names.tenant);
        let held = b.registered(unchanged);
        // Days before the rollup's own retention horizon are not made again.
        let from = retention_horizon(r, None);
        let keep = |d: &Day| from.is_none_or(|h| *d >= h);
        let mut days: Vec<Day> = changed
            .iter()
            .chain(unchanged.iter().filter(|d| !held.contains(d)))
            .filter(|d| keep(d))
            .copied()
            .collect();
        if days.is_empty() {
            continue;
        }
        days.sort();
        for res in run(
            &b,
            &days,
            Existing::Refresh,
            true,
            operation,
            Source::Local { check_base: false },
        ) {
            if res.status == Status::Succeeded {
                continue;
            }
            let day = res.day.clone().unwrap_or_default();
            let what = format!(
                "template {}, tenant {}: rollup {r} could not be kept for day {day}",
                base.names.template, base.names.tenant
            );
            // A rollup day that failed its checks fails with its own SQLSTATE (a chunk is
            // then retried day by day, so only that day fails); a busy one with 55P03.
            if let (Some(state), Some(error)) = (&res.sqlstate, &res.error) {
                pgrx::pg_sys::panic::ErrorReport::new(
                    crate::pure::error::sqlstate_code(state),
                    format!("wh: {what}: {error}; the base's day was left as it was"),
                    "wh::rollup",
                )
                .report(pgrx::PgLogLevel::ERROR);
            }
            let reason = res.details.get("reason").and_then(Value::as_str);
            raise_with_hint(
                WhError::Busy(format!(
                    "{what}: skipped ({}); the base's days were left as they were",
                    reason.unwrap_or("busy")
                )),
                format!("a fold or a build of {r} may hold its days: run the refresh again when it is done"),
            )
        }
        kept.push(r.to_string());
    }
    kept
}
