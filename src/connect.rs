//! Tenant connections: the `tenant_connections` row (no secret), the `dblink_fdw` foreign
//! server and its user mapping (the secret), and the audit trail.

use pgrx::datum::DatumWithOid;
use serde_json::{json, Value};

use crate::catalog::{self, dblink_schema, log_run};
use crate::connopts::{self, Connection, ConnectionChange};
use crate::db::{col, exec, exec_all, ms_since, one, rows};
use crate::names::{quote_ident, server_name, CheckedName};
use crate::remote;
use crate::report::OpResult;
use crate::sql::ADMIN_ROLE;

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
) -> crate::error::WhResult<Value> {
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
        (None, false) => return Err(crate::error::WhError::NullArgument { what: "password" }),
    };
    let password = password.as_str();
    let have_server = server_exists(&server);

    if have_server {
        let keys = server_option_keys(&server);
        exec(&connopts::alter_server(&server, conn, &keys), &[]);
    } else {
        exec(&connopts::create_server(&server, conn), &[]);
    }
    exec_all(&[
        format!(
            "ALTER SERVER {} OWNER TO {ADMIN_ROLE}",
            quote_ident(&server)
        ),
        format!(
            "REVOKE ALL ON FOREIGN SERVER {} FROM PUBLIC",
            quote_ident(&server)
        ),
        format!(
            "GRANT USAGE ON FOREIGN SERVER {} TO {ADMIN_ROLE}",
            quote_ident(&server)
        ),
    ]);
    let password_changed = !has_mapping || old_password.as_deref() != Some(password);
    exec(
        "SELECT _wh._set_user_mapping($1, $2, $3, $4)",
        &[
            DatumWithOid::from(server.as_str()),
            DatumWithOid::from(conn.username.as_str()),
            DatumWithOid::from(password),
            DatumWithOid::from(has_mapping),
        ],
    );

    let args = [
        DatumWithOid::from(tenant.as_str()),
        DatumWithOid::from(conn.host.as_str()),
        DatumWithOid::from(conn.port),
        DatumWithOid::from(conn.dbname.as_str()),
        DatumWithOid::from(conn.username.as_str()),
        DatumWithOid::from(conn.sslmode.as_str()),
        DatumWithOid::from(conn.remote_timeout_ms),
        DatumWithOid::from(server.as_str()),
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

    let (action, mut changed): (&str, Vec<&str>) = match &old {
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
    if old.is_some()
        && old_user.as_deref() != Some(conn.username.as_str())
        && !changed.contains(&"username")
    {
        changed.push("username");
    }
    if password_changed {
        changed.push("password");
    }
    exec(
        "INSERT INTO _wh.connection_audit (tenant_name, action, changed_fields) VALUES ($1, $2, $3)",
        &[
            DatumWithOid::from(tenant.as_str()),
            DatumWithOid::from(action),
            DatumWithOid::from(changed.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
        ],
    );
    let mut r = OpResult::new("set_tenant_connection", None, Some(tenant.as_str()), None);
    r.ms = ms_since(start);
    r.detail("action", json!(action));
    r.detail("changed_fields", json!(changed));
    r.detail("server", json!(server));
    log_run(&r);
    Ok(r.to_json())
}

/// Connect to the tenant and report its server version, SSL use and the round-trip time.
pub fn test_tenant_connection(tenant: &CheckedName) -> Value {
    let t = catalog::load_tenant(tenant);
    let dbl = quote_ident(&dblink_schema());
    let start = std::time::Instant::now();
    let probe =
        "SELECT pg_catalog.version(), pg_catalog.current_setting('server_version_num')::int, \
                 (SELECT ssl FROM pg_catalog.pg_stat_ssl WHERE pid = pg_catalog.pg_backend_pid()), \
                 pg_catalog.current_database()::text, current_user::text";
    let conn = remote::conn_name("wh_t_", tenant);
    let deadline = remote::deadline_for(&t);
    remote::send(&t, &conn, probe);
    let sql = format!("SELECT * FROM {dbl}.dblink_get_result($1) AS t(version text, version_num int, ssl boolean, db text, usr text)");
    let found = remote::receive(&t, &conn, deadline, || {
        rows(&sql, &[DatumWithOid::from(conn.as_str())], |r| {
            (
                col::<String>(r, "version"),
                col::<i32>(r, "version_num"),
                col::<bool>(r, "ssl"),
                col::<String>(r, "db"),
                col::<String>(r, "usr"),
            )
        })
    });
    let ms = ms_since(start);
    let (version, num, ssl, db, usr) = found.into_iter().next().unwrap_or_default();
    let mut r = OpResult::new("test_tenant_connection", None, Some(tenant.as_str()), None);
    r.ms = ms;
    r.detail("server_version", json!(version));
    r.detail("server_version_num", json!(num));
    r.detail("ssl", json!(ssl));
    r.detail("database", json!(db));
    r.detail("user", json!(usr));
    log_run(&r);
    let mut out = r.to_json();
    out["round_trip_ms"] = json!(ms);
    out
}
