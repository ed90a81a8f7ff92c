//! The seeds' calls (the hand-written system wh replaces): their argument orders mapped to
//! wh's, for the compatible forms and for the HINTs of calls typed the old way. Pure.

/// The seeds name a template's refresh function `update_<template>`
/// (`update_mv_window(…, function_name => 'update_foodlogstats')`): the template.
pub fn template_of_function(function_name: &str) -> Option<&str> {
    let t = function_name.trim().strip_prefix("update_")?;
    let ok = !t.is_empty()
        && t.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && t.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    ok.then_some(t)
}

fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// wh's window call, as text for a HINT.
pub fn window_call(template: &str, tenant: &str, start: &str, end: &str, force: bool) -> String {
    let force = if force {
        ", force_recreate => true"
    } else {
        ""
    };
    format!(
        "SELECT _wh.update_mv_window({}, {}, {}, {}{force})",
        lit(template),
        lit(tenant),
        lit(start),
        lit(end)
    )
}

/// The HINT for a template name that is a tenant's: the seeds put the tenant first.
pub fn tenant_first_hint(tenant: &str, templates: &[String]) -> String {
    let example = templates
        .first()
        .map(String::as_str)
        .unwrap_or("<template>");
    format!(
        "{tenant} is a tenant: wh's calls take the template first, then the tenant (the seeds' functions took the tenant and schema first), \
         e.g. SELECT _wh.update_mv_window({}, {}, start_date, end_date); templates: {}",
        lit(example),
        lit(tenant),
        if templates.is_empty() { "none yet (_wh.set_template)".to_string() } else { templates.join(", ") }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names_give_templates() {
        assert_eq!(
            template_of_function("update_foodlogstats"),
            Some("foodlogstats")
        );
        assert_eq!(template_of_function(" update_x1 "), Some("x1"));
        for bad in [
            "foodlogstats",
            "update_",
            "update_Food",
            "update_a;drop",
            "create_foodlogstats_mv",
        ] {
            assert_eq!(template_of_function(bad), None, "{bad}");
        }
    }

    #[test]
    fn hints_name_the_exact_call() {
        assert_eq!(
            window_call("foodlogstats", "tenant_a", "2025-01-01", "2025-01-31", true),
            "SELECT _wh.update_mv_window('foodlogstats', 'tenant_a', '2025-01-01', '2025-01-31', force_recreate => true)"
        );
        let h = tenant_first_hint("tenant_a", &["foodlogstats".into(), "sales".into()]);
        assert!(
            h.contains("_wh.update_mv_window('foodlogstats', 'tenant_a', start_date, end_date)"),
            "{h}"
        );
        assert!(h.ends_with("templates: foodlogstats, sales"), "{h}");
        assert!(tenant_first_hint("o'x", &[]).contains("'o''x'"));
    }
}

/// A seeds' template made into wh's `set_template` arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adopted {
    pub query: String,
    pub time_column: String,
    pub unique_key: Option<String>,
    pub indexes: Vec<String>,
    /// What was changed or dropped on the way, for the adoption report.
    pub notes: Vec<String>,
}

/// The day filters the seeds wrote, as (regex, time column group): `(col AT TIME ZONE
/// 'UTC')::DATE = '{TARGET_DATE}'::DATE`, `col::date = '{TARGET_DATE}'`, `DATE(col) =
/// '{TARGET_DATE}'`. Each becomes a range on the column, which a source's index serves.
fn day_filters() -> Vec<regex::Regex> {
    let lit = r"'\{TARGET_DATE\}'(?:\s*::\s*date)?";
    let col = r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)";
    [
        format!(r"(?i)\(\s*{col}\s+AT\s+TIME\s+ZONE\s+'UTC'\s*\)\s*::\s*date\s*=\s*{lit}"),
        format!(r"(?i)\(?\s*{col}\s*\)?\s*::\s*date\s*=\s*{lit}"),
        format!(r"(?i)\bdate\s*\(\s*{col}\s*\)\s*=\s*{lit}"),
    ]
    .iter()
    .map(|p| regex::Regex::new(p).expect("day filter pattern"))
    .collect()
}

/// A query whose day filter (one of the seeds' forms) was made a range on its column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangedQuery {
    pub query: String,
    /// The filtered column, without its table alias, lower-cased.
    pub column: String,
    pub filter: String,
    pub range: String,
}

impl RangedQuery {
    pub fn note(&self) -> String {
        format!(
            "day filter {:?} rewritten as {:?} (the same day, and an index on the source serves it)",
            self.filter, self.range
        )
    }
}

/// `query` with its first day filter of the seeds' forms rewritten as a range on the same
/// column (`col >= '{TARGET_DATE}'::date AND col < '{TARGET_DATE}'::date + 1`: the same
/// UTC day, as wh's source sessions run with TimeZone UTC), or None when it has none.
pub fn range_day_filter(query: &str) -> Option<RangedQuery> {
    day_filters().iter().find_map(|re| {
        let m = re.captures(query)?;
        let col = m[1].to_string();
        let range =
            format!("{col} >= '{{TARGET_DATE}}'::date AND {col} < '{{TARGET_DATE}}'::date + 1");
        Some(RangedQuery {
            query: query.replacen(&m[0], &range, 1),
            column: col.rsplit('.').next().unwrap_or(&col).to_lowercase(),
            filter: m[0].to_string(),
            range,
        })
    })
}

/// The column types of a column definition list (`name type, …`), lower-cased.
fn column_types(defs: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let (mut depth, mut cur) = (0, String::new());
    for ch in defs.chars().chain(std::iter::once(',')) {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if ch == ',' && depth == 0 {
            let item = cur.trim().to_string();
            if let Some((n, ty)) = item.split_once(char::is_whitespace) {
                out.push((n.trim_matches('"').to_lowercase(), ty.trim().to_lowercase()));
            }
            cur.clear();
        } else {
            cur.push(ch);
        }
    }
    out
}

fn is_time_type(ty: &str) -> bool {
    ty.starts_with("timestamp") || ty == "date"
}

/// One seeds' index statement (`CREATE [UNIQUE] INDEX name ON {schema}.{view_name} (cols)`)
/// as wh's index spec (`unique (id)`, `(logged_time)`), or None when it is not that shape.
pub fn index_spec(stmt: &str) -> Option<(bool, String)> {
    let re = regex::Regex::new(r"(?is)^\s*create\s+(unique\s+)?index\s+.*?\bon\s+\S+\s*(?:using\s+btree\s*)?\(([^()]*)\)\s*;?\s*$").ok()?;
    let m = re.captures(stmt)?;
    let cols: Vec<String> = m[2]
        .split(',')
        .map(|c| c.trim().trim_matches('"').to_lowercase())
        .collect();
    if cols.iter().any(|c| {
        c.is_empty()
            || !c
                .chars()
                .all(|x| x.is_ascii_lowercase() || x.is_ascii_digit() || x == '_')
    }) {
        return None;
    }
    Some((m.get(1).is_some(), format!("({})", cols.join(", "))))
}

/// A seeds' template as wh's: its day filter made a range on the time column (when it is
/// one of the seeds' forms), the time column found, its unique index as the unique key and
/// its other indexes as wh's specs. Err says why wh cannot take it.
pub fn adopt_template(
    query: &str,
    column_definitions: &str,
    indexes: &[String],
) -> Result<Adopted, String> {
    if !query.contains(crate::pure::template::PLACEHOLDER) {
        return Err("its query has no '{TARGET_DATE}': wh fetches one day at a time".into());
    }
    let types = column_types(column_definitions);
    let mut notes = Vec::new();
    let mut q = query.to_string();
    let mut time_column = None;
    if let Some(r) = range_day_filter(query) {
        notes.push(r.note());
        q = r.query;
        time_column = Some(r.column);
    }
    let time_column = match time_column {
        Some(c) => c,
        None => {
            let times: Vec<&String> = types
                .iter()
                .filter(|(_, ty)| is_time_type(ty))
                .map(|(n, _)| n)
                .collect();
            match times.as_slice() {
                [one] => {
                    notes.push(format!("time column {one}: the only timestamp or date column"));
                    (*one).clone()
                }
                _ => return Err("no day filter of the seeds' forms and not exactly one timestamp/date column: wh cannot tell its time column".into()),
            }
        }
    };
    match types.iter().find(|(n, _)| *n == time_column) {
        Some((_, ty)) if is_time_type(ty) => {}
        Some((_, ty)) => return Err(format!("its day filter is on {time_column}, of type {ty}: the time column must be timestamptz, timestamp or date")),
        None => return Err(format!("its day filter is on {time_column}, which is not one of its columns")),
    }
    let mut unique_key = None;
    let mut specs = Vec::new();
    for ix in indexes {
        match index_spec(ix) {
            Some((true, cols)) if unique_key.is_none() => {
                unique_key = Some(cols.trim_matches(|c| c == '(' || c == ')').to_string())
            }
            Some((unique, cols)) => specs.push(if unique {
                format!("unique {cols}")
            } else {
                cols
            }),
            None => notes.push(format!("index {ix:?} left out: not a plain column index")),
        }
    }
    if let Some(k) = &unique_key {
        specs.insert(0, format!("unique ({k})"));
    }
    Ok(Adopted {
        query: q,
        time_column,
        unique_key,
        indexes: specs,
        notes,
    })
}

#[cfg(test)]
mod adopt_tests {
    use super::*;

    const DEFS: &str = "id INTEGER, store TEXT, weight NUMERIC, logged_time TIMESTAMP, flags TEXT";

    #[test]
    fn the_seeds_day_filter_becomes_a_range() {
        let q = "SELECT pf.id, pl.name AS store, pf.weight, pf.logged_time, pf.flags FROM phood_foodlogsum pf \
                 JOIN l pl ON true WHERE (pf.logged_time AT TIME ZONE 'UTC')::DATE = '{TARGET_DATE}'::DATE";
        let ix = vec![
            "CREATE UNIQUE INDEX idx_{schema}_{view_name}_id ON {schema}.{view_name} (id);".to_string(),
            "CREATE INDEX idx_{schema}_{view_name}_logged_time ON {schema}.{view_name} (logged_time)".to_string(),
            "CREATE INDEX idx_x ON {schema}.{view_name} USING gin (flags gin_trgm_ops)".to_string(),
        ];
        let a = adopt_template(q, DEFS, &ix).unwrap();
        assert!(a.query.ends_with("WHERE pf.logged_time >= '{TARGET_DATE}'::date AND pf.logged_time < '{TARGET_DATE}'::date + 1"), "{}", a.query);
        assert_eq!(a.time_column, "logged_time");
        assert_eq!(a.unique_key.as_deref(), Some("id"));
        assert_eq!(a.indexes, ["unique (id)", "(logged_time)"]);
        assert!(a.notes.iter().any(|n| n.contains("left out")));
    }

    #[test]
    fn other_forms_and_refusals() {
        let a = adopt_template(
            "SELECT * FROM t WHERE logged_time::date = '{TARGET_DATE}'",
            DEFS,
            &[],
        )
        .unwrap();
        assert!(a.query.contains(
            "logged_time >= '{TARGET_DATE}'::date AND logged_time < '{TARGET_DATE}'::date + 1"
        ));
        let a = adopt_template(
            "SELECT * FROM t WHERE DATE(logged_time) = '{TARGET_DATE}'::date",
            DEFS,
            &[],
        )
        .unwrap();
        assert_eq!(a.time_column, "logged_time");
        // No filter of the seeds' forms, one time column: kept as written.
        let a = adopt_template(
            "SELECT * FROM t WHERE day_of(logged_time) = '{TARGET_DATE}'",
            DEFS,
            &[],
        )
        .unwrap();
        assert_eq!(
            (a.time_column.as_str(), a.query.contains("day_of(")),
            ("logged_time", true)
        );
        assert!(adopt_template("SELECT * FROM t", DEFS, &[])
            .unwrap_err()
            .contains("TARGET_DATE"));
        assert!(adopt_template(
            "SELECT * FROM t WHERE store::date = '{TARGET_DATE}'",
            DEFS,
            &[]
        )
        .unwrap_err()
        .contains("type text"));
        assert!(adopt_template(
            "SELECT * FROM t WHERE f(x) = '{TARGET_DATE}'",
            "a timestamptz, b date",
            &[]
        )
        .unwrap_err()
        .contains("time column"));
    }
}
