//! Folding a finished year: its month partitions become one partition `<template>_YYYY`
//! shared by every tenant. **Build aside → verify → swap**: the year is copied into a
//! new table sorted by `(schema_name, time)`, every tenant-day in scope is checked
//! against the registry (row count and checksum), the table is indexed, and then one
//! short DDL step under wh's lock_timeout with retries drops the months and attaches
//! the year. Readers see the same rows before, during and after; refreshes of the
//! template wait for the fold (it holds the template's row FOR UPDATE).
//! Moving a folded year to another tablespace (tiering) is the same build and swap.

use pgrx::datum::DatumWithOid;
use serde_json::{json, Value};

use crate::catalog::db::pg_date;
use crate::catalog::db::{col, exec, exec_all, ms_since, one, rows};
use crate::catalog::storage::{self, ddl, Partition};
use crate::catalog::{self, log_run, LoadedTemplate};
use crate::pure::dates::{year_span, Day};
use crate::pure::error::{raise, WhError};
use crate::pure::names::{CheckedName, TableNames};
use crate::pure::report::OpResult;
use crate::pure::sql;

/// What the check of a year copied aside found (`sql::fold_check`): the wrong tenant-days,
/// and the tenant-days in scope with their rows and checksum as registered and as copied.
struct Checked {
    bad: i64,
    tenant_days: i64,
    rows_in_days: i64,
    checksum_days: String,
    rows_in_year: i64,
    checksum_year: String,
}

/// The scope of a check (`$1`..`$4` of `sql::fold_check` and `sql::REGISTRY_HOLDS_DAYS`):
/// the template, one tenant or every tenant, the days `[lo, hi)`.
fn scope_args<'a>(
    template: &'a CheckedName,
    tenant: Option<&'a CheckedName>,
    lo: Day,
    hi: Day,
) -> Vec<DatumWithOid<'a>> {
    vec![
        DatumWithOid::from(template.as_str()),
        DatumWithOid::from(tenant.map(|t| t.as_str())),
        DatumWithOid::from(pg_date(lo)),
        DatumWithOid::from(pg_date(hi)),
    ]
}

/// Whether the registry holds a day of `[lo, hi)` (of one tenant, or of any).
fn registry_holds(template: &CheckedName, tenant: Option<&CheckedName>, lo: Day, hi: Day) -> bool {
    one::<bool>(
        sql::REGISTRY_HOLDS_DAYS,
        &scope_args(template, tenant, lo, hi),
    )
    .unwrap_or(false)
}

/// The copy `aside` of `[lo, hi)` checked against every registered tenant-day in scope,
/// in one query the server runs within work_mem; raised (everything rolled back) when a
/// day is wrong, naming the first three.
fn check_copy(
    tn: &TableNames,
    aside: &str,
    lt: &LoadedTemplate,
    scope: Option<&CheckedName>,
    (lo, hi): (Day, Day),
) -> Checked {
    let got = sql::tenant_day_summary(&tn.data(aside), &lt.t, lt.time_kind, lo, hi);
    let args = scope_args(&tn.template, scope, lo, hi);
    let checked = rows(&sql::fold_check(&got), &args, |r| Checked {
        bad: col::<i64>(r, "bad").unwrap_or(0),
        tenant_days: col::<i64>(r, "tenant_days").unwrap_or(0),
        rows_in_days: col::<i64>(r, "rows_in_days").unwrap_or(0),
        checksum_days: col::<String>(r, "checksum_days").unwrap_or_default(),
        rows_in_year: col::<i64>(r, "rows_in_year").unwrap_or(0),
        checksum_year: col::<String>(r, "checksum_year").unwrap_or_default(),
    })
    .into_iter()
    .next()
    .unwrap_or_else(|| raise(WhError::State("the fold's check returned no row".into())));
    if checked.bad > 0 {
        let examples: Vec<String> = rows(&sql::fold_check_examples(&got), &args, |r| {
            col::<String>(r, "what").unwrap_or_default()
        });
        raise(WhError::State(format!(
            "fold of {} {} failed verification on {} tenant-day(s), e.g. {}; everything was rolled back",
            tn.template,
            lo.year(),
            checked.bad,
            examples.join("; ")
        )));
    }
    checked
}

/// Run `stmts` with new relations going to `tablespace` (`default_tablespace`, for this
/// transaction only, then back to what it was).
fn in_tablespace(tablespace: Option<&str>, stmts: &[String]) {
    let Some(ts) = tablespace else {
        return exec_all(stmts);
    };
    let before = crate::catalog::db::one::<String>(
        "SELECT pg_catalog.current_setting('default_tablespace')",
        &[],
    )
    .unwrap_or_default();
    let set = |value: &str| {
        exec(
            "SELECT pg_catalog.set_config('default_tablespace', $1, true)",
            &[DatumWithOid::from(value)],
        )
    };
    set(ts);
    exec_all(stmts);
    set(&before);
}

/// Wait (bounded, retried) for the template's row FOR UPDATE: running refreshes finish,
/// new ones skip as busy until this transaction ends. False when it stayed taken.
pub fn lock_template(template: &CheckedName) -> bool {
    storage::try_ddl(&[sql::lock_template_row(template)], 10)
}

/// `lock_template`, for a change that cannot be skipped: busy (55P03) when it stayed taken.
pub fn lock_template_or_busy(template: &CheckedName) {
    if !lock_template(template) {
        raise(WhError::Busy(format!(
            "template {template} is being refreshed, folded or changed right now and stayed so for 10 s; try again"
        )));
    }
}

/// Where a year is built: its tablespace, and the relation whose indexes it gets.
struct Place<'a> {
    tablespace: Option<&'a str>,
    indexes_of: &'a str,
}

/// Build `[lo, hi)` aside as one partition (in `tablespace`), verify it against the
/// registry for `scope`, index it and swap it in for the partitions it replaces.
fn build_and_swap(
    lt: &LoadedTemplate,
    tn: &TableNames,
    year: i32,
    replaced: &[Partition],
    scope: Option<&CheckedName>,
    place: Place,
    r: &mut OpResult,
) {
    let Place {
        tablespace,
        indexes_of: shapes_of,
    } = place;
    let (lo, hi) = year_span(year);
    let mut phases = serde_json::Map::new();
    let mut mark = std::time::Instant::now();
    let mut phase = |name: &str| {
        phases.insert(name.to_string(), json!(ms_since(mark)));
        mark = std::time::Instant::now();
    };
    phase("lock");
    let year_rel = tn.year(year);
    let aside = tn.aside(&year_rel);
    exec_all(&sql::create_partition_table(
        tn,
        &aside,
        &lt.t,
        lt.time_kind,
        lo,
        hi,
        tablespace,
    ));
    let copied = crate::catalog::db::exec(
        &sql::copy_range(tn, &aside, &lt.t, lt.time_kind, lo, hi),
        &[],
    );
    phase("copy");
    let checked = check_copy(tn, &aside, lt, scope, (lo, hi));
    phase("verify");
    in_tablespace(
        tablespace,
        &sql::aside_indexes(tn, &aside, &storage::index_shapes(shapes_of)),
    );
    phase("indexes");
    exec(&sql::analyze(&tn.data(&aside)), &[]);
    phase("analyze");
    let old: Vec<String> = replaced.iter().map(|p| p.name.clone()).collect();
    let mut swap = vec![sql::lock_exclusive(tn)];
    if !old.is_empty() {
        swap.push(sql::drop_partitions(tn, &old));
    }
    swap.extend(storage::swap_in(tn, lt, &aside, &year_rel, (lo, hi)));
    ddl(&swap);
    phase("swap");
    r.rows = Some(checked.rows_in_year);
    r.detail(
        "partition",
        json!(format!("{}.{year_rel}", storage::data_schema())),
    );
    r.detail("replaced", json!(old));
    r.detail("rows_copied", json!(copied));
    r.detail("tablespace", json!(tablespace));
    r.detail(
        "validation",
        json!({
            "tenant_days": checked.tenant_days,
            "rows_in_days": checked.rows_in_days, "rows_in_year": checked.rows_in_year,
            "checksum_days": checked.checksum_days, "checksum_year": checked.checksum_year,
            "ok": true,
        }),
    );
    r.detail("phase_ms", Value::Object(phases));
}

pub fn fold_year(
    template: &CheckedName,
    tenant: Option<&CheckedName>,
    year: i32,
    today: Day,
) -> OpResult {
    crate::catalog::db::without_jit(|| fold_year_inner(template, tenant, year, today))
}

fn fold_year_inner(
    template: &CheckedName,
    tenant: Option<&CheckedName>,
    year: i32,
    today: Day,
) -> OpResult {
    let start = std::time::Instant::now();
    if year >= today.year() {
        raise(WhError::invalid(
            "year",
            format!("{year} is not finished (today is {today} UTC); only past years can be folded"),
        ));
    }
    let lt = catalog::load_template(template);
    let tn = TableNames::new(template);
    let (lo, hi) = year_span(year);
    let mut r = OpResult::new(
        "create_combined_table_by_year",
        Some(template.as_str()),
        tenant.map(|t| t.as_str()),
        Some(lo.iso()),
    );
    r.detail("year", json!(year));
    let parts_now = || -> Vec<Partition> {
        storage::partitions(&tn)
            .into_iter()
            .filter(|p| p.lo >= lo && p.hi <= hi)
            .collect()
    };
    if parts_now().is_empty() || !registry_holds(template, tenant, lo, hi) {
        let who = tenant
            .map(|t| t.to_string())
            .unwrap_or_else(|| "any tenant".into());
        raise(WhError::invalid(
            "year",
            format!("{template} has no day slices of {who} in {year}; nothing to fold"),
        ));
    }
    if !lock_template(template) {
        let r = r.skipped("busy");
        log_run(&r);
        return r;
    }
    // Decided under the lock: another fold may have finished meanwhile.
    let parts = parts_now();
    if parts.iter().any(|p| p.lo == lo && p.hi == hi) {
        let r = r.skipped("already folded");
        log_run(&r);
        return r;
    }
    build_and_swap(
        &lt,
        &tn,
        year,
        &parts,
        tenant,
        // The indexes the table has (ATTACH matches them), whatever the template says now.
        Place {
            tablespace: lt.year_tablespace.as_deref(),
            indexes_of: &tn.table(),
        },
        &mut r,
    );
    r.detail("months_folded", json!(parts.len()));
    r.ms = ms_since(start);
    log_run(&r);
    r
}

/// Move a folded year (table and indexes) to another tablespace: built aside there and
/// swapped in, so readers never wait on a table rewrite.
pub fn move_year(template: &CheckedName, year: i32, tablespace: &str) -> Value {
    crate::catalog::db::without_jit(|| {
        let start = std::time::Instant::now();
        let lt = catalog::load_template(template);
        let tn = TableNames::new(template);
        let (lo, hi) = year_span(year);
        let Some(part) = storage::partitions(&tn)
            .into_iter()
            .find(|p| p.lo == lo && p.hi == hi)
        else {
            raise(WhError::invalid(
                "year",
                format!(
                    "{}.{} does not exist: fold the year first",
                    storage::data_schema(),
                    tn.year(year)
                ),
            ))
        };
        let mut r = OpResult::new(
            "set_slice_tablespace",
            Some(template.as_str()),
            None,
            Some(lo.iso()),
        );
        lock_template_or_busy(template);
        // The indexes the year has now, moved with it.
        let year_rel = tn.data(&part.name);
        build_and_swap(
            &lt,
            &tn,
            year,
            &[part],
            None,
            Place {
                tablespace: Some(tablespace),
                indexes_of: &year_rel,
            },
            &mut r,
        );
        r.ms = ms_since(start);
        log_run(&r);
        r.to_json()
    })
}
