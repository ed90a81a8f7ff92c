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

use serde_json::{json, Value};

use crate::catalog::db::{coordinator_only, ms_since};
use crate::catalog::{self, log_run};
use crate::catalog::{citus, storage};
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
    if storage::is_distributed(&tn) {
        // A worker added since: readers let in, scoped readers' tenants copied there.
        citus::sync_scopes_to_workers();
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
    let with = citus::colocation_target(&tn);
    if let (Some(first), Some(_)) = (&with, shard_count) {
        raise(WhError::invalid(
            "shard_count",
            format!("{template} is colocated with {first}, whose shard count it takes: give shard_count only to the first template distributed"),
        ));
    }
    let tenants = drop_views(template, &tn);
    let done = citus::distribute_table(template, &tn, shard_count);
    storage::update_public_view(template, catalog::today());
    for tenant in &tenants {
        storage::update_tenant_union_view(tenant, template);
    }
    r.ms = ms_since(start);
    r.detail("table", json!(tn.table()));
    r.detail("colocated_with", json!(done.colocated_with));
    r.detail("shard_count", json!(done.shard_count));
    r.detail("tenant_views_remade", json!(tenants.len()));
    log_run(&r);
    r.to_json()
}

/// Refused, nothing changed: no Citus here (55000), or what `citus::refuse_distribution`
/// refuses.
fn refuse_what_cannot_be_distributed(template: &CheckedName, tn: &TableNames) {
    if !storage::citus_installed() {
        raise(WhError::State(format!(
            "{template} cannot be distributed: Citus is not installed in this database (CREATE EXTENSION citus on a Citus coordinator; see README, Past one machine)"
        )));
    }
    citus::refuse_distribution(template, tn);
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
