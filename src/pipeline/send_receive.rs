//! The fan-out's two halves for one tenant: `send` the days' query on a connection of
//! its own, and later `receive` its answer into the staging table, check and apply it.
//! Each runs isolated (`Op::Send`, `Op::Receive`).

use crate::pipeline::days;
use crate::pipeline::slice::{Batch, Existing, Source};
use crate::pure::dates::Day;
use crate::pure::names::CheckedName;
use crate::pure::report::OpResult;
use crate::remote;

/// The prefix of the fan-out's connections (one per tenant).
pub const CONN_PREFIX: &str = "wh_async_";

/// Phase 1 for one tenant: connect and send the days' query; returns its deadline.
/// Nothing is logged unless it fails (recorded by `isolate`).
pub fn send(template: &CheckedName, tenant: &CheckedName, days: &[Day]) -> i64 {
    let batch = Batch::load(template, tenant);
    let deadline = remote::deadline_for(&batch.tenant);
    batch.send_days(&remote::conn_name(CONN_PREFIX, tenant), days);
    deadline
}

/// Phase 2 for one tenant: read the answer into the staging table, check and apply.
pub fn receive(
    template: &CheckedName,
    tenant: &CheckedName,
    days: &[Day],
    label: &str,
    deadline_ms: i64,
) -> Vec<OpResult> {
    let conn = remote::conn_name(CONN_PREFIX, tenant);
    let batch = Batch::load(template, tenant);
    let results = days::run(
        &batch,
        days,
        Existing::Refresh,
        false,
        label,
        Source::Async {
            conn: &conn,
            deadline_ms,
        },
    );
    remote::disconnect(&conn);
    results
}

/// Has this tenant's answer begun to arrive, or is its deadline past (either way:
/// receive it now)?
pub fn due(tenant: &CheckedName, deadline_ms: i64) -> bool {
    remote::now_ms() >= deadline_ms || remote::ready(&remote::conn_name(CONN_PREFIX, tenant))
}
