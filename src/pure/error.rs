//! One error type for wh. Every failure leaves a `#[pg_extern]` as an `ErrorReport`
//! with a real SQLSTATE and a message naming the tenant, template or date at fault.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::PgSqlErrorCode;
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WhError {
    #[error("wh: {what} must not be NULL")]
    NullArgument { what: &'static str },

    #[error("wh: invalid {what} {value:?}: {reason}")]
    InvalidName {
        what: &'static str,
        value: String,
        reason: String,
    },

    #[error("wh: invalid {what}: {reason}")]
    InvalidArgument { what: &'static str, reason: String },

    #[error("wh: invalid date window {start}..{end}: {reason}")]
    InvalidWindow {
        start: String,
        end: String,
        reason: String,
    },

    #[error("wh: template {template:?} is invalid: {reason}")]
    InvalidTemplate { template: String, reason: String },

    #[error("wh: unknown tenant {0:?}: register it with _wh.set_tenant_connection")]
    UnknownTenant(String),

    #[error("wh: unknown template {0:?}: register it with _wh.set_template")]
    UnknownTemplate(String),

    #[error("wh: no wh job matches {0}: nothing was unscheduled (see _wh.jobs)")]
    UnknownJob(String),

    #[error("wh: {0}")]
    Exists(String),

    #[error("wh: this server is a read-only standby (in recovery): wh's functions that refresh, fold or change the warehouse run on the primary")]
    Standby,

    #[error("wh: template {template}, day {day}: {count} row(s) have {time_column} outside [{day}, next day) UTC; nothing was changed")]
    RowsOutsideDay {
        template: String,
        day: String,
        time_column: String,
        count: i64,
    },

    #[error("wh: template {template}, tenant {tenant}, day {day}: {count} row(s) repeat a unique key ({key}); nothing was changed")]
    DuplicateKey {
        template: String,
        tenant: String,
        day: String,
        key: String,
        count: i64,
    },

    #[error("wh: tenant {tenant}: {message}")]
    Remote { tenant: String, message: String },

    #[error("wh: {0}")]
    State(String),

    #[error("wh: {0}")]
    Busy(String),

    #[error("wh: {0}")]
    Privilege(String),

    /// A connection change that failed its test: nothing was saved. Keeps the failure's
    /// own SQLSTATE (class 08, or 28P01 …).
    #[error("wh: tenant {tenant}: nothing was saved: the connection test failed: {message}")]
    ConnectionTestFailed {
        tenant: String,
        sqlstate: String,
        message: String,
    },
}

impl WhError {
    pub fn sqlstate(&self) -> PgSqlErrorCode {
        use PgSqlErrorCode::*;
        match self {
            WhError::NullArgument { .. } => ERRCODE_NULL_VALUE_NOT_ALLOWED,
            WhError::InvalidName { .. } => ERRCODE_INVALID_NAME,
            WhError::InvalidArgument { .. } => ERRCODE_INVALID_PARAMETER_VALUE,
            WhError::InvalidWindow { .. } => ERRCODE_INVALID_PARAMETER_VALUE,
            WhError::InvalidTemplate { .. } => ERRCODE_INVALID_PARAMETER_VALUE,
            WhError::UnknownTenant(_) | WhError::UnknownTemplate(_) | WhError::UnknownJob(_) => {
                ERRCODE_UNDEFINED_OBJECT
            }
            WhError::Exists(_) => ERRCODE_DUPLICATE_OBJECT,
            WhError::Standby => ERRCODE_READ_ONLY_SQL_TRANSACTION,
            WhError::RowsOutsideDay { .. } => ERRCODE_CHECK_VIOLATION,
            WhError::DuplicateKey { .. } => ERRCODE_UNIQUE_VIOLATION,
            WhError::Remote { .. } => ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
            WhError::State(_) => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            WhError::Busy(_) => ERRCODE_LOCK_NOT_AVAILABLE,
            WhError::Privilege(_) => ERRCODE_INSUFFICIENT_PRIVILEGE,
            WhError::ConnectionTestFailed { sqlstate, .. } => sqlstate_code(sqlstate),
        }
    }

    pub fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        WhError::InvalidArgument {
            what,
            reason: reason.into(),
        }
    }
}

impl From<WhError> for ErrorReport {
    #[track_caller]
    fn from(e: WhError) -> Self {
        ErrorReport::new(e.sqlstate(), e.to_string(), "wh")
    }
}

pub type WhResult<T> = Result<T, WhError>;

/// A PostgreSQL error code as its five-character SQLSTATE (six bits a character).
pub fn sqlstate_text(code: PgSqlErrorCode) -> String {
    let c = code as i32;
    (0..5)
        .map(|i| (((c >> (6 * i)) & 0x3F) as u8 + b'0') as char)
        .collect()
}

/// A five-character SQLSTATE back into PostgreSQL's code.
pub fn sqlstate_code(s: &str) -> PgSqlErrorCode {
    let b = s.as_bytes();
    if b.len() != 5 {
        return PgSqlErrorCode::ERRCODE_INTERNAL_ERROR;
    }
    let six = |c: u8| (c.wrapping_sub(b'0') & 0x3F) as i32;
    let code =
        six(b[0]) | (six(b[1]) << 6) | (six(b[2]) << 12) | (six(b[3]) << 18) | (six(b[4]) << 24);
    PgSqlErrorCode::from(code)
}

/// Raise a wh error with a HINT (what to type instead).
pub fn raise_with_hint(e: WhError, hint: String) -> ! {
    ErrorReport::from(e)
        .set_hint(hint)
        .report(pgrx::PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Raise a wh error as a PostgreSQL ERROR (for code paths that cannot return `Result`).
pub fn raise(e: WhError) -> ! {
    ErrorReport::from(e).report(pgrx::PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_culprit() {
        let e = WhError::RowsOutsideDay {
            template: "foodlogstats".into(),
            day: "2025-09-24".into(),
            time_column: "logged_time".into(),
            count: 3,
        };
        let m = e.to_string();
        assert!(m.contains("foodlogstats") && m.contains("2025-09-24") && m.contains("3 row"));
        assert_eq!(e.sqlstate(), PgSqlErrorCode::ERRCODE_CHECK_VIOLATION);
    }

    #[test]
    fn sqlstates_round_trip() {
        assert_eq!(
            sqlstate_text(PgSqlErrorCode::ERRCODE_CHECK_VIOLATION),
            "23514"
        );
        assert_eq!(
            sqlstate_text(PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION),
            "23505"
        );
        for s in ["23514", "57014", "08001", "55P03"] {
            assert_eq!(sqlstate_text(sqlstate_code(s)), s);
        }
        assert_eq!(sqlstate_code("bad"), PgSqlErrorCode::ERRCODE_INTERNAL_ERROR);
    }

    #[test]
    fn no_sqlstate_text_can_panic() {
        // Whatever a source or a log row holds: wrong lengths, lower case, punctuation,
        // multi-byte text of five bytes, every byte value in every position.
        for s in [
            "",
            "5",
            "57014x",
            "abcde",
            "?????",
            "\u{0}\u{0}\u{0}\u{0}\u{0}",
            "é123",
            "ü€",
            "zzzzz",
            "~~~~~",
        ] {
            let _ = sqlstate_code(s);
        }
        for b in 0..=255u8 {
            for pos in 0..5 {
                let mut bytes = *b"57014";
                bytes[pos] = b;
                let _ = sqlstate_code(&String::from_utf8_lossy(&bytes));
            }
        }
        // Unknown codes fall back to an internal error rather than a panic.
        assert_eq!(sqlstate_text(sqlstate_code("ZZZZZ")).len(), 5);
    }

    #[test]
    fn unknown_objects_are_undefined_object() {
        assert_eq!(
            WhError::UnknownTenant("x".into()).sqlstate(),
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT
        );
        assert_eq!(
            WhError::UnknownTemplate("x".into()).sqlstate(),
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT
        );
        assert_eq!(
            WhError::NullArgument {
                what: "tenant_name"
            }
            .sqlstate(),
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED
        );
    }
}
