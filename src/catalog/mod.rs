//! Reading and writing wh's own tables: templates, tenants, the slice registry and the
//! run log. Every statement is schema-qualified and takes its values as parameters.

pub mod citus;
pub mod db;
pub mod pool;
pub mod registry;
pub mod rollups;
pub mod storage;

use pgrx::datum::DatumWithOid;
use pgrx::JsonB;

use crate::catalog::db::{canonical_type, col, day_of, exec, one, pg_date, rows};
use crate::pure::dates::{Day, Grain};
use crate::pure::error::{raise, WhError, WhResult};
use crate::pure::names::CheckedName;
use crate::pure::report::OpResult;
use crate::pure::template::{AccessMethod, Limits, Template, TemplateInput, TimeKind};

/// A template as stored, with the kind of its time column resolved in this database.
pub struct LoadedTemplate {
    pub t: Template,
    pub time_kind: TimeKind,
    /// Where folded years are created (storage tiering), from `set_template_policy`.
    pub year_tablespace: Option<String>,
    /// How the yearly fold stores a year (heap or columnar), from `set_template_policy`.
    pub fold_storage: AccessMethod,
    /// How `public.<template>` is partitioned.
    pub grain: Grain,
    /// Caps on what a source may send (rows, bytes) per tenant-day.
    pub limits: Limits,
    /// For a rollup: the template it is computed from (`_wh.set_rollup`).
    pub base: Option<CheckedName>,
}

impl LoadedTemplate {
    /// Refuse what only a fetched template can do (`what`, e.g. "schedule") on a rollup.
    pub fn refuse_rollup(&self, what: &str) {
        if let Some(base) = &self.base {
            raise(WhError::InvalidTemplate {
                template: self.t.name.to_string(),
                reason: format!(
                    "it is a rollup of {base}: it is computed from {base}'s stored rows in the same transaction as each refresh of {base}, never fetched; {what} {base} instead"
                ),
            })
        }
    }
}

pub struct Tenant {
    pub name: CheckedName,
    pub server: String,
    /// The source's statement_timeout; wh's own deadline for an answer adds a grace.
    pub remote_timeout_ms: i64,
}

/// The types of a staging table's columns, as oids: `wh_day` (date), then the template's.
pub fn stage_types(t: &crate::pure::template::Template) -> Vec<pgrx::pg_sys::Oid> {
    let names: Vec<String> = std::iter::once("date".to_string())
        .chain(t.columns.iter().map(|c| c.type_sql.clone()))
        .collect();
    one::<Vec<pgrx::pg_sys::Oid>>(
        "SELECT pg_catalog.array_agg(x::pg_catalog.regtype::pg_catalog.oid ORDER BY n) \
         FROM pg_catalog.unnest($1::text[]) WITH ORDINALITY AS u(x, n)",
        &[DatumWithOid::from(names)],
    )
    .unwrap_or_default()
}

/// Check every column type exists here, belongs to a superuser (built in, or an
/// extension's: a type a wh_admin member made, such as a domain with a CHECK, would run
/// that member's code inside every refresh) and the time column is a timestamp or date.
/// One query for all columns; used by `set_template` and on every load of a stored
/// template (a row written straight into `_wh.mv_templates` is checked the same way).
pub fn resolve_types(t: &Template) -> WhResult<TimeKind> {
    let types: Vec<String> = t.columns.iter().map(|c| c.type_sql.clone()).collect();
    let found = rows(
        "SELECT x.i::int4 AS i, pg_catalog.format_type(ty.oid, NULL) AS canon, r.rolsuper AS trusted \
         FROM pg_catalog.unnest($1::text[]) WITH ORDINALITY AS x(ty_sql, i) \
         LEFT JOIN pg_catalog.pg_type ty ON ty.oid = pg_catalog.to_regtype(x.ty_sql) \
         LEFT JOIN pg_catalog.pg_roles r ON r.oid = ty.typowner ORDER BY x.i",
        &[DatumWithOid::from(types)],
        |r| (col::<String>(r, "canon"), col::<bool>(r, "trusted").unwrap_or(false)),
    );
    for (c, (canon, trusted)) in t.columns.iter().zip(found) {
        let reason = match canon {
            None => format!("column {}: type {:?} does not exist", c.name, c.type_sql),
            Some(canon) if canon == "json" || canon == "json[]" => format!(
                "column {}: type json has no equality or hash, so wh cannot compare or checksum its days: declare it jsonb (a source's json converts as it arrives)",
                c.name
            ),
            Some(_) if !trusted => format!(
                "column {}: type {:?} was made by a role that is not a superuser (its checks or functions would run inside wh's refreshes): use a built-in type or an extension's",
                c.name, c.type_sql
            ),
            Some(_) => continue,
        };
        return Err(WhError::InvalidTemplate {
            template: t.name.to_string(),
            reason,
        });
    }
    time_kind(t)
}

/// A change of a tenant's connection, audited: what was done (`create`, `update`,
/// `rename`, `pause`, `resume`, `remove`) and which fields changed (never their values).
pub fn audit_connection(tenant: &CheckedName, action: &str, changed: &[String]) {
    exec(
        "INSERT INTO _wh.connection_audit (tenant_name, action, changed_fields) VALUES ($1, $2, $3)",
        &[
            DatumWithOid::from(tenant.as_str()),
            DatumWithOid::from(action),
            DatumWithOid::from(changed.to_vec()),
        ],
    );
}

/// The seeds' `update_<template>(…)` and `create_<template>_mv(…)` for a template (no-op
/// when they exist; sql/privileges.sql).
pub fn make_seed_functions(template: &CheckedName) {
    // Called on the coordinator only (Citus would otherwise make them on every worker).
    db::coordinator_only(|| {
        exec(
            "SELECT _wh._seed_functions($1)",
            &[DatumWithOid::from(template.as_str())],
        )
    });
}

/// A stored template's column definitions, as stored (None: no such template).
pub fn stored_column_definitions(template: &str) -> Option<String> {
    one::<String>(
        "SELECT column_definitions FROM _wh.mv_templates WHERE template_name = $1",
        &[DatumWithOid::from(template)],
    )
}

/// Each column of a stored template with its type as PostgreSQL names it (no typmod),
/// for messages; empty when the template is gone or unreadable. Never raises.
pub fn column_types(template: &str) -> Vec<(String, String)> {
    let defs = stored_column_definitions(template);
    let Some(columns) = defs.and_then(|d| crate::pure::template::parse_columns(&d).ok()) else {
        return Vec::new();
    };
    let types: Vec<String> = columns.iter().map(|c| c.type_sql.clone()).collect();
    let canon = rows(
        "SELECT coalesce(pg_catalog.format_type(pg_catalog.to_regtype(x.t), NULL), x.t) AS canon \
         FROM pg_catalog.unnest($1::text[]) WITH ORDINALITY AS x(t, i) ORDER BY x.i",
        &[DatumWithOid::from(types)],
        |r| col::<String>(r, "canon").unwrap_or_default(),
    );
    columns
        .into_iter()
        .zip(canon)
        .map(|(c, t)| (c.name.as_str().to_string(), t))
        .collect()
}

/// The kind of the template's time column, the one type a build needs resolved.
fn time_kind(t: &Template) -> WhResult<TimeKind> {
    let ty = t.time_column_type();
    let canon = canonical_type(ty).unwrap_or_default();
    TimeKind::from_canonical(&canon).ok_or_else(|| WhError::InvalidTemplate {
        template: t.name.to_string(),
        reason: format!(
            "time_column {} is {ty:?}; it must be timestamptz, timestamp or date",
            t.time_column
        ),
    })
}

/// Refuse a session more privileged than wh_admin (see `_wh._check_caller`, sql/privileges.sql).
pub fn check_caller() {
    exec("SELECT _wh._check_caller()", &[]);
}

/// `set_template` on a rollup's name would replace what `set_rollup` checked: refused.
pub fn refuse_if_rollup(name: &CheckedName) {
    if let Some(base) = one::<String>(
        "SELECT base_template FROM _wh.mv_templates WHERE template_name = $1",
        &[DatumWithOid::from(name.as_str())],
    ) {
        raise(WhError::InvalidTemplate {
            template: name.to_string(),
            reason: format!("it is a rollup of {base}: change it with _wh.set_rollup"),
        })
    }
}

pub fn template_exists(name: &CheckedName) -> bool {
    one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM _wh.mv_templates WHERE template_name = $1)",
        &[DatumWithOid::from(name.as_str())],
    )
    .unwrap_or(false)
}

/// An unknown template; when the name is a tenant's, the call was typed in the seeds'
/// order (tenant first): the HINT names wh's call.
fn unknown_template(name: &CheckedName) -> ! {
    let e = WhError::UnknownTemplate(name.to_string());
    let is_tenant = tenant_registered(name);
    if !is_tenant {
        raise(e)
    }
    let templates = template_names();
    crate::pure::error::raise_with_hint(
        e,
        crate::pure::seeds::tenant_first_hint(name.as_str(), &templates),
    )
}

pub fn load_template(name: &CheckedName) -> LoadedTemplate {
    check_caller();
    let found = rows(
        "SELECT query_template, column_definitions, time_column, unique_key, indexes, description, lookback_days, \
                year_tablespace::text AS year_tablespace, fold_storage, partition_grain, max_rows_per_day, max_bytes_per_day, max_row_bytes, max_shrink_percent, hashed_columns, \
                base_template, rollup_select, rollup_group_by FROM _wh.mv_templates WHERE template_name = $1",
        &[DatumWithOid::from(name.as_str())],
        |r| {
            (
                col::<String>(r, "query_template").unwrap_or_default(),
                col::<String>(r, "column_definitions").unwrap_or_default(),
                col::<String>(r, "time_column").unwrap_or_default(),
                col::<String>(r, "unique_key"),
                col::<Vec<String>>(r, "indexes").unwrap_or_default(),
                col::<String>(r, "description"),
                col::<i32>(r, "lookback_days").unwrap_or(1),
                (
                    col::<String>(r, "year_tablespace"),
                    col::<String>(r, "fold_storage").unwrap_or_else(|| "heap".into()),
                ),
                (
                    col::<String>(r, "partition_grain").unwrap_or_else(|| "month".into()),
                    col::<i32>(r, "hashed_columns"),
                ),
                Limits {
                    max_rows_per_day: col::<i64>(r, "max_rows_per_day").unwrap_or(Limits::default().max_rows_per_day),
                    max_bytes_per_day: col::<i64>(r, "max_bytes_per_day").unwrap_or(Limits::default().max_bytes_per_day),
                    max_row_bytes: col::<i64>(r, "max_row_bytes").unwrap_or(Limits::default().max_row_bytes),
                    max_shrink_percent: col::<i32>(r, "max_shrink_percent").map(i64::from).unwrap_or(Limits::default().max_shrink_percent),
                },
                (
                    col::<String>(r, "base_template"),
                    col::<String>(r, "rollup_select"),
                    col::<String>(r, "rollup_group_by"),
                ),
            )
        },
    );
    let Some((
        q,
        defs,
        tc,
        uk,
        ix,
        desc,
        lb,
        (year_tablespace, fold_storage),
        (grain, hashed),
        limits,
        (base, select, group),
    )) = found.into_iter().next()
    else {
        unknown_template(name)
    };
    let base = base.map(|b| CheckedName::template(Some(&b)).unwrap_or_else(|e| raise(e)));
    // A rollup's query is made again from its definition on every use, checked as
    // set_rollup checks it: what is stored as its query is never run.
    let q = match &base {
        Some(b) => crate::catalog::rollups::checked_day_query(
            name,
            b,
            select.as_deref().unwrap_or_default(),
            group.as_deref().unwrap_or_default(),
        ),
        None => q,
    };
    let mut t = Template::parse(&TemplateInput {
        name: Some(name.as_str()),
        query: Some(&q),
        column_definitions: Some(&defs),
        time_column: Some(&tc),
        unique_key: uk.as_deref(),
        indexes: ix,
        description: desc.as_deref(),
        lookback_days: lb,
    })
    .unwrap_or_else(|e| raise(e));
    t.hashed = hashed.map(|n| n.max(1) as usize);
    // Validated again on every use: a row written straight into _wh.mv_templates gets
    // the same checks as set_template's.
    let time_kind = resolve_types(&t).unwrap_or_else(|e| raise(e));
    let grain = Grain::parse(&grain).unwrap_or_else(|e| raise(e));
    let fold_storage = AccessMethod::parse(&fold_storage).unwrap_or_else(|e| raise(e));
    LoadedTemplate {
        t,
        time_kind,
        year_tablespace,
        fold_storage,
        grain,
        limits,
        base,
    }
}

pub fn load_tenant(name: &CheckedName) -> Tenant {
    check_caller();
    let found = rows(
        "SELECT server_name, (extract(epoch FROM remote_timeout) * 1000::numeric)::int8 AS ms \
         FROM _wh.tenant_connections WHERE tenant_name = $1",
        &[DatumWithOid::from(name.as_str())],
        |r| (col::<String>(r, "server_name"), col::<i64>(r, "ms")),
    );
    let Some((Some(server), ms)) = found.into_iter().next() else {
        raise(WhError::UnknownTenant(name.to_string()))
    };
    Tenant {
        name: name.clone(),
        server,
        remote_timeout_ms: ms.unwrap_or(1_800_000),
    }
}

/// A tenant's own query for a template, if it has one (`_wh.set_tenant_query`).
pub fn tenant_query(template: &CheckedName, tenant: &CheckedName) -> Option<String> {
    one::<String>(
        "SELECT query_template FROM _wh.tenant_queries WHERE template_name = $1 AND tenant_name = $2",
        &[DatumWithOid::from(template.as_str()), DatumWithOid::from(tenant.as_str())],
    )
}

/// Give a tenant its own query for a template (validated like the template's: same
/// output columns are the template's), or take it away (`query` NULL). Logged.
pub fn set_tenant_query(
    template: &CheckedName,
    tenant: &CheckedName,
    query: Option<&str>,
    reason: Option<&str>,
) -> serde_json::Value {
    let lt = load_template(template);
    lt.refuse_rollup("give the tenant its own query for");
    load_tenant(tenant);
    let action = match query {
        Some(q) => {
            lt.t.with_query(q)
                .map_err(|reason| WhError::InvalidTemplate {
                    template: template.to_string(),
                    reason: format!("query for tenant {tenant}: {reason}"),
                })
                .unwrap_or_else(|e| raise(e));
            exec(
                "INSERT INTO _wh.tenant_queries AS q (template_name, tenant_name, query_template, reason) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (template_name, tenant_name) DO UPDATE SET query_template = EXCLUDED.query_template, reason = EXCLUDED.reason",
                &[DatumWithOid::from(template.as_str()), DatumWithOid::from(tenant.as_str()), DatumWithOid::from(q), DatumWithOid::from(reason)],
            );
            "set"
        }
        None => {
            exec(
                "DELETE FROM _wh.tenant_queries WHERE template_name = $1 AND tenant_name = $2",
                &[
                    DatumWithOid::from(template.as_str()),
                    DatumWithOid::from(tenant.as_str()),
                ],
            );
            "removed"
        }
    };
    let mut r = OpResult::new(
        "set_tenant_query",
        Some(template.as_str()),
        Some(tenant.as_str()),
        None,
    );
    r.detail("action", serde_json::json!(action));
    r.detail("reason", serde_json::json!(reason));
    log_run(&r);
    r.to_json()
}

/// Is the tenant paused (`_wh.pause_tenant`)? Scheduled and fan-out refreshes skip it.
pub fn is_paused(name: &CheckedName) -> bool {
    one::<bool>(
        "SELECT paused_at IS NOT NULL FROM _wh.tenant_connections WHERE tenant_name = $1",
        &[DatumWithOid::from(name.as_str())],
    )
    .unwrap_or(false)
}

/// Today in UTC, as the server's clock says (`_wh.current_date_utc()`).
pub fn today() -> Day {
    one::<pgrx::datum::Date>("SELECT _wh.current_date_utc()", &[])
        .ok_or_else(|| WhError::State("_wh.current_date_utc() gave no day".into()))
        .and_then(day_of)
        .unwrap_or_else(|e| raise(e))
}

/// Every template whose days are fetched from sources (rollups aside), by name.
pub fn fetched_template_names() -> Vec<CheckedName> {
    rows(
        "SELECT template_name FROM _wh.mv_templates WHERE base_template IS NULL ORDER BY 1",
        &[],
        |r| col::<String>(r, "template_name").unwrap_or_default(),
    )
    .into_iter()
    .filter_map(|n| CheckedName::template(Some(&n)).ok())
    .collect()
}

/// Whether `name` is a registered tenant (has a connection).
pub fn tenant_registered(name: &CheckedName) -> bool {
    one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM _wh.tenant_connections WHERE tenant_name = $1)",
        &[DatumWithOid::from(name.as_str())],
    )
    .unwrap_or(false)
}

/// Whether the warehouse still keeps data of `name` (days in the registry, readers, or
/// its schema of views): a tenant removed without `drop_data` has some.
pub fn tenant_has_kept_data(name: &CheckedName) -> bool {
    one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM _wh.slices WHERE tenant_name = $1) \
             OR EXISTS (SELECT 1 FROM _wh.tenant_readers WHERE tenant_name = $1) \
             OR EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner \
                        WHERE n.nspname = $1 AND r.rolname = 'wh_admin')",
        &[DatumWithOid::from(name.as_str())],
    )
    .unwrap_or(false)
}

/// Every registered template and rollup, as checked names.
pub fn templates() -> Vec<CheckedName> {
    template_names()
        .iter()
        .filter_map(|t| CheckedName::template(Some(t)).ok())
        .collect()
}

/// Every registered template and rollup, by name.
pub fn template_names() -> Vec<String> {
    rows(
        "SELECT template_name FROM _wh.mv_templates ORDER BY 1",
        &[],
        |r| col::<String>(r, "template_name").unwrap_or_default(),
    )
}

/// Every registered tenant, by name.
/// Every registered tenant with its source server (`host:port` as registered), by name.
pub fn tenant_servers() -> Vec<(CheckedName, String)> {
    rows(
        "SELECT tenant_name, host || ':' || port AS server FROM _wh.tenant_connections ORDER BY tenant_name",
        &[],
        |r| {
            (
                col::<String>(r, "tenant_name").unwrap_or_default(),
                col::<String>(r, "server").unwrap_or_default(),
            )
        },
    )
    .into_iter()
    .filter_map(|(n, server)| CheckedName::tenant(Some(&n)).ok().map(|t| (t, server)))
    .collect()
}

pub fn tenant_names() -> Vec<CheckedName> {
    rows(
        "SELECT tenant_name FROM _wh.tenant_connections ORDER BY tenant_name",
        &[],
        |r| col::<String>(r, "tenant_name").unwrap_or_default(),
    )
    .into_iter()
    .filter_map(|n| CheckedName::tenant(Some(&n)).ok())
    .collect()
}

/// Rows and checksum per day from a query returning `wh_day`, `n` and `checksum` (the
/// summaries of `sql.rs`).
pub fn day_figures(
    sql: &str,
    args: &[DatumWithOid],
) -> std::collections::BTreeMap<Day, (i64, String)> {
    rows(sql, args, |r| {
        (
            col::<pgrx::datum::Date>(r, "wh_day").and_then(|d| day_of(d).ok()),
            col::<i64>(r, "n").unwrap_or(0),
            col::<String>(r, "checksum")
                .unwrap_or_else(|| crate::pure::sql::EMPTY_DAY_CHECKSUM.into()),
        )
    })
    .into_iter()
    .filter_map(|(d, n, c)| d.map(|d| (d, (n, c))))
    .collect()
}

/// Write one result to `_wh.run_log`.
pub fn log_run(r: &OpResult) {
    let day = r
        .day
        .as_deref()
        .and_then(|d| Day::parse(d).ok())
        .map(pg_date);
    exec(
        "INSERT INTO _wh.run_log (finished_at, operation, template_name, tenant_name, target_date, status, rows, \
             duration_ms, sqlstate, error, details, started_at) \
         VALUES (pg_catalog.clock_timestamp(), $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
                 pg_catalog.clock_timestamp() - pg_catalog.make_interval(secs => $7::float8 / 1000::float8))",
        &[
            DatumWithOid::from(r.operation.as_str()),
            DatumWithOid::from(r.template.as_deref()),
            DatumWithOid::from(r.tenant.as_deref()),
            DatumWithOid::from(day),
            DatumWithOid::from(r.status.as_str()),
            DatumWithOid::from(r.rows),
            DatumWithOid::from(r.ms),
            DatumWithOid::from(r.sqlstate.as_deref()),
            DatumWithOid::from(r.error.as_deref()),
            DatumWithOid::from(JsonB(r.details.clone())),
        ],
    );
}

/// Roles granted `tenant`: the very roles granted (by oid), so a grant never passes to a
/// new role that took a dropped role's name.
pub fn readers_of(tenant: &CheckedName) -> Vec<String> {
    rows(
        "SELECT o.rolname::text AS role_name FROM _wh.tenant_readers r \
         JOIN pg_catalog.pg_roles o ON o.oid = r.role_oid AND o.rolname = r.role_name WHERE r.tenant_name = $1 ORDER BY 1",
        &[DatumWithOid::from(tenant.as_str())],
        |r| col::<String>(r, "role_name").unwrap_or_default(),
    )
}

/// Tenants that have at least one scoped reader that exists.
pub fn tenants_with_readers() -> Vec<CheckedName> {
    rows(
        "SELECT DISTINCT r.tenant_name FROM _wh.tenant_readers r \
         JOIN pg_catalog.pg_roles o ON o.oid = r.role_oid AND o.rolname = r.role_name ORDER BY 1",
        &[],
        |r| col::<String>(r, "tenant_name").unwrap_or_default(),
    )
    .iter()
    .filter_map(|t| CheckedName::tenant(Some(t)).ok())
    .collect()
}
