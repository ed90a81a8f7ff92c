//! Calls that reach a tenant's server. A failure there (connection refused, bad password,
//! remote statement timeout, a query error) is re-raised naming the tenant, with the
//! original SQLSTATE; the secret is never part of any message.

use std::panic::AssertUnwindSafe;

use pgrx::pg_sys::panic::{CaughtError, ErrorReport};
use pgrx::PgTryBuilder;

use crate::names::CheckedName;

/// Run `f` (which uses dblink); re-raise any PostgreSQL error it throws as
/// `wh: tenant <name>: <message>` keeping its SQLSTATE and detail.
pub fn guard<R>(tenant: &CheckedName, f: impl FnOnce() -> R) -> R {
    let tenant = tenant.to_string();
    PgTryBuilder::new(AssertUnwindSafe(f))
        .catch_others(move |e| match e {
            CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => {
                // dblink puts libpq's reason ("password authentication failed ...") in the
                // detail: fold it into the message so the run log and callers see it.
                let message = match r.detail() {
                    Some(d) if !d.trim().is_empty() => {
                        format!("wh: tenant {tenant}: {}: {}", r.message(), scrub(d.trim()).replace('\n', " "))
                    }
                    _ => format!("wh: tenant {tenant}: {}", r.message()),
                };
                ErrorReport::new(r.sql_error_code(), message, "wh::remote").report(pgrx::PgLogLevel::ERROR);
                unreachable!()
            }
            other => other.rethrow(),
        })
        .execute()
}

/// libpq never echoes a password, but a detail can carry a connection string: drop any
/// `password=...` fragment defensively.
pub fn scrub(s: &str) -> String {
    let mut out = Vec::new();
    for word in s.split(' ') {
        if word.to_ascii_lowercase().starts_with("password=") {
            out.push("password=***");
        } else {
            out.push(word);
        }
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn scrub_drops_password_fragments() {
        assert_eq!(super::scrub("host=x password=hunter2 user=u"), "host=x password=*** user=u");
        assert_eq!(super::scrub("no secrets here"), "no secrets here");
    }
}
