//! Adopting a warehouse built the seeds' way (`scripts/adopt.sh`, then `CALL
//! _wh.adopt_seeds()`): the superuser step set the seeds' `_wh` aside as `_wh_seeds`, each
//! tenant's schema as `_wh_seeds_<tenant>` and the public views as `<name>_seeds`, each
//! recorded by oid in `_wh.seed_objects`; here a tenant's rows come over from its old union view (daily
//! materialized views and combined year tables) into `public.<template>` **without
//! fetching them from the source again**, verified per tenant-day (count and checksum over
//! every column) and recorded in `_wh.slices`. A rerun skips what was adopted.

use std::collections::{BTreeMap, BTreeSet};

use pgrx::datum::DatumWithOid;
use serde_json::{json, Value};

use crate::catalog::db::{col, ms_since, one, rows};
use crate::catalog::storage;
use crate::catalog::{self, log_run};
use crate::pure::dates::Day;
use crate::pure::names::{quote_ident, CheckedName, SliceNames};
use crate::pure::report::OpResult;
use crate::pure::sql;

/// The schema the adoption's superuser step set aside for a tenant (`_wh_seeds_<tenant>`,
/// recorded by oid in `_wh.seed_objects`), by its name now; None when there is none.
fn seeds_schema(tenant: &CheckedName) -> Option<String> {
    one::<String>(
        "SELECT n.nspname::text FROM _wh.seed_objects o JOIN pg_catalog.pg_namespace n ON n.oid = o.object_oid \
         WHERE o.kind = 'schema' AND o.tenant_name = $1",
        &[DatumWithOid::from(tenant.as_str())],
    )
}

/// `<seeds schema>.<template>`: the seeds' union view of a tenant, in its set-aside schema.
fn old_view(schema: &str, template: &CheckedName) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(template.as_str()))
}

/// `<template>_YYYY_MM_DD` → its day; `<template>_YYYY` (a year table) and anything else → None.
fn daily_view_day(relname: &str, template: &CheckedName) -> Option<Day> {
    let suffix = relname.strip_prefix(template.as_str())?.strip_prefix('_')?;
    let shape = suffix.len() == 10
        && suffix.char_indices().all(|(i, c)| {
            if i == 4 || i == 7 {
                c == '_'
            } else {
                c.is_ascii_digit()
            }
        });
    shape
        .then(|| Day::parse(&suffix.replace('_', "-")).ok())
        .flatten()
}

/// The days the seeds built for a tenant as daily views (`<template>_YYYY_MM_DD` in its
/// set-aside schema): empty days count as built days too.
fn daily_views(schema: &str, template: &CheckedName) -> BTreeSet<Day> {
    rows(
        "SELECT c.relname::text AS relname FROM pg_catalog.pg_class c \
         WHERE c.relnamespace = pg_catalog.to_regnamespace(pg_catalog.quote_ident($1)) AND c.relkind IN ('m', 'r', 'v')",
        &[DatumWithOid::from(schema)],
        |r| col::<String>(r, "relname"),
    )
    .into_iter()
    .flatten()
    .filter_map(|n| daily_view_day(&n, template))
    .collect()
}

/// One tenant of one template, in the caller's transaction: copy, verify, register.
pub fn adopt_days(template: &CheckedName, tenant: &CheckedName) -> Value {
    let start = std::time::Instant::now();
    let lt = catalog::load_template(template);
    catalog::load_tenant(tenant);
    let names = SliceNames::new(tenant, template);
    let mut r = OpResult::new(
        "adopt_seeds",
        Some(template.as_str()),
        Some(tenant.as_str()),
        None,
    );
    let schema = seeds_schema(tenant).unwrap_or_default();
    let old = old_view(&schema, template);
    let exists = !schema.is_empty() && crate::catalog::storage::relation_exists(&old);
    if !exists {
        let r = r.skipped("no seeds view");
        log_run(&r);
        return r.to_json();
    }
    let held = one::<i64>(
        "SELECT count(*) FROM _wh.slices WHERE template_name = $1 AND tenant_name = $2",
        &[
            DatumWithOid::from(template.as_str()),
            DatumWithOid::from(tenant.as_str()),
        ],
    )
    .unwrap_or(0);
    if held > 0 {
        let r = r.skipped("already adopted");
        log_run(&r);
        return r.to_json();
    }
    let before: BTreeMap<Day, (i64, String)> =
        catalog::day_figures(&sql::day_summary(&old, &lt.t, lt.time_kind), &[]);
    let copied =
        crate::ops::migrate::copy_verified(&lt, &old, tenant, &before, "in the seeds' views");
    let days: BTreeSet<Day> = daily_views(&schema, template)
        .into_iter()
        .chain(before.keys().copied())
        .collect();
    crate::ops::migrate::register_days(&names, &days, &before);
    storage::ensure_tenant_view(&names, &lt);
    r.rows = Some(copied);
    r.ms = ms_since(start);
    r.detail("from", json!(old));
    r.detail("days", json!(days.len()));
    r.detail("days_with_rows", json!(before.len()));
    r.detail("verified", json!(true));
    log_run(&r);
    r.to_json()
}

/// What the adoption left for the operator to drop once satisfied, with the statements:
/// only what the superuser step set aside and recorded by oid in `_wh.seed_objects` (the
/// seeds' `_wh`, each tenant's set-aside schema, the seeds' public views), under the name
/// that oid has now. Views first: a schema's CASCADE may take them too.
pub fn leftovers() -> Vec<(String, String)> {
    rows(
        "SELECT CASE o.kind WHEN 'schema' THEN pg_catalog.quote_ident(n.nspname) \
                ELSE pg_catalog.quote_ident(vn.nspname) || '.' || pg_catalog.quote_ident(c.relname) END AS object, \
                CASE o.kind WHEN 'schema' THEN 'SCHEMA' WHEN 'view' THEN \
                     CASE c.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END END AS what \
         FROM _wh.seed_objects o \
         LEFT JOIN pg_catalog.pg_namespace n ON o.kind = 'schema' AND n.oid = o.object_oid \
         LEFT JOIN pg_catalog.pg_class c ON o.kind = 'view' AND c.oid = o.object_oid AND c.relkind IN ('v', 'm') \
         LEFT JOIN pg_catalog.pg_namespace vn ON vn.oid = c.relnamespace \
         WHERE n.oid IS NOT NULL OR c.oid IS NOT NULL \
         ORDER BY o.kind DESC, o.tenant_name NULLS FIRST, 1",
        &[],
        |r| {
            let object = col::<String>(r, "object").unwrap_or_default();
            let what = col::<String>(r, "what").unwrap_or_default();
            let drop = sql::drop_seed_object(&what, &object);
            (object, drop)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_daily_views_name_a_day() {
        let t = CheckedName::template(Some("foodlogstats")).unwrap();
        assert_eq!(
            daily_view_day("foodlogstats_2024_01_09", &t),
            Day::parse("2024-01-09").ok()
        );
        for other in [
            "foodlogstats_2023",
            "foodlogstats",
            "foodlogstats_2024_01_9x",
            "foodlogstats_2024-01-09",
            "foodlogstats_2024_13_01",
            "other_2024_01_09",
            "foodlogstats_2024_01_09_x",
        ] {
            assert_eq!(daily_view_day(other, &t), None, "{other}");
        }
    }
}
