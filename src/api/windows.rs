//! The SQL API: thin `#[pg_extern]` wrappers. Each checks its arguments at the boundary
//! (names into `CheckedName`, dates into `Day`) and calls the module that does the work.
//! Every argument is nullable here so that NULL is a clear error, not a silent NULL.

use pgrx::datum::{Date, Interval};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

use crate::api::args::{template, tenant, Out};
use crate::catalog;
use crate::catalog::db::day_of;
use crate::catalog::db::one;
use crate::catalog::storage;
use crate::pipeline::fanout;
use crate::pipeline::isolate::isolated_days;
use crate::pipeline::unit::{Op, Unit};
use crate::pipeline::window;
use crate::pure::connopts::ConnectionChange;
use crate::pure::dates::{self, Day, Grain, DEFAULT_MAX_WINDOW_DAYS};
use crate::pure::error::{WhError, WhResult};
use crate::pure::names::CheckedName;
use crate::pure::report::{progress_line, OpResult, Status, Summary};
use crate::pure::template::{Template, TemplateInput};
use crate::remote::connect;

fn day(v: Option<Date>, what: &'static str) -> WhResult<Day> {
    day_of(v.ok_or(WhError::NullArgument { what })?)
}
fn today() -> Day {
    crate::catalog::today()
}
/// A day to build: not more than one day after today (UTC).
fn buildable(v: Option<Date>, what: &'static str) -> WhResult<Day> {
    let d = day(v, what)?;
    dates::check_not_future(d, today(), 1)?;
    Ok(d)
}

/// Unknown tenants and templates are errors of the call, not failures of a day.
fn registered(template: &CheckedName, tenant: &CheckedName) {
    catalog::load_template(template);
    catalog::load_tenant(tenant);
}

/// One day, isolated: its result (a failure is logged and warned of).
fn one_day(op: Op, template: &CheckedName, tenant: &CheckedName, d: Day, label: &str) -> JsonB {
    let days = [d];
    let results = isolated_days(&Unit::new(op, template, tenant, &days, label));
    warn_of_failures(&results);
    JsonB(
        results
            .first()
            .map(OpResult::to_json)
            .unwrap_or(Value::Null),
    )
}

/// Calls for one tenant or one day report a failure as a WARNING as well as in the
/// result and run log.
fn warn_of_failures(results: &[OpResult]) {
    for r in results.iter().filter(|r| r.status == Status::Failed) {
        pgrx::warning!(
            "wh: {} {} {} failed: {}",
            r.template.as_deref().unwrap_or(""),
            r.tenant.as_deref().unwrap_or(""),
            r.day.as_deref().unwrap_or(""),
            r.error.as_deref().unwrap_or("")
        );
    }
}

/// A summary of `summary.results`, warned of as `warn_of_failures` does.
fn warned(summary: Summary) -> JsonB {
    warn_of_failures(&summary.results);
    JsonB(summary.json)
}

// ---------------------------------------------------------------- the caller

/// The role this backend authenticated as. `SET SESSION AUTHORIZATION` changes
/// `session_user` but not this, so `_wh._check_caller` judges the login itself: a superuser
/// who switched to an operator's name is still refused.
#[pg_extern(stable, parallel_safe)]
fn _login_role() -> pg_sys::Oid {
    // SAFETY: reads a backend global set once at authentication; no allocation, no error.
    unsafe { pg_sys::GetAuthenticatedUserId() }
}

// ---------------------------------------------------------------- connections

/// Register a tenant, or change only what is named: a password rotation is
/// `set_tenant_connection('acme', password => '…')`, and every other setting (TLS mode, CA,
/// channel binding, timeout) stays as it was. An empty `sslrootcert` removes it.
#[pg_extern]
#[allow(clippy::too_many_arguments)]
fn set_tenant_connection(
    tenant_name: Option<&str>,
    host: default!(Option<&str>, "NULL"),
    port: default!(Option<i32>, "NULL"),
    dbname: default!(Option<&str>, "NULL"),
    username: default!(Option<&str>, "NULL"),
    password: default!(Option<&str>, "NULL"),
    sslmode: default!(Option<&str>, "NULL"),
    remote_timeout: default!(Option<Interval>, "NULL"),
    sslrootcert: default!(Option<&str>, "NULL"),
    channel_binding: default!(Option<&str>, "NULL"),
    test_first: default!(Option<bool>, "true"),
) -> Out {
    let t = tenant(tenant_name)?;
    let remote_timeout_ms = remote_timeout.map(|timeout| {
        one::<i64>(
            "SELECT (extract(epoch FROM $1) * 1000::numeric)::int8",
            &[timeout.into()],
        )
        .unwrap_or(0)
    });
    let change = ConnectionChange {
        host: host.map(str::to_string),
        port,
        dbname: dbname.map(str::to_string),
        username: username.map(str::to_string),
        sslmode: sslmode.map(str::to_string),
        sslrootcert: sslrootcert.map(str::to_string),
        channel_binding: channel_binding.map(str::to_string),
        remote_timeout_ms,
    };
    if password == Some("") {
        return Err(WhError::invalid(
            "password",
            "must not be empty (wh connects to sources with password authentication only)",
        )
        .into());
    }
    Ok(JsonB(connect::set_tenant_connection(
        &t,
        change,
        password,
        test_first.unwrap_or(true),
    )?))
}

/// The dblink connection name (the foreign server) of a tenant; holds no secret.
#[pg_extern(stable)]
fn get_tenant_connection_string(tenant_name: Option<&str>) -> Result<String, ErrorReport> {
    let t = tenant(tenant_name)?;
    Ok(catalog::load_tenant(&t).server)
}

#[pg_extern]
fn test_tenant_connection(tenant_name: Option<&str>) -> Out {
    let t = tenant(tenant_name)?;
    Ok(JsonB(connect::test_tenant_connection(&t)))
}

// ---------------------------------------------------------------- templates

#[pg_extern]
#[allow(clippy::too_many_arguments)]
fn set_template(
    template_name: Option<&str>,
    query_template: Option<&str>,
    column_definitions: Option<&str>,
    time_column: Option<&str>,
    unique_key: default!(Option<&str>, "NULL"),
    indexes: default!(Option<Vec<String>>, "'{}'"),
    description: default!(Option<&str>, "NULL"),
    lookback_days: default!(Option<i32>, "1"),
    partition_grain: default!(Option<&str>, "'month'"),
) -> Out {
    let grain = Grain::parse(partition_grain.ok_or(WhError::NullArgument {
        what: "partition_grain",
    })?)?;
    // The seeds' day filter reads a whole index on the source: made a range (said below).
    let ranged = query_template.and_then(crate::pure::seeds::range_day_filter);
    let t = Template::parse(&TemplateInput {
        name: template_name,
        query: ranged.as_ref().map(|r| r.query.as_str()).or(query_template),
        column_definitions,
        time_column,
        unique_key,
        indexes: indexes.unwrap_or_default(),
        description,
        lookback_days: lookback_days.ok_or(WhError::NullArgument {
            what: "lookback_days",
        })?,
    })?;
    catalog::refuse_if_rollup(&t.name);
    let note = ranged.map(|r| r.note());
    if let Some(n) = &note {
        pgrx::notice!("wh: {n}");
    }
    Ok(JsonB(crate::ops::evolve::set_template(&t, grain, note)))
}

// ---------------------------------------------------------------- days

/// Build one day of one tenant (skipped if it is already built).
#[pg_extern]
fn create_mv_from_template(
    template_name: Option<&str>,
    tenant_name: Option<&str>,
    target_schema: default!(Option<&str>, "NULL"),
    target_date: default!(Option<Date>, "_wh.current_date_utc()"),
) -> Out {
    let (tp, tn) = (template(template_name)?, tenant(tenant_name)?);
    if let Some(s) = target_schema {
        if s != tn.as_str() {
            return Err(WhError::invalid(
                "target_schema",
                format!("wh keeps tenant {tn} in schema {tn}, not {s:?} (pass NULL or '{tn}')"),
            )
            .into());
        }
    }
    let d = buildable(target_date, "target_date")?;
    registered(&tp, &tn);
    Ok(one_day(Op::Create, &tp, &tn, d, "create_mv_from_template"))
}

/// What cron calls: refresh the target day (creating it if missing) and, when allowed,
/// the template's lookback days before it. A refresh always fetches the days again and
/// writes those that changed, so `force_recreate` (kept from the seeds' API) changes nothing.
#[pg_extern]
#[allow(unused_variables)]
fn update_mv_by_template(
    template_name: Option<&str>,
    tenant_name: Option<&str>,
    target_date: default!(Option<Date>, "_wh.current_date_utc()"),
    allow_refresh_yesterday: default!(Option<bool>, "true"),
    force_recreate: default!(Option<bool>, "false"),
    wait_for_lock: default!(Option<bool>, "false"),
) -> Out {
    let (tp, tn) = (template(template_name)?, tenant(tenant_name)?);
    let d = buildable(target_date, "target_date")?;
    Ok(warned(window::update_by_template(
        &tp,
        &tn,
        d,
        allow_refresh_yesterday.unwrap_or(true),
        wait_for_lock.unwrap_or(false),
    )))
}

/// Rebuild one day now (no lookback).
#[pg_extern]
fn refresh_mv(
    template_name: Option<&str>,
    tenant_name: Option<&str>,
    target_date: Option<Date>,
    allow_shrink: default!(Option<bool>, "false"),
) -> Out {
    let (tp, tn) = (template(template_name)?, tenant(tenant_name)?);
    let d = buildable(target_date, "target_date")?;
    registered(&tp, &tn);
    Ok(crate::catalog::db::allowing_shrink(
        allow_shrink.unwrap_or(false),
        || one_day(Op::Refresh, &tp, &tn, d, "refresh_mv"),
    ))
}

#[pg_extern]
#[allow(clippy::too_many_arguments)]
fn update_mv_window(
    template_name: Option<&str>,
    tenant_name: Option<&str>,
    start_date: Option<Date>,
    end_date: Option<Date>,
    force_recreate: default!(Option<bool>, "false"),
    dry_run: default!(Option<bool>, "false"),
    max_days: default!(Option<i32>, "3660"),
) -> Out {
    let (tp, tn) = (template(template_name)?, tenant(tenant_name)?);
    let (s, e) = (
        day(start_date, "start_date")?,
        buildable(end_date, "end_date")?,
    );
    let days = window::plan(
        &tp,
        &tn,
        Some(s),
        Some(e),
        max_days.unwrap_or(DEFAULT_MAX_WINDOW_DAYS),
    );
    let force = force_recreate.unwrap_or(false);
    if dry_run.unwrap_or(false) {
        return Ok(JsonB(window::dry_run(&tp, &tn, &days, force)));
    }
    Ok(JsonB(window::update_window(&tp, &tn, &days, force)))
}

/// The seeds' `update_mv_window(tenant, schema, start, end, force, function_name)`: runs
/// wh's window for the template `function_name` names (`update_<template>`), when the
/// schema is the tenant's (in wh it always is); otherwise fails with a HINT naming wh's call.
#[pg_extern(name = "update_mv_window")]
fn update_mv_window_seeds(
    tenant_name: Option<&str>,
    schema_name: Option<&str>,
    start_date: Option<Date>,
    end_date: Option<Date>,
    force: Option<bool>,
    function_name: Option<&str>,
) -> Out {
    let tn = tenant(tenant_name)?;
    let (s, e) = (
        day(start_date, "start_date")?,
        buildable(end_date, "end_date")?,
    );
    let f = function_name.ok_or(WhError::NullArgument {
        what: "function_name",
    })?;
    Ok(JsonB(window::update_window_seeds(
        &tn,
        schema_name,
        s,
        e,
        force.unwrap_or(false),
        f,
    )))
}

#[pg_extern]
fn update_all_tenants(
    template_name: Option<&str>,
    target_date: default!(Option<Date>, "_wh.current_date_utc()"),
) -> Out {
    let tp = template(template_name)?;
    let d = buildable(target_date, "target_date")?;
    Ok(warned(fanout::update_all_tenants(&tp, d)))
}

#[pg_extern(stable)]
fn does_mv_exist(
    template_name: Option<&str>,
    tenant_name: Option<&str>,
    target_date: Option<Date>,
) -> Result<bool, ErrorReport> {
    let (tp, tn) = (template(template_name)?, tenant(tenant_name)?);
    let d = day(target_date, "target_date")?;
    Ok(crate::pipeline::slice::Batch::load(&tp, &tn)
        .registered(&[d])
        .contains(&d))
}

/// `<template>_YYYY_MM_DD`, the name of a day slice.
#[pg_extern(immutable)]
fn create_mv_name(
    template_name: Option<&str>,
    target_date: Option<Date>,
) -> Result<String, ErrorReport> {
    let tp = template(template_name)?;
    let d = day(target_date, "target_date")?;
    Ok(format!("{}_{}", tp, d.suffix()))
}

// ---------------------------------------------------------------- relations

#[pg_extern]
fn update_tenant_union_view(template_name: Option<&str>, tenant_name: Option<&str>) -> Out {
    let (tp, tn) = (template(template_name)?, tenant(tenant_name)?);
    catalog::load_tenant(&tn);
    Ok(JsonB(storage::update_tenant_union_view(&tn, &tp)))
}

/// Create or repair `public.<template>`: the table, partitions for this period and the
/// next two, grants, row-level security and tenant readers' policies.
#[pg_extern]
fn update_public_view(template_name: Option<&str>) -> Out {
    let tp = template(template_name)?;
    Ok(JsonB(storage::update_public_view(&tp, today())))
}

/// What the `wh:maintenance` job runs: partitions made ahead for every template, and
/// the run log pruned.
#[pg_extern]
fn run_maintenance() -> Out {
    Ok(JsonB(crate::ops::schedule::run_maintenance(today())))
}

// ---------------------------------------------------------------- internals for sql/wrappers.sql

fn days_of(days: Option<Vec<Option<Date>>>) -> WhResult<Vec<Day>> {
    let mut out = Vec::new();
    for d in days.ok_or(WhError::NullArgument { what: "days" })? {
        out.push(day(d, "day")?);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// One chunk of a backfill or committing rebuild (the procedures commit after each).
#[pg_extern]
fn _chunk(
    refresh_existing: Option<bool>,
    template_name: Option<&str>,
    tenant_name: Option<&str>,
    days: Option<Vec<Option<Date>>>,
    label: Option<&str>,
) -> Out {
    let (tp, tn) = (template(template_name)?, tenant(tenant_name)?);
    let ds = days_of(days)?;
    let op = match refresh_existing {
        Some(true) => Op::Refresh,
        _ => Op::Create,
    };
    Ok(JsonB(window::chunk(
        op,
        &tp,
        &tn,
        &ds,
        label.unwrap_or("backfill"),
    )))
}

/// Partitions for `[first, last]`, made now (empty). The procedures no longer call it: a
/// chunk whose month has no partition builds it aside with its rows. Left for a DBA (and
/// the benchmark) who wants months made ahead of the days that fill them.
#[pg_extern]
fn _prepare_days(template_name: Option<&str>, first: Option<Date>, last: Option<Date>) -> Out {
    let tp = template(template_name)?;
    let (a, b) = (day(first, "first")?, day(last, "last")?);
    let lt = catalog::load_template(&tp);
    Ok(JsonB(
        serde_json::json!({"partitions_created": storage::ensure_partitions(&lt, a, b.succ())}),
    ))
}

/// The chunks of a backfill: `[start_date, end_date]` by month, at most `chunk_days` each.
#[pg_extern]
fn _backfill_chunks(
    start_date: Option<Date>,
    end_date: Option<Date>,
    chunk_days: default!(Option<i32>, "31"),
) -> Result<TableIterator<'static, (name!(first_index, i32), name!(days, Vec<Date>))>, ErrorReport>
{
    let (s, e) = (day(start_date, "start_date")?, day(end_date, "end_date")?);
    let days: Vec<Day> = (s.0..=e.0).map(Day).collect();
    let size = chunk_days
        .unwrap_or(dates::DEFAULT_CHUNK_DAYS as i32)
        .clamp(1, 366) as usize;
    let mut i = 1;
    let mut out = Vec::new();
    for c in dates::chunks(&days, size) {
        let n = c.len() as i32;
        out.push((
            i,
            c.into_iter().map(catalog::db::pg_date).collect::<Vec<_>>(),
        ));
        i += n;
    }
    Ok(TableIterator::new(out))
}

/// Validate a backfill's arguments; returns the number of days.
#[pg_extern]
fn _plan_window(
    template_name: Option<&str>,
    tenant_name: Option<&str>,
    start_date: Option<Date>,
    end_date: Option<Date>,
    max_days: Option<i32>,
) -> Result<i32, ErrorReport> {
    let (tp, tn) = (template(template_name)?, tenant(tenant_name)?);
    let (s, e) = (
        day(start_date, "start_date")?,
        buildable(end_date, "end_date")?,
    );
    Ok(window::plan(
        &tp,
        &tn,
        Some(s),
        Some(e),
        max_days.unwrap_or(DEFAULT_MAX_WINDOW_DAYS),
    )
    .len() as i32)
}

/// The progress line of a chunk, e.g.
/// `days 32-59/365 tenant_a 2025-02-01..2025-02-28: 28 built, 0 unchanged, 0 skipped, 0 failed, 8,400 rows 1.2 s`.
#[pg_extern(immutable)]
fn _progress(first: i64, n: i64, tenant_name: Option<&str>, result: JsonB) -> String {
    progress_line(first, n, tenant_name.unwrap_or(""), &result.0)
}

/// A committing procedure's progress for `_wh.progress` (see `progress.rs`): `done` of
/// `total` units finished, working on `current`, `rows` stored so far.
#[allow(clippy::too_many_arguments)]
#[pg_extern]
fn _progress_step(
    operation: &str,
    template_name: Option<&str>,
    tenant_name: Option<&str>,
    unit: &str,
    done: i64,
    total: i64,
    current: Option<&str>,
    rows: Option<i64>,
) {
    crate::pipeline::progress::procedure_step(
        crate::pipeline::progress::Op {
            operation,
            template: template_name,
            tenant: tenant_name,
            unit,
            total,
        },
        crate::pipeline::progress::At {
            done,
            current: current.unwrap_or(""),
            rows: rows.unwrap_or(0),
        },
    );
}

/// The progress a backend's `pg_stat_activity.query` carries, or NULL (for `_wh.progress`).
#[pg_extern(immutable, parallel_safe)]
fn _progress_row(query: Option<&str>) -> Option<JsonB> {
    query.and_then(crate::pipeline::progress::parse).map(JsonB)
}

/// The end of a committing procedure's progress.
#[pg_extern]
fn _progress_end() {
    crate::pipeline::progress::procedure_end();
}
