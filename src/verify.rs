//! Reconciliation (`_wh.verify`): per day, the source's count of rows and checksum over
//! every column (computed on the source, one remote query per chunk of days) against the
//! warehouse's, computed on the stored rows. Days that differ are drifted; days the source
//! could not answer are unverifiable (never drifted). With `repair`, exactly the drifted
//! days are fetched again and checked once more. The last findings of each tenant-day
//! that is not in order are kept in `_wh.verify_findings` (`_wh.drift`).

use std::collections::BTreeMap;

use pgrx::datum::DatumWithOid;
use serde_json::{json, Value};

use crate::catalog::{self, log_run, pg_date};
use crate::dates::{self, Day, DEFAULT_CHUNK_DAYS};
use crate::db::{col, exec, ms_since, rows};
use crate::error::WhError;
use crate::names::{quote_ident, CheckedName, TableNames};
use crate::report::{summarize, OpResult};
use crate::{remote, sql};

/// Figures of one day: rows and checksum.
type Figures = BTreeMap<Day, (i64, String)>;

/// The `verify` operation on a chunk of days (inside `_wh.run_isolated`): per day, the
/// source's figures against the warehouse's.
pub fn compare(template: &CheckedName, tenant: &CheckedName, days: &[Day]) -> Value {
    let lt = catalog::load_template(template);
    let t = catalog::load_tenant(tenant);
    let tn = TableNames::new(template);
    let start = std::time::Instant::now();
    let query = match catalog::tenant_query(template, tenant) {
        Some(q) => lt.t.with_query(&q).unwrap_or_else(|e| {
            crate::error::raise(WhError::InvalidTemplate {
                template: template.to_string(),
                reason: e,
            })
        }),
        None => lt.t.clone(),
    };
    let conn = remote::conn_name("wh_v_", tenant);
    let deadline = remote::deadline_for(&t);
    let dbl = quote_ident(&catalog::dblink_schema());
    let got = format!(
        "SELECT * FROM {dbl}.dblink_get_result($1) AS t(wh_day date, n int8, checksum text)"
    );
    // Days fetched before a column was appended are compared on the columns they had.
    let mut source = Figures::new();
    for (known, group) in by_columns_known(&lt.t, template, tenant, days) {
        remote::send(&t, &conn, &sql::source_day_summary(&query, &group, known));
        let answer = remote::receive(&t, &conn, deadline, || {
            rows(&got, &[DatumWithOid::from(conn.as_str())], |r| {
                (
                    col::<pgrx::datum::Date>(r, "wh_day"),
                    col::<i64>(r, "n").unwrap_or(0),
                    col::<String>(r, "checksum").unwrap_or_default(),
                )
            })
        });
        source.extend(
            answer
                .into_iter()
                .filter_map(|(d, n, ck)| Some((catalog::day_of(d?).ok()?, (n, ck)))),
        );
    }
    let (lo, hi) = (days[0], days[days.len() - 1].succ());
    let stored = catalog::day_figures(
        &sql::stored_summary(&tn, &lt.t, lt.time_kind, lo, hi),
        &[DatumWithOid::from(tenant.as_str())],
    );
    let ms = ms_since(start) / days.len().max(1) as f64;
    let empty = (0, "0".to_string());
    let results: Vec<Value> = days
        .iter()
        .map(|d| {
            let s = source.get(d).unwrap_or(&empty);
            let w = stored.get(d).unwrap_or(&empty);
            let mut r = OpResult::new(
                "verify",
                Some(template.as_str()),
                Some(tenant.as_str()),
                Some(d.iso()),
            );
            r.ms = ms;
            r.rows = Some(s.0);
            r.detail("drifted", json!(s != w));
            r.detail("source", json!({"rows": s.0, "checksum": s.1}));
            r.detail("warehouse", json!({"rows": w.0, "checksum": w.1}));
            r.to_json()
        })
        .collect();
    summarize("verify", &results)
}

/// `days` grouped by how many of the template's columns each was fetched with (the
/// registry's `columns`; all for a day it does not hold).
fn by_columns_known(
    t: &crate::template::Template,
    template: &CheckedName,
    tenant: &CheckedName,
    days: &[Day],
) -> BTreeMap<usize, Vec<Day>> {
    let all = t.columns.len();
    let ds: Vec<pgrx::datum::Date> = days.iter().map(|d| pg_date(*d)).collect();
    let known: BTreeMap<Day, usize> = rows(
        "SELECT range_start, columns FROM _wh.slices WHERE template_name = $1 AND tenant_name = $2 \
         AND kind = 'day' AND range_start = ANY ($3::date[]) AND columns IS NOT NULL",
        &[
            DatumWithOid::from(template.as_str()),
            DatumWithOid::from(tenant.as_str()),
            DatumWithOid::from(ds),
        ],
        |r| {
            (
                col::<pgrx::datum::Date>(r, "range_start"),
                col::<i16>(r, "columns").unwrap_or(0),
            )
        },
    )
    .into_iter()
    .filter_map(|(d, n)| Some((catalog::day_of(d?).ok()?, (n.max(0) as usize).min(all))))
    .collect();
    let mut groups: BTreeMap<usize, Vec<Day>> = BTreeMap::new();
    for d in days {
        groups
            .entry(known.get(d).copied().unwrap_or(all))
            .or_default()
            .push(*d);
    }
    groups
}

fn drifted(r: &Value) -> bool {
    r.pointer("/details/drifted").and_then(Value::as_bool) == Some(true)
}

fn failed(r: &Value) -> bool {
    r.get("status").and_then(Value::as_str) == Some("failed")
}

/// Check `days` a chunk at a time, each chunk isolated (a source that fails makes its
/// days unverifiable, the others go on).
fn check(
    template: &CheckedName,
    tenant: &CheckedName,
    days: &[Day],
    progress: &crate::progress::Progress,
) -> Vec<Value> {
    crate::window::chunked(progress, days, |c| {
        crate::window::isolated_days(
            "verify",
            template,
            tenant,
            c,
            &json!({"operation": "verify"}),
        )
    })
}

/// Replace the findings of `days` with those of `results` that are not in order.
fn record(
    template: &CheckedName,
    tenant: &CheckedName,
    days: &[Day],
    results: &[Value],
    repaired: bool,
) {
    let ds: Vec<pgrx::datum::Date> = days.iter().map(|d| pg_date(*d)).collect();
    exec(
        "DELETE FROM _wh.verify_findings WHERE template_name = $1 AND tenant_name = $2 AND day = ANY ($3)",
        &[DatumWithOid::from(template.as_str()), DatumWithOid::from(tenant.as_str()), DatumWithOid::from(ds)],
    );
    for r in results.iter().filter(|r| drifted(r) || failed(r)) {
        let day = r
            .get("day")
            .and_then(Value::as_str)
            .and_then(|d| Day::parse(d).ok());
        let n = |p: &str| r.pointer(p).and_then(Value::as_i64);
        let s = |p: &str| r.pointer(p).and_then(Value::as_str).map(str::to_string);
        exec(
            "INSERT INTO _wh.verify_findings (template_name, tenant_name, day, status, source_rows, source_checksum, \
                                              warehouse_rows, warehouse_checksum, error, repair_tried) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                DatumWithOid::from(template.as_str()),
                DatumWithOid::from(tenant.as_str()),
                DatumWithOid::from(day.map(pg_date)),
                DatumWithOid::from(if failed(r) { "unverifiable" } else { "drifted" }),
                DatumWithOid::from(n("/details/source/rows")),
                DatumWithOid::from(s("/details/source/checksum")),
                DatumWithOid::from(n("/details/warehouse/rows")),
                DatumWithOid::from(s("/details/warehouse/checksum")),
                DatumWithOid::from(s("/error")),
                DatumWithOid::from(repaired),
            ],
        );
    }
}

fn day_list(results: &[Value], pick: impl Fn(&Value) -> bool) -> Vec<Day> {
    results
        .iter()
        .filter(|r| pick(r))
        .filter_map(|r| {
            r.get("day")
                .and_then(Value::as_str)
                .and_then(|d| Day::parse(d).ok())
        })
        .collect()
}

/// `_wh.verify`: compare `[start, end]` of a tenant with its source; with `repair`, fetch
/// the drifted days again and check them once more.
pub fn verify(template: &CheckedName, tenant: &CheckedName, days: &[Day], repair: bool) -> Value {
    let start = std::time::Instant::now();
    catalog::load_template(template).refuse_rollup("verify");
    catalog::load_tenant(tenant);
    let progress = crate::progress::begin(crate::progress::Op {
        operation: "verify",
        template: Some(template.as_str()),
        tenant: Some(tenant.as_str()),
        unit: "day",
        total: days.len() as i64,
    });
    let mut results = check(template, tenant, days, &progress);
    let drift = day_list(&results, drifted);
    let mut repaired = Vec::new();
    if repair && !drift.is_empty() {
        for c in dates::chunks(&drift, DEFAULT_CHUNK_DAYS) {
            crate::window::isolated_days(
                "refresh",
                template,
                tenant,
                &c,
                &json!({"operation": "verify_repair"}),
            );
        }
        let again = check(template, tenant, &drift, &progress);
        repaired = day_list(&again, |r| !drifted(r) && !failed(r));
        let fixed: std::collections::BTreeSet<String> = repaired.iter().map(|d| d.iso()).collect();
        for r in results.iter_mut() {
            if r.get("day")
                .and_then(Value::as_str)
                .is_some_and(|d| fixed.contains(d))
            {
                r["details"]["repaired"] = json!(true);
            }
        }
        record(
            template,
            tenant,
            days,
            &results
                .iter()
                .filter(|r| {
                    !r.pointer("/details/repaired")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                })
                .cloned()
                .collect::<Vec<_>>(),
            true,
        );
    } else {
        record(template, tenant, days, &results, false);
    }
    let listed = |pick: &dyn Fn(&Value) -> bool| -> Vec<Value> {
        results
            .iter()
            .filter(|r| pick(r))
            .map(|r| json!({"day": r["day"], "source": r.pointer("/details/source"), "warehouse": r.pointer("/details/warehouse"),
                            "error": r.get("error"), "repaired": r.pointer("/details/repaired").and_then(Value::as_bool).unwrap_or(false)}))
            .collect()
    };
    let drifted_days = listed(&drifted);
    let unverifiable = listed(&failed);
    let mut r = OpResult::new(
        "verify",
        Some(template.as_str()),
        Some(tenant.as_str()),
        days.first().map(|d| d.iso()),
    );
    r.ms = ms_since(start);
    r.rows = Some(drifted_days.len() as i64);
    r.detail("days_checked", json!(days.len()));
    r.detail(
        "in_order",
        json!(days.len() - drifted_days.len() - unverifiable.len()),
    );
    r.detail("drifted", json!(drifted_days));
    r.detail("unverifiable", json!(unverifiable));
    r.detail(
        "repaired",
        json!(repaired.iter().map(|d| d.iso()).collect::<Vec<_>>()),
    );
    log_run(&r);
    r.to_json()
}
