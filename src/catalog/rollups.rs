//! What the catalog knows about rollups: which templates are computed from a base, their
//! retention horizon and ancestry, and a stored definition checked again before it runs.

use pgrx::datum::DatumWithOid;

use crate::catalog::db::{canonical_type, col, day_of, guarded, one, rows};
use crate::pure::dates::Day;
use crate::pure::error::{raise, WhError};
use crate::pure::names::CheckedName;
use crate::pure::rollup_def::{self, RollupDef};

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

/// The first day a template (or rollup) keeps under its retention
/// (`set_template_policy`), counted back from `today` (from the warehouse's date when
/// none is given); None without a retention.
pub fn retention_horizon(template: &CheckedName, today: Option<Day>) -> Option<Day> {
    one::<pgrx::datum::Date>(
        "SELECT (coalesce($2::date, _wh.current_date_utc()) - retention)::date FROM _wh.mv_templates \
         WHERE template_name = $1 AND retention IS NOT NULL",
        &[
            DatumWithOid::from(template.as_str()),
            DatumWithOid::from(today.map(crate::catalog::db::pg_date)),
        ],
    )
    .and_then(|d| day_of(d).ok())
}

/// The templates `name` is computed from, nearest first (empty for a fetched template).
pub fn ancestors(name: &CheckedName) -> Vec<String> {
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
pub fn check_functions(rollup: &CheckedName, def: &RollupDef) {
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
pub fn probe_columns(rollup: &CheckedName, sql: &str) -> Vec<(String, String)> {
    let cols = guarded(sql, |e| WhError::InvalidTemplate {
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
pub fn base_time(
    rollup: &CheckedName,
    base: &CheckedName,
) -> (String, crate::pure::template::TimeKind) {
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
    let cols = crate::pure::template::parse_columns(&defs)
        .unwrap_or_else(|e| bad(format!("its base {base}: {e}")));
    let ty = cols
        .iter()
        .find(|c| c.name.as_str() == tc)
        .map(|c| c.type_sql.clone())
        .unwrap_or_else(|| bad(format!("its base {base} has no time column {tc:?}")));
    let kind = canonical_type(&ty)
        .and_then(|c| crate::pure::template::TimeKind::from_canonical(&c))
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

/// How many days the registry holds for a template (or rollup).
pub fn held_days(template: &CheckedName) -> i64 {
    one::<i64>(
        "SELECT count(*) FROM _wh.slices WHERE template_name = $1",
        &[DatumWithOid::from(template.as_str())],
    )
    .unwrap_or(0)
}
