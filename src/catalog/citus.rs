//! A template's table distributed by tenant over a Citus cluster: the steps `_wh.distribute`
//! and a new table of a distributed warehouse share, and what the registry records of it.
//!
//! A template whose table is distributed is recorded (`_wh.mv_templates.distributed_shards`,
//! dumped with the configuration): its table, made again by a rebuild onto a cluster, is
//! distributed again into as many shards; a new template's table follows the warehouse
//! (distributed, colocated, as soon as any wh table is); one undistributed by hand is
//! recorded 0 and stays on the coordinator. Every worker keeps a copy of the scoped
//! readers' tenants (`_wh_scope.readers`, by role name), which the distributed tables'
//! policy reads there. Nothing here runs without Citus.
//!
//! Locks: `create_distributed_table` takes Citus's own (the table is rewritten into its
//! shards); on a new, empty table nobody reads yet. The copies to the workers run one at a
//! time (`storage::sync_reader_scopes` takes SHARE ROW EXCLUSIVE on the coordinator's
//! `_wh_scope.readers`; readers' ACCESS SHARE never waits for it).

use pgrx::datum::DatumWithOid;

use crate::catalog::db::{col, ddl, exec, one, relation_exists, rows};
use crate::pure::error::{raise, WhError};
use crate::pure::names::{CheckedName, TableNames};
use crate::pure::sql;

/// How a table was distributed: the table it is colocated with (None: the first of the
/// warehouse) and its shard count.
pub struct Distributed {
    pub colocated_with: Option<String>,
    pub shard_count: Option<i32>,
}

/// The wh table another is colocated with (None: none is distributed yet).
pub fn colocation_target(tn: &TableNames) -> Option<String> {
    one::<String>(
        sql::CITUS_COLOCATE_WITH,
        &[DatumWithOid::from(tn.table().as_str())],
    )
}

/// Refused, nothing changed: a unique index without `schema_name` (22023, named).
pub fn refuse_distribution(template: &CheckedName, tn: &TableNames) {
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
}

/// Distribute the table by tenant, colocated with the warehouse's first distributed table
/// (or, the first, into `shard_count` shards), its rows moved into the shards and gone from
/// the coordinator, and record it. The caller checked `refuse_distribution` and dropped
/// the views over it (Citus would push them to the workers).
pub fn distribute_table(
    template: &CheckedName,
    tn: &TableNames,
    shard_count: Option<i32>,
) -> Distributed {
    readers_reach_workers();
    let colocated_with = colocation_target(tn);
    // The scoped readers' policy without its subquery, before Citus copies it onto the shards.
    ddl(&[
        sql::drop_scoped_policy(tn),
        sql::scoped_policy_distributed(tn),
    ]);
    let table = tn.table();
    exec(
        sql::CITUS_DISTRIBUTE,
        &[
            DatumWithOid::from(table.as_str()),
            DatumWithOid::from(colocated_with.as_deref()),
            DatumWithOid::from(shard_count),
        ],
    );
    exec(
        sql::CITUS_TRUNCATE_LOCAL,
        &[DatumWithOid::from(table.as_str())],
    );
    record_distribution(template, tn);
    // Scoped readers granted before: their tenants on every worker, where the policy runs.
    sync_scopes_to_workers();
    let shard_count = recorded_shards(template);
    Distributed {
        colocated_with,
        shard_count,
    }
}

/// A template's table just made (empty, its views not yet): distributed when the registry
/// records it so (a rebuild onto a cluster), or when it records nothing and another wh
/// table already is (a new template follows the warehouse); never when it records 0 (kept
/// on the coordinator). Refused as `_wh.distribute` refuses. Whether it was distributed.
pub fn distribute_new_table(template: &CheckedName, tn: &TableNames) -> bool {
    if !citus_installed() {
        return false;
    }
    let recorded = recorded_shards(template);
    let warehouse_distributed = colocation_target(tn).is_some();
    let wanted = match recorded {
        Some(0) => false, // undistributed by hand: kept on the coordinator
        Some(_) => true,
        None => warehouse_distributed,
    };
    if !wanted {
        return false;
    }
    refuse_distribution(template, tn);
    let shard_count = recorded.filter(|_| !warehouse_distributed);
    distribute_table(template, tn, shard_count);
    true
}

/// The registry's record of the table's distribution made true (after `_wh.distribute`;
/// by maintenance, after an `undistribute_table` by hand). Without Citus: nothing.
pub fn record_distribution(template: &CheckedName, tn: &TableNames) {
    if citus_installed() && relation_exists(&tn.table()) {
        exec(
            sql::RECORD_DISTRIBUTION,
            &[
                DatumWithOid::from(template.as_str()),
                DatumWithOid::from(tn.table().as_str()),
            ],
        );
    }
}

/// The shard count the registry records for the template (None: not distributed).
fn recorded_shards(template: &CheckedName) -> Option<i32> {
    rows(
        "SELECT distributed_shards FROM _wh.mv_templates WHERE template_name = $1",
        &[DatumWithOid::from(template.as_str())],
        |r| col::<i32>(r, "distributed_shards"),
    )
    .into_iter()
    .next()
    .flatten()
}

/// Citus: every worker's copy of the scoped readers' tenants made equal to this node's (the
/// policy of a distributed table reads it there), and readers let into `_wh_data` there
/// (a worker added since), when any wh table is distributed. Run after each change of them
/// here and by the nightly maintenance. A worker that fails is a WARNING, not an error: the
/// change stands on the coordinator (a revocation above all), the worker's copy is made
/// again at the next sync. Whether every worker took it.
pub fn sync_scopes_to_workers() -> bool {
    if !citus_installed() || !one::<bool>(sql::CITUS_WAREHOUSE_DISTRIBUTED, &[]).unwrap_or(false) {
        return true;
    }
    // Both, whatever the first did: a worker that fails one keeps none of the others from it.
    let usage = on_every_worker(sql::CITUS_READERS_ON_WORKERS);
    let failed = on_every_worker(&sql::citus_scopes_to_workers()).or(usage);
    if let Some(error) = &failed {
        pgrx::warning!(
            "wh: a worker did not take the tenant-scoped readers' tenants ({error}): its copy is made again at the next grant, revocation or nightly maintenance (README, Past one machine)"
        );
    }
    failed.is_none()
}

/// Readers reach the shards on every worker (idempotent: a worker added since gets it
/// when any table is distributed again); 55000 naming a worker's error otherwise.
fn readers_reach_workers() {
    if let Some(error) = on_every_worker(sql::CITUS_READERS_ON_WORKERS) {
        raise(WhError::State(format!(
            "a worker refused readers USAGE on _wh_data ({error}): wh_admin must be able to log in on every worker (README, Past one machine)"
        )));
    }
}

/// Run `query` (a `run_command_on_workers` answering `ok` and the first `error`): the
/// error of a worker that failed, None when every worker took it.
fn on_every_worker(query: &str) -> Option<String> {
    let found = rows(query, &[], |r| {
        (
            col::<bool>(r, "ok").unwrap_or(false),
            col::<String>(r, "error"),
        )
    });
    match found.into_iter().next() {
        Some((false, error)) => Some(error.unwrap_or_default()),
        _ => None,
    }
}

/// Is Citus installed in this database?
pub fn citus_installed() -> bool {
    one::<bool>(sql::CITUS_INSTALLED, &[]).unwrap_or(false)
}

/// Is the template's table distributed by Citus?
pub fn is_distributed(tn: &TableNames) -> bool {
    citus_installed()
        && one::<bool>(
            sql::CITUS_DISTRIBUTED,
            &[DatumWithOid::from(tn.table().as_str())],
        )
        .unwrap_or(false)
}

/// A table built aside for a distributed template's table, distributed while it is empty
/// and colocated with it: filled shard by shard on the workers, it attaches without a copy
/// and leaves no row on the coordinator. Nothing to do on one node.
pub fn distribute_aside(tn: &TableNames, aside: &str) {
    if is_distributed(tn) {
        exec(
            sql::CITUS_DISTRIBUTE,
            &[
                DatumWithOid::from(tn.data(aside).as_str()),
                DatumWithOid::from(tn.table().as_str()),
                DatumWithOid::from(None::<i32>),
            ],
        );
    }
}
