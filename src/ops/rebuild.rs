//! Disaster recovery: fetch every tenant-day listed in `_wh.slices` again from the
//! sources, a chunk of days per remote query, through the same stage → check → apply
//! pipeline as any refresh (a day whose rows are intact writes nothing), then repair the
//! table, partitions, tenant views and grants. Works when the tenant schemas or the
//! tables are gone entirely: the registry is the list of what to rebuild. Rollups come
//! after their bases and are computed from them here, never fetched.

use pgrx::datum::DatumWithOid;
use pgrx::JsonB;
use serde_json::{json, Value};

use crate::catalog::db::{col, exec, ms_since, one, rows};
use crate::catalog::storage;
use crate::catalog::{self};
use crate::pipeline::isolate::isolated_days;
use crate::pipeline::unit::{Op, Unit};
use crate::pure::dates::{self, Day, DEFAULT_CHUNK_DAYS};
use crate::pure::error::{raise, WhError};
use crate::pure::names::CheckedName;
use crate::pure::report::{summarize, OpResult};

/// A run of registry days of one tenant and template.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub template: CheckedName,
    pub tenant: CheckedName,
    pub days: Vec<Day>,
}

/// Registry days in scope (optionally only those not refreshed since `since`), as chunks.
pub fn todo(
    tenant: Option<&CheckedName>,
    template: Option<&CheckedName>,
    since: Option<pgrx::datum::TimestampWithTimeZone>,
) -> Vec<Chunk> {
    let found: Vec<(String, String, Option<pgrx::datum::Date>)> = rows(
        "WITH RECURSIVE depth(template_name, depth) AS ( \
             SELECT template_name, 0 FROM _wh.mv_templates WHERE base_template IS NULL \
             UNION ALL SELECT m.template_name, d.depth + 1 FROM _wh.mv_templates m JOIN depth d ON m.base_template = d.template_name \
             WHERE d.depth < 32) \
         SELECT s.template_name, s.tenant_name, s.range_start FROM _wh.slices s \
         JOIN _wh.tenant_connections t USING (tenant_name) \
         LEFT JOIN depth d ON d.template_name = s.template_name \
         WHERE s.kind = 'day' AND ($1::text IS NULL OR s.tenant_name = $1) AND ($2::text IS NULL OR s.template_name = $2) \
           AND ($3::timestamptz IS NULL OR s.refreshed_at < $3) \
         ORDER BY coalesce(d.depth, 0), s.template_name, s.tenant_name, s.range_start",
        &[
            DatumWithOid::from(tenant.map(|t| t.as_str())),
            DatumWithOid::from(template.map(|t| t.as_str())),
            DatumWithOid::from(since),
        ],
        |r| {
            (
                col::<String>(r, "template_name").unwrap_or_default(),
                col::<String>(r, "tenant_name").unwrap_or_default(),
                col::<pgrx::datum::Date>(r, "range_start"),
            )
        },
    );
    let mut out: Vec<Chunk> = Vec::new();
    let mut run: Vec<Day> = Vec::new();
    let mut key: Option<(String, String)> = None;
    let flush = |key: &Option<(String, String)>, run: &mut Vec<Day>, out: &mut Vec<Chunk>| {
        if let Some((tp, tn)) = key {
            if let (Ok(template), Ok(tenant)) = (
                CheckedName::template(Some(tp)),
                CheckedName::tenant(Some(tn)),
            ) {
                for days in dates::chunks(run, DEFAULT_CHUNK_DAYS) {
                    out.push(Chunk {
                        template: template.clone(),
                        tenant: tenant.clone(),
                        days,
                    });
                }
            }
        }
        run.clear();
    };
    for (tp, tn, d) in found {
        let Some(day) = d.and_then(|d| catalog::db::day_of(d).ok()) else {
            continue;
        };
        let k = Some((tp, tn));
        if k != key {
            flush(&key, &mut run, &mut out);
            key = k;
        }
        run.push(day);
    }
    flush(&key, &mut run, &mut out);
    out
}

/// Repair the tables, partitions, tenant views and grants of everything in scope.
pub fn finish(tenant: Option<&CheckedName>, template: Option<&CheckedName>) -> Value {
    let pairs: Vec<(String, String)> = rows(
        "SELECT DISTINCT s.template_name, s.tenant_name FROM _wh.slices s \
         JOIN _wh.tenant_connections t USING (tenant_name) \
         WHERE ($1::text IS NULL OR s.tenant_name = $1) AND ($2::text IS NULL OR s.template_name = $2) ORDER BY 1, 2",
        &[DatumWithOid::from(tenant.map(|t| t.as_str())), DatumWithOid::from(template.map(|t| t.as_str()))],
        |r| (col::<String>(r, "template_name").unwrap_or_default(), col::<String>(r, "tenant_name").unwrap_or_default()),
    );
    let mut templates: Vec<String> = Vec::new();
    for (tp, _) in &pairs {
        if !templates.contains(tp) {
            templates.push(tp.clone());
        }
    }
    let today = crate::catalog::today();
    for tp in &templates {
        storage::update_public_view(
            &CheckedName::template(Some(tp)).unwrap_or_else(|e| raise(e)),
            today,
        );
    }
    for (tp, tn) in &pairs {
        let (tp_c, tn_c) = (
            CheckedName::template(Some(tp)).unwrap_or_else(|e| raise(e)),
            CheckedName::tenant(Some(tn)).unwrap_or_else(|e| raise(e)),
        );
        storage::update_tenant_union_view(&tn_c, &tp_c);
    }
    let years_folded = match tenant {
        None => refold_years(&templates, today),
        // One tenant's rebuild writes into the years as they are; a whole rebuild folds.
        Some(_) => Vec::new(),
    };
    json!({"relations": pairs.len(), "tables": templates, "years_folded": years_folded})
}

/// Each folded year of these templates that is in months again (a rebuild into a new
/// database), folded as it was recorded (heap or columnar), each isolated: a failure is
/// logged and the year stays in months.
fn refold_years(templates: &[String], today: Day) -> Vec<Value> {
    let mut out = Vec::new();
    for tp in templates {
        let template = CheckedName::template(Some(tp)).unwrap_or_else(|e| raise(e));
        let tn = crate::pure::names::TableNames::new(&template);
        for year in storage::folded_years(&template, today.year()) {
            let (lo, hi) = dates::year_span(year);
            let parts = storage::partitions(&tn);
            let in_months = parts
                .iter()
                .any(|p| p.lo >= lo && p.hi <= hi && (p.lo, p.hi) != (lo, hi));
            if in_months {
                let r = crate::pipeline::isolate::isolated_fold(
                    &template,
                    lo,
                    "rebuild_entire_warehouse",
                );
                out.push(r.to_json());
            }
        }
    }
    out
}

/// One chunk, refreshed isolated.
pub fn rebuild_chunk(c: &Chunk, label: &str) -> Vec<OpResult> {
    isolated_days(&Unit::new(
        Op::Refresh,
        &c.template,
        &c.tenant,
        &c.days,
        label,
    ))
}

/// `rebuild_entire_warehouse`: everything in one call (per-chunk subtransactions).
pub fn rebuild_all(
    tenant: Option<&CheckedName>,
    template: Option<&CheckedName>,
    dry_run: bool,
) -> Value {
    let start = std::time::Instant::now();
    let chunks = todo(tenant, template, None);
    if dry_run {
        let plan: Vec<Value> = chunks
            .iter()
            .map(|c| {
                json!({"template": c.template.as_str(), "tenant": c.tenant.as_str(),
                       "first": c.days[0].iso(), "last": c.days[c.days.len() - 1].iso(), "days": c.days.len()})
            })
            .collect();
        let days: usize = chunks.iter().map(|c| c.days.len()).sum();
        return json!({"dry_run": true, "slices": days, "chunks": plan.len(), "plan": plan});
    }
    let total: usize = chunks.iter().map(|c| c.days.len()).sum();
    let progress = crate::pipeline::progress::begin(crate::pipeline::progress::Op {
        operation: "rebuild_entire_warehouse",
        template: template.map(|t| t.as_str()),
        tenant: tenant.map(|t| t.as_str()),
        unit: "day",
        total: total as i64,
    });
    let mut results: Vec<OpResult> = Vec::new();
    let mut rows = 0i64;
    for c in &chunks {
        progress.step_tenant(
            results.len() as i64,
            c.tenant.as_str(),
            &crate::pure::dates::days_span(&c.days),
            rows,
        );
        let rs = rebuild_chunk(c, "rebuild_entire_warehouse");
        rows += rs.iter().filter_map(|r| r.rows).sum::<i64>();
        results.extend(rs);
    }
    let fin = finish(tenant, template);
    let mut out = summarize("rebuild_entire_warehouse", &results);
    out["relations"] = fin;
    out["wall_ms"] = json!(ms_since(start));
    out
}

/// Start or resume the committing rebuild: the unfinished run of the same scope, or a new one.
pub fn begin_run(
    tenant: Option<&CheckedName>,
    template: Option<&CheckedName>,
) -> (i64, pgrx::datum::TimestampWithTimeZone, bool) {
    let scope =
        json!({"tenant": tenant.map(|t| t.as_str()), "template": template.map(|t| t.as_str())});
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

pub fn finish_run(
    run_id: i64,
    tenant: Option<&CheckedName>,
    template: Option<&CheckedName>,
) -> Value {
    let fin = finish(tenant, template);
    let failed = one::<i64>(
        "SELECT count(*) FROM _wh.run_log WHERE operation = 'rebuild' AND status = 'failed' AND run_id > $1",
        &[DatumWithOid::from(run_id)],
    )
    .unwrap_or(0);
    exec(
        "UPDATE _wh.run_log SET status = CASE WHEN $2 > 0 THEN 'failed' ELSE 'succeeded' END, \
             finished_at = pg_catalog.clock_timestamp(), \
             duration_ms = extract(epoch FROM pg_catalog.clock_timestamp() - started_at) * 1000::numeric, \
             details = details || pg_catalog.jsonb_build_object('failed_slices', $2, 'relations', $3::jsonb) \
         WHERE run_id = $1",
        &[DatumWithOid::from(run_id), DatumWithOid::from(failed), DatumWithOid::from(JsonB(fin.clone()))],
    );
    json!({"run_id": run_id, "failed_slices": failed, "relations": fin})
}
