//! The one result shape of every wh operation: returned as jsonb and written to
//! `_wh.run_log`, so the return value and the log are the same thing. Pure.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The most of any one text wh stores or logs that may have come from a source (an error's
/// message with its detail): a source that raises a 10 MB message must not grow the run log
/// or the server log by as much.
pub const MAX_SOURCE_TEXT: usize = 2048;

/// `text` cut to MAX_SOURCE_TEXT bytes (on a character boundary), saying how much was cut.
pub fn capped(text: &str) -> String {
    let head = capped_head(text);
    if head.len() == text.len() {
        return text.to_string();
    }
    format!("{head}… ({} more bytes cut)", text.len() - head.len())
}

/// The first MAX_SOURCE_TEXT bytes of `text`, ending on a character boundary.
pub fn capped_head(text: &str) -> &str {
    let mut end = text.len().min(MAX_SOURCE_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Succeeded,
    Failed,
    Skipped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct OpResult {
    pub operation: String,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    pub rows: Option<i64>,
    pub ms: f64,
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
    pub details: Value,
}

impl OpResult {
    pub fn new(
        operation: &str,
        template: Option<&str>,
        tenant: Option<&str>,
        day: Option<String>,
    ) -> Self {
        OpResult {
            operation: operation.to_string(),
            status: Status::Succeeded,
            template: template.map(str::to_string),
            tenant: tenant.map(str::to_string),
            day,
            rows: None,
            ms: 0.0,
            error: None,
            sqlstate: None,
            details: json!({}),
        }
    }

    pub fn skipped(mut self, reason: &str) -> Self {
        self.status = Status::Skipped;
        self.detail("reason", json!(reason));
        self
    }

    pub fn failed(mut self, sqlstate: &str, message: &str) -> Self {
        self.status = Status::Failed;
        self.sqlstate = Some(sqlstate.to_string());
        self.error = Some(capped(message));
        self
    }

    pub fn detail(&mut self, key: &str, value: Value) {
        if let Value::Object(m) = &mut self.details {
            m.insert(key.to_string(), value);
        }
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("OpResult serializes")
    }
}

/// How a returned result (one day's, or a summary's) ended, read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ended {
    Succeeded,
    Partial,
    Failed,
    Skipped,
    /// Anything else a result may say: not a failure.
    #[serde(other)]
    Other,
}

/// A result as a call returned it (a day's `OpResult` or a summary of them), read back
/// where it crossed SQL as jsonb: the jobs' procedures commit the run log, then fail the
/// job on what the call returned.
#[derive(Debug, Clone, Deserialize)]
pub struct Returned {
    pub status: Ended,
    #[serde(default)]
    pub results: Vec<Returned>,
    pub tenant: Option<String>,
    pub day: Option<String>,
    pub error: Option<String>,
    pub sqlstate: Option<String>,
}

impl Returned {
    /// Read a returned result; one that does not parse reads as failed, naming why.
    pub fn of(v: &Value) -> Returned {
        serde_json::from_value(v.clone()).unwrap_or_else(|e| Returned {
            status: Ended::Failed,
            results: Vec::new(),
            tenant: None,
            day: None,
            error: Some(format!("wh: the run's result could not be read: {e}")),
            sqlstate: Some("XX000".into()),
        })
    }

    /// The failed results inside it (itself, when it failed without per-day results);
    /// none unless it failed or partly failed.
    pub fn failures(&self) -> Vec<&Returned> {
        if !matches!(self.status, Ended::Failed | Ended::Partial) {
            return Vec::new();
        }
        if self.results.is_empty() {
            return vec![self];
        }
        self.results
            .iter()
            .filter(|r| r.status == Ended::Failed)
            .collect()
    }
}

/// Thousands separators: 9812 -> "9,812".
pub fn thousands(n: i64) -> String {
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// The progress line of one chunk of a backfill or rebuild, from its summary:
/// `days 32-59/365 tenant_a 2025-02-01..2025-02-28: 28 built, 0 unchanged, 0 skipped, 0 failed, 8,400 rows 1.2 s`,
/// with the skip reasons and the first error when there are any.
pub fn progress_line(first: i64, n: i64, tenant: &str, summary: &Value) -> String {
    let results: Vec<&Value> = summary
        .get("results")
        .and_then(Value::as_array)
        .map(|v| v.iter().collect())
        .unwrap_or_default();
    let count = results.len() as i64;
    let last = first + count.max(1) - 1;
    let days: Vec<&str> = results
        .iter()
        .filter_map(|r| r.get("day").and_then(Value::as_str))
        .collect();
    let span = match (days.iter().min(), days.iter().max()) {
        (Some(a), Some(b)) if a != b => format!("{a}..{b}"),
        (Some(a), _) => a.to_string(),
        _ => "?".into(),
    };
    let head = if count <= 1 {
        format!("day {first}/{n} {tenant} {span}")
    } else {
        format!("days {first}-{last}/{n} {tenant} {span}")
    };
    let status = |r: &Value| {
        r.get("status")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let action = |r: &Value| {
        r.pointer("/details/action")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let built = results
        .iter()
        .filter(|r| status(r) == "succeeded" && action(r) != "unchanged")
        .count();
    let unchanged = results
        .iter()
        .filter(|r| status(r) == "succeeded" && action(r) == "unchanged")
        .count();
    let failed: Vec<&&Value> = results.iter().filter(|r| status(r) == "failed").collect();
    let mut reasons: Vec<String> = results
        .iter()
        .filter(|r| status(r) == "skipped")
        .filter_map(|r| {
            r.pointer("/details/reason")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect();
    let skipped = reasons.len();
    reasons.sort();
    reasons.dedup();
    let rows: i64 = results
        .iter()
        .filter_map(|r| r.get("rows").and_then(Value::as_i64))
        .sum();
    let secs = summary.get("ms").and_then(Value::as_f64).unwrap_or(0.0) / 1000.0;
    let mut line = format!("{head}: {built} built, {unchanged} unchanged, {skipped} skipped");
    if skipped > 0 {
        line.push_str(&format!(" ({})", reasons.join(", ")));
    }
    line.push_str(&format!(
        ", {} failed, {} rows {secs:.1} s",
        failed.len(),
        thousands(rows)
    ));
    if let Some(f) = failed.first() {
        line.push_str(&format!(
            " FAILED {}: {}",
            f.get("day").and_then(Value::as_str).unwrap_or("?"),
            f.get("error").and_then(Value::as_str).unwrap_or("")
        ));
    }
    line
}

/// A call's per-day results and the summary it returns (`summarize`, plus any fields of
/// the call's own).
pub struct Summary {
    pub results: Vec<OpResult>,
    pub json: Value,
}

impl Summary {
    pub fn new(operation: &str, results: Vec<OpResult>) -> Self {
        let json = summarize(operation, &results);
        Summary { results, json }
    }
}

/// Summary of a list of per-day results: counts by status and total rows.
pub fn summarize(operation: &str, results: &[OpResult]) -> Value {
    let count = |s: Status| results.iter().filter(|r| r.status == s).count();
    let rows: i64 = results.iter().filter_map(|r| r.rows).sum();
    let ms: f64 = results.iter().map(|r| r.ms).sum();
    let failed = count(Status::Failed);
    json!({
        "operation": operation,
        "status": if failed == 0 { "succeeded" } else if failed == results.len() { "failed" } else { "partial" },
        "days": results.len(),
        "succeeded": count(Status::Succeeded),
        "skipped": count(Status::Skipped),
        "failed": failed,
        "rows": rows,
        "ms": ms,
        "results": results.iter().map(OpResult::to_json).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returned_results_are_read_back_typed() {
        let ok =
            Returned::of(&json!({"status": "succeeded", "results": [{"status": "succeeded"}]}));
        assert!(ok.failures().is_empty());
        let partial = Returned::of(&json!({"status": "partial", "results": [
            {"status": "succeeded", "day": "2025-01-01"},
            {"status": "failed", "day": "2025-01-02", "tenant": "a", "error": "x", "sqlstate": "08001"}]}));
        let f = partial.failures();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].sqlstate.as_deref(), Some("08001"));
        let one = Returned::of(&json!({"status": "failed", "error": "busy", "sqlstate": "55P03"}));
        assert_eq!(one.failures()[0].error.as_deref(), Some("busy"));
        assert!(Returned::of(&json!({"status": "sent"}))
            .failures()
            .is_empty());
        let unreadable = Returned::of(&json!({"rows": 1}));
        assert_eq!(unreadable.failures().len(), 1);
    }

    #[test]
    fn progress_lines() {
        let day = |d: &str, rows: i64, action: &str| {
            let mut r = OpResult::new(
                "backfill",
                Some("foodlogstats"),
                Some("tenant_a"),
                Some(d.into()),
            );
            r.rows = Some(rows);
            r.detail("action", json!(action));
            r
        };
        let skip = OpResult::new(
            "backfill",
            None,
            Some("tenant_a"),
            Some("2025-02-03".into()),
        )
        .skipped("exists");
        let mut s = summarize(
            "backfill",
            &[
                day("2025-02-01", 9812, "created"),
                day("2025-02-02", 10, "unchanged"),
                skip,
            ],
        );
        s["ms"] = json!(1234.0);
        assert_eq!(
            progress_line(32, 365, "tenant_a", &s),
            "days 32-34/365 tenant_a 2025-02-01..2025-02-03: 1 built, 1 unchanged, 1 skipped (exists), 0 failed, 9,822 rows 1.2 s"
        );
        let f = OpResult::new(
            "backfill",
            None,
            Some("tenant_a"),
            Some("2025-01-14".into()),
        )
        .failed("08001", "down");
        let one = progress_line(14, 365, "tenant_a", &summarize("backfill", &[f]));
        assert!(
            one.starts_with("day 14/365 tenant_a 2025-01-14: 0 built")
                && one.contains("FAILED 2025-01-14: down"),
            "{one}"
        );
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(-1234), "-1,234");
    }

    #[test]
    fn summary_counts() {
        let ok = {
            let mut r = OpResult::new("w", None, None, None);
            r.rows = Some(5);
            r
        };
        let bad = OpResult::new("w", None, None, None).failed("XX000", "x");
        let s = summarize("update_mv_window", &[ok.clone(), bad, ok]);
        assert_eq!(s["status"], "partial");
        assert_eq!(s["rows"], 10);
        assert_eq!(s["failed"], 1);
    }
}
