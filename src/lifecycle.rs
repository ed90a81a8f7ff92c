//! The life of slices and tenants after they are built: template policy, retention,
//! storage tiering of folded years, and removing a tenant.

use pgrx::datum::{DatumWithOid, Interval};
use serde_json::{json, Value};

use crate::catalog::{self, log_run, pg_date};
use crate::dates::Day;
use crate::db::{col, exec, exec_all, ms_since, one, rows};
use crate::error::{raise, WhError};
use crate::names::{quote_ident, server_name, CheckedName, SliceNames};
use crate::report::OpResult;
use crate::schedule;
use crate::slice::is_attached;
use crate::sql;
use crate::views;

fn tablespace_exists(ts: &str) -> bool {
    one::<bool>("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tablespace WHERE spcname = $1)", &[DatumWithOid::from(ts)])
        .unwrap_or(false)
}

/// Retention horizon, tablespace for folded years, staleness threshold. NULL = none.
pub fn set_policy(template: &CheckedName, retention: Option<Interval>, year_tablespace: Option<&str>, stale_after: Option<Interval>) -> Value {
    catalog::load_template(template);
    if let Some(ts) = year_tablespace {
        if !tablespace_exists(ts) {
            raise(WhError::invalid("year_tablespace", format!("tablespace {ts:?} does not exist")));
        }
    }
    for (what, v) in [("retention", &retention), ("stale_after", &stale_after)] {
        if let Some(i) = v {
            let positive = one::<bool>("SELECT $1 > '0'::interval", &[(*i).into()]).unwrap_or(false);
            if !positive {
                raise(WhError::invalid(what, "must be a positive interval"));
            }
        }
    }
    exec(
        "UPDATE _wh.mv_templates SET retention = $2, year_tablespace = $3, stale_after = $4, updated_at = pg_catalog.now() \
         WHERE template_name = $1",
        &[DatumWithOid::from(template.as_str()), DatumWithOid::from(retention), DatumWithOid::from(year_tablespace), DatumWithOid::from(stale_after)],
    );
    let mut r = OpResult::new("set_template_policy", Some(template.as_str()), None, None);
    r.detail("year_tablespace", json!(year_tablespace));
    log_run(&r);
    r.to_json()
}

/// Drop slices that end on or before the horizon: `older_than`, or today minus the
/// template's retention. Days of the current year are kept unless asked.
pub fn apply_retention(template: &CheckedName, tenant: Option<&CheckedName>, older_than: Option<Day>, include_current_year: bool, dry_run: bool, today: Day) -> Value {
    let start = std::time::Instant::now();
    catalog::load_template(template);
    let horizon = match older_than {
        Some(d) => d,
        None => {
            let d = one::<pgrx::datum::Date>(
                "SELECT ($2::date - retention)::date FROM _wh.mv_templates WHERE template_name = $1 AND retention IS NOT NULL",
                &[DatumWithOid::from(template.as_str()), DatumWithOid::from(pg_date(today))],
            )
            .unwrap_or_else(|| {
                raise(WhError::invalid(
                    "older_than",
                    format!("template {template} has no retention; pass older_than or set one with _wh.set_template_policy"),
                ))
            });
            catalog::day_of(d).unwrap_or_else(|e| raise(e))
        }
    };
    let year_start = Day::first_of_year(today.year()).unwrap_or_else(|e| raise(e));
    let candidates: Vec<(String, String, String, Day, Day)> = rows(
        "SELECT tenant_name, slice_name, kind, range_start, range_end FROM _wh.slices \
         WHERE template_name = $1 AND ($2::text IS NULL OR tenant_name = $2) AND range_end <= $3 \
         ORDER BY tenant_name, range_start",
        &[DatumWithOid::from(template.as_str()), DatumWithOid::from(tenant.map(|t| t.as_str())), DatumWithOid::from(pg_date(horizon))],
        |r| {
            (
                col::<String>(r, "tenant_name").unwrap_or_default(),
                col::<String>(r, "slice_name").unwrap_or_default(),
                col::<String>(r, "kind").unwrap_or_default(),
                col::<pgrx::datum::Date>(r, "range_start").and_then(|d| catalog::day_of(d).ok()).unwrap_or(Day(0)),
                col::<pgrx::datum::Date>(r, "range_end").and_then(|d| catalog::day_of(d).ok()).unwrap_or(Day(0)),
            )
        },
    )
    .into_iter()
    .filter(|(_, _, kind, s, _)| include_current_year || !(kind == "day" && *s >= year_start))
    .collect();
    let listed: Vec<Value> = candidates
        .iter()
        .map(|(tn, sl, kind, s, e)| json!({"tenant": tn, "slice": sl, "kind": kind, "range_start": s.iso(), "range_end": e.iso()}))
        .collect();
    if !dry_run {
        for (tn, sl, kind, s, _) in &candidates {
            let tenant = CheckedName::tenant(Some(tn)).unwrap_or_else(|e| raise(e));
            let names = SliceNames::new(&tenant, template);
            if is_attached(&names, sl) {
                exec(&sql::detach(&names, sl), &[]);
            }
            if views::relation_exists(&names.qualified(sl)) {
                exec(&sql::drop_table(&names, sl), &[]);
            }
            exec(
                "DELETE FROM _wh.slices WHERE template_name = $1 AND tenant_name = $2 AND kind = $3 AND range_start = $4",
                &[DatumWithOid::from(template.as_str()), DatumWithOid::from(tn.as_str()), DatumWithOid::from(kind.as_str()), DatumWithOid::from(pg_date(*s))],
            );
        }
    }
    let mut r = OpResult::new("apply_retention", Some(template.as_str()), tenant.map(|t| t.as_str()), Some(horizon.iso()));
    r.ms = ms_since(start);
    r.rows = Some(candidates.len() as i64);
    r.detail("horizon", json!(horizon.iso()));
    r.detail("dry_run", json!(dry_run));
    r.detail("include_current_year", json!(include_current_year));
    r.detail("dropped", json!(listed));
    if !dry_run {
        log_run(&r);
    }
    r.to_json()
}

/// Move a folded year (table and indexes) to another tablespace.
pub fn set_slice_tablespace(template: &CheckedName, tenant: &CheckedName, year: i32, tablespace: &str) -> Value {
    let start = std::time::Instant::now();
    let lt = catalog::load_template(template);
    if !tablespace_exists(tablespace) {
        raise(WhError::invalid("tablespace", format!("tablespace {tablespace:?} does not exist")));
    }
    let names = SliceNames::new(tenant, template);
    let rel = names.year(year);
    if !is_attached(&names, &rel) {
        raise(WhError::invalid("year", format!("{tenant}.{rel} does not exist: fold the year first")));
    }
    exec_all(&sql::set_tablespace(&names, &rel, &lt.t, tablespace));
    let mut r = OpResult::new("set_slice_tablespace", Some(template.as_str()), Some(tenant.as_str()), None);
    r.ms = ms_since(start);
    r.detail("slice", json!(format!("{tenant}.{rel}")));
    r.detail("tablespace", json!(tablespace));
    log_run(&r);
    r.to_json()
}

/// Unschedule, drop the server and mapping, leave the public views; with `drop_data`
/// also drop the tenant's schema and registry rows (otherwise the data stays readable).
pub fn remove_tenant(tenant: &CheckedName, drop_data: bool) -> Value {
    let start = std::time::Instant::now();
    catalog::load_tenant(tenant);
    let jobs = schedule::unschedule_tenant_jobs(tenant, None);
    let server = server_name(tenant);
    exec(&format!("DROP SERVER IF EXISTS {} CASCADE", quote_ident(&server)), &[]);
    exec("DELETE FROM _wh.tenant_connections WHERE tenant_name = $1", &[DatumWithOid::from(tenant.as_str())]);
    exec(
        "INSERT INTO _wh.connection_audit (tenant_name, action, changed_fields) VALUES ($1, 'remove', '{}')",
        &[DatumWithOid::from(tenant.as_str())],
    );
    let templates: Vec<String> = rows(
        "SELECT template_name FROM _wh.mv_templates ORDER BY 1",
        &[],
        |r| col::<String>(r, "template_name").unwrap_or_default(),
    );
    let mut views_updated = Vec::new();
    for tp in &templates {
        let tp = CheckedName::template(Some(tp)).unwrap_or_else(|e| raise(e));
        if views::relation_exists(&format!("public.{}", tp.quoted())) {
            views::update_public_view(&tp);
            views_updated.push(tp.to_string());
        }
    }
    if drop_data {
        exec(&format!("DROP SCHEMA IF EXISTS {} CASCADE", tenant.quoted()), &[]);
        exec("DELETE FROM _wh.slices WHERE tenant_name = $1", &[DatumWithOid::from(tenant.as_str())]);
    }
    let mut r = OpResult::new("remove_tenant", None, Some(tenant.as_str()), None);
    r.ms = ms_since(start);
    r.detail("drop_data", json!(drop_data));
    r.detail("jobs_unscheduled", json!(jobs));
    r.detail("public_views", json!(views_updated));
    log_run(&r);
    r.to_json()
}
