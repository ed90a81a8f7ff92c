//! Changing a template that already holds days, and dropping one. Operations layer.
//!
//! What a template may become in place (`set_template` on a template with days):
//! columns appended at the end (NULL in the days fetched before; those days' checksums
//! still cover exactly the columns they were fetched with, see `Template::hashed`), a
//! column's type widened where PostgreSQL changes only the catalog (no rewrite), and a
//! column renamed (`rename_template_column`). Everything else (removing or reordering
//! columns, another time column or partition grain) still needs a new template.
//!
//! Locks: each change takes the template's row lock as a fold does (running refreshes
//! finish first, new ones wait) and runs its DDL on `public.<template>` through `_ddl`
//! (ACCESS EXCLUSIVE for a catalog-only change, waiting at most wh's lock_timeout per try,
//! so readers queued behind it wait at most that long).

use pgrx::datum::DatumWithOid;
use serde_json::{json, Value};

use crate::catalog::db::{col, coordinator_only, exec, one, quietly, rows};
use crate::catalog::storage;
use crate::catalog::{self, log_run};
use crate::ops::schedule;
use crate::pure::dates::Grain;
use crate::pure::error::{raise, WhError};
use crate::pure::names::{CheckedName, SliceNames, TableNames};
use crate::pure::report::OpResult;
use crate::pure::sql;
use crate::pure::template::{evolution, parse_columns, Evolution, Template};

/// `set_template`: saved (and its table made) as before; on a template that holds days,
/// the columns appended and the types widened are applied in place, and its tenants'
/// views follow.
pub fn set_template(t: &Template, grain: Grain, rewritten: Option<String>) -> Value {
    let stored = crate::catalog::stored_column_definitions(t.name.as_str());
    let holds_days = crate::catalog::rollups::held_days(&t.name) > 0;
    let plan = match (&stored, holds_days) {
        (Some(defs), true) => {
            evolution(&parse_columns(defs).unwrap_or_default(), &t.columns).unwrap_or_default()
        }
        _ => Evolution::default(),
    };
    if !plan.is_empty() {
        crate::pipeline::fold::lock_template_or_busy(&t.name);
    }
    let mut out = crate::ops::templates::save_template(t, grain, rewritten);
    if !plan.is_empty() {
        let old_count = t.columns.len() - plan.added.len();
        apply(&t.name, &plan, old_count);
        out["details"]["evolved"] = json!({
            "added": plan.added.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            "widened": plan.widened.iter().map(|(c, ty)| format!("{c} {ty}")).collect::<Vec<_>>(),
            "days_before": "columns added are NULL in the days fetched before (verify compares those days on the columns they had); a refresh fetches them",
        });
    }
    out
}

/// The tenants' views of the template that exist.
pub fn tenant_views(template: &CheckedName) -> Vec<SliceNames> {
    rows(
        "SELECT DISTINCT tenant_name FROM (SELECT tenant_name FROM _wh.tenant_connections \
         UNION SELECT tenant_name FROM _wh.slices WHERE template_name = $1) t ORDER BY 1",
        &[DatumWithOid::from(template.as_str())],
        |r| col::<String>(r, "tenant_name").unwrap_or_default(),
    )
    .into_iter()
    .filter_map(|n| CheckedName::tenant(Some(&n)).ok())
    .map(|tenant| SliceNames::new(&tenant, template))
    .filter(|names| storage::relation_exists(&names.view()))
    .collect()
}

/// Apply an evolution to the template's table (the partitions follow): appended columns
/// (catalog only: nullable, no default), widened types (catalog only; the tenants' views
/// depend on the columns, so they are dropped and made again in the same step), then every
/// tenant's view made again with the new columns. One `_ddl` step: readers wait at most
/// wh's lock_timeout per try, never for a rewrite.
fn apply(template: &CheckedName, plan: &Evolution, old_count: usize) {
    let lt = catalog::load_template(template);
    let tn = TableNames::new(template);
    let views = tenant_views(template);
    let mut stmts: Vec<String> = Vec::new();
    if !plan.widened.is_empty() {
        stmts.extend(views.iter().map(|names| sql::drop_view(&names.view())));
        for view in [tn.reader_view(), tn.all_rows_view()] {
            if storage::relation_exists(&view) {
                stmts.push(sql::drop_view(&view));
            }
        }
        for (c, ty) in &plan.widened {
            stmts.push(sql::widen_column(&tn, c, ty));
        }
    }
    stmts.extend(plan.added.iter().map(|c| sql::add_column(&tn, c)));
    storage::ddl(&stmts);
    storage::remake_table_views(&tn);
    coordinator_only(|| {
        for names in &views {
            storage::ddl(&[sql::tenant_view(names, &lt.t)]);
            storage::apply_view_grants(names);
        }
    });
    if !plan.added.is_empty() {
        exec(
            "UPDATE _wh.mv_templates SET hashed_columns = coalesce(hashed_columns, $2) WHERE template_name = $1",
            &[
                DatumWithOid::from(template.as_str()),
                DatumWithOid::from(old_count as i32),
            ],
        );
        // Days registered before 0.7.0 say nothing of their columns: they had these.
        crate::catalog::registry::set_columns_unknown(template, old_count);
    }
}

/// Why `column` of `t` cannot be renamed `new_name` in place, if it cannot.
fn check_renamable(
    t: &Template,
    column: &CheckedName,
    new_name: &CheckedName,
) -> Result<(), String> {
    if !t.columns.iter().any(|c| &c.name == column) {
        return Err(format!("it has no column {column}"));
    }
    if t.columns.iter().any(|c| &c.name == new_name) {
        return Err(format!("it already has a column {new_name}"));
    }
    if &t.time_column == column {
        return Err(format!(
            "{column} is its time column, which cannot be renamed in place"
        ));
    }
    let rollups = rollups_of(&t.name);
    if !rollups.is_empty() {
        return Err(format!(
            "rollups are built on it ({}): their definitions name its columns",
            rollups.join(", ")
        ));
    }
    let own: Vec<String> = rows(
        "SELECT tenant_name FROM _wh.tenant_queries WHERE template_name = $1 ORDER BY 1",
        &[DatumWithOid::from(t.name.as_str())],
        |r| col::<String>(r, "tenant_name").unwrap_or_default(),
    );
    if !own.is_empty() {
        return Err(format!(
            "tenants {} have their own query, which returns {column}: remove them first (set_tenant_query(…, NULL)) and set them again after",
            own.join(", ")
        ));
    }
    Ok(())
}

/// Rename a column of a template in place: the table's column (its partitions and
/// indexes follow), every tenant's view, the template's unique key and index specs, and
/// its query, which must now return the new name (`query_template`). Refused for the time
/// column, while rollups are built on the template (their definitions name its columns)
/// or while tenants have their own query (they would still return the old name).
pub fn rename_column(
    template: &CheckedName,
    column: &CheckedName,
    new_name: &CheckedName,
    query: &str,
) -> Value {
    let lt = catalog::load_template(template);
    lt.refuse_rollup("rename a column of");
    let t = &lt.t;
    if let Err(reason) = check_renamable(t, column, new_name) {
        raise(WhError::InvalidTemplate {
            template: template.to_string(),
            reason,
        })
    }
    let renamed = t
        .renamed(column, new_name, query)
        .unwrap_or_else(|e| raise(e));
    crate::pipeline::fold::lock_template_or_busy(template);
    let tn = TableNames::new(template);
    let mut stmts = vec![
        sql::rename_column(sql::RelationKind::Table, &tn.table(), column, new_name),
        sql::rename_column(sql::RelationKind::View, &tn.reader_view(), column, new_name),
        sql::rename_column(
            sql::RelationKind::View,
            &tn.all_rows_view(),
            column,
            new_name,
        ),
    ];
    stmts.extend(
        tenant_views(template).iter().map(|names| {
            sql::rename_column(sql::RelationKind::View, &names.view(), column, new_name)
        }),
    );
    storage::ddl(&stmts);
    let indexes: Vec<String> = renamed.indexes.iter().map(|i| i.canonical()).collect();
    exec(
        "UPDATE _wh.mv_templates SET query_template = $2, column_definitions = $3, unique_key = $4, indexes = $5, \
             updated_at = pg_catalog.now() WHERE template_name = $1",
        &[
            DatumWithOid::from(template.as_str()),
            DatumWithOid::from(renamed.query.as_str()),
            DatumWithOid::from(renamed.column_definitions_text()),
            DatumWithOid::from(renamed.unique_key_text()),
            DatumWithOid::from(indexes),
        ],
    );
    let mut r = OpResult::new(
        "rename_template_column",
        Some(template.as_str()),
        None,
        None,
    );
    r.detail("column", json!(column.as_str()));
    r.detail("new_name", json!(new_name.as_str()));
    log_run(&r);
    r.to_json()
}

/// The rollups built on `template`, by name (for messages).
fn rollups_of(template: &CheckedName) -> Vec<String> {
    crate::catalog::rollups::rollups_of(template)
        .iter()
        .map(|r| r.to_string())
        .collect()
}

/// Whether anything of `template` is left: its row, days, the seeds' functions, or a
/// template's table (never another table that has its name).
fn anything_left(template: &CheckedName) -> bool {
    storage::is_template_table(&TableNames::new(template))
        || one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM _wh.mv_templates WHERE template_name = $1) \
                 OR EXISTS (SELECT 1 FROM _wh.slices WHERE template_name = $1) \
                 OR pg_catalog.to_regproc(pg_catalog.format('_wh.%I', 'update_' || $1)) IS NOT NULL",
            &[DatumWithOid::from(template.as_str())],
        )
        .unwrap_or(false)
}

/// Drop a template and everything wh made for it: its jobs, registry rows (days, tenant
/// queries, findings), the seeds' per-template functions and, unless `keep_data`, the
/// table `public.<template>` with its partitions and every tenant's view of it. With
/// `keep_data` the table and views stay as plain relations (readers keep reading; wh no
/// longer touches them; setting a template of that name again takes the table back and
/// its refreshes replace the kept rows day by day). The run log keeps its history. Refused while rollups are built on it. Also
/// cleans up what a template row deleted by hand left behind.
pub fn drop_template(template: &CheckedName, keep_data: bool) -> Value {
    catalog::check_caller();
    if !anything_left(template) {
        raise(WhError::UnknownTemplate(template.to_string()));
    }
    let rollups = rollups_of(template);
    if !rollups.is_empty() {
        raise(WhError::State(format!(
            "template {template} has rollups ({}): drop them first with _wh.drop_template",
            rollups.join(", ")
        )));
    }
    if catalog::template_exists(template) {
        crate::pipeline::fold::lock_template_or_busy(template);
    }
    let jobs = schedule::unschedule_template_jobs(template);
    let arg = [DatumWithOid::from(template.as_str())];
    let days = crate::catalog::registry::forget_template(template);
    exec(
        "DELETE FROM _wh.verify_findings WHERE template_name = $1",
        &arg,
    );
    exec(
        "DELETE FROM _wh.tenant_queries WHERE template_name = $1",
        &arg,
    );
    exec(
        "DELETE FROM _wh.mv_templates WHERE template_name = $1",
        &arg,
    );
    exec("SELECT _wh._analyze_registry()", &[]);
    crate::catalog::pool::forget_template(template);
    exec("SELECT _wh._drop_seed_functions($1)", &arg);
    let tn = TableNames::new(template);
    let table_dropped = !keep_data && storage::is_template_table(&tn);
    if table_dropped {
        // Its partitions and the tenants' views over it go with it.
        quietly(|| storage::ddl(&[sql::drop_table_cascade(&tn)]));
    }
    let mut r = OpResult::new("drop_template", Some(template.as_str()), None, None);
    r.rows = Some(days);
    r.detail("keep_data", json!(keep_data));
    r.detail("days_forgotten", json!(days));
    r.detail("jobs_unscheduled", json!(jobs));
    r.detail(
        "table",
        json!(if table_dropped {
            format!("dropped {}", tn.table())
        } else if storage::relation_exists(&tn.table()) {
            format!("kept {} (no longer wh's, or never was)", tn.table())
        } else {
            "none".to_string()
        }),
    );
    log_run(&r);
    r.to_json()
}
