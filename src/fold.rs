//! Folding a finished year: every day slice of the year becomes one partition
//! `<template>_YYYY`, in one transaction, validated (row count and a checksum of the
//! unique key) before the days are dropped. Readers see the same rows before, during
//! and after: the copy runs under ordinary locks, the swap is a few catalog changes.

use pgrx::datum::DatumWithOid;
use serde_json::{json, Value};

use crate::catalog::{self, log_run, LoadedTemplate};
use crate::dates::Day;
use crate::db::{col, exec, exec_all, ms_since, one, rows};
use crate::error::{raise, WhError};
use crate::names::{CheckedName, SliceNames};
use crate::report::OpResult;
use crate::slice::{is_attached, lock_day};
use crate::sql;
use crate::views;

/// The day partitions attached to the tenant's relation inside `[lo, hi)`.
pub fn attached_days(names: &SliceNames, lo: Day, hi: Day) -> Vec<(String, Day)> {
    rows(
        "SELECT c.relname::text AS relname FROM pg_catalog.pg_inherits i \
         JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = pg_catalog.to_regclass($1) \
           AND c.relname ~ ('^' || $2 || '_[0-9]{4}_[0-9]{2}_[0-9]{2}$') ORDER BY 1",
        &[DatumWithOid::from(names.parent().as_str()), DatumWithOid::from(names.template.as_str())],
        |r| col::<String>(r, "relname").unwrap_or_default(),
    )
    .into_iter()
    .filter_map(|rel| match views::slice_range(names, &rel) {
        Some((d, _, "day")) if d >= lo && d < hi => Some((rel, d)),
        _ => None,
    })
    .collect()
}

/// Swap a built, indexed year table (`aside`) in: drop the year's day partitions (and a
/// previous year partition) in one statement, rename, attach, and drop the days' registry
/// rows. Shared by the fold and the year rebuild; runs in the caller's transaction.
pub fn swap_in_year(names: &SliceNames, lt: &LoadedTemplate, aside: &str, year_rel: &str, lo: Day, hi: Day) {
    let mut old: Vec<String> = attached_days(names, lo, hi).into_iter().map(|(rel, _)| rel).collect();
    if is_attached(names, year_rel) {
        old.push(year_rel.to_string());
    }
    if !old.is_empty() {
        exec(&sql::drop_tables(names, &old), &[]);
    }
    exec(&sql::rename_table(names, aside, year_rel), &[]);
    exec_all(&sql::rename_indexes(names, aside, year_rel, &lt.t));
    exec(&sql::attach(names, year_rel, lt.time_kind, lo, hi), &[]);
    exec(
        "DELETE FROM _wh.slices WHERE template_name = $1 AND tenant_name = $2 AND kind = 'day' \
         AND range_start >= $3 AND range_start < $4",
        &[
            DatumWithOid::from(names.template.as_str()),
            DatumWithOid::from(names.schema.as_str()),
            DatumWithOid::from(catalog::pg_date(lo)),
            DatumWithOid::from(catalog::pg_date(hi)),
        ],
    );
}

/// Count and checksum of `[lo, hi)` in a qualified relation.
pub fn measure(relation_sql: &str, lt: &LoadedTemplate, lo: Day, hi: Day) -> (i64, String) {
    let q = sql::count_and_checksum(relation_sql, &lt.t, lt.time_kind, lo, hi);
    rows(&q, &[], |r| (col::<i64>(r, "n").unwrap_or(0), col::<String>(r, "checksum").unwrap_or_default()))
        .into_iter()
        .next()
        .unwrap_or((0, "0".into()))
}

/// Take the fold lock of (template, tenant, year) and every day lock of the year.
fn lock_year(names: &SliceNames, lo: Day, hi: Day) -> bool {
    let key = format!("wh:fold:{}:{}", names.template, names.schema);
    let got = one::<bool>(
        "SELECT pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext($1), $2)",
        &[DatumWithOid::from(key.as_str()), DatumWithOid::from(lo.year())],
    )
    .unwrap_or(false);
    got && (lo.0..hi.0).all(|d| lock_day(names, Day(d), false))
}

pub fn fold_year(template: &CheckedName, tenant: &CheckedName, year: i32, today: Day) -> Value {
    crate::db::without_jit(|| fold_year_inner(template, tenant, year, today))
}

fn fold_year_inner(template: &CheckedName, tenant: &CheckedName, year: i32, today: Day) -> Value {
    let start = std::time::Instant::now();
    if year >= today.year() {
        raise(WhError::invalid(
            "year",
            format!("{year} is not finished (today is {today} UTC); only past years can be folded"),
        ));
    }
    let lt = catalog::load_template(template);
    let names = SliceNames::new(tenant, template);
    if !views::relation_exists(&names.parent()) {
        raise(WhError::State(format!("{tenant}.{template} does not exist; there is nothing to fold")));
    }
    let (lo, hi) = (
        Day::first_of_year(year).unwrap_or_else(|e| raise(e)),
        Day::first_of_year(year + 1).unwrap_or_else(|e| raise(e)),
    );
    let year_rel = names.year(year);
    let mut r = OpResult::new("create_combined_table_by_year", Some(template.as_str()), Some(tenant.as_str()), Some(lo.iso()));
    r.detail("year", json!(year));
    if is_attached(&names, &year_rel) {
        let r = r.skipped("already folded");
        log_run(&r);
        return r.to_json();
    }
    let days = attached_days(&names, lo, hi);
    if days.is_empty() {
        raise(WhError::invalid("year", format!("{tenant}.{template} has no day slices in {year}; nothing to fold")));
    }
    if !lock_year(&names, lo, hi) {
        let r = r.skipped("busy");
        log_run(&r);
        return r.to_json();
    }

    let mut phases = serde_json::Map::new();
    let mut mark = std::time::Instant::now();
    let mut phase = |name: &str| {
        phases.insert(name.to_string(), json!(ms_since(mark)));
        mark = std::time::Instant::now();
    };
    phase("lock");
    let (n_before, ck_before) = measure(&names.parent(), &lt, lo, hi);
    phase("measure_days");
    let aside = format!("{year_rel}_new");
    let tablespace = lt.year_tablespace.as_deref();
    exec(&sql::create_like_parent_in(&names, &aside, tablespace), &[]);
    exec(&sql::owner_to_admin("TABLE", &names.qualified(&aside)), &[]);
    // The bounds go on while the table is empty: rows are checked as they arrive, and
    // the attach below needs no validation scan.
    exec(&sql::add_bounds(&names, &aside, &sql::bounds_constraint_name(&year_rel), &lt.t, lt.time_kind, lo, hi), &[]);
    // One pass copies the year and measures what was copied.
    let (n_after, ck_after) = rows(&sql::copy_and_measure(&names, &aside, &lt.t, lt.time_kind, lo, hi), &[], |r| {
        (col::<i64>(r, "n").unwrap_or(0), col::<String>(r, "checksum").unwrap_or_default())
    })
    .into_iter()
    .next()
    .unwrap_or((0, "0".into()));
    phase("copy_and_measure");
    let validation = json!({
        "rows_in_days": n_before, "rows_in_year": n_after,
        "checksum_days": ck_before, "checksum_year": ck_after,
        "ok": n_before == n_after && ck_before == ck_after,
    });
    if n_before != n_after || ck_before != ck_after {
        raise(WhError::State(format!(
            "fold of {tenant}.{template} {year} failed validation ({n_before} rows / checksum {ck_before} in the days, \
             {n_after} / {ck_after} in the year); everything was rolled back"
        )));
    }
    exec_all(&sql::create_indexes_in(&names, &aside, &lt.t, tablespace));
    phase("indexes");
    exec(&sql::analyze(&names, &aside), &[]);
    phase("analyze");

    swap_in_year(&names, &lt, &aside, &year_rel, lo, hi);
    phase("swap");
    r.rows = Some(n_after);
    r.ms = ms_since(start);
    catalog::register_slice(&names, &year_rel, "year", lo, hi, n_after, r.ms);
    r.detail("slice", json!(format!("{tenant}.{year_rel}")));
    r.detail("days_folded", json!(days.len()));
    r.detail("tablespace", json!(tablespace));
    r.detail("validation", validation);
    r.detail("phase_ms", serde_json::Value::Object(phases));
    log_run(&r);
    r.to_json()
}
