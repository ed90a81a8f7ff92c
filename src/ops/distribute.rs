//! Past one machine: a template's table distributed by tenant over a Citus cluster. Operations layer.
//!
//! `distribute` makes `_wh_data.<template>` a Citus distributed table on `schema_name`,
//! colocated with every other wh table already distributed (one tenant's rows of every
//! template on one worker), its rows moved into the shards and gone from the coordinator.
//! Tenant schemas, views and foreign servers stay on the coordinator (`db::coordinator_only`);
//! partitions made later are distributed as they attach (empty), and tables built aside
//! (a period's load, a fold) are distributed while empty (`storage::distribute_aside`).
//!
//! Locks: the template's row as a fold takes it, then Citus's own (the table is rewritten
//! into its shards: a maintenance step, readers wait).

use pgrx::datum::DatumWithOid;
use serde_json::{json, Value};

use crate::catalog::db::{col, coordinator_only, exec, ms_since, one, rows};
use crate::catalog::storage;
use crate::catalog::{self, log_run};
use crate::pipeline::fold;
use crate::pure::error::{raise, WhError};
use crate::pure::names::{CheckedName, TableNames};
use crate::pure::report::OpResult;
use crate::pure::sql;

/// `_wh.distribute(template, shard_count)`.
pub fn distribute(template: &CheckedName, shard_count: Option<i32>) -> Value {
    if let Some(n) = shard_count.filter(|n| !(1..=1024).contains(n)) {
        raise(WhError::invalid(
            "shard_count",
            format!("{n} is not between 1 and 1024 (each partition becomes that many tables per cluster)"),
        ));
    }
    let start = std::time::Instant::now();
    let lt = catalog::load_template(template);
    let tn = TableNames::new(template);
    refuse_what_cannot_be_distributed(template, &tn);
    storage::ensure_table(&lt);
    let mut r = OpResult::new("distribute", Some(template.as_str()), None, None);
    readers_reach_workers();
    if storage::is_distributed(&tn) {
        let r = r.skipped("already distributed");
        log_run(&r);
        return r.to_json();
    }
    fold::lock_template_or_busy(template);
    // Decided again under the lock: another session may have distributed it meanwhile.
    if storage::is_distributed(&tn) {
        let r = r.skipped("already distributed");
        log_run(&r);
        return r.to_json();
    }
    let with = one::<String>(
        sql::CITUS_COLOCATE_WITH,
        &[DatumWithOid::from(tn.table().as_str())],
    );
    if let (Some(first), Some(_)) = (&with, shard_count) {
        raise(WhError::invalid(
            "shard_count",
            format!("{template} is colocated with {first}, whose shard count it takes: give shard_count only to the first template distributed"),
        ));
    }
    let tenants = drop_views(template, &tn);
    storage::ddl(&[sql::drop_scoped_policy(&tn)]);
    let table = tn.table();
    exec(
        sql::CITUS_DISTRIBUTE,
        &[
            DatumWithOid::from(table.as_str()),
            DatumWithOid::from(with.as_deref()),
            DatumWithOid::from(shard_count),
        ],
    );
    exec(
        sql::CITUS_TRUNCATE_LOCAL,
        &[DatumWithOid::from(table.as_str())],
    );
    storage::update_public_view(template, catalog::today());
    for tenant in &tenants {
        storage::update_tenant_union_view(tenant, template);
    }
    r.ms = ms_since(start);
    r.detail("table", json!(table));
    r.detail("colocated_with", json!(with));
    r.detail("shard_count", json!(shard_count));
    r.detail("tenant_views_remade", json!(tenants.len()));
    log_run(&r);
    r.to_json()
}

/// Refused, nothing changed: no Citus here (55000), a unique index without `schema_name`
/// (22023, named), tenant-scoped readers (55000: their policy cannot be distributed yet).
fn refuse_what_cannot_be_distributed(template: &CheckedName, tn: &TableNames) {
    if !storage::citus_installed() {
        raise(WhError::State(format!(
            "{template} cannot be distributed: Citus is not installed in this database (CREATE EXTENSION citus on a Citus coordinator; see README, Past one machine)"
        )));
    }
    if let Some(index) = one::<String>(
        sql::UNIQUE_WITHOUT_TENANT,
        &[DatumWithOid::from(tn.table().as_str())],
    ) {
        raise(WhError::InvalidTemplate {
            template: template.to_string(),
            reason: format!(
                "its unique index {index} does not hold schema_name, so it cannot hold across the workers: drop it or add schema_name"
            ),
        });
    }
    if !catalog::tenants_with_readers().is_empty() {
        raise(WhError::State(format!(
            "{template} cannot be distributed while tenant-scoped readers exist (their row-level policy reads a table Citus cannot reach from a shard): revoke them first"
        )));
    }
}

/// The views over the table (each tenant's, `public.<template>`, `<template>:all`) dropped
/// before Citus distributes it: Citus would make every view that depends on a distributed
/// table on the workers too, in tenant schemas that live on the coordinator only. They are
/// made again (coordinator only) right after, in the same transaction. A view of the
/// DBA's own over them stops the call (nothing is dropped silently). The tenants whose
/// view was dropped.
fn drop_views(template: &CheckedName, tn: &TableNames) -> Vec<CheckedName> {
    // Registered tenants' views and those a removal kept (the registry still lists its days).
    let tenant_views = crate::ops::evolve::tenant_views(template);
    let mut views: Vec<String> = tenant_views
        .iter()
        .map(|names| sql::drop_view(&names.view()))
        .collect();
    let tenants: Vec<CheckedName> = tenant_views.into_iter().map(|names| names.tenant).collect();
    for view in [tn.reader_view(), tn.all_rows_view()] {
        if storage::relation_exists(&view) {
            views.push(sql::drop_view(&view));
        }
    }
    coordinator_only(|| storage::ddl(&views));
    tenants
}

/// BI readers reach the shards on every worker (idempotent: a worker added since gets it
/// when any template is distributed again); 55000 naming a worker's error otherwise.
fn readers_reach_workers() {
    let found = rows(sql::CITUS_READERS_ON_WORKERS, &[], |r| {
        (
            col::<bool>(r, "ok").unwrap_or(false),
            col::<String>(r, "error"),
        )
    });
    if let Some((false, error)) = found.into_iter().next() {
        raise(WhError::State(format!(
            "a worker refused wh_reader USAGE on _wh_data ({}): wh_admin must be able to log in on every worker (README, Past one machine)",
            error.unwrap_or_default()
        )));
    }
}
