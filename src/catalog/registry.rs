//! Every write to the registry of tenant-days, `_wh.slices`: one row per (template,
//! tenant, day) a run claimed or built, with its row count, checksum and when it was
//! built and refreshed. Claims (placeholder rows, locked) are made by `_wh._claim_days`
//! (sql/wrappers.sql: it waits on locks with a bounded timeout, which needs PL/pgSQL's
//! exception blocks); everything else that writes the registry is here.

use pgrx::datum::DatumWithOid;

use crate::catalog::db::{exec, pg_date};
use crate::pure::dates::Day;
use crate::pure::names::{CheckedName, SliceNames};
use crate::pure::sql;

/// A day's figures as registered: rows and checksum over every column.
pub struct DayFigures<'a> {
    pub rows: i64,
    pub checksum: &'a str,
}

/// A claimed day, built: its figures, when, how long it took, how many of the template's
/// columns it was fetched with; `changed` moves `built_at` too.
pub fn record_built(
    names: &SliceNames,
    day: Day,
    figures: &DayFigures,
    build_ms: f64,
    changed: bool,
    columns: usize,
) {
    exec(
        "UPDATE _wh.slices SET row_count = $4, checksum = $5, refreshed_at = pg_catalog.now(), build_ms = $6, \
                built_at = CASE WHEN $7 THEN pg_catalog.now() ELSE built_at END, columns = $8 \
         WHERE template_name = $1 AND tenant_name = $2 AND kind = 'day' AND range_start = $3",
        &[
            DatumWithOid::from(names.template.as_str()),
            DatumWithOid::from(names.tenant.as_str()),
            DatumWithOid::from(pg_date(day)),
            DatumWithOid::from(figures.rows),
            DatumWithOid::from(figures.checksum),
            DatumWithOid::from(build_ms),
            DatumWithOid::from(changed),
            DatumWithOid::from(columns as i16),
        ],
    );
}

/// A day registered as built without a run (adopted or migrated rows, verified).
pub fn insert_built(names: &SliceNames, day: Day, figures: &DayFigures) {
    exec(
        "INSERT INTO _wh.slices (template_name, tenant_name, schema_name, slice_name, kind, range_start, range_end, row_count, checksum) \
         VALUES ($1, $2, $2, $3, 'day', $4, $5, $6, $7)",
        &[
            DatumWithOid::from(names.template.as_str()),
            DatumWithOid::from(names.tenant.as_str()),
            DatumWithOid::from(names.day(day).as_str()),
            DatumWithOid::from(pg_date(day)),
            DatumWithOid::from(pg_date(day.succ())),
            DatumWithOid::from(figures.rows),
            DatumWithOid::from(figures.checksum),
        ],
    );
}

/// Forget one day of a tenant (a claim whose day failed its checks).
pub fn forget_day(names: &SliceNames, day: Day) {
    exec(
        "DELETE FROM _wh.slices WHERE template_name = $1 AND tenant_name = $2 AND kind = 'day' AND range_start = $3",
        &[
            DatumWithOid::from(names.template.as_str()),
            DatumWithOid::from(names.tenant.as_str()),
            DatumWithOid::from(pg_date(day)),
        ],
    );
}

/// Forget the days before `cut` of a template (of one tenant, or all): retention.
pub fn forget_days_before(template: &CheckedName, tenant: Option<&CheckedName>, cut: Day) -> i64 {
    exec(
        "DELETE FROM _wh.slices WHERE template_name = $1 AND kind = 'day' AND ($2::text IS NULL OR tenant_name = $2) AND range_start < $3",
        &[
            DatumWithOid::from(template.as_str()),
            DatumWithOid::from(tenant.map(|t| t.as_str())),
            DatumWithOid::from(pg_date(cut)),
        ],
    )
}

/// Forget every day of a tenant of one template.
pub fn forget_tenant_days(names: &SliceNames) -> i64 {
    exec(
        "DELETE FROM _wh.slices WHERE template_name = $1 AND tenant_name = $2",
        &[
            DatumWithOid::from(names.template.as_str()),
            DatumWithOid::from(names.tenant.as_str()),
        ],
    )
}

/// Forget every day of a tenant (removed with its data).
pub fn forget_tenant(tenant: &CheckedName) -> i64 {
    exec(
        "DELETE FROM _wh.slices WHERE tenant_name = $1",
        &[DatumWithOid::from(tenant.as_str())],
    )
}

/// Forget every day of a template (dropped).
pub fn forget_template(template: &CheckedName) -> i64 {
    exec(
        "DELETE FROM _wh.slices WHERE template_name = $1",
        &[DatumWithOid::from(template.as_str())],
    )
}

/// A tenant's days, renamed with it.
pub fn rename_tenant(old: &CheckedName, new: &CheckedName) -> i64 {
    exec(
        "UPDATE _wh.slices SET tenant_name = $2, schema_name = $2 WHERE tenant_name = $1",
        &[
            DatumWithOid::from(old.as_str()),
            DatumWithOid::from(new.as_str()),
        ],
    )
}

/// Days registered before 0.7.0 say nothing of their columns: they had `columns`.
pub fn set_columns_unknown(template: &CheckedName, columns: usize) {
    exec(
        "UPDATE _wh.slices SET columns = $2 WHERE template_name = $1 AND columns IS NULL",
        &[
            DatumWithOid::from(template.as_str()),
            DatumWithOid::from(columns as i16),
        ],
    );
}

/// The days `days` of a tenant that the rollups of its template (and theirs) hold,
/// marked refreshed: their base day is unchanged, so they are as fresh as it is. A day
/// another session holds is left to it.
pub fn touch_rollup_days(names: &SliceNames, days: &[Day]) {
    let days: Vec<pgrx::datum::Date> = days.iter().map(|d| pg_date(*d)).collect();
    exec(
        sql::TOUCH_ROLLUP_DAYS,
        &[
            DatumWithOid::from(names.template.as_str()),
            DatumWithOid::from(names.tenant.as_str()),
            DatumWithOid::from(days),
        ],
    );
}

/// The pairs whose days changed folded into `_wh.pair_stats`, the figures the monitoring
/// views read (sql/bootstrap.sql); with `everything`, every pair computed again from the
/// registry. Never waits on another session settling. The pairs settled.
pub fn settle_pairs(everything: bool) -> i64 {
    crate::catalog::db::one::<i64>(
        "SELECT _wh._settle_pairs($1)",
        &[DatumWithOid::from(everything)],
    )
    .unwrap_or(0)
}
