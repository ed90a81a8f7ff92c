//! The SQL API for the life of a warehouse after its days are built: folding years,
//! disaster recovery, retention, tiering, removing tenants, scheduling. Thin wrappers.

use pgrx::datum::{Date, Interval, TimestampWithTimeZone};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::JsonB;

use crate::api::args::{opt_template, opt_tenant, template, tenant, year, Out};
use crate::catalog::db::day_of;
use crate::ops::lifecycle;
use crate::ops::migrate;
use crate::ops::pool;
use crate::ops::readers;
use crate::ops::rebuild;
use crate::ops::schedule;
use crate::pipeline::fold;
use crate::pure::error::WhError;
use crate::pure::template::AccessMethod;

// ---------------------------------------------------------------- folding

/// Fold a finished year's month partitions into one partition `<template>_YYYY` (shared
/// by every tenant), verifying the named tenant's days against the registry, or every
/// tenant's when `tenant_name` is NULL.
#[pg_extern]
fn create_combined_table_by_year(
    template_name: Option<&str>,
    tenant_name: Option<&str>,
    year: Option<i32>,
) -> Out {
    let (tp, tn) = (template(template_name)?, opt_tenant(tenant_name)?);
    let y = self::year(year)?;
    let folded = fold::fold_year(&tp, tn.as_ref(), y, crate::catalog::today());
    Ok(JsonB(folded.to_json()))
}

// ---------------------------------------------------------------- disaster recovery

/// Fetch every tenant-day listed in `_wh.slices` (in scope) again from the sources and
/// write those that differ, then repair tables, partitions and views. One transaction
/// with per-chunk subtransactions; for big warehouses use `CALL _wh.rebuild_warehouse(...)`,
/// which commits per chunk.
#[pg_extern]
fn rebuild_entire_warehouse(
    tenant_name: default!(Option<&str>, "NULL"),
    template_name: default!(Option<&str>, "NULL"),
    dry_run: default!(Option<bool>, "false"),
    allow_shrink: default!(Option<bool>, "false"),
) -> Out {
    let (tn, tp) = (opt_tenant(tenant_name)?, opt_template(template_name)?);
    Ok(JsonB(crate::catalog::db::allowing_shrink(
        allow_shrink.unwrap_or(false),
        || rebuild::rebuild_all(tn.as_ref(), tp.as_ref(), dry_run.unwrap_or(false)),
    )))
}

#[pg_extern]
fn _rebuild_begin(
    tenant_name: Option<&str>,
    template_name: Option<&str>,
) -> Result<
    TableIterator<
        'static,
        (
            name!(run_id, i64),
            name!(since, TimestampWithTimeZone),
            name!(resumed, bool),
        ),
    >,
    ErrorReport,
> {
    let (tn, tp) = (opt_tenant(tenant_name)?, opt_template(template_name)?);
    Ok(TableIterator::once(rebuild::begin_run(
        tn.as_ref(),
        tp.as_ref(),
    )))
}

#[pg_extern]
#[allow(clippy::type_complexity)]
fn _rebuild_todo(
    tenant_name: Option<&str>,
    template_name: Option<&str>,
    since: Option<TimestampWithTimeZone>,
) -> Result<
    TableIterator<
        'static,
        (
            name!(template_name, String),
            name!(tenant_name, String),
            name!(days, Vec<Date>),
        ),
    >,
    ErrorReport,
> {
    let (tn, tp) = (opt_tenant(tenant_name)?, opt_template(template_name)?);
    let rows: Vec<_> = rebuild::todo(tn.as_ref(), tp.as_ref(), since)
        .into_iter()
        .map(|c| {
            (
                c.template.to_string(),
                c.tenant.to_string(),
                c.days
                    .into_iter()
                    .map(crate::catalog::db::pg_date)
                    .collect(),
            )
        })
        .collect();
    Ok(TableIterator::new(rows))
}

#[pg_extern]
fn _rebuild_finish(run_id: i64, tenant_name: Option<&str>, template_name: Option<&str>) -> Out {
    let (tn, tp) = (opt_tenant(tenant_name)?, opt_template(template_name)?);
    Ok(JsonB(rebuild::finish_run(run_id, tn.as_ref(), tp.as_ref())))
}

// ---------------------------------------------------------------- policy, retention, tiering, removal

/// A template's retention, tablespace and storage for folded years (`fold_storage`: heap
/// or columnar) and staleness threshold. Only the settings named change;
/// `clear => ARRAY['retention']` sets one back to none.
#[pg_extern]
fn set_template_policy(
    template_name: Option<&str>,
    retention: default!(Option<Interval>, "NULL"),
    year_tablespace: default!(Option<&str>, "NULL"),
    stale_after: default!(Option<Interval>, "NULL"),
    clear: default!(Option<Vec<Option<String>>>, "'{}'"),
    fold_storage: default!(Option<&str>, "NULL"),
) -> Out {
    let tp = template(template_name)?;
    let fold_storage = fold_storage.map(AccessMethod::parse).transpose()?;
    Ok(JsonB(lifecycle::set_policy(
        &tp,
        lifecycle::PolicyChanges {
            retention,
            year_tablespace,
            stale_after,
            fold_storage,
            clear: clear.unwrap_or_default().into_iter().flatten().collect(),
        },
    )))
}

/// Caps on what one tenant's source may send for one day of a template. Only the limits
/// named change; the others keep their values.
#[pg_extern]
fn set_template_limits(
    template_name: Option<&str>,
    max_rows_per_day: default!(Option<i64>, "NULL"),
    max_bytes_per_day: default!(Option<i64>, "NULL"),
    max_row_bytes: default!(Option<i64>, "NULL"),
    max_shrink_percent: default!(Option<i32>, "NULL"),
) -> Out {
    let tp = template(template_name)?;
    if matches!(max_shrink_percent, Some(p) if !(0..=100).contains(&p)) {
        return Err(WhError::invalid(
            "max_shrink_percent",
            "must be 0..100 (100 lets a refresh empty a day)",
        )
        .into());
    }
    for (what, v) in [
        ("max_rows_per_day", max_rows_per_day),
        ("max_bytes_per_day", max_bytes_per_day),
        ("max_row_bytes", max_row_bytes),
    ] {
        if matches!(v, Some(n) if n <= 0) {
            return Err(WhError::invalid(what, "must be a positive number").into());
        }
    }
    Ok(JsonB(lifecycle::set_limits(
        &tp,
        lifecycle::LimitChanges {
            rows_per_day: max_rows_per_day,
            bytes_per_day: max_bytes_per_day,
            row_bytes: max_row_bytes,
            shrink_percent: max_shrink_percent,
        },
    )))
}

/// Drop the days before `older_than` (default: today minus the template's retention).
#[pg_extern]
fn apply_retention(
    template_name: Option<&str>,
    tenant_name: default!(Option<&str>, "NULL"),
    older_than: default!(Option<Date>, "NULL"),
    include_current_year: default!(Option<bool>, "false"),
    dry_run: default!(Option<bool>, "false"),
) -> Out {
    let (tp, tn) = (template(template_name)?, opt_tenant(tenant_name)?);
    let horizon = older_than.map(day_of).transpose()?;
    Ok(JsonB(lifecycle::apply_retention(
        &tp,
        tn.as_ref(),
        horizon,
        include_current_year.unwrap_or(false),
        dry_run.unwrap_or(false),
        crate::catalog::today(),
    )))
}

/// Move a folded year (and its indexes) to a tablespace: hot/warm/cold tiering. The
/// year partition holds every tenant; `tenant_name` is accepted for the seeds' form.
#[pg_extern]
fn set_slice_tablespace(
    template_name: Option<&str>,
    tenant_name: Option<&str>,
    year: Option<i32>,
    tablespace: Option<&str>,
) -> Out {
    let (tp, _) = (template(template_name)?, opt_tenant(tenant_name)?);
    let y = self::year(year)?;
    let ts = tablespace.ok_or(WhError::NullArgument { what: "tablespace" })?;
    Ok(JsonB(lifecycle::set_slice_tablespace(&tp, y, ts)))
}

/// Build a folded year again as `heap` or `columnar` (aside, checked, swapped in) and record
/// it so: a rebuild folds it so again, and the nightly maintenance keeps it so.
#[pg_extern]
fn set_year_storage(template_name: Option<&str>, year: Option<i32>, storage: Option<&str>) -> Out {
    let tp = template(template_name)?;
    let y = self::year(year)?;
    let access = AccessMethod::parse(storage.ok_or(WhError::NullArgument { what: "storage" })?)?;
    Ok(JsonB(fold::set_year_storage(&tp, y, access)))
}

/// A tenant's own query for a template (its source differs); NULL query removes it.
#[pg_extern]
fn set_tenant_query(
    template_name: Option<&str>,
    tenant_name: Option<&str>,
    query_template: Option<&str>,
    reason: default!(Option<&str>, "NULL"),
) -> Out {
    let (tp, tn) = (template(template_name)?, tenant(tenant_name)?);
    Ok(JsonB(crate::catalog::set_tenant_query(
        &tp,
        &tn,
        query_template,
        reason,
    )))
}

/// Stop scheduled and fan-out refreshes of a tenant (its data stays readable).
#[pg_extern]
fn pause_tenant(tenant_name: Option<&str>) -> Out {
    Ok(JsonB(lifecycle::set_paused(&tenant(tenant_name)?, true)))
}

/// Let scheduled and fan-out refreshes of a paused tenant run again.
#[pg_extern]
fn resume_tenant(tenant_name: Option<&str>) -> Out {
    Ok(JsonB(lifecycle::set_paused(&tenant(tenant_name)?, false)))
}

/// Rename a tenant everywhere (rows, schema and views, server, registry, readers, jobs)
/// in one transaction.
#[pg_extern]
fn rename_tenant(tenant_name: Option<&str>, new_name: Option<&str>) -> Out {
    let old = tenant(tenant_name)?;
    let new = crate::pure::names::CheckedName::new(crate::pure::names::NameKind::Tenant, new_name)
        .map_err(|e| match e {
            WhError::NullArgument { .. } => WhError::NullArgument { what: "new_name" },
            WhError::InvalidName { value, reason, .. } => WhError::InvalidName {
                what: "new_name",
                value,
                reason,
            },
            other => other,
        })?;
    Ok(JsonB(lifecycle::rename_tenant(&old, &new)))
}

#[pg_extern]
fn remove_tenant(tenant_name: Option<&str>, drop_data: default!(Option<bool>, "false")) -> Out {
    let tn = tenant(tenant_name)?;
    Ok(JsonB(lifecycle::remove_tenant(
        &tn,
        drop_data.unwrap_or(false),
    )))
}

/// After restoring a `_wh`-only dump: jobs scheduled again, tenant readers granted again.
#[pg_extern]
fn finish_restore() -> Out {
    Ok(JsonB(lifecycle::finish_restore()))
}

/// Rename a column of a template in place (its table, tenants' views, key and indexes);
/// `query_template` is the template's query returning the new name.
#[pg_extern]
fn rename_template_column(
    template_name: Option<&str>,
    column_name: Option<&str>,
    new_name: Option<&str>,
    query_template: Option<&str>,
) -> Out {
    let tp = template(template_name)?;
    let column =
        |v: Option<&str>, what: &'static str| -> Result<crate::pure::names::CheckedName, WhError> {
            crate::pure::names::CheckedName::column(v.ok_or(WhError::NullArgument { what })?)
        };
    let (old, new) = (
        column(column_name, "column_name")?,
        column(new_name, "new_name")?,
    );
    let query = query_template.ok_or(WhError::NullArgument {
        what: "query_template",
    })?;
    Ok(JsonB(crate::ops::evolve::rename_column(
        &tp, &old, &new, query,
    )))
}

/// Distribute a template's table by tenant over a Citus cluster (on its coordinator),
/// colocated with the other wh tables already distributed.
#[pg_extern]
fn distribute(template_name: Option<&str>, shard_count: default!(Option<i32>, "NULL")) -> Out {
    let tp = template(template_name)?;
    Ok(JsonB(crate::ops::distribute::distribute(&tp, shard_count)))
}

/// Drop a template and what wh made for it (its table too, unless `keep_data`).
#[pg_extern]
fn drop_template(template_name: Option<&str>, keep_data: default!(Option<bool>, "false")) -> Out {
    let tp = template(template_name)?;
    Ok(JsonB(crate::ops::evolve::drop_template(
        &tp,
        keep_data.unwrap_or(false),
    )))
}

// ---------------------------------------------------------------- scheduling

#[pg_extern]
fn schedule_tenant(
    template_name: Option<&str>,
    tenant_name: Option<&str>,
    schedule: default!(Option<&str>, "'10 */4 * * *'"),
    stagger: default!(Option<bool>, "true"),
) -> Out {
    let (tp, tn) = (template(template_name)?, tenant(tenant_name)?);
    let s = schedule.ok_or(WhError::NullArgument { what: "schedule" })?;
    Ok(JsonB(schedule::schedule_tenant(
        &tp,
        &tn,
        s,
        stagger.unwrap_or(true),
    )))
}

/// One job for every tenant of a template (calls update_all_tenants).
#[pg_extern]
fn schedule_template(
    template_name: Option<&str>,
    schedule: default!(Option<&str>, "'10 */4 * * *'"),
) -> Out {
    let tp = template(template_name)?;
    let s = schedule.ok_or(WhError::NullArgument { what: "schedule" })?;
    Ok(JsonB(schedule::schedule_template(&tp, s)))
}

/// Fold last year for every tenant, once a year (default 15 February, 02:00 UTC).
#[pg_extern]
fn schedule_yearly_fold(
    template_name: Option<&str>,
    schedule: default!(Option<&str>, "'0 2 15 2 *'"),
) -> Out {
    let tp = template(template_name)?;
    let s = schedule.ok_or(WhError::NullArgument { what: "schedule" })?;
    Ok(JsonB(schedule::schedule_yearly_fold(&tp, s)))
}

/// Unschedule a tenant's job for one template, or all its jobs when template_name is NULL.
#[pg_extern]
fn unschedule_tenant(template_name: Option<&str>, tenant_name: Option<&str>) -> Out {
    let (tp, tn) = (opt_template(template_name)?, tenant(tenant_name)?);
    Ok(JsonB(schedule::unschedule_tenant(tp.as_ref(), &tn)))
}

/// The refresh pool: every tenant of a template refreshed each `every` by `wh.workers`
/// workers (or, with `tenant_name`, that tenant's own period).
#[pg_extern]
fn schedule_refresh(
    template_name: Option<&str>,
    every: default!(Option<Interval>, "'1 hour'"),
    tenant_name: default!(Option<&str>, "NULL"),
) -> Out {
    let (tp, tn) = (template(template_name)?, opt_tenant(tenant_name)?);
    let every = every.ok_or(WhError::NullArgument { what: "every" })?;
    Ok(JsonB(pool::schedule_refresh(&tp, tn.as_ref(), every)))
}

/// The template's pool schedule removed (or, with `tenant_name`, that tenant's own period).
#[pg_extern]
fn unschedule_refresh(
    template_name: Option<&str>,
    tenant_name: default!(Option<&str>, "NULL"),
) -> Out {
    let (tp, tn) = (template(template_name)?, opt_tenant(tenant_name)?);
    Ok(JsonB(pool::unschedule_refresh(&tp, tn.as_ref())))
}

/// A pool worker's steps (`CALL _wh.run_pool`): the queue matched to the schedules, then
/// one due tenant refreshed per transaction (NULL when none is due or has room).
#[pg_extern]
fn _pool_sync() {
    pool::sync();
}

#[pg_extern]
fn _pool_next(worker: Option<i32>) -> Option<JsonB> {
    pool::take_next(worker.unwrap_or(1), crate::catalog::today()).map(JsonB)
}

/// The upgrade to 0.12.0: tenant jobs of a fixed period become the tenant's own period in
/// the pool.
#[pg_extern]
fn _pool_adopt_jobs() -> JsonB {
    JsonB(pool::adopt_tenant_jobs())
}

/// The tenant job's body (`CALL _wh.run_scheduled`, which commits then fails the job when
/// a day failed).
#[pg_extern]
fn _scheduled_tenant(template_name: Option<&str>, tenant_name: Option<&str>) -> Out {
    let (tp, tn) = (template(template_name)?, tenant(tenant_name)?);
    Ok(JsonB(schedule::run_scheduled_tenant(
        &tp,
        &tn,
        crate::catalog::today(),
    )))
}

/// The yearly fold job's body (`CALL _wh.run_scheduled_fold`).
#[pg_extern]
fn _scheduled_fold(template_name: Option<&str>) -> Out {
    let tp = template(template_name)?;
    Ok(JsonB(schedule::run_scheduled_fold(
        &tp,
        crate::catalog::today(),
    )))
}

/// A committing fan-out (sql/wrappers.sql, `_fanout_committing`): begin (NULL when it
/// started, else the skipped result), one step per transaction, end.
#[pg_extern]
fn _fanout_begin(
    template_name: Option<&str>,
    target_date: Option<Date>,
    job: default!(Option<bool>, "false"),
) -> Result<Option<JsonB>, ErrorReport> {
    let tp = template(template_name)?;
    let d = day_of(target_date.ok_or(WhError::NullArgument {
        what: "target_date",
    })?)?;
    Ok(schedule::fanout_begin(&tp, d, job.unwrap_or(false)).map(JsonB))
}

#[pg_extern]
fn _fanout_step(
    template_name: Option<&str>,
    job: default!(Option<bool>, "false"),
) -> Result<bool, ErrorReport> {
    let tp = template(template_name)?;
    Ok(schedule::fanout_step(&tp, job.unwrap_or(false)))
}

#[pg_extern]
fn _fanout_end() -> JsonB {
    JsonB(crate::pipeline::fanout::end_committing().unwrap_or_else(|| {
        serde_json::json!({"operation": "update_all_tenants", "status": "skipped", "reason": "no fan-out running in this session"})
    }))
}

#[pg_extern]
fn _raise_if_failed(result: Option<JsonB>) {
    if let Some(r) = result {
        schedule::raise_if_failed(&r.0);
    }
}

// ---------------------------------------------------------------- tenant-scoped readers

/// Let `role_name` read one tenant: its schema, and only its rows of the public views.
#[pg_extern]
fn grant_tenant_reader(role_name: Option<&str>, tenant_name: Option<&str>) -> Out {
    let tn = tenant(tenant_name)?;
    Ok(JsonB(readers::grant_tenant_reader(role_name, &tn)))
}

#[pg_extern]
fn revoke_tenant_reader(role_name: Option<&str>, tenant_name: Option<&str>) -> Out {
    let tn = tenant(tenant_name)?;
    Ok(JsonB(readers::revoke_tenant_reader(role_name, &tn)))
}

// ---------------------------------------------------------------- 0.1.0 -> 0.2.0 storage (CALL _wh.migrate_storage())

#[pg_extern]
fn _migrate_plan(
) -> TableIterator<'static, (name!(template_name, String), name!(tenant_name, String))> {
    TableIterator::new(
        migrate::plan()
            .into_iter()
            .map(|(tp, tn)| (tp.to_string(), tn.to_string()))
            .collect::<Vec<_>>(),
    )
}

#[pg_extern]
fn _migrate_prepare(template_name: Option<&str>) -> Out {
    let tp = template(template_name)?;
    Ok(JsonB(migrate::prepare(&tp)))
}

#[pg_extern]
fn _migrate_tenant(template_name: Option<&str>, tenant_name: Option<&str>) -> Out {
    let (tp, tn) = (template(template_name)?, tenant(tenant_name)?);
    Ok(JsonB(migrate::migrate_tenant(&tp, &tn)))
}

// ---------------------------------------------------------------- adopting a seeds' warehouse (CALL _wh.adopt_seeds())

/// A seeds' template as `set_template`'s arguments, or why wh cannot take it.
#[pg_extern(immutable)]
fn _adopt_template(
    query: Option<&str>,
    column_definitions: Option<&str>,
    indexes: Option<Vec<String>>,
) -> JsonB {
    let ix = indexes.unwrap_or_default();
    JsonB(
        match crate::pure::seeds::adopt_template(
            query.unwrap_or(""),
            column_definitions.unwrap_or(""),
            &ix,
        ) {
            Ok(a) => serde_json::json!({
                "ok": true, "query": a.query, "time_column": a.time_column, "unique_key": a.unique_key,
                "indexes": a.indexes, "notes": a.notes,
            }),
            Err(reason) => serde_json::json!({"ok": false, "reason": reason}),
        },
    )
}

/// One tenant of one template: the seeds' rows copied, verified per day, registered.
#[pg_extern]
fn _adopt_days(template_name: Option<&str>, tenant_name: Option<&str>) -> Out {
    let (tp, tn) = (template(template_name)?, tenant(tenant_name)?);
    Ok(JsonB(crate::ops::adopt::adopt_days(&tp, &tn)))
}

/// A template table's row-level policies, by name, as `CREATE POLICY` statements (the
/// 0.5.0 → 0.6.0 upgrade script makes the missing ones with these on `public.<template>`,
/// where the table was until 0.8.0: one definition, `sql::policies_on`).
#[pg_extern(stable)]
fn _table_policies(
    template_name: Option<&str>,
) -> Result<
    TableIterator<'static, (name!(policy_name, String), name!(create_statement, String))>,
    ErrorReport,
> {
    let tn = crate::pure::names::TableNames::new(&template(template_name)?);
    let table = if crate::catalog::storage::relation_exists(&tn.table()) {
        tn.table()
    } else {
        tn.legacy_table()
    };
    Ok(TableIterator::new(
        crate::pure::sql::policies_on(&tn, &table).map(|(name, create)| (name.to_string(), create)),
    ))
}

/// What an adoption left to drop once the operator is satisfied, with the statements.
#[pg_extern]
fn seed_leftovers() -> TableIterator<'static, (name!(object, String), name!(drop_statement, String))>
{
    TableIterator::new(crate::ops::adopt::leftovers())
}

// ---------------------------------------------------------------- reconciliation

/// Compare `[start_date, end_date]` of a tenant with its source, per day (rows and a
/// checksum over every column, computed on the source); with `repair`, fetch the days that
/// differ again. Findings in `_wh.drift`.
#[pg_extern]
fn verify(
    template_name: Option<&str>,
    tenant_name: Option<&str>,
    start_date: Option<Date>,
    end_date: Option<Date>,
    repair: default!(Option<bool>, "false"),
    max_days: default!(Option<i32>, "3660"),
    allow_shrink: default!(Option<bool>, "false"),
) -> Out {
    let (tp, tn) = (template(template_name)?, tenant(tenant_name)?);
    let arg =
        |v: Option<Date>, what: &'static str| day_of(v.ok_or(WhError::NullArgument { what })?);
    let (s, e) = (arg(start_date, "start_date")?, arg(end_date, "end_date")?);
    let days = crate::pure::dates::window(
        Some(s),
        Some(e),
        max_days.unwrap_or(crate::pure::dates::DEFAULT_MAX_WINDOW_DAYS),
    )?;
    Ok(JsonB(crate::catalog::db::allowing_shrink(
        allow_shrink.unwrap_or(false),
        || crate::pipeline::verify::verify(&tp, &tn, &days, repair.unwrap_or(false)),
    )))
}

/// A pg_cron job `wh:<template>:verify` (weekly by default) that verifies every tenant's
/// last `lookback` (default 35 days, up to yesterday), repairing when asked.
#[pg_extern]
fn schedule_verify(
    template_name: Option<&str>,
    schedule: default!(Option<&str>, "'0 3 * * 0'"),
    lookback: default!(Option<Interval>, "'35 days'"),
    repair: default!(Option<bool>, "false"),
) -> Out {
    let tp = template(template_name)?;
    let s = schedule.ok_or(WhError::NullArgument { what: "schedule" })?;
    let lb = lookback.ok_or(WhError::NullArgument { what: "lookback" })?;
    Ok(JsonB(schedule::schedule_verify(
        &tp,
        s,
        lb,
        repair.unwrap_or(false),
    )))
}
