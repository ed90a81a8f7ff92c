//! Storage 0.1.0 → 0.2.0 (`CALL _wh.migrate_storage()`): every tenant's day and year
//! partitions of `<tenant>.<template>` move into `public.<template>` without touching
//! the sources. Per template, the old `public.<template>` view is dropped and the old
//! tenant tables are set aside as `<tenant>.<template>_v010`; per tenant, in one
//! transaction, the rows are copied, verified per day (count and checksum over every
//! column), the registry is rewritten as tenant-days, and only then is the old table
//! dropped and the tenant's view created. A rerun continues with what is left.

use std::collections::{BTreeMap, BTreeSet};

use pgrx::datum::DatumWithOid;
use serde_json::{json, Value};

use crate::catalog::db::{col, exec, ms_since, one, rows};
use crate::catalog::storage;
use crate::catalog::{self, log_run};
use crate::pure::dates::Day;
use crate::pure::error::{raise, WhError};
use crate::pure::names::{CheckedName, SliceNames, TableNames};
use crate::pure::report::OpResult;
use crate::pure::sql;

/// The relkind of a relation ('p', 'r', 'v'), if it exists.
fn relkind(qualified: &str) -> Option<String> {
    one::<String>(
        "SELECT c.relkind::text FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass($1)",
        &[DatumWithOid::from(qualified)],
    )
}

/// `<tenant>.<template>_v010`: a 0.1.0 tenant table set aside for migration.
fn old_name(names: &SliceNames) -> String {
    names.qualified(&format!("{}_v010", names.template))
}

/// Does this tenant still hold 0.1.0 storage of the template?
fn has_old(names: &SliceNames) -> bool {
    relkind(&names.view()).as_deref() == Some("p") || relkind(&old_name(names)).is_some()
}

/// Every (template, tenant) that still holds 0.1.0 storage.
pub fn plan() -> Vec<(CheckedName, CheckedName)> {
    rows(
        "SELECT m.template_name, s.nspname::text AS tenant_name FROM _wh.mv_templates m \
         CROSS JOIN pg_catalog.pg_namespace s \
         WHERE s.nspname ~ '^[a-z_][a-z0-9_]*$' AND s.nspname NOT IN ('public', '_wh', '_wh_data', 'cron') \
           AND s.nspname !~ '^pg_' AND pg_catalog.has_schema_privilege(s.oid, 'USAGE') ORDER BY 1, 2",
        &[],
        |r| (col::<String>(r, "template_name").unwrap_or_default(), col::<String>(r, "tenant_name").unwrap_or_default()),
    )
    .into_iter()
    .filter_map(|(tp, tn)| Some((CheckedName::template(Some(&tp)).ok()?, CheckedName::tenant(Some(&tn)).ok()?)))
    .filter(|(tp, tn)| has_old(&SliceNames::new(tn, tp)))
    .collect()
}

/// Per template, once: drop the old UNION ALL view, set the old tenant tables aside,
/// create the new table.
pub fn prepare(template: &CheckedName) -> Value {
    let lt = catalog::load_template(template);
    let tn = TableNames::new(template);
    // DDL on relations readers use: each waits at most wh's lock_timeout per try.
    // 0.1.0's UNION ALL view had the name the readers' view takes now.
    if relkind(&tn.table()).is_none() && relkind(&tn.reader_view()).as_deref() == Some("v") {
        storage::ddl(&[sql::drop_view(&tn.reader_view())]);
    }
    let mut aside = Vec::new();
    for (tp, tenant) in plan().into_iter().filter(|(tp, _)| tp == template) {
        let names = SliceNames::new(&tenant, &tp);
        if relkind(&names.view()).as_deref() == Some("p") {
            storage::ddl(&[sql::rename_relation(&names.view(), &format!("{}_v010", tp))]);
            aside.push(tenant.to_string());
        }
    }
    let created = storage::ensure_table(&lt);
    json!({"template": template.as_str(), "table_created": created, "set_aside": aside})
}

/// Day figures of a relation without `schema_name` (a 0.1.0 tenant table).
fn old_figures(old: &str, lt: &catalog::LoadedTemplate) -> BTreeMap<Day, (i64, String)> {
    catalog::day_figures(&sql::day_summary(old, &lt.t, lt.time_kind), &[])
}

/// Day figures (rows, checksum) of a tenant's rows in another relation.
pub type DayFigures = BTreeMap<Day, (i64, String)>;

/// Copy `old` (a relation with the template's columns, no `schema_name`) into the table as
/// `tenant`, and check every day's rows and checksum against `before` (the figures of
/// `old`); a difference raises, naming up to three days (`what` says where they came from).
/// Returns the rows copied.
pub fn copy_verified(
    lt: &catalog::LoadedTemplate,
    old: &str,
    tenant: &CheckedName,
    before: &DayFigures,
    what: &str,
) -> i64 {
    let tn = TableNames::new(&lt.t.name);
    let (Some((&lo, _)), Some((&hi, _))) = (before.first_key_value(), before.last_key_value())
    else {
        return 0;
    };
    storage::ensure_partitions(lt, lo, hi.succ());
    // A partition at a time: a columnar year is made heap first, or left out when it
    // holds none of the tenant's rows (it refuses a DELETE even of no row).
    let end = hi.succ();
    for p in storage::partitions(&tn)
        .iter()
        .filter(|p| p.lo < end && lo < p.hi)
    {
        let (from, to) = (lo.max(p.lo), end.min(p.hi));
        if crate::pipeline::fold::prepare_change(lt, p, Some(tenant), (from, to)) {
            exec(
                &sql::delete_tenant_range(&tn, &lt.t, lt.time_kind, from, to),
                &[DatumWithOid::from(tenant.as_str())],
            );
        }
    }
    let copied = exec(
        &sql::copy_old(&tn, old, &lt.t),
        &[DatumWithOid::from(tenant.as_str())],
    );
    let after = catalog::day_figures(
        &sql::stored_summary(&tn, &lt.t, lt.time_kind, lo, hi.succ()),
        &[DatumWithOid::from(tenant.as_str())],
    );
    if &after != before {
        let bad: Vec<String> = before
            .iter()
            .filter(|(d, f)| after.get(d) != Some(f))
            .take(3)
            .map(|(d, (n, _))| {
                format!(
                    "{d}: {n} rows {what}, {} copied",
                    after.get(d).map(|f| f.0).unwrap_or(0)
                )
            })
            .collect();
        raise(WhError::State(format!(
            "copying {tenant}.{} failed verification ({}); nothing was changed",
            lt.t.name,
            bad.join("; ")
        )));
    }
    copied
}

/// Register `days` of a tenant as built, with their figures (a day absent from `figures`
/// was built empty).
pub fn register_days(names: &SliceNames, days: &BTreeSet<Day>, figures: &DayFigures) {
    for d in days {
        let (n, ck) = figures
            .get(d)
            .cloned()
            .unwrap_or((0, crate::pure::sql::EMPTY_DAY_CHECKSUM.into()));
        let figures = crate::catalog::registry::DayFigures {
            rows: n,
            checksum: &ck,
        };
        crate::catalog::registry::insert_built(names, *d, &figures);
    }
}

/// One tenant of one template, in the caller's transaction.
pub fn migrate_tenant(template: &CheckedName, tenant: &CheckedName) -> Value {
    let start = std::time::Instant::now();
    let lt = catalog::load_template(template);
    let names = SliceNames::new(tenant, template);
    let mut r = OpResult::new(
        "migrate_storage",
        Some(template.as_str()),
        Some(tenant.as_str()),
        None,
    );
    let old = old_name(&names);
    if relkind(&old).is_none() {
        let r = r.skipped("nothing to migrate");
        log_run(&r);
        return r.to_json();
    }
    let before = old_figures(&old, &lt);
    let registered: BTreeSet<Day> = rows(
        "SELECT range_start FROM _wh.slices WHERE template_name = $1 AND tenant_name = $2 AND kind = 'day'",
        &[DatumWithOid::from(template.as_str()), DatumWithOid::from(tenant.as_str())],
        |r| col::<pgrx::datum::Date>(r, "range_start"),
    )
    .into_iter()
    .flatten()
    .filter_map(|d| catalog::db::day_of(d).ok())
    .collect();
    let copied = copy_verified(&lt, &old, tenant, &before, "in the 0.1.0 table");
    // The registry becomes tenant-days: the 0.1.0 days (empty ones included) and every
    // day with rows (those of folded years too).
    crate::catalog::registry::forget_tenant_days(&names);
    let days: BTreeSet<Day> = registered
        .iter()
        .copied()
        .chain(before.keys().copied())
        .collect();
    register_days(&names, &days, &before);
    exec(&sql::drop_table_cascade_named(&old), &[]);
    storage::ensure_tenant_view(&names, &lt);
    r.rows = Some(copied);
    r.ms = ms_since(start);
    r.detail("days", json!(days.len()));
    r.detail("days_with_rows", json!(before.len()));
    r.detail("verified", json!(true));
    log_run(&r);
    r.to_json()
}
