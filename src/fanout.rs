//! `update_all_tenants`: one day for every tenant of a template, with the remote queries
//! sent to all tenants at once (async dblink), so slow sources overlap. Each tenant's
//! send and receive runs isolated: one tenant's failure does not affect the others.

use pgrx::datum::DatumWithOid;
use serde_json::{json, Value};

use crate::catalog::{self, dblink_schema};
use crate::dates::Day;
use crate::db::{col, exec, ms_since, one, rows};
use crate::names::{quote_ident, CheckedName};
use crate::remote;
use crate::report::summarize;
use crate::slice::{Batch, Existing, Source};
use crate::window::isolated_days;

const CONN_PREFIX: &str = "wh_async_";

fn conn_name(tenant: &CheckedName) -> String {
    format!("{CONN_PREFIX}{tenant}")
}

fn open_connections() -> Vec<String> {
    let dbl = quote_ident(&dblink_schema());
    rows(
        &format!("SELECT c FROM pg_catalog.unnest({dbl}.dblink_get_connections()) c WHERE c LIKE 'wh\\_async\\_%'"),
        &[],
        |r| col::<String>(r, "c").unwrap_or_default(),
    )
}

fn disconnect(conn: &str) {
    let dbl = quote_ident(&dblink_schema());
    exec(&format!("SELECT {dbl}.dblink_disconnect($1)"), &[DatumWithOid::from(conn)]);
}

/// Phase 1 for one tenant: connect and send the days' query. Nothing is logged unless
/// it fails here (recorded by `run_isolated`).
pub fn send(template: &CheckedName, tenant: &CheckedName, days: &[Day]) -> Value {
    let start = std::time::Instant::now();
    let batch = Batch::load(template, tenant);
    let dbl = quote_ident(&dblink_schema());
    let conn = conn_name(tenant);
    if open_connections().contains(&conn) {
        disconnect(&conn);
    }
    remote::guard(tenant, || {
        exec(
            &format!("SELECT {dbl}.dblink_connect($1, $2)"),
            &[DatumWithOid::from(conn.as_str()), DatumWithOid::from(batch.tenant.server.as_str())],
        );
        let sent = one::<i32>(
            &format!("SELECT {dbl}.dblink_send_query($1, $2)"),
            &[DatumWithOid::from(conn.as_str()), DatumWithOid::from(batch.remote_sql(days).as_str())],
        );
        if sent != Some(1) {
            crate::error::raise(crate::error::WhError::Remote {
                tenant: tenant.to_string(),
                message: "dblink_send_query could not send the query".into(),
            });
        }
    });
    json!({"status": "sent", "tenant": tenant.as_str(), "ms": ms_since(start)})
}

/// Phase 2 for one tenant: read the result into the staging table, check and apply.
pub fn receive(template: &CheckedName, tenant: &CheckedName, days: &[Day], label: &str) -> Value {
    let conn = conn_name(tenant);
    let rs: Vec<Value> = Batch::load(template, tenant)
        .run(days, Existing::Refresh, false, label, Source::Async(&conn))
        .iter()
        .map(|r| r.to_json())
        .collect();
    disconnect(&conn);
    summarize(label, &rs)
}

/// Refresh `day` for every registered tenant, overlapping the remote queries.
pub fn update_all_tenants(template: &CheckedName, day: Day) -> Value {
    catalog::load_template(template);
    let start = std::time::Instant::now();
    for stale in open_connections() {
        disconnect(&stale);
    }
    let tenants = catalog::tenant_names();
    let opts = json!({"operation": "update_all_tenants"});
    let days = [day];
    let sent: Vec<(CheckedName, Vec<Value>)> =
        tenants.iter().map(|t| (t.clone(), isolated_days("send", template, t, &days, &opts))).collect();
    let mut results = Vec::new();
    for (t, s) in sent {
        if s.len() == 1 && s[0].get("status").and_then(Value::as_str) == Some("sent") {
            results.extend(isolated_days("receive", template, &t, &days, &opts));
        } else {
            results.extend(s);
        }
    }
    for left in open_connections() {
        disconnect(&left);
    }
    let mut out = summarize("update_all_tenants", &results);
    out["tenants"] = json!(tenants.len());
    out["wall_ms"] = json!(ms_since(start));
    out
}
