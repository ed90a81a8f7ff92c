//! Reconciliation (`_wh.verify`): per day, the source's count of rows and checksum over
//! every column (computed on the source, one remote query per chunk of days) against the
//! warehouse's, computed on the stored rows. Days that differ are drifted; days the source
//! could not answer are unverifiable (never drifted). With `repair`, exactly the drifted
//! days are fetched again and checked once more. The last findings of each tenant-day
//! that is not in order are kept in `_wh.verify_findings` (`_wh.drift`).

use pgrx::datum::DatumWithOid;
use serde_json::{json, Value};

use crate::catalog::db::pg_date;
use crate::catalog::db::{exec, ms_since};
use crate::catalog::{self, log_run};
use crate::pipeline::isolate::isolated_days;
use crate::pipeline::progress::chunked;
use crate::pipeline::unit::{Op, Unit};
use crate::pure::dates::{self, Day, DEFAULT_CHUNK_DAYS};
use crate::pure::names::CheckedName;
use crate::pure::report::{OpResult, Status};

fn drifted(r: &OpResult) -> bool {
    r.details.get("drifted").and_then(Value::as_bool) == Some(true)
}

fn failed(r: &OpResult) -> bool {
    r.status == Status::Failed
}

fn was_repaired(r: &OpResult) -> bool {
    r.details.get("repaired").and_then(Value::as_bool) == Some(true)
}

/// Check `days` a chunk at a time, each chunk isolated (a source that fails makes its
/// days unverifiable, the others go on).
fn check(
    template: &CheckedName,
    tenant: &CheckedName,
    days: &[Day],
    progress: &crate::pipeline::progress::Progress,
) -> Vec<OpResult> {
    chunked(progress, days, |c| {
        isolated_days(&Unit::new(Op::Verify, template, tenant, c, "verify"))
    })
}

/// Replace the findings of `days` with those of `results` that are not in order.
fn record(
    template: &CheckedName,
    tenant: &CheckedName,
    days: &[Day],
    results: &[&OpResult],
    repair_tried: bool,
) {
    let ds: Vec<pgrx::datum::Date> = days.iter().map(|d| pg_date(*d)).collect();
    exec(
        "DELETE FROM _wh.verify_findings WHERE template_name = $1 AND tenant_name = $2 AND day = ANY ($3)",
        &[DatumWithOid::from(template.as_str()), DatumWithOid::from(tenant.as_str()), DatumWithOid::from(ds)],
    );
    for r in results.iter().filter(|r| drifted(r) || failed(r)) {
        let day = r.day.as_deref().and_then(|d| Day::parse(d).ok());
        let n = |p: &str| r.details.pointer(p).and_then(Value::as_i64);
        let s = |p: &str| {
            r.details
                .pointer(p)
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        exec(
            "INSERT INTO _wh.verify_findings (template_name, tenant_name, day, status, source_rows, source_checksum, \
                                              warehouse_rows, warehouse_checksum, error, repair_tried) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                DatumWithOid::from(template.as_str()),
                DatumWithOid::from(tenant.as_str()),
                DatumWithOid::from(day.map(pg_date)),
                DatumWithOid::from(if failed(r) { "unverifiable" } else { "drifted" }),
                DatumWithOid::from(n("/source/rows")),
                DatumWithOid::from(s("/source/checksum")),
                DatumWithOid::from(n("/warehouse/rows")),
                DatumWithOid::from(s("/warehouse/checksum")),
                DatumWithOid::from(r.error.as_deref()),
                DatumWithOid::from(repair_tried),
            ],
        );
    }
}

fn day_list(results: &[OpResult], pick: impl Fn(&OpResult) -> bool) -> Vec<Day> {
    results
        .iter()
        .filter(|r| pick(r))
        .filter_map(|r| r.day.as_deref().and_then(|d| Day::parse(d).ok()))
        .collect()
}

/// `_wh.verify`: compare `[start, end]` of a tenant with its source; with `repair`, fetch
/// the drifted days again and check them once more.
pub fn verify(template: &CheckedName, tenant: &CheckedName, days: &[Day], repair: bool) -> Value {
    let start = std::time::Instant::now();
    catalog::load_template(template).refuse_rollup("verify");
    catalog::load_tenant(tenant);
    let progress = crate::pipeline::progress::begin(crate::pipeline::progress::Op {
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
            isolated_days(&Unit::new(
                Op::Refresh,
                template,
                tenant,
                &c,
                "verify_repair",
            ));
        }
        let again = check(template, tenant, &drift, &progress);
        repaired = day_list(&again, |r| !drifted(r) && !failed(r));
        let fixed: std::collections::BTreeSet<String> = repaired.iter().map(|d| d.iso()).collect();
        for r in results.iter_mut() {
            if r.day.as_deref().is_some_and(|d| fixed.contains(d)) {
                r.detail("repaired", json!(true));
            }
        }
        let left: Vec<&OpResult> = results.iter().filter(|r| !was_repaired(r)).collect();
        record(template, tenant, days, &left, true);
    } else {
        record(
            template,
            tenant,
            days,
            &results.iter().collect::<Vec<_>>(),
            false,
        );
    }
    let listed = |pick: &dyn Fn(&OpResult) -> bool| -> Vec<Value> {
        results
            .iter()
            .filter(|r| pick(r))
            .map(|r| json!({"day": r.day, "source": r.details.get("source"), "warehouse": r.details.get("warehouse"),
                            "error": r.error, "repaired": was_repaired(r)}))
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
