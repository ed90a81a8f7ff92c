//! libpq, spoken by wh itself (the way postgres_fdw does, without its blocking connect):
//! the system libpq5 through `pq-sys`. Every wait is on `WaitLatchOrSocket` (this
//! backend's latch, the socket, a timeout, postmaster death) with CHECK_FOR_INTERRUPTS, so
//! a local cancel or statement_timeout ends any wait at once. One libpq step can still
//! block: resolving the host's name while connecting (getaddrinfo); a tenant's host is
//! one name or address. A connection holds one of the backend's external file
//! descriptors (`AcquireExternalFD`) and gives it back with the connection (`Drop`:
//! `PQfinish`), on success, error and cancel alike.
//!
//! The connection's parameters are the tenant's foreign server's options and its user
//! mapping's login, read from the catalog as dblink reads them; the password is copied
//! into libpq's parameters for the connect and wh's copy overwritten right after.
//!
//! A source is not trusted: every message of its answer is checked to be one row of the
//! shape asked for, of a day asked for, within the template's caps (`caps`), and an
//! answer wh did not ask for (a COPY where rows were asked for) ends the connection.

use std::ffi::{c_char, c_int, c_void, CStr, CString};

use pgrx::pg_sys;
use pq_sys as pq;

use crate::pure::caps::{CapCounter, CapHit, CopyFormat, RowFault};
use crate::pure::connopts;
use crate::pure::dates::Day;

/// Why a talk with a source ended without its answer.
#[derive(Debug, Clone)]
pub enum Fault {
    /// The source (or the way to it) said no: its SQLSTATE, message and detail.
    Source {
        sqlstate: String,
        message: String,
        detail: Option<String>,
    },
    /// Nothing came before the deadline.
    Deadline,
    /// The answer ran over one of the template's caps.
    Cap(CapHit),
}

impl Fault {
    fn source(sqlstate: &str, message: &str, detail: Option<String>) -> Fault {
        Fault::Source {
            sqlstate: sqlstate.into(),
            message: message.into(),
            detail,
        }
    }

    /// The source broke the protocol wh speaks with it (08P01).
    fn protocol(what: &str) -> Fault {
        Fault::source(
            "08P01",
            &format!("the source's answer is not what wh asked for: {what}"),
            None,
        )
    }

    fn of_row(f: RowFault) -> Fault {
        match f {
            RowFault::Cap(hit) => Fault::Cap(hit),
            RowFault::Malformed(what) => Fault::protocol(what),
        }
    }
}

/// A COPY to ask a source for: its SELECT, the staging table's column types (`wh_day`
/// first) and the days it covers.
#[derive(Debug, Clone)]
pub struct CopyRequest {
    pub select: String,
    pub stage_types: Vec<pg_sys::Oid>,
    pub days: Vec<Day>,
}

/// An open connection to a source; closed (and its file descriptor given back) on drop.
pub struct Conn {
    raw: *mut pq::PGconn,
    /// What `copy_ready` has taken of a COPY answer before it is read.
    started: std::cell::RefCell<Option<Started>>,
    /// The format of the COPY sent on it.
    format: std::cell::Cell<CopyFormat>,
    /// The COPY asked for; while its describe's answer is awaited, not yet sent.
    request: std::cell::RefCell<Option<CopyRequest>>,
    describing: std::cell::Cell<bool>,
}

/// The beginning of a COPY answer, looked at before reading it: its first row (or its
/// end, or the source's error).
#[derive(Default)]
struct Started {
    first: Option<Vec<u8>>,
    ended: bool,
    fault: Option<Fault>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // SAFETY: `raw` came from PQconnectStartParams and is finished exactly once here;
        // the external FD was acquired before it was made.
        unsafe {
            pq::PQfinish(self.raw);
            pg_sys::ReleaseExternalFD();
        }
    }
}

/// Milliseconds since the epoch (the deadlines' clock).
fn now_ms() -> i64 {
    super::now_ms()
}

/// The longest single wait: a TLS record can leave bytes in OpenSSL the socket no longer
/// shows, so a wait never trusts the socket alone for long.
const MAX_WAIT_MS: i64 = 100;

/// Wait for `events` on the connection's socket (and always this backend's latch), at
/// most `timeout_ms`. Returns what happened; a connection that has lost its socket is
/// lost.
fn wait_socket(conn: *mut pq::PGconn, events: u32, timeout_ms: i64) -> Result<u32, Fault> {
    // SAFETY: a live PGconn.
    let sock = unsafe { pq::PQsocket(conn) };
    if sock < 0 {
        return Err(lost(conn));
    }
    Ok(wait_on(sock, events, timeout_ms))
}

/// Sleep up to `ms` on this backend's latch alone (a cancel raises).
pub fn nap(ms: i64) {
    wait_on(pg_sys::PGINVALID_SOCKET, 0, ms);
}

/// The one wait: this backend's latch, `events` on `sock` (none without a socket), a
/// timeout of at most `MAX_WAIT_MS`, postmaster death. A set latch is reset and
/// interrupts are served (a cancel raises here).
fn wait_on(sock: c_int, events: u32, timeout_ms: i64) -> u32 {
    let flags = pg_sys::WL_LATCH_SET | pg_sys::WL_EXIT_ON_PM_DEATH | pg_sys::WL_TIMEOUT | events;
    // SAFETY: MyLatch is this backend's latch; a socket given belongs to a live PGconn.
    let rc = unsafe {
        pg_sys::WaitLatchOrSocket(
            pg_sys::MyLatch,
            flags as c_int,
            sock,
            timeout_ms.clamp(0, MAX_WAIT_MS) as std::ffi::c_long,
            pg_sys::PG_WAIT_EXTENSION,
        )
    } as u32;
    if rc & pg_sys::WL_LATCH_SET != 0 {
        // SAFETY: as above.
        unsafe { pg_sys::ResetLatch(pg_sys::MyLatch) };
    }
    pgrx::check_for_interrupts!();
    rc
}

/// Free the asynchronous notifications a source sent (wh listens to none; libpq would
/// keep every one).
fn drop_notices(conn: *mut pq::PGconn) {
    loop {
        // SAFETY: a live PGconn; each notification is freed once.
        unsafe {
            let n = pq::PQnotifies(conn);
            if n.is_null() {
                return;
            }
            pq::PQfreemem(n as *mut c_void);
        }
    }
}

/// The connection broke: libpq's last error, which says how.
fn lost(conn: *mut pq::PGconn) -> Fault {
    // SAFETY: a live PGconn; libpq owns the text.
    let why = text(unsafe { pq::PQerrorMessage(conn) });
    Fault::source("08006", "lost the connection to the source", Some(why))
}

/// A libpq string (may be null) as Rust text, one line, no trailing newline.
fn text(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: libpq returns NUL-terminated strings it owns.
    unsafe { CStr::from_ptr(p) }
        .to_string_lossy()
        .trim_end()
        .to_string()
}

/// The keywords and values of the connection to `server`: its options, the user mapping's
/// login, and what every wh connection sets (encoding, output styles COPY text depends on).
struct Params {
    keywords: Vec<CString>,
    values: Vec<CString>,
}

impl Params {
    fn of_server(server: &str) -> Result<Params, Fault> {
        let name =
            CString::new(server).map_err(|_| Fault::source("42704", "bad server name", None))?;
        // SAFETY: catalog reads of this backend; the server exists or ERROR is raised.
        let (server_opts, mapping_opts) = unsafe {
            let srv = pg_sys::GetForeignServerByName(name.as_ptr(), true);
            if srv.is_null() {
                // As after a restore from pg_dump: the connection row without its server
                // and secret (dblink said "password is required" here too).
                return Err(Fault::source(
                    "2F003",
                    "password is required",
                    Some(format!(
                        "the tenant's foreign server {server} holding its login is missing"
                    )),
                ));
            }
            let user = pg_sys::GetUserId();
            if pg_sys::pg_foreign_server_aclcheck(
                (*srv).serverid,
                user,
                pg_sys::ACL_USAGE as pg_sys::AclMode,
            ) != pg_sys::AclResult::ACLCHECK_OK
            {
                pg_sys::aclcheck_error(
                    pg_sys::AclResult::ACLCHECK_NO_PRIV,
                    pg_sys::ObjectType::OBJECT_FOREIGN_SERVER,
                    name.as_ptr(),
                );
            }
            let mapping = pg_sys::GetUserMapping(user, (*srv).serverid);
            (options((*srv).options), options((*mapping).options))
        };
        let pairs = connopts::libpq_params(&server_opts, &mapping_opts, &encoding_name()).map_err(
            |key| {
                Fault::source(
                    "42501",
                    &format!("permission denied to set connection option \"{key}\""),
                    Some(format!(
                        "foreign server {server} has an option wh does not pass to libpq"
                    )),
                )
            },
        )?;
        // SAFETY: plain flag of this backend.
        let superuser = unsafe { pg_sys::superuser() };
        if !superuser && !pairs.iter().any(|(k, v)| k == "password" && !v.is_empty()) {
            return Err(Fault::source(
                "2F003",
                "password is required",
                Some("Non-superusers must provide a password in the connection string.".into()),
            ));
        }
        let mut p = Params {
            keywords: Vec::new(),
            values: Vec::new(),
        };
        for (k, v) in pairs {
            let (Ok(k), Ok(v)) = (CString::new(k), CString::new(v)) else {
                return Err(Fault::source(
                    "22021",
                    "a connection option holds a NUL byte",
                    None,
                ));
            };
            p.keywords.push(k);
            p.values.push(v);
        }
        Ok(p)
    }

    /// Overwrite the secret in this process's memory once libpq has its own copy.
    fn forget_password(&mut self) {
        for (k, v) in self.keywords.iter().zip(self.values.iter_mut()) {
            if k.as_bytes() == b"password" {
                let taken = std::mem::take(v);
                let mut bytes = taken.into_bytes();
                for b in bytes.iter_mut() {
                    // SAFETY: writing into our own buffer; volatile so it is not elided.
                    unsafe { std::ptr::write_volatile(b, 0) };
                }
            }
        }
    }
}

/// The name=value options of a catalog options list.
///
/// SAFETY: `list` is a List of DefElem with String values (a foreign server's or user
/// mapping's options), or null.
unsafe fn options(list: *mut pg_sys::List) -> Vec<(String, String)> {
    let list = pgrx::PgList::<pg_sys::DefElem>::from_pg(list);
    list.iter_ptr()
        .map(|d| {
            let key = text((*d).defname);
            let value = text(pg_sys::defGetString(d));
            (key, value)
        })
        .collect()
}

fn encoding_name() -> String {
    // SAFETY: a static string of this backend.
    text(unsafe { pg_sys::GetDatabaseEncodingName() })
}

/// Can this session take binary COPY? A string's binary form is read in the session's
/// client encoding (COPY's own `encoding` governs text only): only when it is the
/// database's.
pub fn session_reads_binary() -> bool {
    // SAFETY: plain reads of this backend's settings.
    unsafe { pg_sys::pg_get_client_encoding() == pg_sys::GetDatabaseEncoding() }
}

/// libpq prints a source's NOTICEs and WARNINGs to stderr, the server log, by default: a
/// source could flood or forge lines there. wh drops them.
unsafe extern "C" fn ignore_notice(_arg: *mut c_void, _message: *const c_char) {}

impl Conn {
    /// Connect to the tenant's `server`, waiting at most until `deadline_ms` (and libpq's
    /// own connect_timeout, which a polled connection must enforce itself).
    pub fn open(server: &str, deadline_ms: i64) -> Result<Conn, Fault> {
        let mut params = Params::of_server(server)?;
        // SAFETY: plain call; the FD is given back by Conn's drop or below.
        if !unsafe { pg_sys::AcquireExternalFD() } {
            return Err(Fault::source(
                "08001",
                "could not establish connection",
                Some("There are too many open files on the local server (raise max_files_per_process, or lower wh.max_source_connections).".into()),
            ));
        }
        let mut kw: Vec<*const c_char> = params.keywords.iter().map(|k| k.as_ptr()).collect();
        let mut vals: Vec<*const c_char> = params.values.iter().map(|v| v.as_ptr()).collect();
        kw.push(std::ptr::null());
        vals.push(std::ptr::null());
        // SAFETY: NUL-terminated arrays of NUL-terminated strings, alive for the call.
        let raw = unsafe { pq::PQconnectStartParams(kw.as_ptr(), vals.as_ptr(), 0) };
        params.forget_password();
        if raw.is_null() {
            // SAFETY: acquired above.
            unsafe { pg_sys::ReleaseExternalFD() };
            return Err(Fault::source("53200", "out of memory", None));
        }
        let conn = Conn {
            raw,
            started: Default::default(),
            format: std::cell::Cell::new(CopyFormat::Text),
            request: Default::default(),
            describing: std::cell::Cell::new(false),
        };
        // SAFETY: a live connection.
        unsafe { pq::PQsetNoticeProcessor(raw, Some(ignore_notice), std::ptr::null_mut()) };
        conn.connect(deadline_ms)?;
        Ok(conn)
    }

    fn connect(&self, deadline_ms: i64) -> Result<(), Fault> {
        let deadline = deadline_ms.min(now_ms() + i64::from(connopts::CONNECT_TIMEOUT_S) * 1000);
        // SAFETY: a live connection throughout.
        unsafe {
            if pq::PQstatus(self.raw) == pq::ConnStatusType::CONNECTION_BAD {
                return Err(self.connect_fault());
            }
            let mut polling = pq::PostgresPollingStatusType::PGRES_POLLING_WRITING;
            loop {
                let io = match polling {
                    pq::PostgresPollingStatusType::PGRES_POLLING_OK => break,
                    pq::PostgresPollingStatusType::PGRES_POLLING_FAILED => {
                        return Err(self.connect_fault())
                    }
                    pq::PostgresPollingStatusType::PGRES_POLLING_READING => {
                        pg_sys::WL_SOCKET_READABLE
                    }
                    _ => pg_sys::WL_SOCKET_WRITEABLE,
                };
                let left = deadline - now_ms();
                if left <= 0 {
                    return Err(Fault::source(
                        "08001",
                        "could not establish connection",
                        Some(format!(
                            "no answer within {} s (timeout expired)",
                            connopts::CONNECT_TIMEOUT_S
                        )),
                    ));
                }
                let rc = wait_socket(self.raw, io, left)?;
                if rc & io != 0 {
                    polling = pq::PQconnectPoll(self.raw);
                }
            }
            if pq::PQsetnonblocking(self.raw, 1) != 0 {
                return Err(self.connect_fault());
            }
            if !pg_sys::superuser() && pq::PQconnectionUsedPassword(self.raw) == 0 {
                return Err(Fault::source(
                    "2F003",
                    "password is required",
                    Some(
                        "Non-superuser cannot connect if the server does not request a password."
                            .into(),
                    ),
                ));
            }
        }
        Ok(())
    }

    fn connect_fault(&self) -> Fault {
        Fault::source(
            "08001",
            "could not establish connection",
            Some(self.error_text()),
        )
    }

    /// The connection's last error, without libpq's trailing newline.
    fn error_text(&self) -> String {
        // SAFETY: a live connection.
        text(unsafe { pq::PQerrorMessage(self.raw) })
    }

    fn lost(&self) -> Fault {
        lost(self.raw)
    }

    /// Send `sql` (every byte out, waiting for the socket as needed, at most until
    /// `deadline_ms`); the answer is read later.
    pub fn send(&self, sql: &str, deadline_ms: i64) -> Result<(), Fault> {
        let Ok(q) = CString::new(sql) else {
            return Err(Fault::source("22021", "the query holds a NUL byte", None));
        };
        // SAFETY: a live connection; `q` outlives the call (libpq copies it).
        unsafe {
            if pq::PQsendQuery(self.raw, q.as_ptr()) == 0 {
                return Err(Fault::source(
                    "08006",
                    "could not send the query",
                    Some(self.error_text()),
                ));
            }
            loop {
                match pq::PQflush(self.raw) {
                    0 => return Ok(()),
                    1 => {}
                    _ => return Err(self.lost()),
                }
                let left = deadline_ms - now_ms();
                if left <= 0 {
                    return Err(Fault::Deadline);
                }
                let rc = wait_socket(
                    self.raw,
                    pg_sys::WL_SOCKET_WRITEABLE | pg_sys::WL_SOCKET_READABLE,
                    left,
                )?;
                if rc & pg_sys::WL_SOCKET_READABLE != 0 && pq::PQconsumeInput(self.raw) == 0 {
                    return Err(self.lost());
                }
            }
        }
    }

    /// Ask for `request`: with `describe`, first the types of its columns (one query, no
    /// row; the COPY goes out when that answer is in, see `advance`), else the text COPY
    /// at once.
    pub fn start_copy(
        &self,
        request: CopyRequest,
        describe: bool,
        deadline_ms: i64,
    ) -> Result<(), Fault> {
        let first = if describe {
            crate::pure::sql::describe(&request.select)
        } else {
            crate::pure::sql::copy_out(&request.select, CopyFormat::Text)
        };
        self.send(&first, deadline_ms)?;
        self.describing.set(describe);
        *self.request.borrow_mut() = Some(request);
        Ok(())
    }

    /// The describe's answer, when it is in (waiting for it with `wait`): the format
    /// chosen and the COPY sent. True once the COPY is out.
    fn advance(&self, wait: bool, deadline_ms: i64) -> Result<bool, Fault> {
        if !self.describing.get() {
            return Ok(true);
        }
        if !wait && !self.ready()? {
            return Ok(false);
        }
        let mut types = Vec::new();
        self.each_result(deadline_ms, |a| types = a.types())?;
        let select = {
            let request = self.request.borrow();
            let Some(r) = request.as_ref() else {
                return Err(Fault::protocol("no COPY was asked for"));
            };
            self.format
                .set(crate::pure::caps::format_for(&types, &r.stage_types));
            r.select.clone()
        };
        self.describing.set(false);
        self.send(
            &crate::pure::sql::copy_out(&select, self.format.get()),
            deadline_ms,
        )?;
        Ok(true)
    }

    /// Read what has arrived without waiting; true when a whole result can be taken.
    pub fn ready(&self) -> Result<bool, Fault> {
        // SAFETY: a live connection.
        unsafe {
            if pq::PQconsumeInput(self.raw) == 0 {
                return Err(self.lost());
            }
            drop_notices(self.raw);
            Ok(pq::PQisBusy(self.raw) == 0)
        }
    }

    /// Wait until a whole result can be taken, at most until `deadline_ms`.
    fn await_result(&self, deadline_ms: i64) -> Result<(), Fault> {
        loop {
            if self.ready()? {
                return Ok(());
            }
            let left = deadline_ms - now_ms();
            if left <= 0 {
                return Err(Fault::Deadline);
            }
            wait_socket(self.raw, pg_sys::WL_SOCKET_READABLE, left)?;
        }
    }

    /// The next result (null when the query is done), waited for.
    fn next_result(&self, deadline_ms: i64) -> Result<Answer, Fault> {
        self.await_result(deadline_ms)?;
        // SAFETY: not busy: PQgetResult returns without blocking.
        Ok(Answer(unsafe { pq::PQgetResult(self.raw) }))
    }

    /// Every row of the answer to the query sent, as text (NULL as None); the source's
    /// error if it answered with one.
    pub fn rows(&self, deadline_ms: i64) -> Result<Vec<Vec<Option<String>>>, Fault> {
        let mut out = Vec::new();
        self.each_result(deadline_ms, |a| out.extend(a.values()))?;
        Ok(out)
    }

    /// Read every result of the query sent, `take` given each that holds rows; the first
    /// error result, if any, after all are read.
    fn each_result(&self, deadline_ms: i64, mut take: impl FnMut(&Answer)) -> Result<(), Fault> {
        let mut fault = None;
        loop {
            pgrx::check_for_interrupts!();
            let a = self.next_result(deadline_ms)?;
            if a.0.is_null() {
                break;
            }
            match a.status() {
                pq::ExecStatusType::PGRES_TUPLES_OK => take(&a),
                pq::ExecStatusType::PGRES_COMMAND_OK => {}
                // A COPY wh did not ask for: libpq would hand out its result forever.
                pq::ExecStatusType::PGRES_COPY_OUT
                | pq::ExecStatusType::PGRES_COPY_IN
                | pq::ExecStatusType::PGRES_COPY_BOTH => {
                    return Err(Fault::protocol("a COPY where rows were asked for"))
                }
                _ => fault = fault.or_else(|| Some(a.fault())),
            }
        }
        fault.map_or(Ok(()), Err)
    }

    /// Has a COPY answer begun: its first row in, or its end, or an error? Reads only
    /// what has arrived; what it takes is kept for `copy_into`.
    pub fn copy_ready(&self) -> Result<bool, Fault> {
        if !self.advance(false, i64::MAX)? || !self.ready()? {
            return Ok(false);
        }
        let mut started = self.started.borrow_mut();
        if started.is_none() {
            // SAFETY: not busy: PQgetResult returns without blocking.
            let a = Answer(unsafe { pq::PQgetResult(self.raw) });
            let fault = if a.0.is_null() {
                Some(Fault::source("08P01", "the source sent no answer", None))
            } else if a.status() != pq::ExecStatusType::PGRES_COPY_OUT {
                Some(a.fault())
            } else {
                None
            };
            *started = Some(Started {
                fault,
                ..Default::default()
            });
        }
        let Some(s) = started.as_mut() else {
            return Ok(false);
        };
        if s.fault.is_some() || s.ended || s.first.is_some() {
            return Ok(true);
        }
        let mut buf: *mut c_char = std::ptr::null_mut();
        // SAFETY: a live connection in COPY OUT; async read never blocks; the row is
        // copied and freed at once.
        unsafe {
            match pq::PQgetCopyData(self.raw, &mut buf, 1) {
                0 => Ok(false),
                -1 => {
                    s.ended = true;
                    Ok(true)
                }
                n if n > 0 => {
                    s.first =
                        Some(std::slice::from_raw_parts(buf as *const u8, n as usize).to_vec());
                    pq::PQfreemem(buf as *mut c_void);
                    Ok(true)
                }
                _ => Err(self.lost()),
            }
        }
    }

    /// Stream the answer to a `COPY (…) TO STDOUT` sent on this connection into `rel`
    /// (COPY FROM, text, the database's encoding), each row counted against `caps` as it
    /// arrives. Returns the rows stored. Waits only while nothing arrives, until
    /// `deadline_ms`. A fault leaves the rows stored so far in `rel`: the caller's
    /// (sub)transaction must not keep them.
    pub fn copy_into(
        &self,
        rel: pg_sys::Oid,
        limits: crate::pure::template::Limits,
        deadline_ms: i64,
    ) -> Result<u64, Fault> {
        self.advance(true, deadline_ms)?;
        let format = self.format.get();
        let mut caps = {
            let request = self.request.borrow();
            let Some(r) = request.as_ref() else {
                return Err(Fault::protocol("no COPY was asked for"));
            };
            CapCounter::new(limits, format, r.stage_types.len(), &r.days)
        };
        let started = self.started.borrow_mut().take();
        let started = match started {
            Some(s) => s,
            None => {
                let first = self.next_result(deadline_ms)?;
                if first.0.is_null() {
                    return Err(Fault::source("08P01", "the source sent no answer", None));
                }
                let fault =
                    (first.status() != pq::ExecStatusType::PGRES_COPY_OUT).then(|| first.fault());
                Started {
                    fault,
                    ..Default::default()
                }
            }
        };
        if let Some(f) = started.fault {
            // The connection goes with the fault: nothing more is read from it.
            return Err(f);
        }
        let first = started.first.unwrap_or_default();
        if !first.is_empty() {
            caps.take(&first).map_err(Fault::of_row)?;
        }
        let feed = Feed {
            conn: self.raw,
            caps,
            deadline_ms,
            pending: first,
            at: 0,
            copy_ended: started.ended,
            done: false,
            fault: None,
            read_since_parse: false,
        };
        copy_from(rel, format, feed)
    }
}

/// One result; cleared on drop.
struct Answer(*mut pq::PGresult);

impl Drop for Answer {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: a result of PQgetResult, cleared once.
            unsafe { pq::PQclear(self.0) };
        }
    }
}

impl Answer {
    fn status(&self) -> pq::ExecStatusType {
        // SAFETY: a live result.
        unsafe { pq::PQresultStatus(self.0) }
    }

    fn field(&self, code: u8) -> Option<String> {
        // SAFETY: a live result; libpq owns the string.
        let p = unsafe { pq::PQresultErrorField(self.0, code as c_int) };
        (!p.is_null()).then(|| text(p))
    }

    fn fault(&self) -> Fault {
        let sqlstate = self
            .field(pq::PG_DIAG_SQLSTATE)
            .unwrap_or_else(|| "08006".into());
        let message = self.field(pq::PG_DIAG_MESSAGE_PRIMARY).unwrap_or_else(|| {
            // SAFETY: a live result.
            text(unsafe { pq::PQresultErrorMessage(self.0) })
        });
        Fault::Source {
            sqlstate,
            message,
            detail: self.field(pq::PG_DIAG_MESSAGE_DETAIL),
        }
    }

    fn types(&self) -> Vec<pg_sys::Oid> {
        // SAFETY: a live result; columns within its bounds.
        unsafe {
            (0..pq::PQnfields(self.0))
                .map(|c| pg_sys::Oid::from(pq::PQftype(self.0, c)))
                .collect()
        }
    }

    fn values(&self) -> Vec<Vec<Option<String>>> {
        // SAFETY: a live TUPLES_OK result; indexes within its bounds.
        unsafe {
            let (n, m) = (pq::PQntuples(self.0), pq::PQnfields(self.0));
            (0..n)
                .map(|r| {
                    (0..m)
                        .map(|c| {
                            (pq::PQgetisnull(self.0, r, c) == 0)
                                .then(|| text(pq::PQgetvalue(self.0, r, c)))
                        })
                        .collect()
                })
                .collect()
        }
    }
}

/// A row longer than this leaves no buffer of its size behind.
const MAX_KEPT_BUFFER: usize = 1 << 20;

/// What the COPY FROM callback reads from: one connection in COPY OUT state.
struct Feed {
    conn: *mut pq::PGconn,
    caps: CapCounter,
    deadline_ms: i64,
    /// A row that did not fit the last buffer, and how much of it was handed over.
    pending: Vec<u8>,
    at: usize,
    /// The source has sent its last row (its end was seen before the COPY began).
    copy_ended: bool,
    done: bool,
    fault: Option<Fault>,
    /// Whether the socket was read since a row was last parsed.
    read_since_parse: bool,
}

thread_local! {
    /// The feeds of the COPY FROMs running in this backend, innermost last (the callback
    /// takes no argument: this is how it finds its connection, as pg_parquet does).
    static FEEDS: std::cell::RefCell<Vec<Feed>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Feed {
    fn end(&mut self, fault: Option<Fault>) -> usize {
        self.done = true;
        if self.fault.is_none() {
            self.fault = fault;
        }
        0
    }

    /// Fill `out` with rows as they come (at least one byte unless the answer is over):
    /// 0 ends the COPY. The deadline holds however the bytes come: a source that trickles
    /// is cut off like one that stops.
    fn fill(&mut self, out: &mut [u8]) -> usize {
        if !self.done && now_ms() >= self.deadline_ms {
            return self.end(Some(Fault::Deadline));
        }
        let mut n = self.hand_over(out, 0);
        loop {
            if n == out.len() || self.done {
                return n;
            }
            if self.copy_ended {
                return n + self.finish();
            }
            let mut buf: *mut c_char = std::ptr::null_mut();
            // SAFETY: a live connection in COPY OUT; async read never blocks.
            let got = unsafe { pq::PQgetCopyData(self.conn, &mut buf, 1) };
            if got > 0 {
                // SAFETY: libpq hands over `got` bytes it allocated; freed right after.
                let row = unsafe { std::slice::from_raw_parts(buf as *const u8, got as usize) };
                let checked = self.caps.take(row);
                if checked.is_ok() {
                    // As much as fits goes straight to COPY; the rest waits for its next call.
                    let fits = row.len().min(out.len() - n);
                    out[n..n + fits].copy_from_slice(&row[..fits]);
                    n += fits;
                    self.pending.clear();
                    self.pending.extend_from_slice(&row[fits..]);
                    self.at = 0;
                }
                // SAFETY: as above.
                unsafe { pq::PQfreemem(buf as *mut c_void) };
                if let Err(f) = checked {
                    return n + self.end(Some(Fault::of_row(f)));
                }
                self.read_since_parse = false;
                n = self.hand_over(out, n);
                continue;
            }
            if got == -1 {
                // The rows are all in: the statement's own end (an error, if it failed late).
                return n + self.finish();
            }
            if got < -1 {
                let f = self.lost();
                return n + self.end(Some(f));
            }
            // Nothing parsed: hand over what there is, else read the socket once more
            // before waiting (bytes the source sent in time are never late).
            if n > 0 {
                return n;
            }
            if !self.read_since_parse {
                self.read_since_parse = true;
                // SAFETY: a live connection; reads what the socket holds, never blocks.
                if unsafe { pq::PQconsumeInput(self.conn) } == 0 {
                    let f = self.lost();
                    return self.end(Some(f));
                }
                drop_notices(self.conn);
                continue;
            }
            if let Err(f) = self.wait() {
                return self.end(Some(f));
            }
        }
    }

    /// Copy what is left of the last row into `out` from `n`; the new fill.
    fn hand_over(&mut self, out: &mut [u8], n: usize) -> usize {
        let take = (self.pending.len() - self.at).min(out.len() - n);
        out[n..n + take].copy_from_slice(&self.pending[self.at..self.at + take]);
        self.at += take;
        if self.at == self.pending.len() && self.pending.capacity() > MAX_KEPT_BUFFER {
            self.pending = Vec::new();
            self.at = 0;
        }
        n + take
    }

    fn lost(&self) -> Fault {
        lost(self.conn)
    }

    fn wait(&mut self) -> Result<(), Fault> {
        let left = self.deadline_ms - now_ms();
        if left <= 0 {
            return Err(Fault::Deadline);
        }
        // SAFETY: a live connection.
        unsafe {
            wait_socket(self.conn, pg_sys::WL_SOCKET_READABLE, left)?;
            if pq::PQconsumeInput(self.conn) == 0 {
                return Err(self.lost());
            }
        }
        Ok(())
    }

    /// The rows are all in: take the statement's results (its error, if it failed late,
    /// or the source's FATAL when it was ended), waiting only on a live connection.
    fn finish(&mut self) -> usize {
        loop {
            // SAFETY: a live PGconn; neither call blocks.
            let (read, busy) = unsafe {
                let read = pq::PQconsumeInput(self.conn) != 0;
                (read, pq::PQisBusy(self.conn) != 0)
            };
            if !busy {
                // SAFETY: not busy: no blocking.
                let a = Answer(unsafe { pq::PQgetResult(self.conn) });
                if a.0.is_null() {
                    return self.end(None);
                }
                match a.status() {
                    pq::ExecStatusType::PGRES_COMMAND_OK => {}
                    pq::ExecStatusType::PGRES_COPY_OUT
                    | pq::ExecStatusType::PGRES_COPY_IN
                    | pq::ExecStatusType::PGRES_COPY_BOTH => {
                        return self.end(Some(Fault::protocol("a second COPY after the rows")))
                    }
                    _ => {
                        let f = a.fault();
                        self.fault.get_or_insert(f);
                    }
                }
                continue;
            }
            // SAFETY: a live PGconn.
            if !read || unsafe { pq::PQstatus(self.conn) } == pq::ConnStatusType::CONNECTION_BAD {
                let f = self.lost();
                return self.end(Some(f));
            }
            if let Err(f) = self.wait() {
                return self.end(Some(f));
            }
        }
    }
}

/// COPY FROM's data source: the innermost feed.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn feed_copy(
    outbuf: *mut c_void,
    _minread: c_int,
    maxread: c_int,
) -> c_int {
    let out = std::slice::from_raw_parts_mut(outbuf as *mut u8, maxread.max(0) as usize);
    FEEDS.with(|feeds| {
        let mut feeds = feeds.borrow_mut();
        match feeds.last_mut() {
            Some(f) => f.fill(out) as c_int,
            None => 0,
        }
    })
}

/// Run COPY FROM on `rel` reading from `feed`; the rows stored and the feed's fault.
fn copy_from(rel: pg_sys::Oid, format: CopyFormat, feed: Feed) -> Result<u64, Fault> {
    FEEDS.with(|f| f.borrow_mut().push(feed));
    let popped = || FEEDS.with(|f| f.borrow_mut().pop());
    let taken = std::sync::atomic::AtomicBool::new(false);
    let result = pgrx::PgTryBuilder::new(|| Ok(copy_rows(rel, format)))
        .catch_others(|e| {
            taken.store(true, std::sync::atomic::Ordering::Relaxed);
            let fault = popped().and_then(|f| f.fault);
            match (fault, &e) {
                // This backend's own cancel ends the call, whatever the source did.
                (_, pgrx::pg_sys::panic::CaughtError::PostgresError(r))
                    if r.sql_error_code() == pgrx::PgSqlErrorCode::ERRCODE_QUERY_CANCELED =>
                {
                    e.rethrow()
                }
                // The answer ended early (the source's error, a cap, the deadline) and COPY
                // complained of what was missing (a binary header that never came): the
                // reason is the feed's. The caller raises it, ending this (sub)transaction.
                (Some(fault), _) => Err(fault),
                // An error while storing (a value the declared column cannot take, disk
                // full): the caller's guard words it.
                (None, _) => e.rethrow(),
            }
        })
        .execute();
    if taken.load(std::sync::atomic::Ordering::Relaxed) {
        return result;
    }
    match popped() {
        Some(Feed { fault: Some(f), .. }) => Err(f),
        // COPY stopped before the answer's end (text's end marker `\.`): not the answer.
        Some(Feed { done: false, .. }) => Err(Fault::protocol("rows after COPY's end marker")),
        _ => result,
    }
}

/// BeginCopyFrom / CopyFrom / EndCopyFrom on `rel`, as `COPY rel FROM STDIN` would.
fn copy_rows(rel: pg_sys::Oid, format: CopyFormat) -> u64 {
    // SAFETY: the relation is this session's staging table, locked as COPY locks it; the
    // parse state and options live in the current memory context for the call.
    unsafe {
        let relation = pg_sys::table_open(rel, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        let pstate = pg_sys::make_parsestate(std::ptr::null_mut());
        pg_sys::addRangeTableEntryForRelation(
            pstate,
            relation,
            pg_sys::RowExclusiveLock as c_int,
            std::ptr::null_mut(),
            false,
            false,
        );
        let mut opts = pgrx::PgList::<pg_sys::DefElem>::new();
        let mut settings = vec![("format", format.name().to_string())];
        if format == CopyFormat::Text {
            // Text arrives in the database's encoding (the connection's client_encoding).
            settings.push(("encoding", encoding_name()));
        }
        for (k, v) in settings {
            let key = CString::new(k).unwrap_or_default();
            let val = CString::new(v).unwrap_or_default();
            opts.push(pg_sys::makeDefElem(
                pg_sys::pstrdup(key.as_ptr()),
                pg_sys::makeString(pg_sys::pstrdup(val.as_ptr())) as *mut pg_sys::Node,
                -1,
            ));
        }
        let cstate = pg_sys::BeginCopyFrom(
            pstate,
            relation,
            std::ptr::null_mut(),
            std::ptr::null(),
            false,
            Some(feed_copy),
            std::ptr::null_mut(),
            opts.into_pg(),
        );
        let n = pg_sys::CopyFrom(cstate);
        pg_sys::EndCopyFrom(cstate);
        pg_sys::free_parsestate(pstate);
        pg_sys::table_close(relation, pg_sys::NoLock as pg_sys::LOCKMODE);
        pg_sys::CommandCounterIncrement();
        n
    }
}
