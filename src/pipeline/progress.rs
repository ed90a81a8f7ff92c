//! Progress another session can see, like `pg_stat_progress_*`: a running wh operation
//! writes where it is (operation, template, tenant, i of n, rows so far, when it started)
//! into its backend's `pg_stat_activity.query`, ahead of the statement's own text, and
//! `_wh.progress` reads it back. Shared memory every backend already has: no table (a row
//! would stay invisible until commit, and a single-transaction call never commits midway),
//! no `shared_preload_libraries`. The statement's text is put back when the operation ends.
//!
//! One operation reports per top-level statement: a call made inside another (a chunk of
//! a backfill, a day of a window) leaves the outer one's line alone.

use std::cell::RefCell;
use std::ffi::{CStr, CString};

use serde_json::json;

use crate::pure::dates::Day;

/// The marker `_wh.progress` looks for at the start of `pg_stat_activity.query`.
pub const MARK: &str = "/* wh progress ";

struct State {
    statement: i64,
    operation: String,
    template: Option<String>,
    tenant: Option<String>,
    unit: String,
    total: i64,
    started: f64,
    original: String,
}

thread_local! {
    static CURRENT: RefCell<Option<State>> = const { RefCell::new(None) };
}

/// What an operation is: its name, template, tenant, and how many units of what it does.
pub struct Op<'a> {
    pub operation: &'a str,
    pub template: Option<&'a str>,
    pub tenant: Option<&'a str>,
    pub unit: &'a str,
    pub total: i64,
}

/// Where it is: units done, what it works on, rows stored so far.
pub struct At<'a> {
    pub done: i64,
    pub current: &'a str,
    pub rows: i64,
}

/// The line written into `pg_stat_activity.query` (pure, unit-tested).
pub fn line(op: &Op, at: &At, started: f64, original: &str) -> String {
    let j = json!({
        "operation": op.operation, "template": op.template, "tenant": op.tenant, "unit": op.unit,
        "done": at.done, "total": op.total, "current": at.current, "rows": at.rows, "started": started,
    });
    // JSON escapes no '*' or '/': keep the comment closed whatever a value holds.
    let body = j.to_string().replace("*/", "*\\/");
    format!("{MARK}{body} */ {original}")
}

/// The progress in a `pg_stat_activity.query` text, or None unless it is exactly what
/// `line` writes (a statement any login types starting with the marker yields None, so
/// it can neither break `_wh.progress` nor show up in it).
pub fn parse(query: &str) -> Option<serde_json::Value> {
    let (body, _) = query.strip_prefix(MARK)?.split_once(" */ ")?;
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let o = v.as_object()?;
    let text = |k: &str| o.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let maybe = |k: &str| match o.get(k) {
        Some(serde_json::Value::Null) => Some(None),
        Some(serde_json::Value::String(s)) => Some(Some(s.clone())),
        _ => None,
    };
    let count = |k: &str| o.get(k).and_then(|x| x.as_i64()).filter(|n| *n >= 0);
    let started = o
        .get("started")
        .and_then(|x| x.as_f64())
        .filter(|f| f.is_finite() && *f > 0.0)?;
    let (done, total) = (count("done")?, count("total")?);
    if o.len() != 9 || done > total {
        return None;
    }
    Some(json!({
        "operation": text("operation")?, "template": maybe("template")?, "tenant": maybe("tenant")?,
        "unit": text("unit")?, "done": done, "total": total, "current": text("current")?,
        "rows": count("rows")?, "started": started,
    }))
}

fn statement_start() -> i64 {
    unsafe { pgrx::pg_sys::GetCurrentStatementStartTimestamp() }
}

fn query_text() -> String {
    let p = unsafe { pgrx::pg_sys::debug_query_string };
    if p.is_null() {
        return String::new();
    }
    let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
    // Never nest markers (a procedure's CALL text is the original of every step).
    match s
        .strip_prefix(MARK)
        .and_then(|rest| rest.split_once(" */ "))
    {
        Some((_, orig)) => orig.to_string(),
        None => s,
    }
}

fn report(text: &str) {
    let c = CString::new(text.replace('\0', " ")).unwrap_or_default();
    unsafe {
        pgrx::pg_sys::pgstat_report_activity(pgrx::pg_sys::BackendState::STATE_RUNNING, c.as_ptr())
    };
}

fn now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// An operation's progress: reported while it lives, the statement's text restored when
/// it is dropped. `owned` is false when an outer operation of the same statement reports.
pub struct Progress {
    owned: bool,
}

/// Start reporting `op`, unless an operation of this statement already reports.
pub fn begin(op: Op) -> Progress {
    let stmt = statement_start();
    let busy = CURRENT.with(|c| c.borrow().as_ref().is_some_and(|s| s.statement == stmt));
    if busy {
        return Progress { owned: false };
    }
    start(stmt, &op);
    let p = Progress { owned: true };
    p.step(0, "", 0);
    p
}

fn start(stmt: i64, op: &Op) {
    let state = State {
        statement: stmt,
        operation: op.operation.into(),
        template: op.template.map(Into::into),
        tenant: op.tenant.map(Into::into),
        unit: op.unit.into(),
        total: op.total,
        started: now_s(),
        original: query_text(),
    };
    CURRENT.with(|c| *c.borrow_mut() = Some(state));
}

fn write(at: &At, tenant: Option<&str>) {
    CURRENT.with(|c| {
        if let Some(s) = c.borrow().as_ref() {
            let op = Op {
                operation: &s.operation,
                template: s.template.as_deref(),
                tenant: tenant.or(s.tenant.as_deref()),
                unit: &s.unit,
                total: s.total,
            };
            report(&line(&op, at, s.started, &s.original));
        }
    });
}

fn end() {
    let original = CURRENT.with(|c| c.borrow_mut().take().map(|s| s.original));
    if let Some(o) = original {
        report(&o);
    }
}

impl Progress {
    /// `done` of the total units finished, working on `current`, `rows` stored so far.
    pub fn step(&self, done: i64, current: &str, rows: i64) {
        if self.owned {
            write(
                &At {
                    done,
                    current,
                    rows,
                },
                None,
            );
        }
    }

    /// Like `step`, for operations that move from tenant to tenant.
    pub fn step_tenant(&self, done: i64, tenant: &str, current: &str, rows: i64) {
        if self.owned {
            write(
                &At {
                    done,
                    current,
                    rows,
                },
                Some(tenant),
            );
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.owned {
            end();
        }
    }
}

/// A committing procedure's step (`_wh._progress_step`): its state lives across its
/// transactions, keyed by the CALL statement, and it ends with `procedure_end`.
pub fn procedure_step(op: Op, at: At) {
    let stmt = statement_start();
    let same = CURRENT.with(|c| {
        c.borrow()
            .as_ref()
            .is_some_and(|s| s.statement == stmt && s.operation == op.operation)
    });
    if !same {
        start(stmt, &op);
    }
    CURRENT.with(|c| {
        if let Some(s) = c.borrow_mut().as_mut() {
            s.template = op.template.map(Into::into);
            s.tenant = op.tenant.map(Into::into);
            s.total = op.total;
        }
    });
    write(&at, None);
}

/// The end of a committing procedure's progress: the CALL's own text again.
pub fn procedure_end() {
    end();
}

/// Run `each` on the chunks of `days` in order, reporting progress before each chunk
/// (`done` days, the chunk's span, rows stored so far).
pub fn chunked(
    progress: &Progress,
    days: &[Day],
    mut each: impl FnMut(&[Day]) -> Vec<crate::pure::report::OpResult>,
) -> Vec<crate::pure::report::OpResult> {
    let mut results = Vec::new();
    let mut rows = 0i64;
    for c in days_in_chunks(days) {
        progress.step(
            results.len() as i64,
            &crate::pure::dates::days_span(&c),
            rows,
        );
        let rs = each(&c);
        rows += rs.iter().filter_map(|r| r.rows).sum::<i64>();
        results.extend(rs);
    }
    results
}

/// Chunks of a window: runs inside one month, at most `DEFAULT_CHUNK_DAYS` long. The
/// lookback of a month's first day spans two months: one chunk per month is fine.
pub fn days_in_chunks(days: &[Day]) -> Vec<Vec<Day>> {
    crate::pure::dates::chunks(days, crate::pure::dates::DEFAULT_CHUNK_DAYS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_starts_with_the_marker_and_keeps_the_statement() {
        let op = Op {
            operation: "backfill",
            template: Some("foodlogstats"),
            tenant: Some("tenant_a"),
            unit: "day",
            total: 365,
        };
        let l = line(
            &op,
            &At {
                done: 31,
                current: "2025-02-01..2025-02-28",
                rows: 9300,
            },
            1.5e9,
            "CALL _wh.backfill(...)",
        );
        assert!(l.starts_with(MARK));
        let (json, rest) = l[MARK.len()..].split_once(" */ ").unwrap();
        assert_eq!(rest, "CALL _wh.backfill(...)");
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["done"], 31);
        assert_eq!(v["total"], 365);
        assert_eq!(v["tenant"], "tenant_a");
        assert_eq!(v["rows"], 9300);
    }

    #[test]
    fn only_what_wh_writes_parses() {
        let op = Op {
            operation: "backfill",
            template: Some("t"),
            tenant: None,
            unit: "day",
            total: 10,
        };
        let l = line(
            &op,
            &At {
                done: 3,
                current: "2025-01-04",
                rows: 30,
            },
            1.7e9,
            "CALL x()",
        );
        let v = parse(&l).unwrap();
        assert_eq!(
            (
                v["done"].as_i64(),
                v["total"].as_i64(),
                v["tenant"].is_null()
            ),
            (Some(3), Some(10), true)
        );
        for bad in [
            "SELECT 1",
            "/* wh progress x */ SELECT pg_sleep(1)",
            "/* wh progress {} */ SELECT 1",
            "/* wh progress {\"operation\":\"x\"} */ SELECT 1",
            &l[..l.len() / 2],
            &l.replace("\"done\":3", "\"done\":-3"),
            &l.replace("\"done\":3", "\"done\":11"),
            &l.replace("\"started\":1700000000.0", "\"started\":\"now\""),
            &l.replace("\"rows\":30", "\"rows\":30,\"extra\":1"),
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn no_value_can_close_the_comment() {
        let op = Op {
            operation: "x",
            template: Some("a*/b"),
            tenant: None,
            unit: "day",
            total: 1,
        };
        let l = line(
            &op,
            &At {
                done: 0,
                current: "*/",
                rows: 0,
            },
            0.0,
            "",
        );
        let inner = &l[MARK.len()..l.len() - " */ ".len()];
        assert!(!inner.contains("*/"), "{l}");
        let v: serde_json::Value = serde_json::from_str(inner).unwrap();
        assert_eq!(v["template"], "a*/b");
    }
}
