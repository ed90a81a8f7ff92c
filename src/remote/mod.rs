//! Calls that reach a tenant's server, over wh's own libpq connections (`pq`). A failure
//! there (connection refused, bad password, remote statement timeout, a query error, an
//! answer over the template's caps) is raised naming the tenant, with the source's
//! SQLSTATE; the secret is never part of any message.
//!
//! Every remote query is sent on a connection this backend keeps by name until its answer
//! is read (the fan-out sends to many tenants before it reads any), and waited for against
//! a local deadline (the tenant's `remote_timeout` plus a grace): a source that ignores
//! its own statement_timeout is disconnected when the deadline passes, so no source can
//! hold a call (or another tenant) longer than that. Closing the connection is the
//! cancel: libpq 15's cancel request waits, uninterruptibly, for the source to close it,
//! which a hostile one never does; a source ends its query when it next writes to the
//! closed socket.

pub mod connect;
pub mod pq;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::time::{SystemTime, UNIX_EPOCH};

use pgrx::pg_sys::panic::{CaughtError, ErrorReport};
use pgrx::PgTryBuilder;

use crate::catalog::Tenant;
use crate::pure::names::CheckedName;
use crate::pure::template::Limits;
use pq::{Conn, Fault};

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

/// The name wh keeps the connection for `tenant` under (`prefix` tells the paths apart).
pub fn conn_name(prefix: &str, tenant: &CheckedName) -> String {
    format!("{prefix}{tenant}")
}

/// `wh.max_source_connections`: how many source connections one backend holds open at
/// once (the fan-out sends to that many tenants, then one more as each answer is read).
pub static MAX_SOURCE_CONNECTIONS: pgrx::GucSetting<i32> = pgrx::GucSetting::<i32>::new(16);

/// `wh.max_connections_per_host`: of those, how many go to one source server (host and
/// port as registered) at once, so tenants sharing a server never burst it.
pub static MAX_CONNECTIONS_PER_HOST: pgrx::GucSetting<i32> = pgrx::GucSetting::<i32>::new(4);

/// wh's settings, defined when the library loads.
pub fn define_settings() {
    pgrx::GucRegistry::define_int_guc(
        c"wh.max_source_connections",
        c"Source connections one wh call holds open at once.",
        c"update_all_tenants and the fan-out job send to at most this many tenants at a time; each answer read frees a place for the next tenant.",
        &MAX_SOURCE_CONNECTIONS,
        1,
        1000,
        pgrx::GucContext::Userset,
        pgrx::GucFlags::default(),
    );
    pgrx::GucRegistry::define_int_guc(
        c"wh.max_connections_per_host",
        c"Source connections one wh call holds open at once to one source server.",
        c"Of the tenants update_all_tenants and the fan-out job send to at once, at most this many share a source server (host and port as registered with set_tenant_connection); the others wait for a place on their server.",
        &MAX_CONNECTIONS_PER_HOST,
        1,
        1000,
        pgrx::GucContext::Userset,
        pgrx::GucFlags::default(),
    );
}

/// Sleep up to `ms` (a set latch ends it early; a cancel raises).
pub fn nap(ms: i64) {
    pq::nap(ms)
}

thread_local! {
    /// This backend's open source connections, by name. Closed when their answer is read,
    /// when a name is reused, and all of them when a transaction aborts.
    static OPEN: RefCell<BTreeMap<String, Conn>> = const { RefCell::new(BTreeMap::new()) };
}

/// Names of this backend's open connections that start with `prefix`.
pub fn open_connections(prefix: &str) -> Vec<String> {
    OPEN.with(|o| {
        o.borrow()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    })
}

/// Close the connection named `name`, if open.
pub fn disconnect(name: &str) {
    drop(take(name));
}

fn take(name: &str) -> Option<Conn> {
    OPEN.with(|o| o.borrow_mut().remove(name))
}

/// Close every connection when a transaction aborts (an error or cancel between a send
/// and its receive leaves none behind). Registered once per backend.
fn close_all_on_abort() {
    static REGISTERED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if REGISTERED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    #[pgrx::pg_guard]
    unsafe extern "C-unwind" fn on_xact(
        event: pgrx::pg_sys::XactEvent::Type,
        _arg: *mut std::ffi::c_void,
    ) {
        if event == pgrx::pg_sys::XactEvent::XACT_EVENT_ABORT
            || event == pgrx::pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT
        {
            let all = OPEN.with(|o| std::mem::take(&mut *o.borrow_mut()));
            drop(all);
        }
    }
    // SAFETY: registers a callback with no argument, for the backend's life.
    unsafe { pgrx::pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut()) };
}

/// Open the connection `name` to the tenant's server (closing a stale one of that name,
/// left by a call that was cancelled) and send `sql` on it.
pub fn send(tenant: &Tenant, name: &str, sql: &str) {
    open_named(tenant, name, |conn, deadline| conn.send(sql, deadline));
}

/// Open the connection `name` to the tenant's server and ask for `request`'s COPY:
/// binary when every column the source returns has the built-in type of the staging
/// table's column and this session can read it, text otherwise (each value then read by
/// the declared type's input: a source's int8 into an int4 column arrives while it fits,
/// else fails naming the column). The source is asked for the types first, without
/// waiting here: the COPY goes out when that answer is in (`ready`, `receive_copy`), so a
/// fan-out never waits on one tenant to send to the next.
pub fn send_copy(tenant: &Tenant, name: &str, request: pq::CopyRequest) {
    open_named(tenant, name, |conn, deadline| {
        conn.start_copy(request, pq::session_reads_binary(), deadline)
    });
}

/// Open the connection `name` to the tenant's server (closing a stale one of that name,
/// left by a call that was cancelled), `start` its query within the tenant's deadline,
/// and keep it open under `name` for the answer.
fn open_named<F>(tenant: &Tenant, name: &str, start: F)
where
    F: FnOnce(&Conn, i64) -> Result<(), pq::Fault>,
{
    close_all_on_abort();
    disconnect(name);
    let deadline = deadline_for(tenant);
    let conn = Conn::open(&tenant.server, deadline).unwrap_or_else(|f| raise_fault(tenant, f));
    start(&conn, deadline).unwrap_or_else(|f| raise_fault(tenant, f));
    OPEN.with(|o| o.borrow_mut().insert(name.to_string(), conn));
}

/// Has the answer on `name` begun to arrive (a COPY's first row or its end, or an
/// error)? A connection that broke counts as ready: reading it reports why.
pub fn ready(name: &str) -> bool {
    OPEN.with(|o| match o.borrow().get(name) {
        Some(c) => c.copy_ready().unwrap_or(true),
        None => true,
    })
}

/// Read the rows answering the query sent on `name` (as text), then close it.
pub fn receive_rows(tenant: &Tenant, name: &str, deadline_ms: i64) -> Vec<Vec<Option<String>>> {
    let conn = take(name).unwrap_or_else(|| not_sent(tenant));
    conn.rows(deadline_ms)
        .unwrap_or_else(|f| raise_fault(tenant, f))
}

/// Stream the answer to the `COPY … TO STDOUT` sent on `name` into the relation `rel`,
/// the template's caps counted as it arrives; then close the connection. Returns the
/// rows stored. An answer that had begun when its reading starts (the fan-out read others
/// first) gets the tenant's whole time again: the wait was the warehouse's.
pub fn receive_copy(
    tenant: &Tenant,
    name: &str,
    deadline_ms: i64,
    rel: pgrx::pg_sys::Oid,
    limits: Limits,
) -> u64 {
    let conn = take(name).unwrap_or_else(|| not_sent(tenant));
    let deadline = if conn.copy_ready().unwrap_or(false) {
        deadline_ms.max(deadline_for(tenant))
    } else {
        deadline_ms
    };
    let got = store_guard(&tenant.name, || conn.copy_into(rel, limits, deadline));
    drop(conn);
    got.unwrap_or_else(|f| raise_fault(tenant, f))
}

fn not_sent(tenant: &Tenant) -> ! {
    raise_fault(
        tenant,
        Fault::Source {
            sqlstate: "08003".into(),
            message: "no query was sent on this connection".into(),
            detail: None,
        },
    )
}

/// Raise what went wrong with `tenant`'s source: `wh: tenant <name>: …`.
pub fn raise_fault(tenant: &Tenant, fault: Fault) -> ! {
    let name = &tenant.name;
    let (code, message) = match fault {
        Fault::Deadline => {
            let rt = tenant.remote_timeout_ms as f64 / 1000.0;
            (
                pgrx::PgSqlErrorCode::ERRCODE_QUERY_CANCELED,
                format!(
                    "wh: tenant {name}: no answer within {:.1} s (its remote_timeout {rt:.1} s plus {} s): gave up and disconnected",
                    rt + (GRACE_MS / 1000) as f64,
                    GRACE_MS / 1000
                ),
            )
        }
        Fault::Cap(hit) => (
            pgrx::PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!(
                "wh: tenant {name}: the source's answer is over the template's limits: {}; nothing was changed (see _wh.set_template_limits)",
                hit.describe()
            ),
        ),
        Fault::Source {
            sqlstate,
            message,
            detail,
        } => {
            // libpq's reason ("password authentication failed ...") is in the detail: fold
            // it into the message so the run log and callers see it. A source's text is one
            // line here: it can never forge a server log line.
            let message = match detail {
                Some(d) if !d.trim().is_empty() => format!(
                    "wh: tenant {name}: {}: {}",
                    one_line(&message),
                    one_line(&scrub(d.trim()))
                ),
                _ => format!("wh: tenant {name}: {}", one_line(&message)),
            };
            (crate::pure::error::sqlstate_code(&sqlstate), message)
        }
    };
    ErrorReport::new(code, message, "wh::remote").report(pgrx::PgLogLevel::ERROR);
    unreachable!()
}

/// Run `f`, which stores a source's answer here: an error raised while storing (a value
/// that overflows a declared column, disk full, temp_file_limit) is not the source's
/// fault and says so. This backend's own cancel goes on unchanged and ends the call.
fn store_guard<R>(tenant: &CheckedName, f: impl FnOnce() -> R) -> R {
    let tenant = tenant.to_string();
    PgTryBuilder::new(AssertUnwindSafe(f))
        .catch_others(move |e| match e {
            CaughtError::PostgresError(r) | CaughtError::ErrorReport(r)
                if r.sql_error_code() != pgrx::PgSqlErrorCode::ERRCODE_QUERY_CANCELED =>
            {
                ErrorReport::new(
                    r.sql_error_code(),
                    format!(
                        "wh: tenant {tenant}: the source answered, but the warehouse could not store its rows: {}",
                        one_line(r.message())
                    ),
                    "wh::remote",
                )
                .report(pgrx::PgLogLevel::ERROR);
                unreachable!()
            }
            other => other.rethrow(),
        })
        .execute()
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
    fn source_text_is_one_line() {
        assert_eq!(super::one_line("a\nLOG:  forged\r"), "a LOG:  forged ");
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
