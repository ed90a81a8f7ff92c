//! `update_all_tenants`: one day for every tenant of a template, with the remote queries
//! sent to all tenants at once (async dblink), so slow sources overlap. Answers are taken
//! in the order they arrive, each tenant against its own deadline: a hung source delays
//! no other tenant, and is disconnected when its deadline passes. Each
//! tenant's send and receive runs isolated: one tenant's failure does not affect the others.

use serde_json::{json, Value};

use crate::catalog;
use crate::dates::Day;
use crate::db::ms_since;
use crate::names::CheckedName;
use crate::remote;
use crate::report::summarize;
use crate::slice::{Batch, Existing, Source};
use crate::window::{chunk_failed, isolated_chunk, isolated_days, split_failure};

const CONN_PREFIX: &str = "wh_async_";

/// Phase 1 for one tenant: connect and send the days' query; returns its deadline.
/// Nothing is logged unless it fails here (recorded by `run_isolated`).
pub fn send(template: &CheckedName, tenant: &CheckedName, days: &[Day]) -> Value {
    let start = std::time::Instant::now();
    let batch = Batch::load(template, tenant);
    let deadline = remote::deadline_for(&batch.tenant);
    remote::send(
        &batch.tenant,
        &remote::conn_name(CONN_PREFIX, tenant),
        &batch.remote_sql(days),
    );
    json!({"status": "sent", "tenant": tenant.as_str(), "ms": ms_since(start), "deadline_ms": deadline})
}

/// Phase 2 for one tenant: read the answer into the staging table, check and apply.
pub fn receive(
    template: &CheckedName,
    tenant: &CheckedName,
    days: &[Day],
    label: &str,
    deadline_ms: i64,
) -> Value {
    let conn = remote::conn_name(CONN_PREFIX, tenant);
    let rs: Vec<Value> = Batch::load(template, tenant)
        .run(
            days,
            Existing::Refresh,
            false,
            label,
            Source::Async {
                conn: &conn,
                deadline_ms,
            },
        )
        .iter()
        .map(|r| r.to_json())
        .collect();
    remote::disconnect(&conn);
    summarize(label, &rs)
}

/// Is this tenant's answer in, or its deadline past (either way: receive it now)?
fn due(poller: &remote::Poller, tenant: &CheckedName, deadline_ms: i64) -> bool {
    remote::now_ms() >= deadline_ms || poller.ready(tenant, &remote::conn_name(CONN_PREFIX, tenant))
}

/// Refresh `target` and the template's lookback days (rows logged late into yesterday)
/// for every registered tenant, like each tenant's own job: one fan-out per month the
/// days touch. Results list the target day first.
pub fn update_all_tenants(template: &CheckedName, target: Day) -> Value {
    let lt = catalog::load_template(template);
    lt.refuse_rollup("refresh");
    let start = std::time::Instant::now();
    let mut days = crate::dates::refresh_days(target, lt.t.lookback_days);
    days.sort();
    let mut results = Vec::new();
    let mut tenants = 0;
    let chunks = crate::dates::chunks(&days, crate::dates::DEFAULT_CHUNK_DAYS);
    let total = (catalog::tenant_names().len() * chunks.len()) as i64;
    let progress = crate::progress::begin(crate::progress::Op {
        operation: "update_all_tenants",
        template: Some(template.as_str()),
        tenant: None,
        unit: "tenant",
        total,
    });
    let mut tally = Tally::default();
    for chunk in chunks {
        let (n, rs) = fan_out(template, &chunk, &progress, &mut tally);
        tenants = n;
        results.extend(rs);
    }
    results.reverse();
    let mut out = summarize("update_all_tenants", &results);
    out["tenants"] = json!(tenants);
    out["days"] = json!(days.iter().map(|d| d.iso()).collect::<Vec<_>>());
    out["wall_ms"] = json!(ms_since(start));
    out
}

/// Tenants answered and rows stored so far, across a fan-out's chunks (for `_wh.progress`).
#[derive(Default)]
struct Tally {
    tenants: i64,
    rows: i64,
}

impl Tally {
    fn add(
        &mut self,
        progress: &crate::progress::Progress,
        tenant: &CheckedName,
        days: &[Day],
        rs: &[Value],
    ) {
        self.tenants += 1;
        self.rows += rs
            .iter()
            .filter_map(|r| r.get("rows").and_then(Value::as_i64))
            .sum::<i64>();
        progress.step_tenant(
            self.tenants,
            tenant.as_str(),
            &crate::window::span(days),
            self.rows,
        );
    }
}

/// One remote query per tenant for `days`, sent to all at once, answers taken as they come.
fn fan_out(
    template: &CheckedName,
    days: &[Day],
    progress: &crate::progress::Progress,
    tally: &mut Tally,
) -> (usize, Vec<Value>) {
    for stale in remote::open_connections(CONN_PREFIX) {
        remote::disconnect(&stale);
    }
    let tenants = catalog::tenant_names();
    let opts = json!({"operation": "update_all_tenants"});
    let mut results = Vec::new();
    let mut pending: Vec<(CheckedName, i64)> = Vec::new();
    for t in &tenants {
        if catalog::is_paused(t) {
            for d in days {
                let r = crate::report::OpResult::new(
                    "update_all_tenants",
                    Some(template.as_str()),
                    Some(t.as_str()),
                    Some(d.iso()),
                )
                .skipped("paused");
                catalog::log_run(&r);
                results.push(r.to_json());
            }
            tally.add(progress, t, days, &[]);
            continue;
        }
        let s = isolated_days("send", template, t, days, &opts);
        match s.as_slice() {
            [one] if one.get("status").and_then(Value::as_str) == Some("sent") => {
                pending.push((
                    t.clone(),
                    one.get("deadline_ms").and_then(Value::as_i64).unwrap_or(0),
                ));
            }
            _ => {
                tally.add(progress, t, days, &s);
                results.extend(s)
            }
        }
    }
    let mut retry: Vec<(CheckedName, Value)> = Vec::new();
    let poller = remote::Poller::new();
    let mut since = remote::now_ms();
    while !pending.is_empty() {
        // A tenant whose answer is in (or whose time is up) is received now; the rest wait.
        let round = std::time::Instant::now();
        let ready: Vec<usize> = (0..pending.len())
            .filter(|&i| due(&poller, &pending[i].0, pending[i].1))
            .collect();
        if ready.is_empty() {
            // Nap only when no answer was streaming in during this round.
            if round.elapsed() < remote::STREAMING * pending.len() as u32 {
                let now = remote::now_ms();
                remote::nap(
                    now - since,
                    pending.iter().map(|p| p.1 - now).min().unwrap_or(1),
                );
            }
            continue;
        }
        since = remote::now_ms();
        for i in ready.into_iter().rev() {
            let (t, deadline) = pending.remove(i);
            let o = json!({"operation": "update_all_tenants", "deadline_ms": deadline});
            let v = isolated_chunk("receive", template, &t, days, &o);
            if chunk_failed(days, &v) {
                retry.push((t, v)); // fetched again day by day once every answer is in
            } else {
                let rs = split_failure("receive", template, &t, days, v, &o);
                tally.add(progress, &t, days, &rs);
                results.extend(rs);
            }
        }
    }
    // Retries wait for the end: a slow retry never eats another tenant's deadline.
    for (t, v) in retry {
        let rs = split_failure("receive", template, &t, days, v, &opts);
        tally.add(progress, &t, days, &rs);
        results.extend(rs);
    }
    for left in remote::open_connections(CONN_PREFIX) {
        remote::disconnect(&left);
    }
    (tenants.len(), results)
}
