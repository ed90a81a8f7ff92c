//! Registering a template: checked against this database, stored, its table and views
//! made.

use pgrx::datum::DatumWithOid;
use serde_json::{json, Value};

use crate::catalog::db::pg_date;
use crate::catalog::db::{col, exec, rows};
use crate::catalog::rollups::{ancestors, check_functions, held_days, probe_columns};
use crate::catalog::{self, log_run, resolve_types, LoadedTemplate};
use crate::pure::dates::{self, Day, Grain};
use crate::pure::error::{raise, raise_with_hint, WhError};
use crate::pure::names::{CheckedName, TableNames};
use crate::pure::report::OpResult;
use crate::pure::rollup_def;
use crate::pure::template::{Limits, Template, TemplateInput};

/// Validate a template against this database (types exist and can be checksummed, the
/// time column is a time) and upsert it, then create its table and views. A template that
/// already has slices keeps its columns, time column and partition grain; one without
/// slices gets its table recreated when those change.
pub fn save_template(t: &Template, grain: Grain, rewritten: Option<String>) -> serde_json::Value {
    let time_kind = resolve_types(t).unwrap_or_else(|e| raise(e));
    // Every column type must have an extended hash: a day's checksum covers every column.
    exec(&crate::pure::sql::checksum_probe(t), &[]);
    let previous = stored_shape(&t.name);
    let indexes: Vec<String> = t.indexes.iter().map(|i| i.canonical()).collect();
    let tn = TableNames::new(&t.name);
    let recreate = match &previous {
        None => {
            refuse_taken_name(t, &tn);
            false
        }
        Some(before) => change_allowed(t, grain, &indexes, before),
    };
    upsert_template(t, grain, &indexes);
    if recreate && crate::catalog::storage::relation_exists(&tn.table()) {
        // No slices: nothing is lost. Tenant views over it go with it and come back with
        // the next build of each tenant.
        crate::catalog::storage::ddl(&[crate::pure::sql::drop_table_cascade(&tn)]);
    }
    let lt = LoadedTemplate {
        t: t.clone(),
        time_kind,
        year_tablespace: None,
        fold_storage: Default::default(),
        grain,
        limits: Limits::default(),
        base: None,
    };
    let created = crate::catalog::storage::ensure_table(&lt);
    // The seeds' update_<template>(…) and create_<template>_mv(…) (sql/privileges.sql).
    catalog::make_seed_functions(&t.name);
    let mut r = OpResult::new("set_template", Some(t.name.as_str()), None, None);
    let action = if previous.is_some() {
        "updated"
    } else {
        "created"
    };
    r.detail("action", json!(action));
    r.detail("table", json!(tn.table()));
    r.detail("view", json!(tn.reader_view()));
    r.detail("table_created", json!(created));
    r.detail("partition_grain", json!(grain.as_str()));
    r.detail("columns", json!(t.columns.len()));
    r.detail(
        "time_column_type",
        json!(format!("{time_kind:?}").to_lowercase()),
    );
    r.detail("indexes", json!(indexes));
    if let Some(n) = rewritten {
        r.detail("query_rewritten", json!(n));
    }
    log_run(&r);
    r.to_json()
}

/// What the catalog holds of a template now: its column definitions, time column,
/// partition grain and indexes (None: not registered).
struct StoredShape {
    columns: String,
    time_column: String,
    grain: String,
    indexes: Vec<String>,
}

fn stored_shape(template: &CheckedName) -> Option<StoredShape> {
    rows(
        "SELECT column_definitions, time_column, partition_grain, indexes FROM _wh.mv_templates WHERE template_name = $1",
        &[DatumWithOid::from(template.as_str())],
        |r| StoredShape {
            columns: col::<String>(r, "column_definitions").unwrap_or_default(),
            time_column: col::<String>(r, "time_column").unwrap_or_default(),
            grain: col::<String>(r, "partition_grain").unwrap_or_default(),
            indexes: col::<Vec<String>>(r, "indexes").unwrap_or_default(),
        },
    )
    .into_iter()
    .next()
}

/// A new template's table name is taken back only when it is a template's (wh_admin's and
/// partitioned: left by DROP EXTENSION or drop_template(keep_data => true)).
fn refuse_taken_name(t: &Template, tn: &TableNames) {
    if let Some(why) = crate::catalog::storage::name_taken(tn) {
        raise(WhError::InvalidTemplate {
            template: t.name.to_string(),
            reason: format!("{why}: drop or rename it first, or choose another name"),
        });
    }
}

/// A registered template changed: refused when it holds days and the change is not one
/// wh makes in place (time column, grain, indexes; columns other than appended or
/// widened). Whether its table must be made again (no days, and its shape changed).
fn change_allowed(t: &Template, grain: Grain, indexes: &[String], before: &StoredShape) -> bool {
    let columns_changed = before.columns != t.column_definitions_text();
    let time_changed =
        before.time_column != t.time_column.as_str() || before.grain != grain.as_str();
    let indexes_changed = before.indexes != indexes;
    let slices = held_days(&t.name);
    if slices == 0 {
        return columns_changed || time_changed || indexes_changed;
    }
    let refuse = |why: String| -> ! {
        raise(WhError::InvalidTemplate {
            template: t.name.to_string(),
            reason: format!("it has {slices} slice(s); {why}"),
        })
    };
    if time_changed {
        refuse(
            "its time_column and partition_grain cannot change (register a new template instead)"
                .into(),
        );
    }
    if columns_changed {
        // Columns appended or widened are done in place (evolve.rs); nothing else.
        let old = crate::pure::template::parse_columns(&before.columns).unwrap_or_default();
        if let Err(why) = crate::pure::template::evolution(&old, &t.columns) {
            refuse(why);
        }
    }
    if indexes_changed {
        refuse("its indexes cannot change yet (register a new template instead)".into());
    }
    false
}

/// The template's row of `_wh.mv_templates`, inserted or updated.
fn upsert_template(t: &Template, grain: Grain, indexes: &[String]) {
    exec(
        "INSERT INTO _wh.mv_templates AS m (template_name, description, query_template, column_definitions, time_column, \
             unique_key, indexes, lookback_days, partition_grain) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (template_name) DO UPDATE SET description = EXCLUDED.description, \
             query_template = EXCLUDED.query_template, column_definitions = EXCLUDED.column_definitions, \
             time_column = EXCLUDED.time_column, unique_key = EXCLUDED.unique_key, indexes = EXCLUDED.indexes, \
             lookback_days = EXCLUDED.lookback_days, partition_grain = EXCLUDED.partition_grain, updated_at = pg_catalog.now()",
        &[
            DatumWithOid::from(t.name.as_str()),
            DatumWithOid::from(t.description.as_deref()),
            DatumWithOid::from(t.query.as_str()),
            DatumWithOid::from(t.column_definitions_text()),
            DatumWithOid::from(t.time_column.as_str()),
            DatumWithOid::from(t.unique_key_text()),
            DatumWithOid::from(indexes.to_vec()),
            DatumWithOid::from(t.lookback_days),
            DatumWithOid::from(grain.as_str()),
        ],
    );
    exec("SELECT _wh._analyze_registry()", &[]);
}

pub struct RollupArgs<'a> {
    pub rollup: CheckedName,
    pub base: CheckedName,
    pub select_list: &'a str,
    pub group_by: &'a str,
    pub indexes: Vec<String>,
    pub description: Option<&'a str>,
    pub grain: Option<Grain>,
}

/// `_wh.set_rollup`: validate the definition against the base, register the rollup as a
/// template computed from it and create `public.<rollup>`. Days are built by refreshes of
/// the base from now on and, for the days the base already holds, by `_wh.build_rollup`.
pub fn set_rollup(a: &RollupArgs) -> Value {
    let base = catalog::load_template(&a.base);
    let bad = |reason: String| -> ! {
        raise(WhError::InvalidTemplate {
            template: a.rollup.to_string(),
            reason,
        })
    };
    if a.rollup == a.base {
        bad("a rollup cannot be computed from itself".into());
    }
    if ancestors(&a.base).iter().any(|n| n == a.rollup.as_str()) {
        bad(format!(
            "{} is computed from it: a rollup cannot be computed from its own rollups",
            a.base
        ));
    }
    let existing = catalog::template_exists(&a.rollup).then(|| catalog::load_template(&a.rollup));
    if let Some(e) = &existing {
        if e.base.is_none() {
            bad("it is a template fetched from the sources (set_template); name the rollup differently".into());
        }
    }
    let def = rollup_def::parse(a.select_list, a.group_by, base.t.time_column.as_str())
        .unwrap_or_else(|reason| bad(reason));
    check_functions(&a.rollup, &def);
    let cols = probe_columns(&a.rollup, &def.probe_sql(a.base.as_str()));
    let defs: Vec<String> = cols.iter().map(|(n, t)| format!("{n} {t}")).collect();
    let unique_key = def.unique_key.join(", ");
    let t = Template::parse(&TemplateInput {
        name: Some(a.rollup.as_str()),
        query: Some(&def.day_query(a.base.as_str(), base.t.time_column.as_str(), base.time_kind)),
        column_definitions: Some(&defs.join(", ")),
        time_column: Some(&def.time_column),
        unique_key: Some(&unique_key),
        indexes: a.indexes.clone(),
        description: a.description,
        lookback_days: 0,
    })
    .unwrap_or_else(|e| raise(e));
    // A rollup holding days keeps its definition: its days were computed with it.
    if let Some(e) = &existing {
        let held = held_days(&a.rollup);
        let same = e.base.as_ref() == Some(&a.base) && e.t.query == t.query;
        if held > 0 && !same {
            bad(format!("it holds {held} day(s) computed with its current definition; set a new rollup instead"));
        }
    }
    let grain = a.grain.unwrap_or(base.grain);
    let saved = crate::ops::templates::save_template(&t, grain, None);
    exec(
        "UPDATE _wh.mv_templates SET base_template = $2, rollup_select = $3, rollup_group_by = $4 WHERE template_name = $1",
        &[
            DatumWithOid::from(a.rollup.as_str()),
            DatumWithOid::from(a.base.as_str()),
            DatumWithOid::from(a.select_list),
            DatumWithOid::from(a.group_by),
        ],
    );
    let to_build: i64 = todo(&a.rollup, dates::DEFAULT_CHUNK_DAYS)
        .iter()
        .map(|(_, d)| d.len() as i64)
        .sum();
    let mut r = OpResult::new("set_rollup", Some(a.rollup.as_str()), None, None);
    r.detail("action", saved["details"]["action"].clone());
    r.detail("base_template", json!(a.base.as_str()));
    r.detail("table", json!(format!("public.{}", a.rollup)));
    r.detail("columns", json!(defs));
    r.detail("time_column", json!(def.time_column));
    r.detail("unique_key", json!(def.unique_key));
    r.detail("days_to_build", json!(to_build));
    if to_build > 0 {
        r.detail(
            "build",
            json!(format!("CALL _wh.build_rollup('{}')", a.rollup)),
        );
    }
    log_run(&r);
    r.to_json()
}

/// What `_wh.build_rollup` has left: per tenant, the days the base holds and the rollup
/// does not, in chunks of at most `chunk_days` inside a month.
pub fn todo(rollup: &CheckedName, chunk_days: usize) -> Vec<(CheckedName, Vec<Day>)> {
    if catalog::load_template(rollup).base.is_none() {
        raise_with_hint(
            WhError::InvalidTemplate {
                template: rollup.to_string(),
                reason: "it is not a rollup".into(),
            },
            "declare one with _wh.set_rollup(rollup_name, base_template, select_list, group_by)"
                .into(),
        )
    }
    let found = rows(
        "SELECT tenant_name, day FROM _wh._rollup_missing_days($1) ORDER BY 1, 2",
        &[DatumWithOid::from(rollup.as_str())],
        |r| {
            (
                col::<String>(r, "tenant_name").unwrap_or_default(),
                col::<pgrx::datum::Date>(r, "day"),
            )
        },
    );
    let mut per: Vec<(CheckedName, Vec<Day>)> = Vec::new();
    for (tenant, d) in found {
        let (Ok(t), Some(Ok(day))) = (
            CheckedName::tenant(Some(&tenant)),
            d.map(catalog::db::day_of),
        ) else {
            continue;
        };
        match per.last_mut() {
            Some((last, days)) if *last == t => days.push(day),
            _ => per.push((t, vec![day])),
        }
    }
    per.into_iter()
        .flat_map(|(t, days)| {
            dates::chunks(&days, chunk_days)
                .into_iter()
                .map(move |c| (t.clone(), c))
        })
        .collect()
}

/// The chunks of `todo` as `(tenant, days)` rows for the procedure.
pub fn todo_rows(rollup: &CheckedName, chunk_days: usize) -> Vec<(String, Vec<pgrx::datum::Date>)> {
    todo(rollup, chunk_days)
        .into_iter()
        .map(|(t, days)| (t.to_string(), days.into_iter().map(pg_date).collect()))
        .collect()
}
