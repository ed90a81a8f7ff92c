//! Rollups: templates computed here from another template's stored rows, one tenant-day
//! at a time (`_wh.set_rollup`). Declared once, validated against the base (see
//! `rollup_def`), kept in the same transaction as every change of a base day
//! (`maintain`, called by the stage → check → apply pipeline), built for the days the base
//! already holds by `_wh.build_rollup` (chunked, committed, resumable). A rollup is
//! stored like any template, so folds, retention, readers and rebuilds work unchanged;
//! its days are computed with `Source::Local` and never fetched (called on a rollup,
//! refreshes, backfills and rebuilds use only base days that are intact).

use pgrx::datum::DatumWithOid;
use serde_json::{json, Value};

use crate::catalog::{self, log_run, pg_date};
use crate::dates::{self, Day, Grain};
use crate::db::{col, exec, one, rows};
use crate::error::{raise, raise_with_hint, WhError};
use crate::names::CheckedName;
use crate::report::{OpResult, Status};
use crate::rollup_def::{self, RollupDef};
use crate::slice::{Batch, Existing, Source};
use crate::template::{Template, TemplateInput};

/// The rollups computed from `base`, by name.
pub fn rollups_of(base: &CheckedName) -> Vec<CheckedName> {
    rows(
        "SELECT template_name FROM _wh.mv_templates WHERE base_template = $1 ORDER BY 1",
        &[DatumWithOid::from(base.as_str())],
        |r| col::<String>(r, "template_name").unwrap_or_default(),
    )
    .iter()
    .filter_map(|n| CheckedName::template(Some(n)).ok())
    .collect()
}

/// Keep the rollups of `base`'s template for its tenant: the days whose base rows changed
/// and the unchanged days a rollup does not hold yet, computed from the base rows as they
/// are now in this transaction. A rollup day that cannot be kept (busy, failed) fails the
/// base's days too (the caller's subtransaction rolls back): a base day never changes
/// without its rollups. Returns the rollups kept.
pub fn maintain(base: &Batch, changed: &[Day], unchanged: &[Day], operation: &str) -> Vec<String> {
    let rollups = rollups_of(&base.names.template);
    if rollups.is_empty() {
        return Vec::new();
    }
    // Unchanged base days leave their rollups' rows as they are, but the rollups (and
    // theirs) are as fresh as their base (`_wh.freshness`): the days they hold are marked
    // refreshed (a day another session holds is left to it).
    if !unchanged.is_empty() {
        let days: Vec<pgrx::datum::Date> = unchanged.iter().map(|d| pg_date(*d)).collect();
        exec(
            crate::sql::TOUCH_ROLLUP_DAYS,
            &[
                DatumWithOid::from(base.names.template.as_str()),
                DatumWithOid::from(base.names.schema.as_str()),
                DatumWithOid::from(days),
            ],
        );
    }
    let mut kept = Vec::new();
    for r in &rollups {
        let b = Batch::load(r, &base.names.schema);
        let held = b.registered(unchanged);
        // Days before the rollup's own retention horizon are not made again.
        let from = horizon(r);
        let keep = |d: &Day| from.is_none_or(|h| *d >= h);
        let mut days: Vec<Day> = changed
            .iter()
            .chain(unchanged.iter().filter(|d| !held.contains(d)))
            .filter(|d| keep(d))
            .copied()
            .collect();
        if days.is_empty() {
            continue;
        }
        days.sort();
        for res in b.run(
            &days,
            Existing::Refresh,
            true,
            operation,
            Source::Local { check_base: false },
        ) {
            if res.status == Status::Succeeded {
                continue;
            }
            let day = res.day.clone().unwrap_or_default();
            let what = format!(
                "template {}, tenant {}: rollup {r} could not be kept for day {day}",
                base.names.template, base.names.schema
            );
            // A rollup day that failed its checks fails with its own SQLSTATE (a chunk is
            // then retried day by day, so only that day fails); a busy one with 55P03.
            if let (Some(state), Some(error)) = (&res.sqlstate, &res.error) {
                pgrx::pg_sys::panic::ErrorReport::new(
                    crate::error::sqlstate_code(state),
                    format!("wh: {what}: {error}; the base's day was left as it was"),
                    "wh::rollup",
                )
                .report(pgrx::PgLogLevel::ERROR);
            }
            let reason = res.details.get("reason").and_then(Value::as_str);
            raise_with_hint(
                WhError::Busy(format!(
                    "{what}: skipped ({}); the base's days were left as they were",
                    reason.unwrap_or("busy")
                )),
                format!("a fold or a build of {r} may hold its days: run the refresh again when it is done"),
            )
        }
        kept.push(r.to_string());
    }
    kept
}

/// The first day a rollup keeps under its own retention (`set_template_policy`), if any.
fn horizon(rollup: &CheckedName) -> Option<Day> {
    one::<pgrx::datum::Date>(
        "SELECT (_wh.current_date_utc() - retention)::date FROM _wh.mv_templates WHERE template_name = $1 AND retention IS NOT NULL",
        &[DatumWithOid::from(rollup.as_str())],
    )
    .and_then(|d| catalog::day_of(d).ok())
}

/// The templates `name` is computed from, nearest first (empty for a fetched template).
fn ancestors(name: &CheckedName) -> Vec<String> {
    rows(
        "WITH RECURSIVE up(name, depth) AS ( \
             SELECT base_template, 1 FROM _wh.mv_templates WHERE template_name = $1 AND base_template IS NOT NULL \
             UNION ALL SELECT m.base_template, up.depth + 1 FROM _wh.mv_templates m JOIN up ON m.template_name = up.name \
             WHERE m.base_template IS NOT NULL AND up.depth < 32) \
         SELECT name FROM up ORDER BY depth",
        &[DatumWithOid::from(name.as_str())],
        |r| col::<String>(r, "name").unwrap_or_default(),
    )
}

/// Every name the definition calls as a function must be a built-in one that gives the
/// same answer for the same rows (not volatile).
fn check_functions(rollup: &CheckedName, def: &RollupDef) {
    let found = rows(
        "SELECT f, pg_catalog.bool_or(p.oid IS NOT NULL) AS known, pg_catalog.bool_or(p.provolatile = 'v') AS volatile \
         FROM pg_catalog.unnest($1::text[]) AS f LEFT JOIN pg_catalog.pg_proc p \
           ON p.proname = f AND p.pronamespace = 'pg_catalog'::regnamespace GROUP BY f ORDER BY f",
        &[DatumWithOid::from(def.functions.clone())],
        |r| (col::<String>(r, "f").unwrap_or_default(), col::<bool>(r, "known").unwrap_or(false), col::<bool>(r, "volatile").unwrap_or(false)),
    );
    for (f, known, volatile) in found {
        let reason = if !known {
            format!("{f}(…) is not a built-in function: a rollup calls pg_catalog's functions only")
        } else if volatile {
            format!("{f}(…) is volatile: a rollup must give the same rows for the same base rows")
        } else {
            continue;
        };
        raise(WhError::InvalidTemplate {
            template: rollup.to_string(),
            reason,
        })
    }
}

/// The outputs' names and types, asked of PostgreSQL (no row is read); an expression it
/// refuses is reported as the rollup's fault with PostgreSQL's reason.
fn probe_columns(rollup: &CheckedName, sql: &str) -> Vec<(String, String)> {
    let cols = crate::db::guarded(sql, |e| WhError::InvalidTemplate {
        template: rollup.to_string(),
        reason: format!("PostgreSQL refuses it over the base: {e}"),
    });
    cols.into_iter()
        .map(|(name, oid)| {
            let ty = one::<String>(
                "SELECT pg_catalog.format_type($1, NULL)",
                &[DatumWithOid::from(oid)],
            )
            .unwrap_or_default();
            (name, ty)
        })
        .collect()
}

/// The base's time column and its kind, read without loading the base as a template (a
/// chain of rollups is not followed).
fn base_time(rollup: &CheckedName, base: &CheckedName) -> (String, crate::template::TimeKind) {
    let found = rows(
        "SELECT time_column, column_definitions FROM _wh.mv_templates WHERE template_name = $1",
        &[DatumWithOid::from(base.as_str())],
        |r| {
            (
                col::<String>(r, "time_column").unwrap_or_default(),
                col::<String>(r, "column_definitions").unwrap_or_default(),
            )
        },
    );
    let Some((tc, defs)) = found.into_iter().next() else {
        raise(WhError::UnknownTemplate(base.to_string()))
    };
    let bad = |reason: String| -> ! {
        raise(WhError::InvalidTemplate {
            template: rollup.to_string(),
            reason,
        })
    };
    let cols = crate::template::parse_columns(&defs)
        .unwrap_or_else(|e| bad(format!("its base {base}: {e}")));
    let ty = cols
        .iter()
        .find(|c| c.name.as_str() == tc)
        .map(|c| c.type_sql.clone())
        .unwrap_or_else(|| bad(format!("its base {base} has no time column {tc:?}")));
    let kind = catalog::canonical_type(&ty)
        .and_then(|c| crate::template::TimeKind::from_canonical(&c))
        .unwrap_or_else(|| bad(format!("its base {base}'s time column {tc} is {ty:?}")));
    (tc, kind)
}

/// A stored rollup's query for one tenant-day, made again from its definition and checked
/// as `set_rollup` checks it (a definition written straight into `_wh.mv_templates` gets
/// the same checks; the stored `query_template` is never run).
pub fn checked_day_query(
    rollup: &CheckedName,
    base: &CheckedName,
    select: &str,
    group: &str,
) -> String {
    let (tc, kind) = base_time(rollup, base);
    let def = rollup_def::parse(select, group, &tc).unwrap_or_else(|reason| {
        raise(WhError::InvalidTemplate {
            template: rollup.to_string(),
            reason,
        })
    });
    check_functions(rollup, &def);
    def.day_query(base.as_str(), &tc, kind)
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
    let saved = catalog::save_template(&t, grain, None);
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

fn held_days(rollup: &CheckedName) -> i64 {
    one::<i64>(
        "SELECT count(*) FROM _wh.slices WHERE template_name = $1",
        &[DatumWithOid::from(rollup.as_str())],
    )
    .unwrap_or(0)
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
        let (Ok(t), Some(Ok(day))) = (CheckedName::tenant(Some(&tenant)), d.map(catalog::day_of))
        else {
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
