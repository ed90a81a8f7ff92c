//! One chunk of `_wh.verify`: per day, the source's count of rows and checksum over every
//! column (one remote query per group of days fetched with the same columns) against the
//! warehouse's, computed on the stored rows. Run isolated as `Op::Verify`.

use std::collections::BTreeMap;

use pgrx::datum::DatumWithOid;
use serde_json::json;

use crate::catalog;
use crate::catalog::db::pg_date;
use crate::catalog::db::{col, ms_since, rows};
use crate::pure::dates::Day;
use crate::pure::error::WhError;
use crate::pure::names::{CheckedName, TableNames};
use crate::pure::report::OpResult;
use crate::pure::sql;
use crate::remote;

/// Figures of one day: rows and checksum.
type Figures = BTreeMap<Day, (i64, String)>;

/// Per day of `days`, the source's figures against the warehouse's (`drifted` when they
/// differ). Raises when the source cannot answer.
pub fn compare(template: &CheckedName, tenant: &CheckedName, days: &[Day]) -> Vec<OpResult> {
    let lt = catalog::load_template(template);
    let t = catalog::load_tenant(tenant);
    let tn = TableNames::new(template);
    let start = std::time::Instant::now();
    let query = match catalog::tenant_query(template, tenant) {
        Some(q) => lt.t.with_query(&q).unwrap_or_else(|e| {
            crate::pure::error::raise(WhError::InvalidTemplate {
                template: template.to_string(),
                reason: e,
            })
        }),
        None => lt.t.clone(),
    };
    let conn = remote::conn_name("wh_v_", tenant);
    let deadline = remote::deadline_for(&t);
    // Days fetched before a column was appended are compared on the columns they had.
    let mut source = Figures::new();
    for (known, group) in by_columns_known(&lt.t, template, tenant, days) {
        remote::send(&t, &conn, &sql::source_day_summary(&query, &group, known));
        let answer = remote::receive_rows(&t, &conn, deadline);
        source.extend(answer.into_iter().filter_map(|r| {
            let day = Day::parse(r.first()?.as_deref()?).ok()?;
            let n = r.get(1)?.as_deref()?.parse::<i64>().ok()?;
            Some((day, (n, r.get(2).cloned().flatten().unwrap_or_default())))
        }));
    }
    let (Some(&lo), Some(&last)) = (days.first(), days.last()) else {
        return Vec::new();
    };
    let hi = last.succ();
    let stored = catalog::day_figures(
        &sql::stored_summary(&tn, &lt.t, lt.time_kind, lo, hi),
        &[DatumWithOid::from(tenant.as_str())],
    );
    let ms = ms_since(start) / days.len().max(1) as f64;
    let empty = (0, crate::pure::sql::EMPTY_DAY_CHECKSUM.to_string());
    days.iter()
        .map(|d| {
            let s = source.get(d).unwrap_or(&empty);
            let w = stored.get(d).unwrap_or(&empty);
            let mut r = OpResult::new(
                "verify",
                Some(template.as_str()),
                Some(tenant.as_str()),
                Some(d.iso()),
            );
            r.ms = ms;
            r.rows = Some(s.0);
            r.detail("drifted", json!(s != w));
            r.detail("source", json!({"rows": s.0, "checksum": s.1}));
            r.detail("warehouse", json!({"rows": w.0, "checksum": w.1}));
            r
        })
        .collect()
}

/// `days` grouped by how many of the template's columns each was fetched with (the
/// registry's `columns`; all for a day it does not hold).
fn by_columns_known(
    t: &crate::pure::template::Template,
    template: &CheckedName,
    tenant: &CheckedName,
    days: &[Day],
) -> BTreeMap<usize, Vec<Day>> {
    let all = t.columns.len();
    let ds: Vec<pgrx::datum::Date> = days.iter().map(|d| pg_date(*d)).collect();
    let known: BTreeMap<Day, usize> = rows(
        "SELECT range_start, columns FROM _wh.slices WHERE template_name = $1 AND tenant_name = $2 \
         AND kind = 'day' AND range_start = ANY ($3::date[]) AND columns IS NOT NULL",
        &[
            DatumWithOid::from(template.as_str()),
            DatumWithOid::from(tenant.as_str()),
            DatumWithOid::from(ds),
        ],
        |r| {
            (
                col::<pgrx::datum::Date>(r, "range_start"),
                col::<i16>(r, "columns").unwrap_or(0),
            )
        },
    )
    .into_iter()
    .filter_map(|(d, n)| Some((catalog::db::day_of(d?).ok()?, (n.max(0) as usize).min(all))))
    .collect();
    let mut groups: BTreeMap<usize, Vec<Day>> = BTreeMap::new();
    for d in days {
        groups
            .entry(known.get(d).copied().unwrap_or(all))
            .or_default()
            .push(*d);
    }
    groups
}
