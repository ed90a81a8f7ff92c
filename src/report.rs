//! The one result shape of every wh operation: returned as jsonb and written to
//! `_wh.run_log`, so the return value and the log are the same thing. Pure.

use serde::Serialize;
use serde_json::{json, Value};

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
    pub fn new(operation: &str, template: Option<&str>, tenant: Option<&str>, day: Option<String>) -> Self {
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
        self.error = Some(message.to_string());
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

    /// Why a skipped result was skipped (`busy`, `exists`).
    pub fn reason(&self) -> Option<&str> {
        self.details.get("reason").and_then(Value::as_str)
    }
}

/// Thousands separators: 9812 -> "9,812".
pub fn thousands(n: i64) -> String {
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
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

/// The backfill progress line: `day 12/365 tenant_a 2025-01-12 9,812 rows 0.4 s`.
pub fn progress_line(i: i64, n: i64, r: &Value) -> String {
    let tenant = r.get("tenant").and_then(Value::as_str).unwrap_or("?");
    let day = r.get("day").and_then(Value::as_str).unwrap_or("?");
    let secs = r.get("ms").and_then(Value::as_f64).unwrap_or(0.0) / 1000.0;
    let head = format!("day {i}/{n} {tenant} {day}");
    match r.get("status").and_then(Value::as_str) {
        Some("succeeded") => {
            let rows = r.get("rows").and_then(Value::as_i64).unwrap_or(0);
            format!("{head} {} rows {secs:.1} s", thousands(rows))
        }
        Some("skipped") => {
            let why = r.pointer("/details/reason").and_then(Value::as_str).unwrap_or("skipped");
            format!("{head} skipped: {why}")
        }
        _ => {
            let err = r.get("error").and_then(Value::as_str).unwrap_or("unknown error");
            format!("{head} FAILED {secs:.1} s: {err}")
        }
    }
}

/// Summary of a list of per-day results: counts by status and total rows.
pub fn summarize(operation: &str, results: &[Value]) -> Value {
    let count = |s: &str| results.iter().filter(|r| r.get("status").and_then(Value::as_str) == Some(s)).count();
    let rows: i64 = results.iter().filter_map(|r| r.get("rows").and_then(Value::as_i64)).sum();
    let ms: f64 = results.iter().filter_map(|r| r.get("ms").and_then(Value::as_f64)).sum();
    let failed = count("failed");
    json!({
        "operation": operation,
        "status": if failed == 0 { "succeeded" } else if failed == results.len() { "failed" } else { "partial" },
        "days": results.len(),
        "succeeded": count("succeeded"),
        "skipped": count("skipped"),
        "failed": failed,
        "rows": rows,
        "ms": ms,
        "results": results,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines() {
        let mut r = OpResult::new("backfill", Some("foodlogstats"), Some("tenant_a"), Some("2025-01-12".into()));
        r.rows = Some(9812);
        r.ms = 412.0;
        assert_eq!(progress_line(12, 365, &r.to_json()), "day 12/365 tenant_a 2025-01-12 9,812 rows 0.4 s");
        let s = OpResult::new("backfill", None, Some("tenant_a"), Some("2025-01-13".into())).skipped("exists");
        assert_eq!(progress_line(13, 365, &s.to_json()), "day 13/365 tenant_a 2025-01-13 skipped: exists");
        let f = OpResult::new("backfill", None, Some("tenant_a"), Some("2025-01-14".into())).failed("08001", "down");
        assert!(progress_line(14, 365, &f.to_json()).contains("FAILED"));
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
        let ok = { let mut r = OpResult::new("w", None, None, None); r.rows = Some(5); r.to_json() };
        let bad = OpResult::new("w", None, None, None).failed("XX000", "x").to_json();
        let s = summarize("update_mv_window", &[ok.clone(), bad, ok]);
        assert_eq!(s["status"], "partial");
        assert_eq!(s["rows"], 10);
        assert_eq!(s["failed"], 1);
    }
}
