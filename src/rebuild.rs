//! Disaster recovery: recreate every slice listed in `_wh.slices` from the sources —
//! days one by one, folded years a day at a time into a fresh year partition — then the
//! unified and public relations. Works when the tenant schemas are gone entirely.

use pgrx::datum::DatumWithOid;
use pgrx::JsonB;
use serde_json::{json, Value};

use crate::catalog::{self, dblink_schema, log_run};
use crate::dates::Day;
use crate::db::{col, exec, exec_all, ms_since, one, rows};
use crate::error::{raise, WhError};
use crate::fold::swap_in_year;
use crate::names::{CheckedName, SliceNames};
use crate::remote;
use crate::report::{summarize, OpResult};
use crate::slice::lock_day;
use crate::sql;
use crate::views;
use crate::window::isolated;

#[derive(Debug, Clone)]
pub struct SliceRow {
    pub template: CheckedName,
    pub tenant: CheckedName,
    pub kind: String,
    pub start: Day,
}

/// Slices of the registry in scope, optionally only those not refreshed since `since`.
pub fn todo(tenant: Option<&CheckedName>, template: Option<&CheckedName>, since: Option<pgrx::datum::TimestampWithTimeZone>) -> Vec<SliceRow> {
    rows(
        "SELECT template_name, tenant_name, kind, range_start FROM _wh.slices \
         WHERE ($1::text IS NULL OR tenant_name = $1) AND ($2::text IS NULL OR template_name = $2) \
           AND ($3::timestamptz IS NULL OR refreshed_at < $3) \
         ORDER BY template_name, tenant_name, kind, range_start",
        &[
            DatumWithOid::from(tenant.map(|t| t.as_str())),
            DatumWithOid::from(template.map(|t| t.as_str())),
            DatumWithOid::from(since),
        ],
        |r| {
            (
                col::<String>(r, "template_name").unwrap_or_default(),
                col::<String>(r, "tenant_name").unwrap_or_default(),
                col::<String>(r, "kind").unwrap_or_default(),
                col::<pgrx::datum::Date>(r, "range_start"),
            )
        },
    )
    .into_iter()
    .filter_map(|(tp, tn, kind, d)| {
        Some(SliceRow {
            template: CheckedName::template(Some(&tp)).ok()?,
            tenant: CheckedName::tenant(Some(&tn)).ok()?,
            kind,
            start: catalog::day_of(d?).ok()?,
        })
    })
    .collect()
}

/// Rebuild one folded year from the source, a day at a time, into a fresh year partition.
pub fn rebuild_year(template: &CheckedName, tenant: &CheckedName, year: i32, label: &str) -> Value {
    crate::db::without_jit(|| rebuild_year_inner(template, tenant, year, label))
}

fn rebuild_year_inner(template: &CheckedName, tenant: &CheckedName, year: i32, label: &str) -> Value {
    let start = std::time::Instant::now();
    let lt = catalog::load_template(template);
    let t = catalog::load_tenant(tenant);
    let names = SliceNames::new(tenant, template);
    let (lo, hi) = (
        Day::first_of_year(year).unwrap_or_else(|e| raise(e)),
        Day::first_of_year(year + 1).unwrap_or_else(|e| raise(e)),
    );
    let mut r = OpResult::new(label, Some(template.as_str()), Some(tenant.as_str()), Some(lo.iso()));
    if !(lo.0..hi.0).all(|d| lock_day(&names, Day(d), false)) {
        let r = r.skipped("busy");
        log_run(&r);
        return r.to_json();
    }
    views::ensure_parent(&names, &lt);
    let year_rel = names.year(year);
    let aside = format!("{year_rel}_new");
    let tablespace = lt.year_tablespace.as_deref();
    exec(&sql::create_like_parent_in(&names, &aside, tablespace), &[]);
    exec(&sql::owner_to_admin("TABLE", &names.qualified(&aside)), &[]);
    let dbl = dblink_schema();
    let insert = sql::insert_from_dblink(&names, &aside, &lt.t, &dbl);
    let mut n = 0;
    remote::guard(tenant, || {
        for d in lo.0..hi.0 {
            let q = lt.t.remote_sql(Day(d));
            n += exec(&insert, &[DatumWithOid::from(t.server.as_str()), DatumWithOid::from(q.as_str())]);
        }
    });
    let outside = one::<i64>(&sql::count_outside(&names, &aside, &lt.t, lt.time_kind, lo, hi), &[]).unwrap_or(0);
    if outside > 0 {
        raise(WhError::RowsOutsideDay { template: template.to_string(), day: format!("{year}"), time_column: lt.t.time_column.to_string(), count: outside });
    }
    exec(&sql::add_bounds(&names, &aside, &sql::bounds_constraint_name(&year_rel), &lt.t, lt.time_kind, lo, hi), &[]);
    exec_all(&sql::create_indexes_in(&names, &aside, &lt.t, tablespace));
    exec(&sql::analyze(&names, &aside), &[]);
    swap_in_year(&names, &lt, &aside, &year_rel, lo, hi);
    r.rows = Some(n);
    r.ms = ms_since(start);
    catalog::register_slice(&names, &year_rel, "year", lo, hi, n, r.ms);
    r.detail("slice", json!(format!("{tenant}.{year_rel}")));
    r.detail("action", json!("rebuilt year"));
    log_run(&r);
    r.to_json()
}

/// One slice through `_wh.run_isolated`.
pub fn rebuild_one(s: &SliceRow, label: &str) -> Value {
    let op = if s.kind == "year" { "rebuild_year" } else { "refresh" };
    isolated(op, &s.template, &s.tenant, s.start, json!({"operation": label}))
}

/// Repair the unified relations and public views of everything in scope.
pub fn finish(tenant: Option<&CheckedName>, template: Option<&CheckedName>) -> Value {
    let pairs: Vec<(String, String)> = rows(
        "SELECT DISTINCT s.template_name, s.tenant_name FROM _wh.slices s \
         JOIN _wh.tenant_connections t USING (tenant_name) \
         WHERE ($1::text IS NULL OR s.tenant_name = $1) AND ($2::text IS NULL OR s.template_name = $2) ORDER BY 1, 2",
        &[DatumWithOid::from(tenant.map(|t| t.as_str())), DatumWithOid::from(template.map(|t| t.as_str()))],
        |r| (col::<String>(r, "template_name").unwrap_or_default(), col::<String>(r, "tenant_name").unwrap_or_default()),
    );
    let mut templates: Vec<String> = Vec::new();
    for (tp, tn) in &pairs {
        let (tp_c, tn_c) = (CheckedName::template(Some(tp)).unwrap_or_else(|e| raise(e)), CheckedName::tenant(Some(tn)).unwrap_or_else(|e| raise(e)));
        views::update_tenant_union_view(&tn_c, &tp_c);
        if !templates.contains(tp) {
            templates.push(tp.clone());
        }
    }
    for tp in &templates {
        views::update_public_view(&CheckedName::template(Some(tp)).unwrap_or_else(|e| raise(e)));
    }
    json!({"relations": pairs.len(), "public_views": templates})
}

/// `rebuild_entire_warehouse`: everything in one call (per-slice subtransactions).
pub fn rebuild_all(tenant: Option<&CheckedName>, template: Option<&CheckedName>, dry_run: bool) -> Value {
    let start = std::time::Instant::now();
    let slices = todo(tenant, template, None);
    if dry_run {
        let plan: Vec<Value> = slices
            .iter()
            .map(|s| json!({"template": s.template.as_str(), "tenant": s.tenant.as_str(), "kind": s.kind, "range_start": s.start.iso()}))
            .collect();
        return json!({"dry_run": true, "slices": plan.len(), "plan": plan});
    }
    let results: Vec<Value> = slices.iter().map(|s| rebuild_one(s, "rebuild_entire_warehouse")).collect();
    let fin = finish(tenant, template);
    let mut out = summarize("rebuild_entire_warehouse", &results);
    out["relations"] = fin;
    out["wall_ms"] = json!(ms_since(start));
    out
}

/// Start or resume the committing rebuild: the unfinished run of the same scope, or a new one.
pub fn begin_run(tenant: Option<&CheckedName>, template: Option<&CheckedName>) -> (i64, pgrx::datum::TimestampWithTimeZone, bool) {
    let scope = json!({"tenant": tenant.map(|t| t.as_str()), "template": template.map(|t| t.as_str())});
    let found = rows(
        "SELECT run_id, started_at FROM _wh.run_log WHERE operation = 'rebuild_warehouse' AND status = 'running' \
           AND details->'scope' = $1 ORDER BY run_id DESC LIMIT 1",
        &[DatumWithOid::from(JsonB(scope.clone()))],
        |r| (col::<i64>(r, "run_id"), col::<pgrx::datum::TimestampWithTimeZone>(r, "started_at")),
    );
    if let Some((Some(id), Some(at))) = found.into_iter().next() {
        return (id, at, true);
    }
    let row = rows(
        "INSERT INTO _wh.run_log (operation, tenant_name, template_name, status, details) \
         VALUES ('rebuild_warehouse', $1, $2, 'running', pg_catalog.jsonb_build_object('scope', $3::jsonb)) \
         RETURNING run_id, started_at",
        &[
            DatumWithOid::from(tenant.map(|t| t.as_str())),
            DatumWithOid::from(template.map(|t| t.as_str())),
            DatumWithOid::from(JsonB(scope)),
        ],
        |r| (col::<i64>(r, "run_id"), col::<pgrx::datum::TimestampWithTimeZone>(r, "started_at")),
    );
    match row.into_iter().next() {
        Some((Some(id), Some(at))) => (id, at, false),
        _ => raise(WhError::State("could not record the rebuild run".into())),
    }
}

pub fn finish_run(run_id: i64, tenant: Option<&CheckedName>, template: Option<&CheckedName>) -> Value {
    let fin = finish(tenant, template);
    let failed = one::<i64>(
        "SELECT count(*) FROM _wh.run_log WHERE operation = 'rebuild' AND status = 'failed' AND run_id > $1",
        &[DatumWithOid::from(run_id)],
    )
    .unwrap_or(0);
    exec(
        "UPDATE _wh.run_log SET status = CASE WHEN $2 > 0 THEN 'failed' ELSE 'succeeded' END, \
             finished_at = pg_catalog.clock_timestamp(), \
             duration_ms = extract(epoch FROM pg_catalog.clock_timestamp() - started_at) * 1000, \
             details = details || pg_catalog.jsonb_build_object('failed_slices', $2, 'relations', $3::jsonb) \
         WHERE run_id = $1",
        &[DatumWithOid::from(run_id), DatumWithOid::from(failed), DatumWithOid::from(JsonB(fin.clone()))],
    );
    json!({"run_id": run_id, "failed_slices": failed, "relations": fin})
}
