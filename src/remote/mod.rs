//! Calls that reach a tenant's server. A failure there (connection refused, bad password,
//! remote statement timeout, a query error) is re-raised naming the tenant, with the
//! original SQLSTATE; the secret is never part of any message.
//!
//! Every remote query is sent asynchronously on a named dblink connection and waited for
//! here, against a local deadline (the tenant's `remote_timeout` plus a grace): a source
//! that ignores its own statement_timeout and our cancel is disconnected when the
//! deadline passes, so no source can hold a call (or another tenant) longer than that.

pub mod connect;

use std::panic::AssertUnwindSafe;
use std::time::{SystemTime, UNIX_EPOCH};

use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::panic::{CaughtError, ErrorReport};
use pgrx::PgTryBuilder;

use crate::catalog::db::{col, exec, one, rows};
use crate::catalog::{dblink_schema, Tenant};
use crate::pure::error::{raise, WhError};
use crate::pure::names::{quote_ident, CheckedName};

/// How long past its remote statement_timeout wh waits for a source before it gives up
/// and disconnects (a source obeying its timeout answers with an error well before).
pub const GRACE_MS: i64 = 2_000;

/// Milliseconds since the epoch (a deadline that survives a trip through SQL).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// When a query sent now to `tenant` must have answered.
pub fn deadline_for(tenant: &Tenant) -> i64 {
    now_ms() + tenant.remote_timeout_ms + GRACE_MS
}

/// The dblink connection name wh uses for `tenant` (`prefix` tells the paths apart).
pub fn conn_name(prefix: &str, tenant: &CheckedName) -> String {
    format!("{prefix}{tenant}")
}

fn dbl() -> String {
    quote_ident(&dblink_schema())
}

/// dblink connections of this session whose names start with `prefix`.
pub fn open_connections(prefix: &str) -> Vec<String> {
    rows(
        &format!("SELECT c FROM pg_catalog.unnest({}.dblink_get_connections()) c WHERE pg_catalog.starts_with(c, $1)", dbl()),
        &[DatumWithOid::from(prefix)],
        |r| col::<String>(r, "c").unwrap_or_default(),
    )
}

pub fn disconnect(conn: &str) {
    if open_connections(conn).iter().any(|c| c == conn) {
        exec(
            &format!("SELECT {}.dblink_disconnect($1)", dbl()),
            &[DatumWithOid::from(conn)],
        );
    }
}

/// Open the named connection `conn` to the tenant's server (closing a stale one of that
/// name, left by a call that was cancelled) and send `sql` on it.
pub fn send(tenant: &Tenant, conn: &str, sql: &str) {
    disconnect(conn);
    let d = dbl();
    guard(&tenant.name, || {
        exec(
            &format!("SELECT {d}.dblink_connect($1, $2)"),
            &[
                DatumWithOid::from(conn),
                DatumWithOid::from(tenant.server.as_str()),
            ],
        );
        if one::<i32>(
            &format!("SELECT {d}.dblink_send_query($1, $2)"),
            &[DatumWithOid::from(conn), DatumWithOid::from(sql)],
        ) != Some(1)
        {
            raise(WhError::Remote {
                tenant: tenant.name.to_string(),
                message: "dblink_send_query could not send the query".into(),
            });
        }
    });
}

/// One poll: has the answer on `conn` arrived? Each dblink_is_busy reads what came so
/// far, but at most one network read (about 16 kB, one TLS record) per call: a poll makes
/// up to `READS_PER_POLL` of them in one statement, so a big answer streams in at network
/// speed rather than 16 kB per nap (a call with nothing to read returns at once). The
/// statement is built once per wait (dblink's schema is looked up once, not per poll).
pub struct Poller {
    sql: String,
}

impl Poller {
    pub fn new() -> Self {
        Poller {
            sql: format!(
                "SELECT pg_catalog.bool_or({}.dblink_is_busy($1) OPERATOR(pg_catalog.=) 0) FROM pg_catalog.generate_series(1, {READS_PER_POLL})",
                dbl()
            ),
        }
    }

    pub fn ready(&self, tenant: &CheckedName, conn: &str) -> bool {
        guard(tenant, || {
            one::<bool>(&self.sql, &[DatumWithOid::from(conn)]).unwrap_or(false)
        })
    }
}

const READS_PER_POLL: i32 = 256;

/// Give up on `conn`: disconnect, and fail with 57014 naming the tenant. The source's
/// backend may go on for a while; this session no longer waits for it.
pub fn abandon(tenant: &Tenant, conn: &str) -> ! {
    // No dblink_cancel_query: libpq's cancel request waits, uninterruptibly, for the
    // source to close it, which a hostile one never does. Closing the connection is
    // enough: the source ends its query when it next writes to the closed socket.
    disconnect(conn);
    let rt = tenant.remote_timeout_ms as f64 / 1000.0;
    let e = ErrorReport::new(
        pgrx::PgSqlErrorCode::ERRCODE_QUERY_CANCELED,
        format!(
            "wh: tenant {}: no answer within {:.1} s (its remote_timeout {rt:.1} s plus {} s): gave up and disconnected",
            tenant.name,
            rt + (GRACE_MS / 1000) as f64,
            GRACE_MS / 1000
        ),
        "wh::remote",
    );
    e.report(pgrx::PgLogLevel::ERROR);
    unreachable!()
}

/// Wait for the answer to the query sent on `conn` (at most until `deadline_ms`), read
/// it with `read`, and close the connection. An error while reading is the tenant's when
/// the source answered with one; otherwise it happened here, storing the rows.
pub fn receive<R>(tenant: &Tenant, conn: &str, deadline_ms: i64, read: impl FnOnce() -> R) -> R {
    wait_ready(tenant, conn, deadline_ms);
    let phase = if answer_failed(conn) {
        Phase::SourceError
    } else {
        Phase::Store
    };
    let out = guard_in(&tenant.name, phase, read);
    disconnect(conn);
    out
}

/// Wait until the answer on `conn` has arrived, at most until `deadline_ms`. Sleeps in
/// short steps (a local cancel or statement_timeout interrupts them and ends the call).
fn wait_ready(tenant: &Tenant, conn: &str, deadline_ms: i64) {
    let start = now_ms();
    let poller = Poller::new();
    loop {
        let poll = std::time::Instant::now();
        if poller.ready(&tenant.name, conn) {
            return;
        }
        let now = now_ms();
        if now >= deadline_ms {
            abandon(tenant, conn);
        }
        // A poll that took a while was reading an answer as it streams in: poll again at
        // once. Only an idle wait (the source still working) naps.
        if poll.elapsed() < STREAMING {
            nap(now - start, deadline_ms - now);
        }
    }
}

/// A poll of `READS_PER_POLL` reads that takes longer than this found data to read (an
/// idle poll takes well under a millisecond).
pub const STREAMING: std::time::Duration = std::time::Duration::from_millis(2);

/// Sleep between polls: a tenth of the time waited so far (1 to 50 ms), so a quick
/// answer is taken within a few ms and a long wait costs a poll every 50 ms.
pub fn nap(waited_ms: i64, left_ms: i64) {
    let step = (waited_ms / 10).clamp(1, 50).min(left_ms.max(1));
    exec(
        "SELECT pg_catalog.pg_sleep($1::float8 / 1000::float8)",
        &[DatumWithOid::from(step as f64)],
    );
}

/// While alive, this backend's stderr goes to /dev/null. libpq (inside dblink) prints a
/// source's NOTICEs and WARNINGs to stderr, which is the server log: a source could flood
/// it or forge lines in it. wh asks sources for none (`client_min_messages=error` in every
/// server's options); this also silences a source function that sets its own. Restored
/// when dropped, on unwinding too, before any error of ours is logged.
struct QuietStderr {
    saved: i32,
}

impl QuietStderr {
    fn new() -> Option<Self> {
        // SAFETY: plain fd calls on this process's own descriptors; on any failure nothing changes.
        unsafe {
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
            if null < 0 {
                return None;
            }
            let saved = libc::dup(2);
            if saved < 0 || libc::dup2(null, 2) < 0 {
                libc::close(null);
                if saved >= 0 {
                    libc::close(saved);
                }
                return None;
            }
            libc::close(null);
            Some(QuietStderr { saved })
        }
    }
}

impl Drop for QuietStderr {
    fn drop(&mut self) {
        // SAFETY: `saved` is the descriptor dup'ed from stderr in `new`.
        unsafe {
            libc::dup2(self.saved, 2);
            libc::close(self.saved);
        }
    }
}

/// Run `f` (which talks to a source through dblink) with the source's messages kept out
/// of the server log; re-raise any PostgreSQL error it throws as `wh: tenant <name>:
/// <message>` keeping its SQLSTATE and detail.
pub fn guard<R>(tenant: &CheckedName, f: impl FnOnce() -> R) -> R {
    guard_in(tenant, Phase::Talk, f)
}

/// What an error raised inside a guarded call means.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Connecting, sending, polling: the tenant's failure, except a cancel (57014), which
    /// is this backend's own (a local cancel or statement_timeout) and ends the whole call.
    Talk,
    /// Reading an answer that is the source's error: the tenant's, a 57014 included (its
    /// statement_timeout, its DBA's cancel).
    SourceError,
    /// Reading an answer the source sent without error into the warehouse: a failure here
    /// (overflow into a declared column, disk full, temp_file_limit) is not the source's.
    Store,
}

/// Did the source answer the query on `conn` with an error?
fn answer_failed(conn: &str) -> bool {
    one::<String>(
        &format!("SELECT {}.dblink_error_message($1)", dbl()),
        &[DatumWithOid::from(conn)],
    )
    .is_some_and(|m| m != "OK")
}

fn guard_in<R>(tenant: &CheckedName, phase: Phase, f: impl FnOnce() -> R) -> R {
    let _quiet = QuietStderr::new();
    let tenant = tenant.to_string();
    PgTryBuilder::new(AssertUnwindSafe(f))
        .catch_others(move |e| {
            // The caller's own cancel (pg_cancel_backend, Ctrl-C, its statement_timeout)
            // is not the tenant's failure: it goes on unchanged and ends the whole call.
            if phase != Phase::SourceError && is_cancel(&e) {
                e.rethrow()
            }
            match e {
            CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) if phase == Phase::Store => {
                // The source answered; the warehouse could not take its rows (a value that
                // overflows a declared column, disk full, temp_file_limit): not the source's fault.
                ErrorReport::new(
                    r.sql_error_code(),
                    format!("wh: tenant {tenant}: the source answered, but the warehouse could not store its rows: {}", one_line(r.message())),
                    "wh::remote",
                )
                .report(pgrx::PgLogLevel::ERROR);
                unreachable!()
            }
            CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => {
                if let Some(limit) = limit_hit(r.message()) {
                    ErrorReport::new(
                        pgrx::PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                        format!("wh: tenant {tenant}: the source's answer is over the template's limits: {limit}; nothing was changed (see _wh.set_template_limits)"),
                        "wh::remote",
                    )
                    .report(pgrx::PgLogLevel::ERROR);
                    unreachable!()
                }
                // dblink puts libpq's reason ("password authentication failed ...") in the
                // detail: fold it into the message so the run log and callers see it. A
                // source's text is one line here: it can never forge a server log line.
                let message = match r.detail() {
                    Some(d) if !d.trim().is_empty() => {
                        format!("wh: tenant {tenant}: {}: {}", one_line(r.message()), one_line(&scrub(d.trim())))
                    }
                    _ => format!("wh: tenant {tenant}: {}", one_line(r.message())),
                };
                ErrorReport::new(r.sql_error_code(), message, "wh::remote").report(pgrx::PgLogLevel::ERROR);
                unreachable!()
            }
            other => other.rethrow(),
            }
        })
        .execute()
}

fn is_cancel(e: &CaughtError) -> bool {
    matches!(e, CaughtError::PostgresError(r) | CaughtError::ErrorReport(r)
        if r.sql_error_code() == pgrx::PgSqlErrorCode::ERRCODE_QUERY_CANCELED)
}

/// A source's text as wh passes it on: control characters (newlines included) as spaces,
/// at most `report::MAX_SOURCE_TEXT` bytes, saying how much was cut.
pub fn one_line(s: &str) -> String {
    let head = crate::pure::report::capped_head(s);
    let flat: String = head
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if head.len() == s.len() {
        flat
    } else {
        format!("{flat}… ({} more bytes cut)", s.len() - head.len())
    }
}

/// The limit a source's answer ran into, from the error wh's own guard raises on the
/// source (`invalid input syntax for type integer: "wh_limit: ..."`).
pub fn limit_hit(message: &str) -> Option<String> {
    let at = message.find(crate::pure::template::LIMIT_MARK)?;
    let rest = &message[at + crate::pure::template::LIMIT_MARK.len()..];
    Some(one_line(rest.trim_end_matches('"').trim()))
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
    fn source_text_is_one_line_and_limits_are_recognised() {
        assert_eq!(super::one_line("a\nLOG:  forged\r"), "a LOG:  forged ");
        assert_eq!(
            super::limit_hit(
                "invalid input syntax for type integer: \"wh_limit: 11 rows over max_rows 10\""
            )
            .as_deref(),
            Some("11 rows over max_rows 10")
        );
        assert_eq!(super::limit_hit("relation x does not exist"), None);
    }

    #[test]
    fn a_source_text_is_capped_on_a_character_boundary() {
        let huge = format!("é{}", "x\n".repeat(5_000_000));
        let out = super::one_line(&huge);
        assert!(
            out.len() < crate::pure::report::MAX_SOURCE_TEXT + 64,
            "{}",
            out.len()
        );
        assert!(
            out.starts_with("éx x ") && out.ends_with("more bytes cut)") && !out.contains('\n')
        );
        let multibyte = "é".repeat(3000);
        assert!(super::one_line(&multibyte).ends_with(" more bytes cut)"));
        assert_eq!(super::one_line("short"), "short");
        assert_eq!(crate::pure::report::capped("short"), "short");
        assert!(
            crate::pure::report::capped(&multibyte).len()
                <= crate::pure::report::MAX_SOURCE_TEXT + 40
        );
    }

    #[test]
    fn scrub_drops_password_fragments() {
        assert_eq!(
            super::scrub("host=x password=hunter2 user=u"),
            "host=x password=*** user=u"
        );
        assert_eq!(super::scrub("no secrets here"), "no secrets here");
    }
}
