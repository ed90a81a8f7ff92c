//! Folding a finished year: its month partitions become one partition `<template>_YYYY`
//! shared by every tenant. **Build aside → verify → swap**: the year is copied into a
//! new table sorted by `(schema_name, time)`, every tenant-day in scope is checked
//! against the registry (row count and checksum), the table is indexed, and then one
//! short DDL step under wh's lock_timeout with retries drops the months and attaches
//! the year. Readers see the same rows before, during and after; refreshes of the
//! template wait for the fold (it holds the template's row FOR UPDATE).
//! Moving a folded year to another tablespace (tiering) is the same build and swap.

use std::collections::BTreeMap;

use pgrx::datum::DatumWithOid;
use serde_json::{json, Value};

use crate::catalog::db::pg_date;
use crate::catalog::db::{col, exec, exec_all, ms_since, rows};
use crate::catalog::storage::{self, ddl, Partition};
use crate::catalog::{self, log_run, LoadedTemplate};
use crate::pure::dates::{year_span, Day};
use crate::pure::error::{raise, WhError};
use crate::pure::names::{CheckedName, TableNames};
use crate::pure::report::OpResult;
use crate::pure::sql;

type Key = (String, Day);

/// Count and checksum per (tenant, day).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayFigures {
    pub n: i64,
    pub checksum: Option<String>,
}

/// The registry's figures for the days of `[lo, hi)` (one tenant, or every tenant).
pub fn registry_figures(
    template: &CheckedName,
    tenant: Option<&CheckedName>,
    lo: Day,
    hi: Day,
) -> BTreeMap<Key, DayFigures> {
    rows(
        "SELECT tenant_name, range_start, row_count, checksum FROM _wh.slices \
         WHERE template_name = $1 AND kind = 'day' AND ($2::text IS NULL OR tenant_name = $2) \
           AND range_start >= $3 AND range_start < $4",
        &[
            DatumWithOid::from(template.as_str()),
            DatumWithOid::from(tenant.map(|t| t.as_str())),
            DatumWithOid::from(pg_date(lo)),
            DatumWithOid::from(pg_date(hi)),
        ],
        |r| {
            let day = col::<pgrx::datum::Date>(r, "range_start")
                .and_then(|d| catalog::db::day_of(d).ok());
            (
                col::<String>(r, "tenant_name").unwrap_or_default(),
                day,
                DayFigures {
                    n: col::<i64>(r, "row_count").unwrap_or(0),
                    checksum: col::<String>(r, "checksum"),
                },
            )
        },
    )
    .into_iter()
    .filter_map(|(t, d, f)| d.map(|d| ((t, d), f)))
    .collect()
}

/// The figures of a relation holding `schema_name`, per (tenant, day) of `[lo, hi)`.
pub fn relation_figures(
    relation: &str,
    lt: &LoadedTemplate,
    lo: Day,
    hi: Day,
) -> BTreeMap<Key, DayFigures> {
    rows(
        &sql::tenant_day_summary(relation, &lt.t, lt.time_kind, lo, hi),
        &[],
        |r| {
            let day =
                col::<pgrx::datum::Date>(r, "wh_day").and_then(|d| catalog::db::day_of(d).ok());
            (
                col::<String>(r, "tenant").unwrap_or_default(),
                day,
                DayFigures {
                    n: col::<i64>(r, "n").unwrap_or(0),
                    checksum: col::<String>(r, "checksum"),
                },
            )
        },
    )
    .into_iter()
    .filter_map(|(t, d, f)| d.map(|d| ((t, d), f)))
    .collect()
}

/// Tenant-days whose figures differ: registry against the copy. A registry row without
/// a checksum (written before checksums existed) is compared by count alone; an empty
/// day has no rows in the copy. Rows of a tenant in scope on a day the registry does not
/// hold are a mismatch too.
pub fn mismatches(
    expected: &BTreeMap<Key, DayFigures>,
    got: &BTreeMap<Key, DayFigures>,
    scope: Option<&str>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (k, have) in got {
        if scope.is_none_or(|t| t == k.0) && !expected.contains_key(k) && have.n > 0 {
            out.push(format!(
                "{} {}: {} rows in the copy, no registry row",
                k.0, k.1, have.n
            ));
        }
    }
    for (k, want) in expected {
        let have = got.get(k).cloned().unwrap_or(DayFigures {
            n: 0,
            checksum: Some(crate::pure::sql::EMPTY_DAY_CHECKSUM.into()),
        });
        let sums_differ = match (&want.checksum, &have.checksum) {
            (Some(a), Some(b)) => want.n > 0 && a != b,
            _ => false,
        };
        if want.n != have.n || sums_differ {
            out.push(format!(
                "{} {}: {} rows in the registry, {} in the copy",
                k.0, k.1, want.n, have.n
            ));
        }
    }
    out
}

/// Sum of checksums, as text (each is a sum of 64-bit hashes: i128 holds any total).
fn total(figs: &BTreeMap<Key, DayFigures>, scope: &BTreeMap<Key, DayFigures>) -> (i64, String) {
    let mut n = 0i64;
    let mut sum = 0i128;
    for k in scope.keys() {
        if let Some(f) = figs.get(k) {
            n += f.n;
            sum += f
                .checksum
                .as_deref()
                .and_then(|c| c.parse::<i128>().ok())
                .unwrap_or(0);
        }
    }
    (n, sum.to_string())
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
    let expected = registry_figures(&tn.template, scope, lo, hi);
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
    let got = relation_figures(&tn.data(&aside), lt, lo, hi);
    let bad = mismatches(&expected, &got, scope.map(|t| t.as_str()));
    phase("verify");
    let (n_days, ck_days) = total(&expected, &expected);
    let (n_year, ck_year) = total(&got, &expected);
    if !bad.is_empty() {
        raise(WhError::State(format!(
            "fold of {} {year} failed verification on {} tenant-day(s), e.g. {}; everything was rolled back",
            tn.template,
            bad.len(),
            bad.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
        )));
    }
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
    r.rows = Some(n_year);
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
            "tenant_days": expected.len(),
            "rows_in_days": n_days, "rows_in_year": n_year,
            "checksum_days": ck_days, "checksum_year": ck_year,
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
    let held = registry_figures(template, tenant, lo, hi);
    if parts_now().is_empty() || held.is_empty() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatches_name_the_tenant_day() {
        let d = Day::parse("2024-03-01").unwrap();
        let f = |n, c: &str| DayFigures {
            n,
            checksum: Some(c.into()),
        };
        let mut want = BTreeMap::new();
        want.insert(("tenant_a".to_string(), d), f(3, "42"));
        want.insert(("tenant_a".to_string(), d.succ()), f(0, "0"));
        let mut got = BTreeMap::new();
        got.insert(("tenant_a".to_string(), d), f(3, "42"));
        assert!(mismatches(&want, &got, None).is_empty());
        got.insert(("tenant_a".to_string(), d), f(3, "41"));
        assert_eq!(
            mismatches(&want, &got, None),
            vec!["tenant_a 2024-03-01: 3 rows in the registry, 3 in the copy".to_string()]
        );
        want.insert(
            ("tenant_a".to_string(), d),
            DayFigures {
                n: 3,
                checksum: None,
            },
        );
        assert!(mismatches(&want, &got, None).is_empty());
        got.insert(("tenant_b".to_string(), d), f(2, "7"));
        assert_eq!(
            mismatches(&want, &got, None),
            vec!["tenant_b 2024-03-01: 2 rows in the copy, no registry row".to_string()]
        );
        assert!(mismatches(&want, &got, Some("tenant_a")).is_empty());
        assert_eq!(total(&got, &want), (3, "41".into()));
    }
}
