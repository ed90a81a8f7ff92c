//! Many days at once. Days are fetched in chunks (one remote query per chunk, at most a
//! month), each chunk run through `_wh.run_isolated` (a PL/pgSQL exception block = a real
//! subtransaction), so one failing chunk neither stops nor undoes the others. When a
//! chunk's remote query fails for a reason other than the connection, its days are
//! retried one by one, so only the day at fault fails; every failure is logged and
//! reported in the per-day results.

use pgrx::datum::DatumWithOid;
use pgrx::JsonB;
use serde_json::{json, Value};

use crate::catalog::{self, log_run, pg_date};
use crate::dates::{self, Day, DEFAULT_CHUNK_DAYS};
use crate::db::one;
use crate::error::{raise, WhError};
use crate::fanout;
use crate::fold;
use crate::names::CheckedName;
use crate::report::{summarize, OpResult};
use crate::slice::{Batch, Existing, Source};

/// Run one operation on `days` inside `_wh.run_isolated` and return its raw result.
fn isolated(
    op: &str,
    template: &CheckedName,
    tenant: Option<&CheckedName>,
    days: &[Day],
    options: &Value,
) -> Value {
    let ds: Vec<pgrx::datum::Date> = days.iter().map(|d| pg_date(*d)).collect();
    // When it started, so a failure records its real duration.
    let mut options = options.clone();
    options["started_ms"] = json!(crate::remote::now_ms());
    let options = &options;
    one::<JsonB>(
        "SELECT _wh.run_isolated($1, $2, $3, $4::date[], $5)",
        &[
            DatumWithOid::from(op),
            DatumWithOid::from(template.as_str()),
            DatumWithOid::from(tenant.map(|t| t.as_str())),
            DatumWithOid::from(ds),
            DatumWithOid::from(JsonB(options.clone())),
        ],
    )
    .map(|j| j.0)
    .unwrap_or_else(|| raise(WhError::State("run_isolated returned NULL".into())))
}

fn status(v: &Value) -> &str {
    v.get("status").and_then(Value::as_str).unwrap_or("")
}

fn results_of(v: Value) -> Vec<Value> {
    match v.get("results").and_then(Value::as_array) {
        Some(rs) => rs.clone(),
        None => vec![v],
    }
}

/// Run `op` on a chunk of days, isolated; per-day results. A chunk that fails as a whole
/// is split: on a connection failure (SQLSTATE class 08), a busy lock (55P03) or a source
/// out of time (57014) every day fails with it at once, otherwise each day is retried alone.
pub fn isolated_days(
    op: &str,
    template: &CheckedName,
    tenant: &CheckedName,
    days: &[Day],
    options: &Value,
) -> Vec<Value> {
    let v = isolated_chunk(op, template, tenant, days, options);
    split_failure(op, template, tenant, days, v, options)
}

/// `op` on a chunk of days, isolated, not split yet: a whole-chunk failure comes back
/// unlogged (see `chunk_failed`), for `split_failure` now or later.
pub fn isolated_chunk(
    op: &str,
    template: &CheckedName,
    tenant: &CheckedName,
    days: &[Day],
    options: &Value,
) -> Value {
    let mut opts = options.clone();
    opts["whole_chunk"] = json!(days.len() > 1);
    isolated(op, template, Some(tenant), days, &opts)
}

/// Did the chunk fail as a whole (its days neither done nor logged yet)?
pub fn chunk_failed(days: &[Day], v: &Value) -> bool {
    days.len() > 1 && status(v) == "failed" && v.get("results").is_none()
}

/// Per-day results of a chunk's outcome: as they are, or, for a whole-chunk failure,
/// every day failed at once or each day retried alone (see `isolated_days`).
pub fn split_failure(
    op: &str,
    template: &CheckedName,
    tenant: &CheckedName,
    days: &[Day],
    v: Value,
    options: &Value,
) -> Vec<Value> {
    if !chunk_failed(days, &v) {
        return results_of(v);
    }
    let sqlstate = v
        .get("sqlstate")
        .and_then(Value::as_str)
        .unwrap_or("XX000")
        .to_string();
    // A connection failure, a lock another session holds (55P03) or a source out of time
    // (57014: its statement_timeout, or wh's deadline) fails every day of the chunk at
    // once: retrying day by day would only repeat the wait.
    if sqlstate.starts_with("08") || sqlstate == "55P03" || sqlstate == "57014" {
        let message = v
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        return days
            .iter()
            .map(|d| {
                record_failure(
                    op,
                    Some(template.as_str()),
                    Some(tenant.as_str()),
                    &[*d],
                    &sqlstate,
                    &message,
                    options,
                )
            })
            .collect();
    }
    // A fan-out's answer was consumed: its days are fetched again one by one directly.
    let retry = if op == "send" || op == "receive" {
        "refresh"
    } else {
        op
    };
    days.iter()
        .flat_map(|d| isolated_days(retry, template, tenant, &[*d], options))
        .collect()
}

/// Fold the year of `first` for every tenant, isolated (its failure is logged).
pub fn isolated_fold(template: &CheckedName, first: Day, options: Value) -> Value {
    isolated("fold", template, None, &[first], &options)
}

/// The UTC day now.
pub fn today() -> Day {
    catalog::today()
}

fn opt_bool(options: &Value, key: &str) -> bool {
    options.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn opt_str<'a>(options: &'a Value, key: &str, default: &'a str) -> &'a str {
    options.get(key).and_then(Value::as_str).unwrap_or(default)
}

/// The body `_wh.run_isolated` protects: one operation on a run of days.
pub fn run_op(
    op: &str,
    template: &CheckedName,
    tenant: Option<&CheckedName>,
    days: &[Day],
    options: &Value,
) -> Value {
    let label = opt_str(options, "operation", op);
    let wait = opt_bool(options, "wait");
    let Some(&first) = days.first() else {
        raise(WhError::invalid("days", "no day to work on"))
    };
    if op == "fold" {
        return fold::fold_year(template, tenant, first.year(), today());
    }
    let tenant = tenant.unwrap_or_else(|| {
        raise(WhError::NullArgument {
            what: "tenant_name",
        })
    });
    let batch = |existing: Existing, source: Source| -> Value {
        let b = Batch::load(template, tenant);
        // A rollup's days are computed here from its base, never fetched.
        let source = if b.lt.base.is_some() {
            Source::Local { check_base: true }
        } else {
            source
        };
        let rs: Vec<Value> = b
            .run(days, existing, wait, label, source)
            .iter()
            .map(OpResult::to_json)
            .collect();
        summarize(label, &rs)
    };
    match op {
        "create" => batch(Existing::Skip, Source::Remote),
        "refresh" => batch(Existing::Refresh, Source::Remote),
        "send" => fanout::send(template, tenant, days),
        "verify" => crate::verify::compare(template, tenant, days),
        "receive" => fanout::receive(
            template,
            tenant,
            days,
            label,
            options
                .get("deadline_ms")
                .and_then(Value::as_i64)
                .unwrap_or(0),
        ),
        other => raise(WhError::invalid(
            "operation",
            format!("unknown operation {other:?}"),
        )),
    }
}

/// The failure branch of `_wh.run_isolated`: log it (one row per day) and return the
/// failed result. A whole chunk's failure is returned unlogged: the caller splits it.
pub fn record_failure(
    op: &str,
    template: Option<&str>,
    tenant: Option<&str>,
    days: &[Day],
    sqlstate: &str,
    message: &str,
    options: &Value,
) -> Value {
    let label = opt_str(options, "operation", op);
    // What to do, when wh can tell: a column the query does not return or a value that
    // does not fit its type; a password missing (after a restore) or wrong.
    let explained = template
        .and_then(|t| crate::template::explain_failure(message, &catalog::column_types(t)))
        .map(|why| format!("{message} ({why})"))
        .or_else(|| tenant.and_then(|t| crate::connopts::explain_connect_failure(t, message)));
    let message = explained.as_deref().unwrap_or(message);
    let ms = options
        .get("started_ms")
        .and_then(Value::as_i64)
        .map(|t| (crate::remote::now_ms() - t).max(0) as f64)
        .unwrap_or(0.0);
    let fail = |d: Option<Day>| {
        let mut r =
            OpResult::new(label, template, tenant, d.map(|d| d.iso())).failed(sqlstate, message);
        r.ms = ms;
        r.detail("phase", json!(op));
        r
    };
    if opt_bool(options, "whole_chunk") && days.len() > 1 {
        return fail(None).to_json();
    }
    let rs: Vec<OpResult> = if days.is_empty() {
        vec![fail(None)]
    } else {
        days.iter().map(|d| fail(Some(*d))).collect()
    };
    for r in &rs {
        log_run(r);
    }
    if rs.len() == 1 {
        return rs[0].to_json();
    }
    summarize(label, &rs.iter().map(OpResult::to_json).collect::<Vec<_>>())
}

/// `update_mv_by_template`: the target day and `lookback_days` earlier days (when
/// allowed), fetched together, each created if missing and refreshed otherwise.
pub fn update_by_template(
    template: &CheckedName,
    tenant: &CheckedName,
    target: Day,
    allow_lookback: bool,
    wait: bool,
) -> Value {
    let lt = catalog::load_template(template);
    catalog::load_tenant(tenant);
    let lookback = if allow_lookback {
        lt.t.lookback_days
    } else {
        0
    };
    let mut days = dates::refresh_days(target, lookback);
    days.sort();
    let opts = json!({"operation": "update_mv_by_template", "wait": wait});
    let progress = crate::progress::begin(crate::progress::Op {
        operation: "update_mv_by_template",
        template: Some(template.as_str()),
        tenant: Some(tenant.as_str()),
        unit: "day",
        total: days.len() as i64,
    });
    let mut results = chunked(&progress, &days, |c| {
        isolated_days("refresh", template, tenant, c, &opts)
    });
    // The target day first, as the seeds report it.
    results.reverse();
    summarize("update_mv_by_template", &results)
}

/// Run `each` on the chunks of `days` in order, reporting progress before each chunk
/// (`done` days, the chunk's span, rows stored so far).
pub fn chunked(
    progress: &crate::progress::Progress,
    days: &[Day],
    mut each: impl FnMut(&[Day]) -> Vec<Value>,
) -> Vec<Value> {
    let mut results = Vec::new();
    let mut rows = 0i64;
    for c in days_in_chunks(days) {
        progress.step(results.len() as i64, &span(&c), rows);
        let rs = each(&c);
        rows += rs
            .iter()
            .filter_map(|r| r.get("rows").and_then(Value::as_i64))
            .sum::<i64>();
        results.extend(rs);
    }
    results
}

/// `2025-02-01..2025-02-28`, or the one day.
pub fn span(days: &[Day]) -> String {
    match (days.first(), days.last()) {
        (Some(a), Some(b)) if a != b => format!("{}..{}", a.iso(), b.iso()),
        (Some(a), _) => a.iso(),
        _ => String::new(),
    }
}

/// Chunks of a window: runs inside one month, at most `DEFAULT_CHUNK_DAYS` long. The
/// lookback of a month's first day spans two months: one chunk per month is fine.
fn days_in_chunks(days: &[Day]) -> Vec<Vec<Day>> {
    dates::chunks(days, DEFAULT_CHUNK_DAYS)
}

/// Validate a window: names, tenant and template registered, dates ordered and bounded.
pub fn plan(
    template: &CheckedName,
    tenant: &CheckedName,
    start: Option<Day>,
    end: Option<Day>,
    max_days: i32,
) -> Vec<Day> {
    let days = dates::window(start, end, max_days).unwrap_or_else(|e| raise(e));
    catalog::load_template(template);
    catalog::load_tenant(tenant);
    days
}

/// `update_mv_window`: every day of the window, a chunk at a time; missing days are
/// built, existing days are refreshed only with `force_recreate` (otherwise reported
/// `skipped: exists`).
pub fn update_window(
    template: &CheckedName,
    tenant: &CheckedName,
    days: &[Day],
    force: bool,
) -> Value {
    let op = if force { "refresh" } else { "create" };
    let opts = json!({"operation": "update_mv_window"});
    let progress = crate::progress::begin(crate::progress::Op {
        operation: "update_mv_window",
        template: Some(template.as_str()),
        tenant: Some(tenant.as_str()),
        unit: "day",
        total: days.len() as i64,
    });
    let results = chunked(&progress, days, |c| {
        isolated_days(op, template, tenant, c, &opts)
    });
    summarize("update_mv_window", &results)
}

/// The seeds' `update_mv_window(tenant, schema, start, end, force, function_name)`: wh's
/// window for the template `function_name` names (`update_<template>`) when the schema is
/// the tenant's (in wh it always is); otherwise an error whose HINT is the exact wh call.
pub fn update_window_seeds(
    tenant: &CheckedName,
    schema: Option<&str>,
    start: Day,
    end: Day,
    force: bool,
    function_name: &str,
) -> Value {
    catalog::load_tenant(tenant);
    let named = crate::seeds::template_of_function(function_name);
    let call = crate::seeds::window_call(
        named.unwrap_or("<template>"),
        tenant.as_str(),
        &start.iso(),
        &end.iso(),
        force,
    );
    let refuse = |reason: String| -> ! {
        crate::error::raise_with_hint(
            WhError::invalid(
                "function_name",
                format!("this is the seeds' update_mv_window(tenant, schema, …): {reason}"),
            ),
            format!("wh's call: {call}"),
        )
    };
    if let Some(sc) = schema.filter(|sc| *sc != tenant.as_str()) {
        refuse(format!("in wh a tenant's schema is its name, so schema {sc:?} cannot differ from tenant {tenant}"));
    }
    let Some(template) = named.and_then(|t| CheckedName::template(Some(t)).ok()) else {
        refuse(format!(
            "{function_name:?} does not name a template as update_<template>"
        ))
    };
    if !catalog::template_exists(&template) {
        refuse(format!(
            "{function_name:?} names template {template}, which is not registered"
        ));
    }
    let days = plan(
        &template,
        tenant,
        Some(start),
        Some(end),
        dates::DEFAULT_MAX_WINDOW_DAYS,
    );
    update_window(&template, tenant, &days, force)
}

/// One chunk of a backfill or committing rebuild (called by the procedures, which commit
/// after each chunk).
pub fn chunk(
    op: &str,
    template: &CheckedName,
    tenant: &CheckedName,
    days: &[Day],
    label: &str,
) -> Value {
    let results = isolated_days(op, template, tenant, days, &json!({"operation": label}));
    summarize(label, &results)
}

/// What a window call would do, without doing it: the days, the action for each, the
/// chunks and the SQL each sends to the tenant.
pub fn dry_run(template: &CheckedName, tenant: &CheckedName, days: &[Day], force: bool) -> Value {
    let batch = Batch::load(template, tenant);
    let held = batch.registered(days);
    let plan: Vec<Value> = days
        .iter()
        .map(|d| {
            let action = match (held.contains(d), force) {
                (false, _) => "create",
                (true, true) => "refresh",
                (true, false) => "skip (exists)",
            };
            json!({
                "day": d.iso(),
                "slice": format!("{}.{}", batch.names.schema, batch.names.day(*d)),
                "action": action,
                "server": batch.tenant.server,
                "remote_sql": batch.remote_sql(&[*d]),
            })
        })
        .collect();
    let chunks: Vec<Value> = days_in_chunks(days)
        .iter()
        .map(|c| json!({"first": c[0].iso(), "last": c[c.len() - 1].iso(), "days": c.len()}))
        .collect();
    json!({
        "dry_run": true, "template": template.as_str(), "tenant": tenant.as_str(), "days": plan.len(),
        "table": batch.tn.table(), "chunks": chunks, "plan": plan,
    })
}
