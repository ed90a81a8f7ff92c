//! The life of the warehouse after days are built: template policy, retention, storage
//! tiering of folded years, and removing a tenant.

use pgrx::datum::{DatumWithOid, Interval};
use serde_json::{json, Value};

use crate::catalog::db::pg_date;
use crate::catalog::db::{col, coordinator_only, exec, ms_since, one, quietly, rows};
use crate::catalog::storage::{self, ddl};
use crate::catalog::{self, log_run};
use crate::ops::schedule;
use crate::pipeline::fold;
use crate::pure::dates::Day;
use crate::pure::error::{raise, WhError};
use crate::pure::names::{server_name, CheckedName, SliceNames, TableNames};
use crate::pure::report::OpResult;
use crate::pure::sql;
use crate::pure::template::AccessMethod;

/// A tablespace wh may build in: it exists and wh_admin (whose rights every wh call uses)
/// may create in it (the database's default tablespace needs no grant).
fn check_tablespace(what: &'static str, ts: &str) {
    let found = one::<bool>(
        "SELECT pg_catalog.has_tablespace_privilege('wh_admin', t.oid, 'CREATE') \
                OR t.oid = (SELECT d.dattablespace FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()) \
         FROM pg_catalog.pg_tablespace t WHERE t.spcname = $1",
        &[DatumWithOid::from(ts)],
    );
    match found {
        None => raise(WhError::invalid(what, format!("tablespace {ts:?} does not exist"))),
        Some(false) => raise(WhError::Privilege(format!(
            "{what}: wh works as wh_admin, which may not create in tablespace {ts:?}; a superuser runs: GRANT CREATE ON TABLESPACE {} TO wh_admin",
            crate::pure::names::quote_ident(ts)
        ))),
        Some(true) => {}
    }
}

/// Change the limits named (NULL keeps a limit as it is); returns all four.
/// The limits a `set_template_limits` call names (None: keep that one).
pub struct LimitChanges {
    pub rows_per_day: Option<i64>,
    pub bytes_per_day: Option<i64>,
    pub row_bytes: Option<i64>,
    pub shrink_percent: Option<i32>,
}

pub fn set_limits(template: &CheckedName, change: LimitChanges) -> Value {
    catalog::load_template(template);
    let LimitChanges {
        rows_per_day,
        bytes_per_day,
        row_bytes,
        shrink_percent: shrink,
    } = change;
    exec(
        "UPDATE _wh.mv_templates SET max_rows_per_day = coalesce($2, max_rows_per_day), \
             max_bytes_per_day = coalesce($3, max_bytes_per_day), max_row_bytes = coalesce($4, max_row_bytes), \
             max_shrink_percent = coalesce($5, max_shrink_percent), \
             updated_at = pg_catalog.now() WHERE template_name = $1",
        &[DatumWithOid::from(template.as_str()), DatumWithOid::from(rows_per_day), DatumWithOid::from(bytes_per_day), DatumWithOid::from(row_bytes), DatumWithOid::from(shrink)],
    );
    let l = catalog::load_template(template).limits;
    let mut r = OpResult::new("set_template_limits", Some(template.as_str()), None, None);
    r.detail("max_rows_per_day", json!(l.max_rows_per_day));
    r.detail("max_bytes_per_day", json!(l.max_bytes_per_day));
    r.detail("max_row_bytes", json!(l.max_row_bytes));
    r.detail("max_shrink_percent", json!(l.max_shrink_percent));
    log_run(&r);
    r.to_json()
}

/// The settings `set_template_policy` can clear (`clear => ARRAY[...]`).
pub const POLICY_SETTINGS: &[&str] = &[
    "retention",
    "year_tablespace",
    "stale_after",
    "fold_storage",
];

/// What a `set_template_policy` call changes: the settings given, and those cleared.
pub struct PolicyChanges<'a> {
    pub retention: Option<Interval>,
    pub year_tablespace: Option<&'a str>,
    pub stale_after: Option<Interval>,
    pub fold_storage: Option<AccessMethod>,
    pub clear: Vec<String>,
}

impl PolicyChanges<'_> {
    /// Refuse a name `clear` does not know, or a setting both given and cleared.
    fn check_clear(&self) {
        for c in &self.clear {
            if !POLICY_SETTINGS.contains(&c.as_str()) {
                raise(WhError::invalid(
                    "clear",
                    format!("{c:?} is not one of {}", POLICY_SETTINGS.join(", ")),
                ));
            }
        }
        let given = [
            ("retention", self.retention.is_some()),
            ("year_tablespace", self.year_tablespace.is_some()),
            ("stale_after", self.stale_after.is_some()),
            ("fold_storage", self.fold_storage.is_some()),
        ];
        if let Some((what, _)) = given
            .iter()
            .find(|(w, set)| *set && self.clear.iter().any(|c| c == w))
        {
            raise(WhError::invalid(
                "clear",
                format!("{what} is both given and cleared"),
            ));
        }
    }
}

/// Retention horizon, tablespace and storage of folded years, staleness threshold. A call
/// changes only the settings it names; `clear` names the settings to set back to none
/// (`fold_storage`: back to heap).
pub fn set_policy(template: &CheckedName, change: PolicyChanges) -> Value {
    catalog::load_template(template);
    change.check_clear();
    if let Some(ts) = change.year_tablespace {
        check_tablespace("year_tablespace", ts);
    }
    for (what, v) in [
        ("retention", &change.retention),
        ("stale_after", &change.stale_after),
    ] {
        if let Some(i) = v {
            let positive =
                one::<bool>("SELECT $1 > '0'::interval", &[(*i).into()]).unwrap_or(false);
            if !positive {
                raise(WhError::invalid(
                    what,
                    "must be a positive interval (clear it with clear => ARRAY['...'])",
                ));
            }
        }
    }
    if change.fold_storage == Some(AccessMethod::Columnar) {
        fold::check_columnar_fits(template);
    }
    exec(
        "UPDATE _wh.mv_templates SET \
             retention = CASE WHEN 'retention' = ANY ($5) THEN NULL ELSE coalesce($2, retention) END, \
             year_tablespace = CASE WHEN 'year_tablespace' = ANY ($5) THEN NULL ELSE coalesce($3::name, year_tablespace) END, \
             stale_after = CASE WHEN 'stale_after' = ANY ($5) THEN NULL ELSE coalesce($4, stale_after) END, \
             fold_storage = CASE WHEN 'fold_storage' = ANY ($5) THEN 'heap' ELSE coalesce($6, fold_storage) END, \
             updated_at = pg_catalog.now() \
         WHERE template_name = $1",
        &[
            DatumWithOid::from(template.as_str()),
            DatumWithOid::from(change.retention),
            DatumWithOid::from(change.year_tablespace),
            DatumWithOid::from(change.stale_after),
            DatumWithOid::from(change.clear.clone()),
            DatumWithOid::from(change.fold_storage.map(AccessMethod::as_str)),
        ],
    );
    let now = rows(
        "SELECT retention::text AS retention, year_tablespace::text AS year_tablespace, stale_after::text AS stale_after, fold_storage \
         FROM _wh.mv_templates WHERE template_name = $1",
        &[DatumWithOid::from(template.as_str())],
        |r| ((col::<String>(r, "retention"), col::<String>(r, "year_tablespace")), (col::<String>(r, "stale_after"), col::<String>(r, "fold_storage"))),
    );
    let ((ret, ts), (stale, fold_storage)) = now.into_iter().next().unwrap_or_default();
    let mut r = OpResult::new("set_template_policy", Some(template.as_str()), None, None);
    r.detail("retention", json!(ret));
    r.detail("year_tablespace", json!(ts));
    r.detail("stale_after", json!(stale));
    r.detail("fold_storage", json!(fold_storage));
    r.detail("cleared", json!(change.clear));
    log_run(&r);
    r.to_json()
}

/// Drop the days before the horizon: `older_than`, or today minus the template's
/// retention; days of the current year are kept unless asked. For every tenant, whole
/// partitions before the horizon are dropped (one short DDL step under wh's
/// lock_timeout) and the rest deleted; for one tenant, its rows are deleted partition by
/// partition. The registry loses the same days.
pub fn apply_retention(
    template: &CheckedName,
    tenant: Option<&CheckedName>,
    older_than: Option<Day>,
    include_current_year: bool,
    dry_run: bool,
    today: Day,
) -> Value {
    let start = std::time::Instant::now();
    let lt = catalog::load_template(template);
    let tn = TableNames::new(template);
    let horizon = older_than
        .or_else(|| crate::catalog::rollups::retention_horizon(template, Some(today)))
        .unwrap_or_else(|| {
            raise(WhError::invalid(
                "older_than",
                format!("template {template} has no retention; pass older_than or set one with _wh.set_template_policy"),
            ))
        });
    let year_start = Day::first_of_year(today.year()).unwrap_or_else(|e| raise(e));
    let cut = if include_current_year {
        horizon
    } else {
        horizon.min(year_start)
    };
    let days = days_before(template, tenant, cut);
    let parts = if storage::relation_exists(&tn.table()) {
        storage::partitions(&tn)
    } else {
        vec![]
    };
    // Partitions wholly before the cut go as a whole when every tenant's days go.
    let whole: Vec<String> = match tenant {
        None => parts
            .iter()
            .filter(|p| p.hi <= cut)
            .map(|p| p.name.clone())
            .collect(),
        Some(_) => vec![],
    };
    let mut per_tenant = serde_json::Map::new();
    for (t, _) in &days {
        let e = per_tenant.entry(t.clone()).or_insert(json!(0));
        *e = json!(e.as_i64().unwrap_or(0) + 1);
    }
    let mut deleted_rows = 0i64;
    if !dry_run && (!days.is_empty() || !whole.is_empty()) {
        fold::lock_template_or_busy(template);
        if !whole.is_empty() {
            ddl(&[sql::lock_exclusive(&tn), sql::drop_partitions(&tn, &whole)]);
            // A folded year dropped whole is not folded again by a rebuild.
            storage::forget_folded_years(template, cut.year());
        }
        let partial: Vec<&storage::Partition> = parts
            .iter()
            .filter(|p| p.lo < cut && !whole.contains(&p.name))
            .collect();
        deleted_rows = delete_before(&lt, &tn, tenant, &partial, cut);
        crate::catalog::registry::forget_days_before(template, tenant, cut);
    }
    let mut r = OpResult::new(
        "apply_retention",
        Some(template.as_str()),
        tenant.map(|t| t.as_str()),
        Some(horizon.iso()),
    );
    r.ms = ms_since(start);
    r.rows = Some(days.len() as i64);
    r.detail("horizon", json!(horizon.iso()));
    r.detail("cut", json!(cut.iso()));
    r.detail("dry_run", json!(dry_run));
    r.detail("include_current_year", json!(include_current_year));
    r.detail("days_by_tenant", Value::Object(per_tenant));
    r.detail("partitions_dropped", json!(whole));
    r.detail("rows_deleted", json!(deleted_rows));
    if !dry_run {
        log_run(&r);
    }
    r.to_json()
}

/// The registered days of a template (one tenant's, or all) before `cut`.
fn days_before(
    template: &CheckedName,
    tenant: Option<&CheckedName>,
    cut: Day,
) -> Vec<(String, Day)> {
    rows(
        "SELECT tenant_name, range_start FROM _wh.slices \
         WHERE template_name = $1 AND kind = 'day' AND ($2::text IS NULL OR tenant_name = $2) AND range_start < $3 \
         ORDER BY tenant_name, range_start",
        &[DatumWithOid::from(template.as_str()), DatumWithOid::from(tenant.map(|t| t.as_str())), DatumWithOid::from(pg_date(cut))],
        |r| {
            (
                col::<String>(r, "tenant_name").unwrap_or_default(),
                col::<pgrx::datum::Date>(r, "range_start").and_then(|d| catalog::db::day_of(d).ok()).unwrap_or(Day(0)),
            )
        },
    )
}

/// The rows before `cut` in partitions that stay (of one tenant, or all), deleted.
fn delete_before(
    lt: &catalog::LoadedTemplate,
    tn: &TableNames,
    tenant: Option<&CheckedName>,
    partial: &[&storage::Partition],
    cut: Day,
) -> i64 {
    partial
        .iter()
        .map(|p| {
            let hi = p.hi.min(cut);
            if !fold::prepare_change(lt, p, tenant, (p.lo, hi)) {
                return 0;
            }
            match tenant {
                Some(t) => exec(
                    &sql::delete_tenant_range(tn, &lt.t, lt.time_kind, p.lo, hi),
                    &[DatumWithOid::from(t.as_str())],
                ),
                None => exec(&sql::delete_range(tn, &lt.t, lt.time_kind, p.lo, hi), &[]),
            }
        })
        .sum()
}

/// Move a folded year (table and indexes) to another tablespace.
pub fn set_slice_tablespace(template: &CheckedName, year: i32, tablespace: &str) -> Value {
    check_tablespace("tablespace", tablespace);
    fold::move_year(template, year, tablespace)
}

/// After restoring a `_wh`-only dump into a fresh database: schedule again the pg_cron jobs
/// the dump lists (as the calling login) and grant tenant readers again to the roles of
/// their names. What it cannot do (a reader role that does not exist here, tenants
/// without a password) is listed, with what to type. Run it once after the restore; a
/// second run finds nothing to do.
pub fn finish_restore() -> Value {
    catalog::check_caller();
    let (jobs, not_wh_jobs) = schedule::restore_jobs();
    let (readers, missing_roles) = crate::ops::readers::regrant_by_name();
    let no_password: Vec<String> = rows(
        "SELECT t.tenant_name FROM _wh.tenant_connections t \
         WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_user_mappings m WHERE m.srvname = t.server_name AND m.umuser = 0) \
         ORDER BY 1",
        &[],
        |r| col::<String>(r, "tenant_name").unwrap_or_default(),
    );
    // The registry came back without its derived figures: every pair's, again.
    let pairs = crate::catalog::registry::settle_pairs(true);
    let mut r = OpResult::new("finish_restore", None, None, None);
    r.detail("pairs_settled", json!(pairs));
    r.detail("jobs_scheduled", json!(jobs));
    r.detail("jobs_refused", json!(not_wh_jobs));
    r.detail("readers_granted", json!(readers));
    r.detail("reader_roles_missing", json!(missing_roles));
    r.detail(
        "tenants_without_password",
        json!(no_password
            .iter()
            .map(|t| format!(
                "SELECT _wh.set_tenant_connection({}, password => '…');",
                crate::pure::names::quote_literal(t)
            ))
            .collect::<Vec<_>>()),
    );
    log_run(&r);
    r.to_json()
}

/// Pause (or resume) a tenant's scheduled and fan-out refreshes; its rows stay readable
/// and explicit refreshes still work. Audited.
pub fn set_paused(tenant: &CheckedName, paused: bool) -> Value {
    catalog::load_tenant(tenant);
    let was = catalog::is_paused(tenant);
    exec(
        "UPDATE _wh.tenant_connections SET paused_at = CASE WHEN $2 THEN coalesce(paused_at, pg_catalog.now()) END, \
             updated_at = pg_catalog.now() WHERE tenant_name = $1",
        &[DatumWithOid::from(tenant.as_str()), DatumWithOid::from(paused)],
    );
    let action = if paused { "pause" } else { "resume" };
    if was != paused {
        catalog::audit_connection(tenant, action, &["paused_at".into()]);
    }
    let mut r = OpResult::new(
        &format!("{action}_tenant"),
        None,
        Some(tenant.as_str()),
        None,
    );
    r.detail("paused", json!(paused));
    r.detail("changed", json!(was != paused));
    log_run(&r);
    r.to_json()
}

/// Rename a tenant everywhere, in one transaction: its rows (`schema_name` in every
/// template's table), its schema and views (made anew under the new name, with its
/// readers' grants and row-level policies), its foreign server and user mapping, the
/// registry (connection, days, per-tenant queries, readers, run history) and its pg_cron
/// jobs. Audited. Every template is locked as a fold locks it (running refreshes finish
/// first, new ones skip as busy), so no write lands under the old name; the rows move
/// first and the DDL (views, policies) comes last, under wh's lock_timeout, so readers
/// wait only for the end of the call. The old schema goes when only wh's views were in
/// it; otherwise it stays (without wh's views and readers) and the result says so.
pub fn rename_tenant(old: &CheckedName, new: &CheckedName) -> Value {
    catalog::check_caller();
    let start = std::time::Instant::now();
    let tables = rename_checked(old, new);
    let days = rename_in_registry(old, new);
    // Rows first (plain UPDATEs, a partition at a time: readers never wait on them)...
    let moved: i64 = tables
        .iter()
        .flat_map(|t| t.changed.iter().map(move |(lo, hi)| (t, *lo, *hi)))
        .map(|(t, lo, hi)| move_rows(t, (lo, hi), old, new))
        .sum();
    // ...then views and policies: DDL under wh's lock_timeout, at the end of the call.
    let views = remake_renamed_views(&tables, old, new);
    let jobs = schedule::rename_tenant_jobs(old, new);
    let left = retire_old_schema(old, new);
    let mut r = OpResult::new("rename_tenant", None, Some(new.as_str()), None);
    r.ms = ms_since(start);
    r.rows = Some(moved);
    r.detail("renamed_from", json!(old.as_str()));
    r.detail("rows_moved", json!(moved));
    r.detail("days_moved", json!(days));
    r.detail("views", json!(views));
    r.detail("jobs", json!(jobs));
    r.detail("server", json!(server_name(new)));
    r.detail(
        "old_schema",
        json!(match left {
            Some(0) => "dropped".to_string(),
            Some(n) => format!("kept: {n} object(s) wh did not make are still in it"),
            None => "none".to_string(),
        }),
    );
    log_run(&r);
    r.to_json()
}

fn arg(t: &CheckedName) -> DatumWithOid<'_> {
    DatumWithOid::from(t.as_str())
}

/// Rename, phase 1: `old` is a tenant, `new` is free everywhere and every template's row
/// is held (no refresh or fold runs meanwhile). The templates' tables that exist.
fn rename_checked(old: &CheckedName, new: &CheckedName) -> Vec<RenamedTable> {
    catalog::load_tenant(old);
    if old == new {
        raise(WhError::invalid(
            "new_name",
            format!("{new} is already the tenant's name"),
        ));
    }
    let templates = crate::catalog::templates();
    let tables: Vec<(CheckedName, TableNames)> = templates
        .iter()
        .map(|tp| (tp.clone(), TableNames::new(tp)))
        .filter(|(_, tn)| storage::relation_exists(&tn.table()))
        .collect();
    // The new name must be free everywhere: a removed tenant's rows, days, readers or
    // schema left under it would merge with this tenant's (and its readers read them).
    let existing: Vec<TableNames> = tables.iter().map(|(tp, _)| TableNames::new(tp)).collect();
    if let Some(what) = one::<String>(&sql::name_in_use(&existing), &[arg(new)]) {
        raise(WhError::Exists(format!(
            "tenant name {new} is in use ({what}): remove it first (remove_tenant(…, drop_data => true)) or choose another; nothing was changed"
        )));
    }
    for tp in &templates {
        fold::lock_template_or_busy(tp);
    }
    // Rows of a columnar year cannot be updated: such a year holding the tenant's rows
    // becomes heap first, checked against the registry as it still is; one holding none
    // is left out.
    tables
        .into_iter()
        .map(|(template, names)| {
            let lt = catalog::load_template(&template);
            let changed = storage::partitions(&names)
                .iter()
                .filter(|p| fold::prepare_change(&lt, p, Some(old), (p.lo, p.hi)))
                .map(|p| (p.lo, p.hi))
                .collect();
            let distributed = storage::is_distributed(&names);
            RenamedTable {
                template,
                names,
                lt,
                changed,
                distributed,
            }
        })
        .collect()
}

/// A tenant's rows of `[lo, hi)` in one table moved to its new name: one UPDATE; on a
/// distributed table (Citus refuses to update the distribution column) a copy of every
/// column under the new name and a delete of the old, which must count the same. The rows moved.
fn move_rows(t: &RenamedTable, (lo, hi): (Day, Day), old: &CheckedName, new: &CheckedName) -> i64 {
    let (tn, lt) = (&t.names, &t.lt);
    if !t.distributed {
        return exec(
            &sql::rename_tenant_rows(tn, &lt.t, lt.time_kind, lo, hi),
            &[arg(old), arg(new)],
        );
    }
    let columns = storage::table_columns(tn);
    let [copy, delete] = sql::move_tenant_rows(tn, &columns, &lt.t, lt.time_kind, (lo, hi));
    let copied = exec(&copy, &[arg(old), arg(new)]);
    let deleted = exec(&delete, &[arg(old)]);
    if copied != deleted {
        raise(WhError::State(format!(
            "renaming {old} in {}: {copied} row(s) copied but {deleted} deleted; everything was rolled back",
            tn.table()
        )));
    }
    copied
}

/// A template's table a rename moves rows in: the partitions (`[lo, hi)`) to update.
struct RenamedTable {
    template: CheckedName,
    names: TableNames,
    lt: catalog::LoadedTemplate,
    changed: Vec<(Day, Day)>,
    distributed: bool,
}

/// Rename, phase 2: the registry. A copy of the connection under the new name, then
/// everything that names the tenant, then the old row (its per-tenant queries move first:
/// they reference it), the server, the audit. The days moved.
fn rename_in_registry(old: &CheckedName, new: &CheckedName) -> i64 {
    exec(
        &sql::copy_tenant_connection(),
        &[
            arg(old),
            arg(new),
            DatumWithOid::from(server_name(new).as_str()),
        ],
    );
    // The new schema: refused, and everything rolled back, for a reserved name, a role's
    // name or a schema wh did not make.
    coordinator_only(|| storage::make_tenant_schema(new));
    for table in sql::TABLES_NAMING_TENANTS {
        exec(&sql::rename_tenant_in(table), &[arg(old), arg(new)]);
    }
    let days = crate::catalog::registry::rename_tenant(old, new);
    forget_connection_row(old);
    exec(
        &sql::rename_server(&server_name(old), &server_name(new)),
        &[],
    );
    for (t, other, how) in [(old, new, "renamed to"), (new, old, "renamed from")] {
        catalog::audit_connection(t, "rename", &[format!("tenant_name {how} {other}")]);
    }
    days
}

/// Rename, phase 3: each template's tenant view made again under the new schema, its
/// readers' grants and scopes with it. The views made.
fn remake_renamed_views(
    tables: &[RenamedTable],
    old: &CheckedName,
    new: &CheckedName,
) -> Vec<String> {
    let mut views = Vec::new();
    for t in tables {
        let tp = &t.template;
        let old_view = SliceNames::new(old, tp).view();
        if storage::relation_exists(&old_view) {
            coordinator_only(|| ddl(&[sql::drop_view(&old_view)]));
            storage::ensure_tenant_view(&SliceNames::new(new, tp), &t.lt);
            views.push(SliceNames::new(new, tp).view());
        }
        storage::grant_readers_select(&t.names, new);
    }
    storage::sync_reader_scopes();
    views
}

/// Rename, phase 4: the old schema goes if nothing but wh's views was in it (any object
/// of any kind depends on its schema); otherwise its readers lose it, and it stays. How
/// many objects were left in it (None: no such schema).
fn retire_old_schema(old: &CheckedName, new: &CheckedName) -> Option<i64> {
    let left = one::<i64>(&sql::objects_in_schema(), &[arg(old)]);
    match left {
        Some(0) => ddl(&[sql::drop_schema(old)]),
        Some(_) => {
            for role in crate::catalog::readers_of(new) {
                exec(&sql::revoke_schema(old, &role), &[]);
            }
        }
        None => {}
    }
    left
}

/// Unschedule, drop the server and mapping. The tenant's rows stay readable (through
/// `public.<template>` and its views) unless `drop_data`: then its rows are deleted a
/// partition at a time, its views and schema dropped, its days and readers forgotten.
/// A tenant removed earlier with its data kept can have that data dropped later the same
/// way (`drop_data => true` on a name that has no connection any more).
pub fn remove_tenant(tenant: &CheckedName, drop_data: bool) -> Value {
    catalog::check_caller();
    let start = std::time::Instant::now();
    let registered = catalog::tenant_registered(tenant);
    let kept_data_only = !registered && drop_data && catalog::tenant_has_kept_data(tenant);
    if !registered && !kept_data_only {
        catalog::load_tenant(tenant); // raises: unknown tenant
    }
    let jobs = if registered {
        forget_connection(tenant)
    } else {
        Vec::new()
    };
    let mut deleted = 0i64;
    if drop_data {
        let templates: Vec<String> = crate::catalog::template_names();
        exec(
            "DELETE FROM _wh.tenant_readers WHERE tenant_name = $1",
            &[DatumWithOid::from(tenant.as_str())],
        );
        for tp in &templates {
            let tp = CheckedName::template(Some(tp)).unwrap_or_else(|e| raise(e));
            let lt = catalog::load_template(&tp);
            let tn = TableNames::new(&tp);
            if !storage::relation_exists(&tn.table()) {
                continue;
            }
            // Like any writer of rows: never beside a fold, which would copy them back.
            if !storage::try_ddl(&[sql::lock_template_row_in(&tp, "KEY SHARE")], 10) {
                raise(WhError::Busy(format!(
                    "{tp} is being folded or its partitions dropped right now; try again"
                )));
            }
            for p in storage::partitions(&tn) {
                if !fold::prepare_change(&lt, &p, Some(tenant), (p.lo, p.hi)) {
                    continue;
                }
                deleted += exec(
                    &sql::delete_tenant_range(&tn, &lt.t, lt.time_kind, p.lo, p.hi),
                    &[DatumWithOid::from(tenant.as_str())],
                );
            }
        }
        storage::sync_reader_scopes();
        quietly(|| exec(&sql::drop_tenant_schema(tenant), &[]));
        exec(
            "DELETE FROM _wh.verify_findings WHERE tenant_name = $1",
            &[DatumWithOid::from(tenant.as_str())],
        );
        crate::catalog::registry::forget_tenant(tenant);
    }
    let mut r = OpResult::new("remove_tenant", None, Some(tenant.as_str()), None);
    r.ms = ms_since(start);
    r.rows = Some(deleted);
    r.detail("drop_data", json!(drop_data));
    r.detail("was_registered", json!(registered));
    r.detail("rows_deleted", json!(deleted));
    r.detail("jobs_unscheduled", json!(jobs));
    log_run(&r);
    r.to_json()
}

/// A removal's first half: the tenant's jobs, foreign server (and its user mapping),
/// connection row; audited. Returns the jobs unscheduled.
fn forget_connection(tenant: &CheckedName) -> Vec<String> {
    let jobs = schedule::unschedule_tenant_jobs(tenant, None);
    crate::catalog::pool::forget(tenant, None, false);
    quietly(|| exec(&sql::drop_server(&server_name(tenant)), &[]));
    forget_connection_row(tenant);
    catalog::audit_connection(tenant, "remove", &[]);
    jobs
}

/// A tenant's row of `_wh.tenant_connections` deleted.
fn forget_connection_row(tenant: &CheckedName) {
    exec(
        "DELETE FROM _wh.tenant_connections WHERE tenant_name = $1",
        &[DatumWithOid::from(tenant.as_str())],
    );
}
