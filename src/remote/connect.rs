//! Tenant connections: the `tenant_connections` row (no secret), the `dblink_fdw` foreign
//! server and its user mapping (the secret), and the audit trail.

use pgrx::datum::DatumWithOid;
use serde_json::{json, Value};

use crate::catalog::db::Failure;
use crate::catalog::db::{col, exec, exec_all, ms_since, one, rows};
use crate::catalog::{self, log_run};
use crate::pure::connopts::{self, Connection, ConnectionChange};
use crate::pure::names::{server_name, CheckedName};
use crate::pure::report::OpResult;
use crate::pure::sql;
use crate::remote;

fn stored(tenant: &CheckedName) -> Option<Connection> {
    rows(
        "SELECT host, port, dbname, username, sslmode, channel_binding, sslrootcert, \
                (extract(epoch FROM remote_timeout) * 1000::numeric)::int8 AS ms \
         FROM _wh.tenant_connections t WHERE tenant_name = $1",
        &[DatumWithOid::from(tenant.as_str())],
        |r| Connection {
            host: col(r, "host").unwrap_or_default(),
            port: col(r, "port").unwrap_or_default(),
            dbname: col(r, "dbname").unwrap_or_default(),
            username: col(r, "username").unwrap_or_default(),
            sslmode: col(r, "sslmode").unwrap_or_default(),
            sslrootcert: col(r, "sslrootcert"),
            channel_binding: col(r, "channel_binding").unwrap_or_default(),
            remote_timeout_ms: col(r, "ms").unwrap_or_default(),
        },
    )
    .into_iter()
    .next()
}

fn server_option_keys(server: &str) -> Vec<String> {
    rows(
        "SELECT pg_catalog.split_part(o, '=', 1) AS k FROM pg_catalog.pg_foreign_server s, \
                pg_catalog.unnest(s.srvoptions) o WHERE s.srvname = $1",
        &[DatumWithOid::from(server)],
        |r| col::<String>(r, "k").unwrap_or_default(),
    )
}

fn server_exists(server: &str) -> bool {
    one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_foreign_server WHERE srvname = $1)",
        &[DatumWithOid::from(server)],
    )
    .unwrap_or(false)
}

fn mapping_state(server: &str) -> (bool, Option<String>, Option<String>) {
    // Members of the server's owner (wh_admin) see the options of a PUBLIC mapping.
    rows(
        "SELECT (SELECT pg_catalog.substr(o, 6) FROM pg_catalog.unnest(umoptions) o WHERE o LIKE 'user=%') AS usr, \
                (SELECT pg_catalog.substr(o, 10) FROM pg_catalog.unnest(umoptions) o WHERE o LIKE 'password=%') AS p \
         FROM pg_catalog.pg_user_mappings WHERE srvname = $1 AND umuser = 0",
        &[DatumWithOid::from(server)],
        |r| (true, col::<String>(r, "usr"), col::<String>(r, "p")),
    )
    .into_iter()
    .next()
    .unwrap_or((false, None, None))
}

/// Upsert a tenant: `change` applied to what is stored (each setting it does not name
/// kept), the password kept when none is given. Returns what changed (field names only).
pub fn set_tenant_connection(
    tenant: &CheckedName,
    change: ConnectionChange,
    password: Option<&str>,
    test_first: bool,
) -> crate::pure::error::WhResult<Value> {
    let start = std::time::Instant::now();
    catalog::check_caller();
    // Refuse a name whose schema wh could not make (reserved, a role's name, a schema wh
    // did not make) before anything is written.
    exec(
        "SELECT _wh._make_tenant_schema($1, false)",
        &[DatumWithOid::from(tenant.as_str())],
    );
    let server = server_name(tenant);
    let old = stored(tenant);
    let conn = &change.apply(old.as_ref())?;
    let (has_mapping, old_user, old_password) = mapping_state(&server);
    let password = match (password, old.is_some()) {
        (Some(p), _) => p.to_string(),
        (None, true) => old_password.clone().unwrap_or_default(),
        (None, false) => {
            return Err(crate::pure::error::WhError::NullArgument { what: "password" })
        }
    };
    save_server(&server, conn, &password, has_mapping);
    save_connection_row(tenant, conn, &server);
    let password_changed = !has_mapping || old_password.as_deref() != Some(password.as_str());
    let (action, changed) =
        audited_change(conn, old.as_ref(), old_user.as_deref(), password_changed);
    catalog::audit_connection(tenant, action, &changed);
    // Everything is in place but uncommitted: connect with it now, and on failure raise,
    // so nothing of this call is saved (a rotation to a wrong password keeps the old one).
    let mut r = if test_first {
        tested_or_refused(tenant)
    } else {
        let mut t = OpResult::new("set_tenant_connection", None, Some(tenant.as_str()), None);
        t.detail("tested", json!(false));
        t
    };
    r.ms = ms_since(start);
    r.detail("action", json!(action));
    r.detail("changed_fields", json!(changed));
    r.detail("server", json!(server));
    log_run(&r);
    Ok(r.to_json())
}

/// The tenant's foreign server (made or altered), owned by wh_admin, and its user mapping
/// with the login (the password never in a statement's text that could be logged). On
/// Citus they stay on the coordinator, the only node that fetches.
fn save_server(server: &str, conn: &Connection, password: &str, has_mapping: bool) {
    crate::catalog::db::coordinator_only(|| save_server_here(server, conn, password, has_mapping))
}

fn save_server_here(server: &str, conn: &Connection, password: &str, has_mapping: bool) {
    if server_exists(server) {
        let keys = server_option_keys(server);
        exec(&connopts::alter_server(server, conn, &keys), &[]);
    } else {
        exec(&connopts::create_server(server, conn), &[]);
    }
    exec_all(&sql::server_for_admin(server));
    exec(
        "SELECT _wh._set_user_mapping($1, $2, $3, $4)",
        &[
            DatumWithOid::from(server),
            DatumWithOid::from(conn.username.as_str()),
            DatumWithOid::from(password),
            DatumWithOid::from(has_mapping),
        ],
    );
}

/// The tenant's row of `_wh.tenant_connections`, inserted or updated.
fn save_connection_row(tenant: &CheckedName, conn: &Connection, server: &str) {
    let args = [
        DatumWithOid::from(tenant.as_str()),
        DatumWithOid::from(conn.host.as_str()),
        DatumWithOid::from(conn.port),
        DatumWithOid::from(conn.dbname.as_str()),
        DatumWithOid::from(conn.username.as_str()),
        DatumWithOid::from(conn.sslmode.as_str()),
        DatumWithOid::from(conn.remote_timeout_ms),
        DatumWithOid::from(server),
        DatumWithOid::from(conn.channel_binding.as_str()),
        DatumWithOid::from(conn.sslrootcert.as_deref()),
    ];
    exec(
        "INSERT INTO _wh.tenant_connections AS t (tenant_name, host, port, dbname, username, sslmode, remote_timeout, server_name, channel_binding, sslrootcert) \
         VALUES ($1, $2, $3, $4, $5, $6, pg_catalog.make_interval(secs => $7::float8 / 1000::float8), $8, $9, $10) \
         ON CONFLICT (tenant_name) DO UPDATE SET host = EXCLUDED.host, port = EXCLUDED.port, dbname = EXCLUDED.dbname, \
             username = EXCLUDED.username, sslmode = EXCLUDED.sslmode, remote_timeout = EXCLUDED.remote_timeout, \
             channel_binding = EXCLUDED.channel_binding, sslrootcert = EXCLUDED.sslrootcert, \
             server_name = EXCLUDED.server_name, updated_at = pg_catalog.now()",
        &args,
    );
}

/// What the audit says of this change: `create` with every field, or `update` with the
/// fields that changed (the login's user and password included, never their values).
fn audited_change(
    conn: &Connection,
    old: Option<&Connection>,
    old_user: Option<&str>,
    password_changed: bool,
) -> (&'static str, Vec<String>) {
    let (action, mut changed): (&str, Vec<&str>) = match old {
        None => (
            "create",
            vec![
                "host",
                "port",
                "dbname",
                "username",
                "sslmode",
                "channel_binding",
                "remote_timeout",
            ],
        ),
        Some(o) => ("update", conn.changed_fields(o)),
    };
    if old.is_none() && conn.sslrootcert.is_some() {
        changed.push("sslrootcert");
    }
    if old.is_some() && old_user != Some(conn.username.as_str()) && !changed.contains(&"username") {
        changed.push("username");
    }
    if password_changed {
        changed.push("password");
    }
    (action, changed.iter().map(|s| s.to_string()).collect())
}

/// The connection alone, tested (a registration never waits on the templates' queries);
/// a failure raises, so nothing of the call is saved.
fn tested_or_refused(tenant: &CheckedName) -> OpResult {
    let t = tested(tenant, "set_tenant_connection", false);
    if t.status == crate::pure::report::Status::Failed {
        crate::pure::error::raise_with_hint(
            crate::pure::error::WhError::ConnectionTestFailed {
                tenant: tenant.to_string(),
                sqlstate: t.sqlstate.clone().unwrap_or_else(|| "08000".into()),
                message: t.error.clone().unwrap_or_default(),
            },
            "fix the setting it names, or pass test_first => false to save it untested (e.g. a source that is down for now)".into(),
        );
    }
    t
}

/// What the source says about itself: version, SSL, database and user, and the round
/// trip. Raises (the tenant's failure, `wh: tenant …`) when it cannot be reached.
pub fn probe(tenant: &CheckedName) -> Value {
    let t = catalog::load_tenant(tenant);
    let start = std::time::Instant::now();
    let probe =
        "SELECT pg_catalog.version(), pg_catalog.current_setting('server_version_num')::int, \
                 (SELECT ssl FROM pg_catalog.pg_stat_ssl WHERE pid = pg_catalog.pg_backend_pid()), \
                 pg_catalog.current_database()::text, current_user::text";
    let conn = remote::conn_name("wh_t_", tenant);
    let deadline = remote::deadline_for(&t);
    remote::send(&t, &conn, probe);
    let found = remote::receive_rows(&t, &conn, deadline);
    let row = found.into_iter().next().unwrap_or_default();
    let at = |i: usize| row.get(i).cloned().flatten();
    let (version, num, ssl, db, usr) = (
        at(0),
        at(1).and_then(|v| v.parse::<i32>().ok()),
        at(2).map(|v| v == "t"),
        at(3),
        at(4),
    );
    json!({
        "round_trip_ms": ms_since(start),
        "server_version": version,
        "server_version_num": num,
        "ssl": ssl,
        "database": db,
        "user": usr,
    })
}

/// How long a template's column check waits for its one row.
const CHECK_TIMEOUT_MS: i64 = 5_000;

/// The columns the template's query (the tenant's own, if it has one) returns on this
/// tenant's source, for today, against the template's: `missing` ones fail every build
/// (the query must return each, aliased `AS <name>`), `extra` ones are never stored.
/// Asks for at most one row (a LEFT JOIN gives the column names even for an empty day).
pub fn check_template_columns(tenant: &CheckedName, template: &CheckedName) -> Value {
    let t = catalog::load_tenant(tenant);
    let lt = catalog::load_template(template);
    let query = match catalog::tenant_query(template, tenant) {
        Some(q) => lt.t.with_query(&q).unwrap_or_else(|_| lt.t.clone()),
        None => lt.t.clone(),
    };
    let conn = remote::conn_name("wh_t_", tenant);
    // A check, not a build: it waits at most CHECK_TIMEOUT_MS (or the tenant's shorter
    // remote_timeout), so a slow template never holds a registration for long.
    let deadline = remote::deadline_for(&t).min(remote::now_ms() + CHECK_TIMEOUT_MS);
    // A day likely to have rows: the latest this tenant has of this template (of any
    // template for a new one), else today.
    let day = one::<pgrx::datum::Date>(
        "SELECT coalesce(max(range_start) FILTER (WHERE template_name = $1), max(range_start)) FROM _wh.slices \
         WHERE tenant_name = $2 AND kind = 'day' AND row_count > 0",
        &[DatumWithOid::from(template.as_str()), DatumWithOid::from(tenant.as_str())],
    )
    .and_then(|d| catalog::db::day_of(d).ok())
    .unwrap_or_else(catalog::today);
    remote::send(
        &t,
        &conn,
        &crate::pure::sql::source_columns_probe(&query, day),
    );
    let got: Vec<Option<String>> = remote::receive_rows(&t, &conn, deadline)
        .into_iter()
        .map(|r| r.into_iter().next().flatten())
        .collect();
    let names: Option<Vec<String>> = got
        .into_iter()
        .flatten()
        .next()
        .and_then(|j| serde_json::from_str::<serde_json::Map<String, Value>>(&j).ok())
        .map(|m| m.keys().cloned().collect());
    let Some(names) = names else {
        // No row that day: the columns cannot be seen (nothing is wrong yet).
        return json!({"template": template.as_str(), "checked": false, "day": day.iso()});
    };
    let (missing, extra) = lt.t.column_differences(&names);
    json!({"template": template.as_str(), "checked": true, "day": day.iso(), "missing": missing, "extra": extra})
}

/// `probe` or `check_template_columns` isolated in a subtransaction: their failure comes
/// back, not raised (a local cancel still ends the call).
fn try_probe(tenant: &CheckedName, template: Option<&CheckedName>) -> Result<Value, Failure> {
    crate::catalog::db::in_subtransaction(|| match template {
        None => probe(tenant),
        Some(t) => check_template_columns(tenant, t),
    })
}

/// The connection test and, `with_columns` and when it connects, every fetched template's
/// column check (each waits at most CHECK_TIMEOUT_MS): a failed OpResult (never raised)
/// when the source cannot be reached.
fn tested(tenant: &CheckedName, operation: &str, with_columns: bool) -> OpResult {
    let mut r = OpResult::new(operation, None, Some(tenant.as_str()), None);
    let got = match try_probe(tenant, None) {
        Ok(got) => got,
        Err(f) => {
            let explained = connopts::explain_connect_failure(tenant.as_str(), &f.message);
            return r.failed(&f.sqlstate, explained.as_deref().unwrap_or(&f.message));
        }
    };
    if let Some(obj) = got.as_object() {
        for (k, v) in obj {
            r.detail(k, v.clone());
        }
        r.ms = obj
            .get("round_trip_ms")
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
    }
    if !with_columns {
        return r;
    }
    let mut checks = Vec::new();
    for template in catalog::fetched_template_names() {
        match try_probe(tenant, Some(&template)) {
            Ok(c) => checks.push(c),
            Err(f) => checks.push(json!({"template": template.as_str(), "error": f.message})),
        }
    }
    for c in &checks {
        if let Some(m) = column_warning(c) {
            pgrx::warning!("wh: tenant {tenant}: {m}");
        }
    }
    r.detail("templates", json!(checks));
    r
}

/// A template check's finding in words, or None when its columns agree.
fn column_warning(check: &Value) -> Option<String> {
    let template = check.get("template").and_then(Value::as_str).unwrap_or("?");
    if let Some(e) = check.get("error").and_then(Value::as_str) {
        return Some(format!(
            "template {template}: its query failed on this source: {e}"
        ));
    }
    let list = |k: &str| -> Vec<String> {
        check
            .get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (missing, extra) = (list("missing"), list("extra"));
    let mut said = Vec::new();
    if !missing.is_empty() {
        said.push(format!(
            "its query returns no column named {} (every build will fail: alias each in the select list, e.g. `… AS {}`)",
            missing.join(", "),
            missing[0]
        ));
    }
    if !extra.is_empty() {
        said.push(format!(
            "its query also returns {}, which the template does not declare: never stored (declare them, or leave them out of the query)",
            extra.join(", ")
        ));
    }
    (!said.is_empty()).then(|| format!("template {template}: {}", said.join("; ")))
}

/// Connect to the tenant and report its server version, SSL use, the round-trip time
/// and each template's columns on this source. A source that cannot be reached gives a
/// failed result (never an error), so a query over every tenant reports each one.
pub fn test_tenant_connection(tenant: &CheckedName) -> Value {
    catalog::load_tenant(tenant);
    let r = tested(tenant, "test_tenant_connection", true);
    log_run(&r);
    let mut out = r.to_json();
    out["round_trip_ms"] = json!(r.ms);
    out
}
