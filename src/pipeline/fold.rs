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
use crate::pure::template::AccessMethod;

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
    operation: &str,
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
            "{operation}: the copy of {} {} failed verification against the registry on {} tenant-day(s), e.g. {}; \
             everything was rolled back (_wh.verify(…, repair => true) mends a day that differs from its source)",
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
    // Writers that do not take the template's row (an adoption's copy) are held off the
    // partitions replaced, so every row they commit is in the copy or waits for the swap.
    let writers_out: Vec<String> = replaced
        .iter()
        .map(|p| sql::lock_writers_out(&tn.data(&p.name)))
        .collect();
    if !storage::try_ddl(&writers_out, 10) {
        raise(WhError::Busy(format!(
            "{} {year}: another session is writing into its partitions; try again",
            tn.template
        )));
    }
    phase("lock");
    let year_rel = tn.year(year);
    let aside = tn.aside(&year_rel);
    exec_all(&sql::create_partition_table(
        tn,
        &aside,
        &year_rel,
        &lt.t,
        lt.time_kind,
        (lo, hi),
        built_as,
    ));
    storage::distribute_aside(tn, &aside);
    let copied = crate::catalog::db::exec(
        &sql::copy_range(tn, &aside, &lt.t, lt.time_kind, lo, hi),
        &[],
    );
    phase("copy");
    let checked = check_copy(tn, &aside, lt, scope, (lo, hi), &r.operation);
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
    let access = storage::folded_access(template, year).unwrap_or(lt.fold_storage);
    if access == AccessMethod::Columnar {
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

/// The folded year `year` of a template's table, or 22023 naming it when it is not folded.
fn folded_year(tn: &TableNames, year: i32) -> Partition {
    let (lo, hi) = year_span(year);
    storage::partitions(tn)
        .into_iter()
        .find(|p| p.lo == lo && p.hi == hi)
        .unwrap_or_else(|| {
            raise(WhError::invalid(
                "year",
                format!(
                    "{}.{} does not exist: fold the year first",
                    storage::data_schema(),
                    tn.year(year)
                ),
            ))
        })
}

/// Build the folded year `part` again with access method `access`, in `moved_to` (None:
/// the tablespace it is in), with the indexes it has now, and swap it in, logged as
/// `operation`. The caller holds the template's row.
fn rebuild_year(
    lt: &LoadedTemplate,
    part: &Partition,
    access: AccessMethod,
    moved_to: Option<&str>,
    operation: &str,
) -> OpResult {
    let start = std::time::Instant::now();
    let tn = TableNames::new(&lt.t.name);
    let mut r = OpResult::new(
        operation,
        Some(lt.t.name.as_str()),
        None,
        Some(part.lo.iso()),
    );
    let year_rel = tn.data(&part.name);
    let tablespace = moved_to
        .map(str::to_string)
        .or_else(|| storage::tablespace_of(&year_rel));
    let storage = sql::Storage {
        tablespace: tablespace.as_deref(),
        access,
    };
    crate::catalog::db::without_jit(|| {
        build_and_swap(
            lt,
            &tn,
            part.lo.year(),
            std::slice::from_ref(part),
            None,
            Place {
                storage,
                indexes_of: &year_rel,
            },
            &mut r,
        )
    });
    r.ms = ms_since(start);
    log_run(&r);
    r
}

/// Move a folded year (table and indexes) to another tablespace: built aside there and
/// swapped in, so readers never wait on a table rewrite. Its storage stays as it is.
pub fn move_year(template: &CheckedName, year: i32, tablespace: &str) -> Value {
    let lt = catalog::load_template(template);
    let part = folded_year(&TableNames::new(template), year);
    lock_template_or_busy(template);
    rebuild_year(
        &lt,
        &part,
        part.access,
        Some(tablespace),
        "set_slice_tablespace",
    )
    .to_json()
}

/// A folded year built again as heap or columnar (`set_year_storage`), and recorded so:
/// a rebuild folds it so again, and the nightly maintenance leaves a heap year heap.
pub fn set_year_storage(template: &CheckedName, year: i32, access: AccessMethod) -> Value {
    if access == AccessMethod::Columnar {
        check_columnar_fits(template);
    }
    let lt = catalog::load_template(template);
    let tn = TableNames::new(template);
    let part = folded_year(&tn, year);
    lock_template_or_busy(template);
    storage::record_folded_year(template, year, access);
    if part.access == access {
        let r = OpResult::new(
            "set_year_storage",
            Some(template.as_str()),
            None,
            Some(part.lo.iso()),
        )
        .skipped(&format!("already {}", access.as_str()));
        log_run(&r);
        return r.to_json();
    }
    rebuild_year(&lt, &part, access, None, "set_year_storage").to_json()
}

/// Refuse columnar years where they cannot work: `citus_columnar` absent, or an index of
/// the table columnar cannot hold (only btree and hash: the index is named).
pub fn check_columnar_fits(template: &CheckedName) {
    storage::require_columnar("fold_storage => 'columnar'");
    let tn = TableNames::new(template);
    if !storage::relation_exists(&tn.table()) {
        return;
    }
    if let Some(index) = storage::index_columnar_refuses(&tn.table()) {
        raise(WhError::State(format!(
            "{template} has the index {index}; a columnar year holds only btree and hash indexes: \
             drop it (or take it out of the template's indexes) or keep fold_storage => 'heap'"
        )));
    }
}

/// Make the columnar year `part` heap again, in this transaction, so that rows in it can be
/// deleted or updated (columnar only appends): the template's row is taken (bounded; other
/// refreshes of the template finish first and skip as busy meanwhile, so no writer holds
/// the table while the swap waits for it), the year is copied aside as heap, checked
/// against the registry, indexed and swapped in as a fold swaps; readers wait only for the
/// swap. Its record keeps `columnar`: the nightly maintenance compresses it again.
pub fn make_rewritable(lt: &LoadedTemplate, part: &Partition) {
    if part.access.allows_delete() {
        return;
    }
    if !lock_template(&lt.t.name) {
        raise(WhError::Busy(format!(
            "{}.{} is columnar and must be rewritten as heap for this change, but the template is being refreshed or folded by another session; try again",
            storage::data_schema(),
            part.name
        )));
    }
    rebuild_year(lt, part, AccessMethod::Heap, None, "rewrite_columnar_year");
}

/// Before a DELETE or UPDATE of the rows of `tenant` (None: of any tenant) in `[lo, hi)`
/// of `part`: true when the statement may run there. A heap partition: always. A columnar
/// year holding such rows: rewritten as heap first (`make_rewritable`). A columnar year
/// holding none: false, the statement is skipped (columnar refuses it even when no row
/// matches).
pub fn prepare_change(
    lt: &LoadedTemplate,
    part: &Partition,
    tenant: Option<&CheckedName>,
    (lo, hi): (Day, Day),
) -> bool {
    if part.access.allows_delete() {
        return true;
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
    held
}

/// The nightly maintenance's part: every folded year recorded as columnar that a late change
/// rewrote as heap (its partition is heap now), compressed again (built aside and swapped, as
/// a fold), each in its own subtransaction: a failure is logged and the year stays heap
/// until the next night. A template being refreshed or folded is left for the next night.
pub fn compress_rewritten_years() -> Vec<Value> {
    storage::columnar_years()
        .into_iter()
        .filter_map(|(template, year)| {
            match crate::catalog::db::in_subtransaction(|| compress_year(&template, year)) {
                Ok(done) => done,
                Err(failure) => {
                    let r =
                        OpResult::new("compress_folded_year", Some(template.as_str()), None, None)
                            .failed(&failure.sqlstate, &failure.message);
                    log_run(&r);
                    Some(r.to_json())
                }
            }
        })
        .collect()
}

/// One year of `compress_rewritten_years`: None when it is columnar already (or gone).
fn compress_year(template: &CheckedName, year: i32) -> Option<Value> {
    let tn = TableNames::new(template);
    let (lo, hi) = year_span(year);
    let heap_year = || {
        storage::partitions(&tn)
            .into_iter()
            .find(|p| p.lo == lo && p.hi == hi && p.access == AccessMethod::Heap)
    };
    heap_year()?;
    if !lock_template(template) {
        let r = OpResult::new(
            "compress_folded_year",
            Some(template.as_str()),
            None,
            Some(lo.iso()),
        )
        .skipped("busy");
        log_run(&r);
        return Some(r.to_json());
    }
    // Decided again under the lock: retention may have dropped it, another night compressed it.
    let part = heap_year()?;
    let lt = catalog::load_template(template);
    Some(
        rebuild_year(
            &lt,
            &part,
            AccessMethod::Columnar,
            None,
            "compress_folded_year",
        )
        .to_json(),
    )
}
