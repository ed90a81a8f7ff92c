//! The refresh pool's queue (`_wh.pool_items`) and schedules (`_wh.refresh_schedules`):
//! every statement on them. The workers that use them are `ops::pool`.

use pgrx::datum::{DatumWithOid, Interval, TimestampWithTimeZone};

use crate::catalog::db::{col, exec, one, rows};
use crate::pure::names::CheckedName;

/// The items of tenants or templates gone, of templates no longer scheduled (unless the
/// tenant has a period of its own), or of tenants with a pg_cron job of their own for the
/// template, deleted; those a worker holds now go with a later run.
const DROP_STALE: &str = "WITH own AS MATERIALIZED (SELECT j.jobname FROM _wh.job_rows() j) \
     DELETE FROM _wh.pool_items i WHERE (i.template_name, i.tenant_name) IN ( \
       SELECT x.template_name, x.tenant_name FROM _wh.pool_items x \
       WHERE NOT EXISTS (SELECT 1 FROM _wh.tenant_connections c WHERE c.tenant_name = x.tenant_name) \
          OR NOT EXISTS (SELECT 1 FROM _wh.mv_templates m WHERE m.template_name = x.template_name) \
          OR (x.every IS NULL AND NOT EXISTS (SELECT 1 FROM _wh.refresh_schedules s WHERE s.template_name = x.template_name)) \
          OR 'wh:' || x.template_name || ':' || x.tenant_name IN (SELECT own.jobname FROM own) \
       FOR UPDATE OF x SKIP LOCKED)";

/// Every tenant of a scheduled template queued (due now when new), but a tenant with a
/// pg_cron job of its own for the template (`schedule_tenant`): that job refreshes it.
/// (No foreign key: the insert never waits on a template row a fold holds.)
const ADD_MISSING: &str = "WITH own AS MATERIALIZED (SELECT j.jobname FROM _wh.job_rows() j) \
     INSERT INTO _wh.pool_items (template_name, tenant_name) \
     SELECT s.template_name, c.tenant_name FROM _wh.refresh_schedules s CROSS JOIN _wh.tenant_connections c \
     WHERE NOT EXISTS (SELECT 1 FROM own WHERE own.jobname = 'wh:' || s.template_name || ':' || c.tenant_name) \
     ON CONFLICT DO NOTHING";

/// The tenants due now and not paused, the most overdue first (a worker tries them in
/// order until it holds one whose source server has room).
const DUE: &str = "SELECT i.template_name, i.tenant_name, c.host || ':' || c.port AS server \
     FROM _wh.pool_items i JOIN _wh.tenant_connections c ON c.tenant_name = i.tenant_name \
     WHERE i.next_due <= pg_catalog.now() AND c.paused_at IS NULL \
     ORDER BY i.next_due, i.template_name, i.tenant_name LIMIT 256";

/// One due item locked for this transaction, unless another worker holds it or it is no
/// longer due (refreshed meanwhile), paused or removed.
const TAKE: &str = "SELECT true AS taken FROM _wh.pool_items i \
     WHERE i.template_name = $1 AND i.tenant_name = $2 AND i.next_due <= pg_catalog.now() \
       AND EXISTS (SELECT 1 FROM _wh.tenant_connections c WHERE c.tenant_name = i.tenant_name AND c.paused_at IS NULL) \
       AND EXISTS (SELECT 1 FROM _wh.mv_templates m WHERE m.template_name = i.template_name) \
     FOR UPDATE OF i SKIP LOCKED";

/// A refreshed item: due again at the first point of its grid (next_due + k × every) after
/// now, so it keeps its minute however late it ran; a run that did not succeed (a source
/// down, days held by a fold) is tried again within ten minutes (or its period, if shorter).
const DONE: &str = "UPDATE _wh.pool_items i SET \
       next_due = CASE WHEN $4 = 'succeeded' \
                       THEN i.next_due + e.every * (pg_catalog.floor(pg_catalog.date_part('epoch', pg_catalog.now() - i.next_due) \
                                                    / pg_catalog.date_part('epoch', e.every)) + 1) \
                       ELSE pg_catalog.now() + LEAST(e.every, interval '10 minutes') END, \
       last_started_at = pg_catalog.now(), last_ms = $3, last_status = $4, last_worker = $5, refreshes = i.refreshes + 1 \
     FROM (SELECT coalesce(x.every, s.every, interval '1 hour') AS every FROM _wh.pool_items x \
           LEFT JOIN _wh.refresh_schedules s ON s.template_name = x.template_name \
           WHERE x.template_name = $1 AND x.tenant_name = $2) e \
     WHERE i.template_name = $1 AND i.tenant_name = $2";

/// The first point at or after now of the grid `$1 + k × $2`.
const ON_GRID: &str = "SELECT $1::timestamptz + $2::interval * pg_catalog.ceil(GREATEST( \
       pg_catalog.date_part('epoch', pg_catalog.now() - $1::timestamptz), 0) / pg_catalog.date_part('epoch', $2::interval))";

fn text(s: &str) -> DatumWithOid<'_> {
    DatumWithOid::from(s)
}

/// The queue matched to the schedules and tenants (each worker's run starts with it).
pub fn sync() {
    exec(DROP_STALE, &[]);
    exec(ADD_MISSING, &[]);
}

/// The template's schedule set (or changed: a shorter period brings its tenants' next due
/// times in, to at most one period from now).
pub fn set_schedule(template: &CheckedName, every: Interval) {
    let args = [text(template.as_str()), DatumWithOid::from(every)];
    exec(
        "INSERT INTO _wh.refresh_schedules AS s (template_name, every) VALUES ($1, $2) \
         ON CONFLICT (template_name) DO UPDATE SET every = EXCLUDED.every, set_by = session_user, set_at = pg_catalog.now()",
        &args,
    );
    exec(
        "UPDATE _wh.pool_items SET next_due = LEAST(next_due, pg_catalog.now() + $2) \
         WHERE template_name = $1 AND every IS NULL",
        &args,
    );
}

/// The template's schedule removed: 1, or 0 when it had none.
pub fn drop_schedule(template: &CheckedName) -> i64 {
    exec(
        "DELETE FROM _wh.refresh_schedules WHERE template_name = $1",
        &[text(template.as_str())],
    )
}

/// A tenant queued with a period of its own, due first at `first_due` (when new, or when
/// given; now when neither).
pub fn queue_own_period(
    template: &CheckedName,
    tenant: &CheckedName,
    every: Interval,
    first_due: Option<TimestampWithTimeZone>,
) {
    exec(
        "INSERT INTO _wh.pool_items AS i (template_name, tenant_name, every, next_due) \
         VALUES ($1, $2, $3, coalesce($4, pg_catalog.now())) \
         ON CONFLICT (template_name, tenant_name) DO UPDATE SET every = EXCLUDED.every, \
             next_due = CASE WHEN $4 IS NULL THEN LEAST(i.next_due, pg_catalog.now() + EXCLUDED.every) ELSE EXCLUDED.next_due END",
        &[
            text(template.as_str()),
            text(tenant.as_str()),
            DatumWithOid::from(every),
            DatumWithOid::from(first_due),
        ],
    );
}

/// A tenant's own period for a template dropped (it keeps the template's schedule, if
/// any): 1, or 0 when it had none.
pub fn drop_own_period(template: &CheckedName, tenant: &CheckedName) -> i64 {
    exec(
        "UPDATE _wh.pool_items SET every = NULL WHERE template_name = $1 AND tenant_name = $2 AND every IS NOT NULL",
        &[text(template.as_str()), text(tenant.as_str())],
    )
}

/// A tenant's items (of one template, or all; with `own_only`, only those with a period of
/// their own) deleted, but those a worker holds now (they go with the queue's next sync).
/// The templates of the items deleted.
pub fn forget(tenant: &CheckedName, template: Option<&CheckedName>, own_only: bool) -> Vec<String> {
    rows(
        "DELETE FROM _wh.pool_items i WHERE (i.template_name, i.tenant_name) IN ( \
           SELECT x.template_name, x.tenant_name FROM _wh.pool_items x \
           WHERE x.tenant_name = $1 AND ($2::text IS NULL OR x.template_name = $2) AND (x.every IS NOT NULL OR NOT $3) \
           FOR UPDATE OF x SKIP LOCKED) \
         RETURNING i.template_name",
        &[
            text(tenant.as_str()),
            DatumWithOid::from(template.map(|t| t.as_str())),
            DatumWithOid::from(own_only),
        ],
        |r| col::<String>(r, "template_name").unwrap_or_default(),
    )
}

/// Whether a tenant still has a period of its own (of one template, or any) in the queue
/// (a worker held its item when it was to go).
pub fn held_own_period(tenant: &CheckedName, template: Option<&CheckedName>) -> bool {
    one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM _wh.pool_items WHERE tenant_name = $1 \
                        AND ($2::text IS NULL OR template_name = $2) AND every IS NOT NULL)",
        &[
            text(tenant.as_str()),
            DatumWithOid::from(template.map(|t| t.as_str())),
        ],
    )
    .unwrap_or(false)
}

/// A dropped template's items deleted (those a worker holds go with the queue's next sync).
pub fn forget_template(template: &CheckedName) {
    exec(
        "DELETE FROM _wh.pool_items i WHERE (i.template_name, i.tenant_name) IN ( \
           SELECT x.template_name, x.tenant_name FROM _wh.pool_items x WHERE x.template_name = $1 \
           FOR UPDATE OF x SKIP LOCKED)",
        &[text(template.as_str())],
    );
}

/// Whether the pool still refreshes a tenant for a template (its own period, or the
/// template's schedule).
pub fn queued(template: &CheckedName, tenant: &CheckedName) -> bool {
    one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM _wh.pool_items WHERE template_name = $1 AND tenant_name = $2)",
        &[text(template.as_str()), text(tenant.as_str())],
    )
    .unwrap_or(false)
}

/// A due tenant: its template, name and source server (host:port).
pub struct Due {
    pub template: String,
    pub tenant: String,
    pub server: String,
}

/// The tenants due now and not paused, the most overdue first.
pub fn due() -> Vec<Due> {
    rows(DUE, &[], |r| Due {
        template: col::<String>(r, "template_name").unwrap_or_default(),
        tenant: col::<String>(r, "tenant_name").unwrap_or_default(),
        server: col::<String>(r, "server").unwrap_or_default(),
    })
}

/// The item locked for this transaction, if it is still due and no worker holds it.
pub fn take(d: &Due) -> bool {
    one::<bool>(TAKE, &[text(&d.template), text(&d.tenant)]).unwrap_or(false)
}

/// The item refreshed: its next due time, and how the run went.
pub fn done(template: &CheckedName, tenant: &CheckedName, ms: f64, status: &str, worker: i32) {
    exec(
        DONE,
        &[
            text(template.as_str()),
            text(tenant.as_str()),
            DatumWithOid::from(ms),
            text(status),
            DatumWithOid::from(worker),
        ],
    );
}

/// The first point at or after now of the grid `anchor + k × every`.
pub fn on_grid(anchor: TimestampWithTimeZone, every: Interval) -> Option<TimestampWithTimeZone> {
    one::<TimestampWithTimeZone>(
        ON_GRID,
        &[DatumWithOid::from(anchor), DatumWithOid::from(every)],
    )
}
