//! Many days at once. Days are fetched in chunks (one remote query per chunk, at most a
//! month), each chunk a unit run isolated (`isolate`): one failing chunk neither stops
//! nor undoes the others, and only the day at fault fails.

use serde_json::{json, Value};

use crate::catalog;
use crate::pipeline::isolate::isolated_days;
use crate::pipeline::progress::{chunked, days_in_chunks};
use crate::pipeline::slice::Batch;
use crate::pipeline::unit::{Op, Unit};
use crate::pure::dates::{self, Day};
use crate::pure::error::{raise, WhError};
use crate::pure::names::CheckedName;
use crate::pure::report::{summarize, Summary};

/// `update_mv_by_template`: the target day and `lookback_days` earlier days (when
/// allowed), fetched together, each created if missing and refreshed otherwise.
pub fn update_by_template(
    template: &CheckedName,
    tenant: &CheckedName,
    target: Day,
    allow_lookback: bool,
    wait: bool,
) -> Summary {
    let lt = catalog::load_template(template);
    catalog::load_tenant(tenant);
    let lookback = if allow_lookback {
        lt.t.lookback_days
    } else {
        0
    };
    let mut days = dates::refresh_days(target, lookback);
    days.sort();
    let progress = crate::pipeline::progress::begin(crate::pipeline::progress::Op {
        operation: "update_mv_by_template",
        template: Some(template.as_str()),
        tenant: Some(tenant.as_str()),
        unit: "day",
        total: days.len() as i64,
    });
    let label = "update_mv_by_template";
    let mut results = chunked(&progress, &days, |c| {
        isolated_days(&Unit {
            wait,
            ..Unit::new(Op::Refresh, template, tenant, c, label)
        })
    });
    // The target day first, as the seeds report it.
    results.reverse();
    Summary::new(label, results)
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
    let op = if force { Op::Refresh } else { Op::Create };
    let label = "update_mv_window";
    let progress = crate::pipeline::progress::begin(crate::pipeline::progress::Op {
        operation: "update_mv_window",
        template: Some(template.as_str()),
        tenant: Some(tenant.as_str()),
        unit: "day",
        total: days.len() as i64,
    });
    let results = chunked(&progress, days, |c| {
        isolated_days(&Unit::new(op, template, tenant, c, label))
    });
    summarize(label, &results)
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
    let named = crate::pure::seeds::template_of_function(function_name);
    let call = crate::pure::seeds::window_call(
        named.unwrap_or("<template>"),
        tenant.as_str(),
        &start.iso(),
        &end.iso(),
        force,
    );
    let refuse = |reason: String| -> ! {
        crate::pure::error::raise_with_hint(
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
    op: Op,
    template: &CheckedName,
    tenant: &CheckedName,
    days: &[Day],
    label: &str,
) -> Value {
    let results = isolated_days(&Unit::new(op, template, tenant, days, label));
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
                "slice": format!("{}.{}", batch.names.tenant, batch.names.day(*d)),
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
        "table": batch.table.table(), "chunks": chunks, "plan": plan,
    })
}
