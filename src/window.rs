//! Many days at once. Each day runs through `_wh.run_isolated` (a PL/pgSQL exception
//! block = a real subtransaction), so one failing day neither stops nor undoes the others;
//! its failure is logged and reported in the per-day results.

use pgrx::datum::DatumWithOid;
use pgrx::JsonB;
use serde_json::{json, Value};

use crate::catalog::{self, log_run, pg_date};
use crate::dates::{self, Day};
use crate::db::one;
use crate::error::{raise, WhError};
use crate::fanout;
use crate::fold;
use crate::rebuild;
use crate::names::CheckedName;
use crate::report::{summarize, OpResult};
use crate::slice::{self, DayJob, Existing};

/// Run one day's operation inside `_wh.run_isolated` and return its result.
pub fn isolated(op: &str, template: &CheckedName, tenant: &CheckedName, day: Day, options: Value) -> Value {
    one::<JsonB>(
        "SELECT _wh.run_isolated($1, $2, $3, $4, $5)",
        &[
            DatumWithOid::from(op),
            DatumWithOid::from(template.as_str()),
            DatumWithOid::from(tenant.as_str()),
            DatumWithOid::from(pg_date(day)),
            DatumWithOid::from(JsonB(options)),
        ],
    )
    .map(|j| j.0)
    .unwrap_or_else(|| raise(WhError::State("run_isolated returned NULL".into())))
}

/// The UTC day now.
pub fn today() -> Day {
    let d: pgrx::datum::Date = one("SELECT _wh.current_date_utc()", &[]).expect("current_date_utc");
    catalog::day_of(d).expect("today is a day")
}

fn opt_bool(options: &Value, key: &str) -> bool {
    options.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn opt_str<'a>(options: &'a Value, key: &str, default: &'a str) -> &'a str {
    options.get(key).and_then(Value::as_str).unwrap_or(default)
}

/// The body `_wh.run_isolated` protects: one operation on one day.
pub fn run_op(op: &str, template: &CheckedName, tenant: &CheckedName, day: Day, options: &Value) -> Value {
    let label = opt_str(options, "operation", op);
    let wait = opt_bool(options, "wait");
    match op {
        "create" | "refresh" => {
            let job = DayJob::load(template, tenant, day);
            let existing = if op == "create" { Existing::Skip } else { Existing::Rebuild };
            slice::build_day(&job, label, existing, wait).to_json()
        }
        "send" => fanout::send(template, tenant, day, label),
        "rebuild_year" => rebuild::rebuild_year(template, tenant, day.year(), label),
        "fold" => fold::fold_year(template, tenant, day.year(), today()),
        "receive" => fanout::receive(template, tenant, day, label),
        other => raise(WhError::invalid("operation", format!("unknown operation {other:?}"))),
    }
}

/// The failure branch of `_wh.run_isolated`: log it and return the failed result.
pub fn record_failure(op: &str, template: Option<&str>, tenant: Option<&str>, day: Option<Day>, sqlstate: &str, message: &str, options: &Value) -> Value {
    let label = opt_str(options, "operation", op);
    let mut r = OpResult::new(label, template, tenant, day.map(|d| d.iso())).failed(sqlstate, message);
    r.detail("phase", json!(op));
    log_run(&r);
    r.to_json()
}

/// `update_mv_by_template`: the target day, then `lookback_days` earlier days (when allowed),
/// each created if missing and refreshed otherwise.
pub fn update_by_template(template: &CheckedName, tenant: &CheckedName, target: Day, allow_lookback: bool, wait: bool) -> Value {
    let lt = catalog::load_template(template);
    catalog::load_tenant(tenant);
    let lookback = if allow_lookback { lt.t.lookback_days } else { 0 };
    let results: Vec<Value> = dates::refresh_days(target, lookback)
        .into_iter()
        .map(|d| isolated("refresh", template, tenant, d, json!({"operation": "update_mv_by_template", "wait": wait})))
        .collect();
    summarize("update_mv_by_template", &results)
}

/// Validate a window: names, tenant and template registered, dates ordered and bounded.
pub fn plan(template: &CheckedName, tenant: &CheckedName, start: Option<Day>, end: Option<Day>, max_days: i32) -> Vec<Day> {
    let days = dates::window(start, end, max_days).unwrap_or_else(|e| raise(e));
    catalog::load_template(template);
    catalog::load_tenant(tenant);
    days
}

/// `update_mv_window`: every day of `[start, end]`; missing days are built, existing days
/// are rebuilt only with `force_recreate` (otherwise reported `skipped: exists`).
pub fn update_window(template: &CheckedName, tenant: &CheckedName, days: &[Day], force: bool) -> Value {
    let op = if force { "refresh" } else { "create" };
    let results: Vec<Value> = days
        .iter()
        .map(|d| isolated(op, template, tenant, *d, json!({"operation": "update_mv_window"})))
        .collect();
    summarize("update_mv_window", &results)
}

/// What a window call would do, without doing it: the days, the action for each, and the
/// SQL sent to the tenant and run here.
pub fn dry_run(template: &CheckedName, tenant: &CheckedName, days: &[Day], force: bool) -> Value {
    let plan: Vec<Value> = days
        .iter()
        .map(|d| {
            let job = DayJob::load(template, tenant, *d);
            let exists = slice::is_attached(&job.names, &job.slice())
                || slice::is_attached(&job.names, &job.names.year(d.year()));
            let action = match (exists, force) {
                (false, _) => "create",
                (true, true) => "refresh",
                (true, false) => "skip (exists)",
            };
            json!({
                "day": d.iso(),
                "slice": format!("{}.{}", job.names.schema, job.slice()),
                "action": action,
                "server": job.tenant.server,
                "remote_sql": job.remote_sql(),
            })
        })
        .collect();
    json!({"dry_run": true, "template": template.as_str(), "tenant": tenant.as_str(), "days": plan.len(), "plan": plan})
}
