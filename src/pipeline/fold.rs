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
use crate::pure::template::YearStorage;

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

/// Where a year is built: its tablespace and access method, and the relation whose
/// indexes it gets.
struct Place<'a> {
    storage: sql::Storage<'a>,
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
        storage: built_as,
        indexes_of: shapes_of,
    } = place;
    let tablespace = built_as.tablespace;
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
        built_as,
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
    r.detail("storage", json!(built_as.access.as_str()));
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
    // A year folded before (a rebuild brought it back in months) is folded as it was.
    let access = storage::folded_storage(template, year).unwrap_or(lt.fold_storage);
    if access == YearStorage::Columnar {
        storage::require_columnar("a columnar fold (fold_storage => 'columnar')");
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
            storage: sql::Storage {
                tablespace: lt.year_tablespace.as_deref(),
                access,
            },
            indexes_of: &tn.table(),
        },
        &mut r,
    );
    storage::record_folded_year(template, year, access);
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
            std::slice::from_ref(&part),
            None,
            Place {
                storage: sql::Storage {
                    tablespace: Some(tablespace),
                    access: part.storage,
                },
                indexes_of: &year_rel,
            },
            &mut r,
        );
        r.ms = ms_since(start);
        log_run(&r);
        r.to_json()
    })
}

/// Make the columnar year `part` heap again, in this transaction, so that rows in it can be
/// deleted or updated (columnar only appends): other writers of the year are held off (SHARE
/// ROW EXCLUSIVE on it, bounded; readers go on), the year is copied aside as heap, checked
/// against the registry, indexed and swapped in as a fold swaps. Its record keeps
/// `columnar`: the nightly maintenance compresses it again. Nothing to do for a heap year.
pub fn make_rewritable(lt: &LoadedTemplate, part: &Partition) {
    if part.storage.rewrites_in_place() {
        return;
    }
    let tn = TableNames::new(&lt.t.name);
    if !storage::try_ddl(&[sql::lock_writers_out(&tn.data(&part.name))], 10) {
        raise(WhError::Busy(format!(
            "{}.{} is columnar and being written by another session; the change needs it rewritten as heap: try again",
            storage::data_schema(),
            part.name
        )));
    }
    let mut r = OpResult::new(
        "rewrite_columnar_year",
        Some(lt.t.name.as_str()),
        None,
        Some(part.lo.iso()),
    );
    let start = std::time::Instant::now();
    let year_rel = tn.data(&part.name);
    build_and_swap(
        lt,
        &tn,
        part.lo.year(),
        std::slice::from_ref(part),
        None,
        Place {
            storage: sql::Storage {
                tablespace: storage::tablespace_of(&year_rel).as_deref(),
                access: YearStorage::Heap,
            },
            indexes_of: &year_rel,
        },
        &mut r,
    );
    r.ms = ms_since(start);
    log_run(&r);
}

/// `make_rewritable` when `part` is columnar and holds a row of `tenant` (None: of any
/// tenant) in `[lo, hi)`: what a DELETE or UPDATE of those rows needs first.
pub fn make_rewritable_if_held(
    lt: &LoadedTemplate,
    part: &Partition,
    tenant: Option<&CheckedName>,
    (lo, hi): (Day, Day),
) {
    if part.storage.rewrites_in_place() {
        return;
    }
    let tn = TableNames::new(&lt.t.name);
    let held = one::<bool>(
        &sql::rows_held(&tn, &lt.t, lt.time_kind, lo.max(part.lo), hi.min(part.hi)),
        &[DatumWithOid::from(tenant.map(|t| t.as_str()))],
    )
    .unwrap_or(false);
    if held {
        make_rewritable(lt, part);
    }
}

/// The nightly maintenance's part: every folded year recorded as columnar that a late change
/// rewrote as heap (its partition is heap now), compressed again (built aside and swapped, as a fold). A template being
/// refreshed or folded is left for the next night.
pub fn compress_rewritten_years() -> Vec<Value> {
    let mut out = Vec::new();
    for (template, year) in storage::columnar_years() {
        let lt = catalog::load_template(&template);
        let tn = TableNames::new(&template);
        let (lo, hi) = year_span(year);
        let Some(part) = storage::partitions(&tn)
            .into_iter()
            .find(|p| p.lo == lo && p.hi == hi && p.storage == YearStorage::Heap)
        else {
            continue;
        };
        let mut r = OpResult::new(
            "compress_folded_year",
            Some(template.as_str()),
            None,
            Some(lo.iso()),
        );
        if !lock_template(&template) {
            out.push(r.skipped("busy").to_json());
            continue;
        }
        let start = std::time::Instant::now();
        let year_rel = tn.data(&part.name);
        crate::catalog::db::without_jit(|| {
            build_and_swap(
                &lt,
                &tn,
                year,
                std::slice::from_ref(&part),
                None,
                Place {
                    storage: sql::Storage {
                        tablespace: storage::tablespace_of(&year_rel).as_deref(),
                        access: YearStorage::Columnar,
                    },
                    indexes_of: &year_rel,
                },
                &mut r,
            )
        });
        r.ms = ms_since(start);
        log_run(&r);
        out.push(r.to_json());
    }
    out
}
