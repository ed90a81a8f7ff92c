//! Tenant connection settings: validation, the foreign-server options wh sets, and
//! which fields changed (for the audit trail). Pure: no SPI.

use crate::pure::error::{WhError, WhResult};
use crate::pure::names::{quote_ident, quote_literal};

pub const SSLMODES: &[&str] = &[
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];
/// libpq's channel_binding. `require` (the default) refuses a server that does not prove,
/// through SCRAM channel binding, that it holds the certificate the TLS session used: an
/// impostor with any certificate that asks for a cleartext or md5 password gets nothing.
pub const CHANNEL_BINDINGS: &[&str] = &["require", "prefer", "disable"];
/// Seconds libpq waits for a connection before giving up.
pub const CONNECT_TIMEOUT_S: u32 = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub host: String,
    pub port: i32,
    pub dbname: String,
    pub username: String,
    pub sslmode: String,
    pub sslrootcert: Option<String>,
    /// libpq channel_binding: `require` unless relaxed explicitly for this tenant.
    pub channel_binding: String,
    /// Remote statement_timeout, milliseconds.
    pub remote_timeout_ms: i64,
}

fn plain(what: &'static str, v: &str) -> WhResult<()> {
    if v.is_empty() {
        return Err(WhError::invalid(what, "must not be empty"));
    }
    if v.len() > 255 || v.chars().any(|c| c.is_control()) {
        return Err(WhError::invalid(
            what,
            format!("{v:?} is not a usable {what}"),
        ));
    }
    Ok(())
}

impl Connection {
    pub fn validate(&self) -> WhResult<()> {
        plain("host", &self.host)?;
        // One host (a list would be resolved, name by name, inside one uninterruptible call).
        if self.host.chars().any(|c| {
            c.is_whitespace() || c == '\'' || c == '"' || c == '\\' || c == '=' || c == ','
        }) {
            return Err(WhError::invalid(
                "host",
                format!("{:?} is not a host name or address", self.host),
            ));
        }
        if !(1..=65535).contains(&self.port) {
            return Err(WhError::invalid(
                "port",
                format!("{} is not 1..65535", self.port),
            ));
        }
        plain("dbname", &self.dbname)?;
        plain("username", &self.username)?;
        if !SSLMODES.contains(&self.sslmode.as_str()) {
            return Err(WhError::invalid(
                "sslmode",
                format!("{:?} is not one of {}", self.sslmode, SSLMODES.join(", ")),
            ));
        }
        if let Some(c) = &self.sslrootcert {
            plain("sslrootcert", c)?;
        }
        if !CHANNEL_BINDINGS.contains(&self.channel_binding.as_str()) {
            return Err(WhError::invalid(
                "channel_binding",
                format!(
                    "{:?} is not one of {}",
                    self.channel_binding,
                    CHANNEL_BINDINGS.join(", ")
                ),
            ));
        }
        if self.channel_binding == "require" && self.sslmode == "disable" {
            return Err(WhError::invalid(
                "channel_binding",
                "require needs TLS, and sslmode is disable: pass channel_binding => 'disable' to accept a source without TLS (it then sees the password)",
            ));
        }
        if self.remote_timeout_ms < 1000 {
            return Err(WhError::invalid(
                "remote_timeout",
                "must be at least 1 second",
            ));
        }
        Ok(())
    }

    /// The `options` libpq sends at connect: bound every remote statement, read UTC days,
    /// and make the remote session read-only so a template can never write there.
    pub fn remote_options(&self) -> String {
        format!(
            "-c statement_timeout={ms} -c idle_in_transaction_session_timeout={ms} -c TimeZone=UTC -c default_transaction_read_only=on -c client_min_messages=error",
            ms = self.remote_timeout_ms
        )
    }

    /// Every option of the foreign server, in a stable order.
    pub fn server_options(&self) -> Vec<(&'static str, String)> {
        let mut o = vec![
            ("host", self.host.clone()),
            ("port", self.port.to_string()),
            ("dbname", self.dbname.clone()),
            ("sslmode", self.sslmode.clone()),
            ("channel_binding", self.channel_binding.clone()),
            ("connect_timeout", CONNECT_TIMEOUT_S.to_string()),
            ("keepalives", "1".into()),
            ("keepalives_idle", "30".into()),
            ("keepalives_interval", "10".into()),
            ("keepalives_count", "3".into()),
            ("application_name", "wh".into()),
            ("options", self.remote_options()),
        ];
        if let Some(c) = &self.sslrootcert {
            o.push(("sslrootcert", c.clone()));
        }
        o
    }

    /// Fields that differ from `old` (names only; a password change is decided elsewhere).
    pub fn changed_fields(&self, old: &Connection) -> Vec<&'static str> {
        [
            ("host", self.host != old.host),
            ("port", self.port != old.port),
            ("dbname", self.dbname != old.dbname),
            ("username", self.username != old.username),
            ("sslmode", self.sslmode != old.sslmode),
            ("sslrootcert", self.sslrootcert != old.sslrootcert),
            (
                "channel_binding",
                self.channel_binding != old.channel_binding,
            ),
            (
                "remote_timeout",
                self.remote_timeout_ms != old.remote_timeout_ms,
            ),
        ]
        .into_iter()
        .filter_map(|(field, changed)| changed.then_some(field))
        .collect()
    }
}

/// What a `set_tenant_connection` call names: each `None` keeps the stored setting (for a
/// new tenant: host, port, dbname and username are needed; sslmode and channel_binding
/// default to `require`, the timeout to 30 minutes). An empty `sslrootcert` removes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionChange {
    pub host: Option<String>,
    pub port: Option<i32>,
    pub dbname: Option<String>,
    pub username: Option<String>,
    pub sslmode: Option<String>,
    pub sslrootcert: Option<String>,
    pub channel_binding: Option<String>,
    pub remote_timeout_ms: Option<i64>,
}

/// The default remote statement_timeout of a new tenant: 30 minutes.
pub const DEFAULT_REMOTE_TIMEOUT_MS: i64 = 30 * 60 * 1000;

impl ConnectionChange {
    /// The connection this change makes of `old` (the stored one; None for a new tenant),
    /// validated.
    pub fn apply(self, old: Option<&Connection>) -> WhResult<Connection> {
        let need = |what: &'static str| WhError::NullArgument { what };
        let conn = match old {
            Some(o) => Connection {
                host: self.host.unwrap_or_else(|| o.host.clone()),
                port: self.port.unwrap_or(o.port),
                dbname: self.dbname.unwrap_or_else(|| o.dbname.clone()),
                username: self.username.unwrap_or_else(|| o.username.clone()),
                sslmode: self.sslmode.unwrap_or_else(|| o.sslmode.clone()),
                sslrootcert: match self.sslrootcert {
                    Some(c) if c.is_empty() => None,
                    Some(c) => Some(c),
                    None => o.sslrootcert.clone(),
                },
                channel_binding: self
                    .channel_binding
                    .unwrap_or_else(|| o.channel_binding.clone()),
                remote_timeout_ms: self.remote_timeout_ms.unwrap_or(o.remote_timeout_ms),
            },
            None => Connection {
                host: self.host.ok_or(need("host"))?,
                port: self.port.ok_or(need("port"))?,
                dbname: self.dbname.ok_or(need("dbname"))?,
                username: self.username.ok_or(need("username"))?,
                sslmode: self.sslmode.unwrap_or_else(|| "require".into()),
                sslrootcert: self.sslrootcert.filter(|c| !c.is_empty()),
                channel_binding: self.channel_binding.unwrap_or_else(|| "require".into()),
                remote_timeout_ms: self.remote_timeout_ms.unwrap_or(DEFAULT_REMOTE_TIMEOUT_MS),
            },
        };
        conn.validate()?;
        Ok(conn)
    }
}

/// A failed connection's message with what to do about it when wh knows: a missing
/// password (a restored warehouse has none: pg_dump keeps no user mapping's password)
/// is re-entered with `set_tenant_connection`.
pub fn explain_connect_failure(tenant: &str, message: &str) -> Option<String> {
    let lower = message.to_ascii_lowercase();
    if lower.contains("password is required") || lower.contains("no password supplied") {
        return Some(format!(
            "{message} (wh has no password for this tenant, as after a restore from pg_dump: re-enter it with \
             SELECT _wh.set_tenant_connection({}, password => '…'))",
            quote_literal(tenant)
        ));
    }
    if lower.contains("password authentication failed") {
        return Some(format!(
            "{message} (rotated on the source? SELECT _wh.set_tenant_connection({}, password => '…') changes only the password)",
            quote_literal(tenant)
        ));
    }
    None
}

/// Foreign-server options wh passes to libpq: those it sets itself, and a few that only
/// narrow how it connects. Anything else on a tenant's server (a file of the warehouse's,
/// a service, replication) is refused, not passed.
const SERVER_KEYS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "sslmode",
    "channel_binding",
    "sslrootcert",
    "sslcrl",
    "sslsni",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "connect_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "target_session_attrs",
    "application_name",
    "options",
];

/// A path that names no file (libpq then sends no client certificate).
const NO_FILE: &str = "/nonexistent/wh-sends-no-client-certificate";

/// Session settings every wh connection adds to the server's `options`: COPY's text is
/// read back exactly as the source wrote it (ISO dates, postgres intervals, floats and
/// bytea in full).
pub const COPY_SESSION_OPTIONS: &str =
    "-c DateStyle=ISO -c IntervalStyle=postgres -c extra_float_digits=3 -c bytea_output=hex";

/// The libpq keywords and values of a tenant connection: the server's options (the login
/// only from its user mapping), the database's encoding, and `COPY_SESSION_OPTIONS`.
/// `Err` names an option wh does not pass.
pub fn libpq_params(
    server: &[(String, String)],
    mapping: &[(String, String)],
    encoding: &str,
) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in server {
        if !SERVER_KEYS.contains(&k.as_str()) {
            return Err(k.clone());
        }
        out.push((k.clone(), v.clone()));
    }
    for (k, v) in mapping {
        if k != "user" && k != "password" {
            return Err(k.clone());
        }
        out.push((k.clone(), v.clone()));
    }
    match out.iter_mut().find(|(k, _)| k == "options") {
        Some((_, v)) => *v = format!("{v} {COPY_SESSION_OPTIONS}"),
        None => out.push(("options".into(), COPY_SESSION_OPTIONS.into())),
    }
    out.push(("client_encoding".into(), encoding.into()));
    out.push(("fallback_application_name".into(), "wh".into()));
    // The warehouse's own credentials are never offered to a source: no client
    // certificate from the server account's ~/.postgresql, no Kerberos ticket.
    out.push(("sslcert".into(), NO_FILE.into()));
    out.push(("sslkey".into(), NO_FILE.into()));
    out.push(("gssencmode".into(), "disable".into()));
    Ok(out)
}

pub fn create_server(server: &str, c: &Connection) -> String {
    let opts: Vec<String> = c
        .server_options()
        .iter()
        .map(|(k, v)| format!("{k} {}", quote_literal(v)))
        .collect();
    format!(
        "CREATE SERVER {} FOREIGN DATA WRAPPER dblink_fdw OPTIONS ({})",
        quote_ident(server),
        opts.join(", ")
    )
}

/// ALTER SERVER that sets every option, adding the ones the server lacks and dropping
/// the ones wh no longer sets.
pub fn alter_server(server: &str, c: &Connection, existing_keys: &[String]) -> String {
    let wanted = c.server_options();
    let mut parts: Vec<String> = wanted
        .iter()
        .map(|(k, v)| {
            let verb = if existing_keys.iter().any(|e| e == k) {
                "SET"
            } else {
                "ADD"
            };
            format!("{verb} {k} {}", quote_literal(v))
        })
        .collect();
    for e in existing_keys {
        if !wanted.iter().any(|(k, _)| k == e) {
            parts.push(format!("DROP {}", quote_ident(e)));
        }
    }
    format!(
        "ALTER SERVER {} OPTIONS ({})",
        quote_ident(server),
        parts.join(", ")
    )
}

// The user mapping (the secret) is written by `_wh._set_user_mapping` (sql/wrappers.sql),
// which catches a failure of that DDL and re-raises it without the statement, so the
// password never reaches the server log as part of an error's context.

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_failures_say_what_to_do() {
        let m = explain_connect_failure(
            "acme",
            "wh: tenant acme: password is required: Non-superusers must provide a password",
        )
        .unwrap_or_default();
        assert!(
            m.contains("SELECT _wh.set_tenant_connection('acme', password => '…')"),
            "{m}"
        );
        assert!(
            explain_connect_failure("acme", "password authentication failed for user \"x\"")
                .unwrap_or_default()
                .contains("changes only the password")
        );
        assert_eq!(explain_connect_failure("acme", "could not connect"), None);
    }

    #[test]
    fn libpq_gets_the_servers_options_and_only_the_mappings_login() {
        let s = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let p = libpq_params(
            &s(&[("host", "h"), ("options", "-c statement_timeout=5")]),
            &s(&[("user", "u"), ("password", "p")]),
            "UTF8",
        )
        .unwrap();
        assert_eq!(p[0], ("host".into(), "h".into()));
        assert_eq!(
            p[1].1,
            format!("-c statement_timeout=5 {COPY_SESSION_OPTIONS}")
        );
        assert!(p.contains(&("password".into(), "p".into())));
        assert!(p.contains(&("client_encoding".into(), "UTF8".into())));
        assert_eq!(
            libpq_params(&s(&[("sslkey", "/x")]), &[], "UTF8"),
            Err("sslkey".into())
        );
        assert_eq!(
            libpq_params(&s(&[("password", "x")]), &[], "UTF8"),
            Err("password".into())
        );
        assert_eq!(
            libpq_params(&[], &s(&[("host", "x")]), "UTF8"),
            Err("host".into())
        );
        let bare = libpq_params(&[], &[], "UTF8").unwrap();
        assert_eq!(bare[0], ("options".into(), COPY_SESSION_OPTIONS.into()));
    }

    fn conn() -> Connection {
        Connection {
            host: "127.0.0.1".into(),
            port: 5432,
            dbname: "tenant_a".into(),
            username: "ro".into(),
            sslmode: "require".into(),
            sslrootcert: None,
            channel_binding: "require".into(),
            remote_timeout_ms: 1_800_000,
        }
    }

    #[test]
    fn validates() {
        assert!(conn().validate().is_ok());
        for bad in [
            Connection { port: 0, ..conn() },
            Connection {
                port: 70000,
                ..conn()
            },
            Connection {
                host: "".into(),
                ..conn()
            },
            Connection {
                host: "a b".into(),
                ..conn()
            },
            Connection {
                host: "x' password='y".into(),
                ..conn()
            },
            Connection {
                sslmode: "sometimes".into(),
                ..conn()
            },
            Connection {
                remote_timeout_ms: 10,
                ..conn()
            },
            Connection {
                dbname: "a\nb".into(),
                ..conn()
            },
            Connection {
                channel_binding: "maybe".into(),
                ..conn()
            },
            Connection {
                sslmode: "disable".into(),
                ..conn()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn server_ddl_bounds_every_remote_call() {
        let sql = create_server("wh_tenant_a", &conn());
        assert!(sql.starts_with("CREATE SERVER \"wh_tenant_a\" FOREIGN DATA WRAPPER dblink_fdw OPTIONS (host '127.0.0.1'"));
        for must in [
            "connect_timeout '10'",
            "keepalives '1'",
            "statement_timeout=1800000",
            "TimeZone=UTC",
            "default_transaction_read_only=on",
            "sslmode 'require'",
        ] {
            assert!(sql.contains(must), "{must}");
        }
        let alter = alter_server(
            "wh_tenant_a",
            &Connection {
                sslrootcert: Some("/ca.crt".into()),
                ..conn()
            },
            &["host".into(), "gone".into()],
        );
        assert!(
            alter.contains("SET host '127.0.0.1'")
                && alter.contains("ADD port '5432'")
                && alter.contains("ADD sslrootcert '/ca.crt'")
                && alter.contains("DROP \"gone\"")
        );
    }

    #[test]
    fn channel_binding_is_required_unless_relaxed() {
        let sql = create_server("wh_tenant_a", &conn());
        assert!(sql.contains("channel_binding 'require'"), "{sql}");
        assert!(sql.contains("client_min_messages=error"), "{sql}");
        let relaxed = Connection {
            sslmode: "disable".into(),
            channel_binding: "disable".into(),
            ..conn()
        };
        assert!(relaxed.validate().is_ok());
        assert!(create_server("wh_t", &relaxed).contains("channel_binding 'disable'"));
    }

    #[test]
    fn a_change_keeps_every_setting_it_does_not_name() {
        let old = Connection {
            host: "db.acme".into(),
            port: 5433,
            dbname: "prod".into(),
            username: "wh_ro".into(),
            sslmode: "verify-ca".into(),
            sslrootcert: Some("/etc/wh/acme.crt".into()),
            channel_binding: "prefer".into(),
            remote_timeout_ms: 300_000,
        };
        // A password rotation names nothing here: everything stays.
        assert_eq!(ConnectionChange::default().apply(Some(&old)).unwrap(), old);
        let moved = ConnectionChange {
            host: Some("db2.acme".into()),
            sslrootcert: Some(String::new()),
            sslmode: Some("require".into()),
            ..Default::default()
        }
        .apply(Some(&old))
        .unwrap();
        assert_eq!(
            moved.changed_fields(&old),
            vec!["host", "sslmode", "sslrootcert"]
        );
        assert_eq!(
            (moved.channel_binding.as_str(), moved.remote_timeout_ms),
            ("prefer", 300_000)
        );
        // A new tenant needs where and who; the rest has safe defaults.
        assert!(matches!(
            ConnectionChange {
                host: Some("h".into()),
                port: Some(5432),
                dbname: Some("d".into()),
                ..Default::default()
            }
            .apply(None),
            Err(WhError::NullArgument { what: "username" })
        ));
        let new = ConnectionChange {
            host: Some("h".into()),
            port: Some(5432),
            dbname: Some("d".into()),
            username: Some("u".into()),
            ..Default::default()
        }
        .apply(None)
        .unwrap();
        assert_eq!(
            (
                new.sslmode.as_str(),
                new.channel_binding.as_str(),
                new.remote_timeout_ms,
                new.sslrootcert
            ),
            ("require", "require", DEFAULT_REMOTE_TIMEOUT_MS, None)
        );
        // A bad value is still refused.
        assert!(ConnectionChange {
            sslmode: Some("maybe".into()),
            ..Default::default()
        }
        .apply(Some(&old))
        .is_err());
    }

    #[test]
    fn changed_fields_names_only_fields() {
        let new = Connection {
            host: "10.0.0.1".into(),
            remote_timeout_ms: 60_000,
            ..conn()
        };
        assert_eq!(new.changed_fields(&conn()), vec!["host", "remote_timeout"]);
        assert!(conn().changed_fields(&conn()).is_empty());
    }
}
