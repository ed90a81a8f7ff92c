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
use crate::slice::{DayJob, Existing};
use crate::window::isolated;

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

/// Phase 1 for one tenant: lock the day, connect, send the query. Nothing is logged
/// unless it ends here (busy, or a failure recorded by `run_isolated`).
pub fn send(template: &CheckedName, tenant: &CheckedName, day: Day, label: &str) -> Value {
    let start = std::time::Instant::now();
    let job = DayJob::load(template, tenant, day);
    if let Err(r) = job.begin(label, Existing::Rebuild, false) {
        return r.to_json();
    }
    let dbl = quote_ident(&dblink_schema());
    let conn = conn_name(tenant);
    if open_connections().contains(&conn) {
        disconnect(&conn);
    }
    remote::guard(tenant, || {
        exec(
            &format!("SELECT {dbl}.dblink_connect($1, $2)"),
            &[DatumWithOid::from(conn.as_str()), DatumWithOid::from(job.tenant.server.as_str())],
        );
        let sent = one::<i32>(
            &format!("SELECT {dbl}.dblink_send_query($1, $2)"),
            &[DatumWithOid::from(conn.as_str()), DatumWithOid::from(job.remote_sql().as_str())],
        );
        if sent != Some(1) {
            crate::error::raise(crate::error::WhError::Remote {
                tenant: tenant.to_string(),
                message: "dblink_send_query could not send the query".into(),
            });
        }
    });
    json!({"status": "sent", "tenant": tenant.as_str(), "day": day.iso(), "ms": ms_since(start)})
}

/// Phase 2 for one tenant: read the result into the aside table and swap the day in.
pub fn receive(template: &CheckedName, tenant: &CheckedName, day: Day, label: &str) -> Value {
    let start = std::time::Instant::now();
    let job = DayJob::load(template, tenant, day);
    let held = match job.begin(label, Existing::Rebuild, false) {
        Ok(h) => h,
        Err(r) => return r.to_json(),
    };
    let dbl = dblink_schema();
    let conn = conn_name(tenant);
    let names = job.names.clone();
    let t = job.lt.t.clone();
    let r = job.build(label, held, start, |aside| {
        let stmt = crate::sql::insert_from_async_result(&names, aside, &t, &dbl);
        remote::guard(tenant, || exec(&stmt, &[DatumWithOid::from(conn.as_str())]))
    });
    disconnect(&conn);
    r.to_json()
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
    let sent: Vec<(CheckedName, Value)> =
        tenants.iter().map(|t| (t.clone(), isolated("send", template, t, day, opts.clone()))).collect();
    let mut results = Vec::new();
    for (t, s) in sent {
        if s.get("status").and_then(Value::as_str) == Some("sent") {
            results.push(isolated("receive", template, &t, day, opts.clone()));
        } else {
            results.push(s);
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
