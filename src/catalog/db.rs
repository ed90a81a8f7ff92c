//! Thin SPI helpers. SQL errors inside SPI unwind as panics (PostgreSQL ERRORs), so these
//! only turn SPI-level failures into wh errors; they never build SQL themselves.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::SpiHeapTupleData;

use crate::pure::dates::Day;
use crate::pure::error::{raise, WhError, WhResult};

fn spi_failed(e: pgrx::spi::SpiError, sql: &str) -> ! {
    let head: String = sql.chars().take(80).collect();
    raise(WhError::State(format!("SPI failed ({e}) running: {head}")))
}

/// On a hot standby wh refuses at once, with a clear error and what to do: pgrx's SPI asks
/// for a transaction id on the first statement, which a standby cannot give.
fn on_primary() {
    if unsafe { pgrx::pg_sys::RecoveryInProgress() } {
        crate::pure::error::raise_with_hint(
            WhError::Standby,
            "Connect to the primary for wh's calls; BI logins (wh_reader) read public.<template> and the tenant views here, as of the last replayed change.".into(),
        )
    }
}

/// Run a statement (DDL or DML) and return the number of rows it processed.
pub fn exec(sql: &str, args: &[DatumWithOid]) -> i64 {
    on_primary();
    Spi::connect_mut(|c| c.update(sql, None, args).map(|t| t.len() as i64))
        .unwrap_or_else(|e| spi_failed(e, sql))
}

pub fn exec_all<S: AsRef<str>>(stmts: &[S]) {
    for s in stmts {
        exec(s.as_ref(), &[]);
    }
}

/// First column of the first row (None for no row or NULL).
pub fn one<T: IntoDatum + FromDatum>(sql: &str, args: &[DatumWithOid]) -> Option<T> {
    on_primary();
    Spi::connect_mut(|c| {
        let t = c.update(sql, Some(1), args)?;
        if t.is_empty() {
            Ok(None)
        } else {
            t.first().get_one::<T>()
        }
    })
    .unwrap_or_else(|e| spi_failed(e, sql))
}

/// Map every row of a query.
pub fn rows<R>(sql: &str, args: &[DatumWithOid], f: impl Fn(&SpiHeapTupleData) -> R) -> Vec<R> {
    on_primary();
    Spi::connect_mut(|c| {
        let t = c.update(sql, None, args)?;
        Ok::<_, pgrx::spi::SpiError>(t.map(|row| f(&row)).collect())
    })
    .unwrap_or_else(|e| spi_failed(e, sql))
}

/// A column of a row, by name.
pub fn col<T: IntoDatum + FromDatum>(row: &SpiHeapTupleData, name: &str) -> Option<T> {
    row.get_by_name::<T, _>(name)
        .unwrap_or_else(|e| raise(WhError::State(format!("column {name}: {e}"))))
}

/// Milliseconds since `start`.
pub fn ms_since(start: std::time::Instant) -> f64 {
    (start.elapsed().as_secs_f64() * 1000.0 * 10.0).round() / 10.0
}

/// Run `f` with JIT off for this transaction's statements, then restore the setting.
/// wh's own scans over many partitions (fold, rebuild) would otherwise compile
/// expressions per partition, which costs more than the scan.
pub fn without_jit<R>(f: impl FnOnce() -> R) -> R {
    with_setting("jit", "off", f)
}

/// Run `f` with the setting `name` at `value` for this transaction's statements, then put
/// back what it was (a custom `wh.` setting never set before comes back empty).
pub fn with_setting<R>(name: &str, value: &str, f: impl FnOnce() -> R) -> R {
    let before: String = one(
        "SELECT coalesce(pg_catalog.current_setting($1, true), '')",
        &[DatumWithOid::from(name)],
    )
    .unwrap_or_default();
    let set = |v: &str| {
        exec(
            "SELECT pg_catalog.set_config($1, $2, true)",
            &[DatumWithOid::from(name), DatumWithOid::from(v)],
        )
    };
    set(value);
    let r = f();
    set(&before);
    r
}

/// Run `f` with Citus's DDL propagation off: what it creates (tenant schemas, views and
/// their grants) stays on the coordinator, which readers query and which expands views;
/// only the tables and their partitions live on the workers. Without Citus the setting is
/// an inert placeholder.
pub fn coordinator_only<R>(f: impl FnOnce() -> R) -> R {
    with_setting("citus.enable_ddl_propagation", "off", f)
}

/// The session setting that lets refreshes take away more of a stored day than the
/// template's `max_shrink_percent` (`SET wh.allow_shrink = on`, or a call's `allow_shrink`).
pub const ALLOW_SHRINK: &str = "wh.allow_shrink";

/// Run `f` with `ALLOW_SHRINK` on when `allow` (the caller's `allow_shrink => true`).
pub fn allowing_shrink<R>(allow: bool, f: impl FnOnce() -> R) -> R {
    if allow {
        with_setting(ALLOW_SHRINK, "on", f)
    } else {
        f()
    }
}

/// Is `ALLOW_SHRINK` on in this transaction (PostgreSQL's spellings of a true boolean)?
pub fn shrink_allowed() -> bool {
    one::<bool>(
        "SELECT pg_catalog.lower(coalesce(pg_catalog.current_setting($1, true), '')) IN ('on', 'true', 'yes', '1')",
        &[DatumWithOid::from(ALLOW_SHRINK)],
    )
    .unwrap_or(false)
}

/// Run `f` with `client_min_messages` at warning for its statements, then restore it:
/// PostgreSQL's NOTICEs about what a `DROP … CASCADE` of wh's own objects took with it
/// (a user mapping, a tenant's views) say nothing the caller can act on.
pub fn quietly<R>(f: impl FnOnce() -> R) -> R {
    with_setting("client_min_messages", "warning", f)
}

/// The output columns (name, type oid) of a query, asked of PostgreSQL without reading a
/// row; a query PostgreSQL refuses raises `refused(its message)` instead (a user's
/// expression, reported as the user's fault with PostgreSQL's reason and SQLSTATE 22023).
pub fn guarded(
    sql: &str,
    refused: impl FnOnce(String) -> WhError,
) -> Vec<(String, pgrx::pg_sys::Oid)> {
    on_primary();
    let probe = || {
        Spi::connect(|c| {
            let t = c.select(sql, Some(0), &[])?;
            let n = t.columns()?;
            (1..=n)
                .map(|i| Ok((t.column_name(i)?, t.column_type_oid(i)?.value())))
                .collect::<Result<Vec<_>, pgrx::spi::SpiError>>()
        })
        .unwrap_or_else(|e| spi_failed(e, sql))
    };
    let probe = || Ok(probe());
    let cols: Result<Vec<_>, String> = pgrx::PgTryBuilder::new(std::panic::AssertUnwindSafe(probe))
        .catch_others(|e| match e {
            pgrx::pg_sys::panic::CaughtError::PostgresError(r)
            | pgrx::pg_sys::panic::CaughtError::ErrorReport(r)
                if r.sql_error_code() != PgSqlErrorCode::ERRCODE_QUERY_CANCELED =>
            {
                Err(crate::pure::report::capped(r.message()))
            }
            other => other.rethrow(),
        })
        .execute();
    cols.unwrap_or_else(|m| raise(refused(m)))
}

/// Why a subtransaction failed: its SQLSTATE and message.
#[derive(Debug, Clone)]
pub struct Failure {
    pub sqlstate: String,
    pub message: String,
}

/// Run `body` in its own subtransaction, as PL/pgSQL's exception block does: on success
/// its work is kept; on an error it is rolled back (locks, SPI, memory and resources of
/// the subtransaction released) and the error comes back as a `Failure`. The caller's
/// memory context and resource owner are restored either way. This backend's own cancel
/// (`pg_cancel_backend`, `statement_timeout`: a 57014 raised by PostgreSQL) is not a
/// failure of the body: it is raised again after the rollback and ends the whole call.
/// A 57014 wh raises itself names a tenant whose source ran out of time (`remote`).
pub fn in_subtransaction<R>(body: impl FnOnce() -> R) -> Result<R, Failure> {
    use pgrx::pg_sys::panic::CaughtError;
    on_primary();
    // SAFETY: PostgreSQL's own sequence for an internal subtransaction (PL/Python's
    // PLy_spi_subtransaction_*): begin, switch back to the caller's memory context; on
    // the way out release or roll back, then restore the caller's context and owner.
    let (context, owner) = unsafe { (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner) };
    let restore = move || unsafe {
        pg_sys::CurrentMemoryContext = context;
        pg_sys::CurrentResourceOwner = owner;
    };
    unsafe {
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::CurrentMemoryContext = context;
    }
    let mut body = Some(body);
    pgrx::PgTryBuilder::new(std::panic::AssertUnwindSafe(|| {
        let value = (body.take().expect("the body runs once"))();
        unsafe { pg_sys::ReleaseCurrentSubTransaction() };
        restore();
        Ok(value)
    }))
    .catch_others(|e| {
        unsafe {
            pg_sys::CurrentMemoryContext = context;
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        restore();
        let local_cancel = matches!(&e, CaughtError::PostgresError(r)
            if r.sql_error_code() == PgSqlErrorCode::ERRCODE_QUERY_CANCELED);
        match e {
            _ if local_cancel => e.rethrow(),
            CaughtError::PostgresError(r)
            | CaughtError::ErrorReport(r)
            | CaughtError::RustPanic { ereport: r, .. } => Err(Failure {
                sqlstate: crate::pure::error::sqlstate_text(r.sql_error_code()),
                message: r.message().to_string(),
            }),
        }
    })
    .execute()
}

pub fn pg_date(d: Day) -> pgrx::datum::Date {
    // SAFETY: any i32 day count is a valid (finite) date for PostgreSQL's range we allow.
    unsafe { pgrx::datum::Date::from_pg_epoch_days(d.pg_epoch_days()) }
}

pub fn day_of(d: pgrx::datum::Date) -> WhResult<Day> {
    if !d.is_finite() {
        return Err(WhError::invalid("date", "infinite dates are not days"));
    }
    let day = Day::from_pg_epoch_days(d.to_pg_epoch_days());
    Day::from_ymd(day.ymd().0, day.ymd().1, day.ymd().2)
}

/// `format_type(to_regtype(..))`, or None when the type does not exist here.
pub fn canonical_type(type_sql: &str) -> Option<String> {
    one::<String>(
        "SELECT pg_catalog.format_type(pg_catalog.to_regtype($1), NULL)",
        &[DatumWithOid::from(type_sql)],
    )
}

/// Does the (schema-qualified) relation exist?
pub fn relation_exists(qualified: &str) -> bool {
    one::<bool>(
        "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
        &[DatumWithOid::from(qualified)],
    )
    .unwrap_or(false)
}

/// Run DDL on a relation readers use: each try waits at most a short lock_timeout, and
/// the whole list is retried (in a subtransaction) until it gets its locks.
pub fn ddl(stmts: &[String]) {
    if stmts.is_empty() {
        return;
    }
    exec(
        "SELECT _wh._ddl($1::text[])",
        &[DatumWithOid::from(stmts.to_vec())],
    );
}
