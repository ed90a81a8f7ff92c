//! Per-day isolation. Each unit of work runs in its own subtransaction
//! (`db::in_subtransaction`), so one failing chunk neither stops nor undoes the others.
//! When a chunk fails as a whole for a reason other than the connection, a lock another
//! session holds or the source's time, its days are retried one by one, so only the day
//! at fault fails; every failure is logged and reported in the per-day results. This
//! backend's own cancel is never a unit's failure: it ends the whole call.

use serde_json::json;

use crate::catalog::db::{in_subtransaction, Failure};
use crate::catalog::{self, log_run};
use crate::pipeline::unit::{self, Op, Output, Unit};
use crate::pure::dates::Day;
use crate::pure::error::{raise, WhError};
use crate::pure::names::CheckedName;
use crate::pure::report::OpResult;
use crate::remote;

/// A chunk of several days that failed as a whole, rolled back and not logged yet:
/// `split_failure` turns it into per-day results, now or once other work is done.
pub struct ChunkFailure {
    failure: Failure,
    started_ms: i64,
}

/// Run `u` isolated. A failure of one day (or a fold) is logged and comes back as its
/// failed result; a whole chunk's failure comes back unlogged.
pub fn isolated_chunk(u: &Unit) -> Result<Output, ChunkFailure> {
    let started_ms = remote::now_ms();
    match in_subtransaction(|| unit::run(u)) {
        Ok(output) => Ok(output),
        Err(failure) if u.days.len() > 1 => Err(ChunkFailure {
            failure,
            started_ms,
        }),
        Err(failure) => {
            let ms = (remote::now_ms() - started_ms).max(0) as f64;
            Ok(Output::Days(record_failure(u, &failure, ms)))
        }
    }
}

/// Run `u` isolated; one result per day (a chunk that fails as a whole is split, see
/// `split_failure`).
pub fn isolated_days(u: &Unit) -> Vec<OpResult> {
    match isolated_chunk(u) {
        Ok(output) => days_of(u, output),
        Err(failed) => split_failure(u, failed),
    }
}

/// The per-day results of a unit's output (only a fold and a send give none).
pub fn days_of(u: &Unit, output: Output) -> Vec<OpResult> {
    match output {
        Output::Days(results) => results,
        Output::Sent { .. } | Output::Folded(_) => raise(WhError::State(format!(
            "the {} operation gives no per-day results",
            u.op.name()
        ))),
    }
}

/// Per-day results of a whole chunk's failure. A connection failure (SQLSTATE class 08),
/// a lock another session holds (55P03) or a source out of time (57014: its
/// statement_timeout, or wh's deadline) fails every day at once: retrying day by day
/// would only repeat the wait. Any other failure retries each day alone.
pub fn split_failure(u: &Unit, failed: ChunkFailure) -> Vec<OpResult> {
    let state = failed.failure.sqlstate.as_str();
    if state.starts_with("08") || state == "55P03" || state == "57014" {
        // Each day's share of the time the chunk took.
        let elapsed = (remote::now_ms() - failed.started_ms).max(0) as f64;
        let ms = elapsed / u.days.len().max(1) as f64;
        return record_failure(u, &failed.failure, ms);
    }
    let retry = u.op.retried_alone();
    u.days
        .iter()
        .flat_map(|d| isolated_days(&u.with(retry, std::slice::from_ref(d))))
        .collect()
}

/// Fold the year of `first` for every tenant, isolated (its failure is logged).
pub fn isolated_fold(template: &CheckedName, first: Day, label: &str) -> OpResult {
    let days = [first];
    let u = Unit {
        op: Op::Fold,
        template,
        tenant: None,
        days: &days,
        label,
        wait: false,
    };
    match isolated_chunk(&u) {
        Ok(Output::Folded(result)) => result,
        Ok(Output::Days(mut results)) if results.len() == 1 => results.remove(0),
        Ok(_) | Err(_) => raise(WhError::State("a fold gave no result".into())),
    }
}

/// Log a unit's failure, one row per day (one without a day when it has none), each
/// taking `ms`, and return the failed results. The message says what to do when wh can tell: a column the
/// query does not return or a value that does not fit its type; a password missing
/// (after a restore) or wrong.
fn record_failure(u: &Unit, failure: &Failure, ms: f64) -> Vec<OpResult> {
    let message = failure.message.as_str();
    let explained = crate::pure::template::explain_failure(
        message,
        &catalog::column_types(u.template.as_str()),
    )
    .map(|why| format!("{message} ({why})"))
    .or_else(|| {
        u.tenant
            .and_then(|t| crate::pure::connopts::explain_connect_failure(t.as_str(), message))
    });
    let message = explained.as_deref().unwrap_or(message);
    let fail = |d: Option<Day>| {
        let mut r = OpResult::new(
            u.label,
            Some(u.template.as_str()),
            u.tenant.map(|t| t.as_str()),
            d.map(|d| d.iso()),
        )
        .failed(&failure.sqlstate, message);
        r.ms = ms;
        r.detail("phase", json!(u.op.name()));
        r
    };
    let results: Vec<OpResult> = if u.days.is_empty() {
        vec![fail(None)]
    } else {
        u.days.iter().map(|d| fail(Some(*d))).collect()
    };
    for r in &results {
        log_run(r);
    }
    results
}
