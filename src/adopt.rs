//! Adopting a warehouse built the seeds' way (`scripts/adopt.sh`, then `CALL
//! _wh.adopt_seeds()`): the seeds' `_wh` was moved aside as `_wh_seeds`, their views as
//! `<name>_seeds`; here a tenant's rows come over from its old union view (daily
//! materialized views and combined year tables) into `public.<template>` **without
//! fetching them from the source again**, verified per tenant-day (count and checksum over
//! every column) and recorded in `_wh.slices`. A rerun skips what was adopted.

use std::collections::{BTreeMap, BTreeSet};

use pgrx::datum::DatumWithOid;
use serde_json::{json, Value};

use crate::catalog::{self, log_run};
use crate::dates::Day;
use crate::db::{col, ms_since, one, rows};
use crate::names::{quote_ident, CheckedName, SliceNames};
use crate::report::OpResult;
use crate::sql;
use crate::storage;

/// `<tenant>.<template>_seeds`: the seeds' union view of a tenant, set aside.
pub fn old_view(names: &SliceNames) -> String {
    names.qualified(&format!("{}_seeds", names.template))
}

/// The days the seeds built for a tenant as daily views (`<template>_YYYY_MM_DD` in its
/// schema): empty days count as built days too.
fn daily_views(tenant: &CheckedName, template: &CheckedName) -> BTreeSet<Day> {
    rows(
        "SELECT c.relname::text AS relname FROM pg_catalog.pg_class c \
         WHERE c.relnamespace = pg_catalog.to_regnamespace($1) AND c.relkind IN ('m', 'r', 'v') \
           AND c.relname ~ ('^' || $2 || '_[0-9]{4}_[0-9]{2}_[0-9]{2}$')",
        &[
            DatumWithOid::from(tenant.as_str()),
            DatumWithOid::from(template.as_str()),
        ],
        |r| col::<String>(r, "relname"),
    )
    .into_iter()
    .flatten()
    .filter_map(|n| {
        let suffix = n.strip_prefix(template.as_str())?.strip_prefix('_')?;
        Day::parse(&suffix.replace('_', "-")).ok()
    })
    .collect()
}

/// One tenant of one template, in the caller's transaction: copy, verify, register.
pub fn adopt_days(template: &CheckedName, tenant: &CheckedName) -> Value {
    let start = std::time::Instant::now();
    let lt = catalog::load_template(template);
    catalog::load_tenant(tenant);
    let names = SliceNames::new(tenant, template);
    let old = old_view(&names);
    let mut r = OpResult::new(
        "adopt_seeds",
        Some(template.as_str()),
        Some(tenant.as_str()),
        None,
    );
    let exists = one::<bool>(
        "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
        &[DatumWithOid::from(old.as_str())],
    )
    .unwrap_or(false);
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
    let copied = crate::migrate::copy_verified(&lt, &old, tenant, &before, "in the seeds' views");
    let days: BTreeSet<Day> = daily_views(tenant, template)
        .into_iter()
        .chain(before.keys().copied())
        .collect();
    crate::migrate::register_days(&names, &days, &before);
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

/// What the adoption left for the operator to drop once satisfied: the seeds' schema,
/// views set aside, daily materialized views and year tables of adopted tenants, each
/// with its DROP statement.
pub fn leftovers() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let has_seeds = one::<bool>(
        "SELECT pg_catalog.to_regnamespace('_wh_seeds') IS NOT NULL",
        &[],
    )
    .unwrap_or(false);
    if has_seeds {
        out.push(("_wh_seeds".into(), "DROP SCHEMA _wh_seeds CASCADE".into()));
    }
    let pairs: Vec<(String, String)> = rows(
        "SELECT DISTINCT template_name, tenant_name FROM _wh.slices ORDER BY 1, 2",
        &[],
        |r| {
            (
                col::<String>(r, "template_name").unwrap_or_default(),
                col::<String>(r, "tenant_name").unwrap_or_default(),
            )
        },
    );
    let templates: BTreeSet<String> = pairs.iter().map(|(t, _)| t.clone()).collect();
    for t in &templates {
        let v = format!("public.{}", quote_ident(&format!("{t}_seeds")));
        if one::<bool>(
            "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
            &[DatumWithOid::from(v.as_str())],
        )
        .unwrap_or(false)
        {
            out.push((v.clone(), format!("DROP VIEW {v} CASCADE")));
        }
    }
    for (t, tenant) in &pairs {
        let rels: Vec<(String, String)> = rows(
            "SELECT c.relname::text AS relname, c.relkind::text AS kind FROM pg_catalog.pg_class c \
             WHERE c.relnamespace = pg_catalog.to_regnamespace($1) AND c.relkind IN ('m', 'r', 'v') \
               AND (c.relname = $2 || '_seeds' OR c.relname ~ ('^' || $2 || '_[0-9]{4}(_[0-9]{2}_[0-9]{2})?$')) \
             ORDER BY c.relkind DESC, 1",
            &[DatumWithOid::from(tenant.as_str()), DatumWithOid::from(t.as_str())],
            |r| (col::<String>(r, "relname").unwrap_or_default(), col::<String>(r, "kind").unwrap_or_default()),
        );
        for (rel, kind) in rels {
            let q = format!("{}.{}", quote_ident(tenant), quote_ident(&rel));
            let what = match kind.as_str() {
                "v" => "VIEW",
                "m" => "MATERIALIZED VIEW",
                _ => "TABLE",
            };
            out.push((q.clone(), format!("DROP {what} {q} CASCADE")));
        }
    }
    out
}
