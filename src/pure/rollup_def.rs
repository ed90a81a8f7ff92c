//! Rollups: what a rollup is and the SQL that keeps it. Pure: no SPI.
//!
//! A rollup is a template derived locally from another (its base): for one tenant-day
//! of the base, `SELECT <select_list> FROM _wh_data.<base> WHERE <that tenant, that day>
//! GROUP BY <group_by>`. It can be kept one tenant-day at a time only if every group
//! lies inside one day: `group_by` must hold a bucket of the base's time column that is a
//! day or finer (the column itself, `date_trunc('hour' | 'day' | …, col)`, `col::date`),
//! and nothing may look across rows of other groups (no window functions, no subqueries).
//! The expressions may use the base's columns and built-in functions only: names are
//! never qualified (wh runs them with `search_path = pg_catalog, pg_temp`), so no code a
//! role planted in another schema runs inside a refresh.

use crate::pure::names::quote_ident;
use crate::pure::template::TimeKind;

/// `date_trunc` units that stay inside a day (the value's own day, in UTC: wh's
/// functions run with TimeZone UTC).
const DAY_OR_FINER: &[&str] = &[
    "microseconds",
    "milliseconds",
    "second",
    "minute",
    "hour",
    "day",
];
/// Units whose buckets span days.
const COARSER: &[&str] = &[
    "week",
    "month",
    "quarter",
    "year",
    "decade",
    "century",
    "millennium",
];

/// Words that make an expression reach beyond its group or its table.
const REFUSED_WORDS: &[(&str, &str)] = &[
    ("over", "window functions (OVER) reach across rows of other days; a rollup is kept one tenant-day at a time"),
    ("window", "window functions reach across rows of other days; a rollup is kept one tenant-day at a time"),
    ("select", "subqueries are not allowed: a rollup reads its base's rows of one tenant-day only"),
    ("values", "subqueries are not allowed: a rollup reads its base's rows of one tenant-day only"),
    ("table", "subqueries are not allowed: a rollup reads its base's rows of one tenant-day only"),
    ("lateral", "subqueries are not allowed: a rollup reads its base's rows of one tenant-day only"),
    ("operator", "OPERATOR(schema.op) is not allowed: use built-in operators"),
];

/// Names that are the whole row (the base's alias) or a system column: refused (a row
/// value could be cast by a cast its owner made).
const ROW_NAMES: &[&str] = &["wh_b", "ctid", "xmin", "xmax", "cmin", "cmax", "tableoid"];

/// Values that depend on who runs a refresh or when, not on the base's rows.
const CONTEXT_WORDS: &[&str] = &[
    "current_timestamp",
    "current_time",
    "current_date",
    "localtime",
    "localtimestamp",
    "current_user",
    "session_user",
    "user",
    "current_role",
    "current_schema",
    "current_catalog",
];
const CONTEXT_FUNCTIONS: &[&str] = &[
    "now",
    "current_setting",
    "statement_timestamp",
    "transaction_timestamp",
    "txid_current",
    "txid_current_if_assigned",
    "pg_current_xact_id",
    "pg_current_xact_id_if_assigned",
    "pg_backend_pid",
    "current_schemas",
    "current_database",
    "current_query",
    "inet_client_addr",
    "inet_client_port",
    "inet_server_addr",
    "inet_server_port",
    "version",
    "pg_postmaster_start_time",
    "pg_conf_load_time",
    "pg_trigger_depth",
];

/// Words that would end an expression list and start another clause.
const CLAUSE_WORDS: &[&str] = &[
    "from",
    "where",
    "group",
    "having",
    "order",
    "limit",
    "offset",
    "fetch",
    "for",
    "union",
    "intersect",
    "except",
    "into",
    "returning",
    "join",
    "on",
    "using",
];

/// SQL words that are followed by a parenthesis without being a function.
const NOT_FUNCTIONS: &[&str] = &[
    "and", "or", "not", "in", "is", "between", "like", "ilike", "similar", "then", "else", "when",
    "case", "distinct", "all", "any", "some", "filter", "within", "group", "cast", "coalesce",
    "nullif", "greatest", "least", "extract", "array", "row", "exists", "grouping", "as", "by",
    "order", "where", "end", "escape", "at", "zone", "interval", "collate", "both", "leading",
    "trailing", "for", "from", "overlaps", "asc", "desc", "nulls", "first", "last", "isnull",
    "notnull",
];

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// An unquoted word, lower-cased.
    Word(String),
    /// A double-quoted identifier, as written inside the quotes.
    Quoted(String),
    /// A string literal, with its quotes.
    Str(String),
    Num(String),
    Sym(String),
}

impl Tok {
    fn text(&self) -> String {
        match self {
            Tok::Word(w) => w.clone(),
            Tok::Quoted(q) => quote_ident(q),
            Tok::Str(s) | Tok::Num(s) | Tok::Sym(s) => s.clone(),
        }
    }
    fn ident(&self) -> Option<&str> {
        match self {
            Tok::Word(w) | Tok::Quoted(w) => Some(w),
            _ => None,
        }
    }
    fn is_sym(&self, s: &str) -> bool {
        matches!(self, Tok::Sym(x) if x == s)
    }
}

/// Split an expression list into tokens, refusing what wh will not run: comments, `;`,
/// `$` (parameters, dollar quotes), prefixed string literals (E'', U&'', B'', X'').
fn tokens(s: &str) -> Result<Vec<Tok>, String> {
    if s.contains('\\') {
        return Err(
            "'\\' is not allowed (it means different things under different settings)".into(),
        );
    }
    let b: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && next == Some('-') || c == '/' && next == Some('*') {
            return Err("comments are not allowed".into());
        } else if c == ';' {
            return Err("';' is not allowed (an expression list, not a statement)".into());
        } else if c == '$' {
            return Err("'$' (parameters, dollar quoting) is not allowed".into());
        } else if c == '\0' {
            return Err("NUL is not allowed".into());
        } else if c == '\'' {
            let start = i;
            i += 1;
            loop {
                match b.get(i) {
                    None => return Err("unterminated string literal".into()),
                    Some('\'') if b.get(i + 1) == Some(&'\'') => i += 2,
                    Some('\'') => break,
                    Some(_) => i += 1,
                }
            }
            i += 1;
            out.push(Tok::Str(b[start..i].iter().collect()));
        } else if c == '"' {
            let mut name = String::new();
            i += 1;
            loop {
                match b.get(i) {
                    None => return Err("unterminated quoted identifier".into()),
                    Some('"') if b.get(i + 1) == Some(&'"') => {
                        name.push('"');
                        i += 2
                    }
                    Some('"') => break,
                    Some(&ch) => {
                        name.push(ch);
                        i += 1
                    }
                }
            }
            i += 1;
            out.push(Tok::Quoted(name));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '_') {
                i += 1;
            }
            if b.get(i) == Some(&'\'') || b.get(i) == Some(&'&') {
                return Err(format!(
                    "prefixed literals ({}'…') are not allowed: write a plain '…' literal",
                    b[start..i].iter().collect::<String>()
                ));
            }
            if b.get(i) == Some(&'$') {
                return Err("'$' (parameters, dollar quoting) is not allowed".into());
            }
            out.push(Tok::Word(
                b[start..i].iter().collect::<String>().to_ascii_lowercase(),
            ));
        } else if c.is_ascii_digit() || c == '.' && next.is_some_and(|n| n.is_ascii_digit()) {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '.' || b[i] == '_') {
                i += 1;
            }
            out.push(Tok::Num(b[start..i].iter().collect()));
        } else if "(),[]".contains(c) {
            out.push(Tok::Sym(c.to_string()));
            i += 1;
        } else if c == ':' && next == Some(':') {
            out.push(Tok::Sym("::".into()));
            i += 2;
        } else if c == '.' {
            out.push(Tok::Sym(".".into()));
            i += 1;
        } else if c.is_ascii_punctuation() {
            let start = i;
            while i < b.len()
                && "+-*/<>=~!@#%^&|`?".contains(b[i])
                && !(b[i] == '-' && b.get(i + 1) == Some(&'-'))
                && !(b[i] == '/' && b.get(i + 1) == Some(&'*'))
            {
                i += 1;
            }
            if i == start {
                return Err(format!("unexpected character {c:?}"));
            }
            out.push(Tok::Sym(b[start..i].iter().collect()));
        } else {
            return Err(format!("unexpected character {c:?}"));
        }
    }
    Ok(out)
}

/// The tokens of each top-level comma-separated item.
fn items(toks: &[Tok], what: &str) -> Result<Vec<Vec<Tok>>, String> {
    let mut out = vec![Vec::new()];
    let mut depth = 0i32;
    for t in toks {
        if t.is_sym("(") || t.is_sym("[") {
            depth += 1;
        } else if t.is_sym(")") || t.is_sym("]") {
            depth -= 1;
            if depth < 0 {
                return Err(format!("{what}: unbalanced parentheses"));
            }
        }
        if depth == 0 && t.is_sym(",") {
            out.push(Vec::new());
        } else {
            out.last_mut().expect("one item").push(t.clone());
        }
    }
    if depth != 0 {
        return Err(format!("{what}: unbalanced parentheses"));
    }
    if out.iter().any(Vec::is_empty) {
        return Err(format!("{what}: empty item"));
    }
    Ok(out)
}

fn text(toks: &[Tok]) -> String {
    let mut s = String::new();
    for (i, t) in toks.iter().enumerate() {
        let glue = i == 0
            || t.is_sym("(") && matches!(toks[i - 1], Tok::Word(_) | Tok::Quoted(_))
            || t.is_sym(")")
            || t.is_sym(",")
            || t.is_sym("::")
            || toks[i - 1].is_sym("(")
            || toks[i - 1].is_sym("::");
        if !glue {
            s.push(' ');
        }
        s.push_str(&t.text());
    }
    s
}

/// Every check that reads tokens alone: no qualified names, nothing reaching beyond the
/// group; the names called as functions (checked against pg_catalog by the caller).
fn check_tokens(toks: &[Tok], what: &str, functions: &mut Vec<String>) -> Result<(), String> {
    let mut depth = 0i32;
    for (i, t) in toks.iter().enumerate() {
        if t.is_sym("(") || t.is_sym("[") {
            depth += 1;
        } else if t.is_sym(")") || t.is_sym("]") {
            depth -= 1;
        }
        if let Tok::Word(w) = t {
            let after = |word: &str| i > 0 && toks[i - 1] == Tok::Word(word.into());
            // IS DISTINCT FROM and WITHIN GROUP are parts of an expression.
            let in_expression =
                (w == "from" && after("distinct")) || (w == "group" && after("within"));
            if depth == 0 && CLAUSE_WORDS.contains(&w.as_str()) && !in_expression {
                return Err(format!(
                    "{what}: {} would start another clause: {what} holds expressions only (parenthesize IS DISTINCT FROM)",
                    w.to_ascii_uppercase()
                ));
            }
            if CONTEXT_WORDS.contains(&w.as_str()) {
                return Err(format!(
                    "{what}: {w} depends on who or when a refresh runs, not on the base's rows"
                ));
            }
        }
        if let Some(name) = t.ident() {
            if ROW_NAMES.contains(&name) {
                return Err(format!(
                    "{what}: {name} is the whole row or a system column: use the base's columns"
                ));
            }
        }
        if let Tok::Word(w) = t {
            if let Some((_, why)) = REFUSED_WORDS.iter().find(|(k, _)| k == w) {
                return Err(format!("{what}: {why}"));
            }
        }
        if t.ident().is_some() && toks.get(i + 1).is_some_and(|n| n.is_sym(".")) {
            return Err(format!(
                "{what}: qualified name {}.… is not allowed: use the base's columns and built-in functions, unqualified",
                t.text()
            ));
        }
        if t.is_sym("*") && (i == 0 || toks[i - 1].is_sym(",")) {
            return Err(format!("{what}: * is not allowed: name the columns"));
        }
        let called = toks.get(i + 1).is_some_and(|n| n.is_sym("("));
        let is_type = i > 0 && (toks[i - 1].is_sym("::") || toks[i - 1] == Tok::Word("as".into()));
        match t {
            Tok::Word(w) if called && CONTEXT_FUNCTIONS.contains(&w.as_str()) => {
                return Err(format!(
                    "{what}: {w}(…) depends on who or when a refresh runs, not on the base's rows"
                ))
            }
            Tok::Word(w) if called && w.contains("_to_xml") => {
                return Err(format!(
                    "{what}: {w}(…) reads other relations: a rollup reads its base's rows of one tenant-day only"
                ))
            }
            Tok::Word(w)
                if called
                    && !is_type
                    && !NOT_FUNCTIONS.contains(&w.as_str())
                    && !functions.contains(w) =>
            {
                functions.push(w.clone());
            }
            Tok::Quoted(q) if called && !is_type => {
                return Err(format!(
                    "{what}: quoted function name {} is not allowed: call built-in functions by their plain names",
                    quote_ident(q)
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// One output column of a rollup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub name: String,
    pub expr: String,
}

/// A rollup's definition, checked as far as text allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupDef {
    pub outputs: Vec<Output>,
    pub group_by: Vec<String>,
    /// The output holding the day-or-finer bucket: the rollup's time column.
    pub time_column: String,
    /// The outputs the groups are keyed by (every group_by item is an output), else empty.
    pub unique_key: Vec<String>,
    /// Names called as functions, for the caller to find in pg_catalog.
    pub functions: Vec<String>,
}

/// Is `expr` a bucket of the time column `tc` that stays inside one day? `Ok(false)` when
/// it does not mention `tc`; `Err` naming why when it does but spans days or is unknown.
fn bucket(toks: &[Tok], tc: &str) -> Result<bool, String> {
    if !toks.iter().any(|t| t.ident() == Some(tc)) {
        return Ok(false);
    }
    let is_tc = |t: &Tok| t.ident() == Some(tc);
    let word = |t: &Tok, w: &str| *t == Tok::Word(w.into());
    let sym = |t: &Tok, s: &str| t.is_sym(s);
    let mut t: Vec<Tok> = toks.to_vec();
    // Strip a final `::date` (the day of a day-or-finer bucket is one too).
    if t.len() > 2 && sym(&t[t.len() - 2], "::") && word(&t[t.len() - 1], "date") {
        t.truncate(t.len() - 2);
    }
    // Strip enclosing parentheses.
    while t.len() > 2 && sym(&t[0], "(") && sym(&t[t.len() - 1], ")") {
        t = t[1..t.len() - 1].to_vec();
    }
    let unit_of = |lit: &Tok| -> Option<String> {
        match lit {
            Tok::Str(s) => Some(s.trim_matches('\'').to_ascii_lowercase()),
            _ => None,
        }
    };
    let day_or_finer = match t.as_slice() {
        [x] if is_tc(x) => true,
        [f, o, x, c] if word(f, "date") && sym(o, "(") && is_tc(x) && sym(c, ")") => true,
        [f, o, x, a, d, c]
            if word(f, "cast")
                && sym(o, "(")
                && is_tc(x)
                && word(a, "as")
                && word(d, "date")
                && sym(c, ")") =>
        {
            true
        }
        [f, o, u, comma, x, c]
            if word(f, "date_trunc")
                && sym(o, "(")
                && sym(comma, ",")
                && is_tc(x)
                && sym(c, ")") =>
        {
            let unit = unit_of(u).unwrap_or_default();
            if COARSER.contains(&unit.as_str()) {
                return Err(format!(
                    "date_trunc('{unit}', {tc}) spans several days; a rollup is kept one tenant-day at a time: bucket by 'day' or finer (e.g. date_trunc('hour', {tc}))"
                ));
            }
            DAY_OR_FINER.contains(&unit.as_str())
        }
        _ => false,
    };
    if day_or_finer {
        Ok(true)
    } else {
        Err(format!(
            "group_by item {} uses {tc} but is not a bucket wh can keep a day at a time: use {tc}, date_trunc('hour' | 'day' | …, {tc}) or {tc}::date",
            text(toks)
        ))
    }
}

/// Check a rollup's `select_list` and `group_by` against its base's time column.
pub fn parse(
    select_list: &str,
    group_by: &str,
    base_time_column: &str,
) -> Result<RollupDef, String> {
    let st = tokens(select_list).map_err(|e| format!("select_list: {e}"))?;
    let gt = tokens(group_by).map_err(|e| format!("group_by: {e}"))?;
    if st.is_empty() {
        return Err("select_list is empty".into());
    }
    if gt.is_empty() {
        return Err(format!(
            "group_by is empty: it must hold a bucket of {base_time_column} (e.g. date_trunc('hour', {base_time_column}))"
        ));
    }
    let mut functions = Vec::new();
    check_tokens(&st, "select_list", &mut functions)?;
    check_tokens(&gt, "group_by", &mut functions)?;
    let mut outputs: Vec<(Output, Vec<Tok>)> = Vec::new();
    for item in items(&st, "select_list")? {
        let n = item.len();
        let (expr, name) = if n >= 3 && item[n - 2] == Tok::Word("as".into()) {
            let name = item[n - 1]
                .ident()
                .ok_or_else(|| format!("select_list: {} AS needs a column name", text(&item)))?;
            (item[..n - 2].to_vec(), name.to_string())
        } else if let [single] = item.as_slice() {
            let name = single
                .ident()
                .ok_or_else(|| format!("select_list: {} needs a name (… AS name)", text(&item)))?;
            (item.clone(), name.to_string())
        } else {
            return Err(format!(
                "select_list: {} needs a name (… AS name)",
                text(&item)
            ));
        };
        if outputs.iter().any(|(o, _)| o.name == name) {
            return Err(format!("select_list: column {name} is named twice"));
        }
        outputs.push((
            Output {
                name,
                expr: text(&expr),
            },
            expr,
        ));
    }
    let mut group = Vec::new();
    let mut key = Vec::new();
    let mut time_column = None;
    let mut bucket_not_selected = None;
    for item in items(&gt, "group_by")? {
        // An output's name or position stands for its expression (GROUP BY hour, GROUP BY
        // 2), and the expression is what is written in the GROUP BY: PostgreSQL would take a
        // name that is also a base column for the base's column.
        let named = match item.as_slice() {
            [Tok::Num(n)] => n
                .parse::<usize>()
                .ok()
                .and_then(|i| i.checked_sub(1))
                .and_then(|i| outputs.get(i)),
            [one] => one
                .ident()
                .and_then(|n| outputs.iter().find(|(o, _)| o.name == n)),
            _ => None,
        };
        if let ([Tok::Num(n)], None) = (item.as_slice(), named) {
            return Err(format!(
                "group_by: position {n} is not a column of select_list"
            ));
        }
        let expr_text = text(&item);
        let (toks, output) = match named {
            Some((o, e)) => (e.clone(), Some(o.name.clone())),
            None => (
                item.clone(),
                outputs
                    .iter()
                    .find(|(o, _)| o.expr == expr_text)
                    .map(|(o, _)| o.name.clone()),
            ),
        };
        let is_bucket = bucket(&toks, base_time_column)?;
        match (&output, is_bucket) {
            (Some(o), true) if time_column.is_none() => time_column = Some(o.clone()),
            (None, true) => bucket_not_selected = Some(text(&toks)),
            _ => {}
        }
        key.push(output);
        group.push(text(&toks));
    }
    let time_column = match (time_column, bucket_not_selected) {
        (Some(tc), _) => tc,
        (None, Some(b)) => {
            return Err(format!(
                "select_list must hold the bucket {b} as a column (e.g. {b} AS bucket): it becomes the rollup's time column"
            ))
        }
        (None, None) => {
            return Err(format!(
                "group_by must hold a bucket of {base_time_column} a day or finer (e.g. date_trunc('hour', {base_time_column})): without it a group would mix days, and a rollup is kept one tenant-day at a time"
            ))
        }
    };
    let unique_key = if key.iter().all(Option::is_some) {
        let mut k: Vec<String> = Vec::new();
        for name in key.into_iter().flatten() {
            if !k.contains(&name) {
                k.push(name);
            }
        }
        k
    } else {
        Vec::new()
    };
    Ok(RollupDef {
        outputs: outputs.into_iter().map(|(o, _)| o).collect(),
        group_by: group,
        time_column,
        unique_key,
        functions,
    })
}

/// The base's rows of one tenant (`$1`) and one day (`'{TARGET_DATE}'`), bounded so the
/// planner prunes to that day's partition and uses the (tenant, time) index.
fn day_filter(tc: &str, kind: TimeKind) -> String {
    let c = format!("wh_b.{}", quote_ident(tc));
    match kind {
        TimeKind::Timestamptz => format!(
            "{c} >= pg_catalog.timezone('UTC'::text, '{{TARGET_DATE}}'::date::timestamp) \
             AND {c} < pg_catalog.timezone('UTC'::text, ('{{TARGET_DATE}}'::date + 1)::timestamp)"
        ),
        TimeKind::Timestamp => format!(
            "{c} >= '{{TARGET_DATE}}'::date::timestamp AND {c} < ('{{TARGET_DATE}}'::date + 1)::timestamp"
        ),
        TimeKind::Date => format!("{c} = '{{TARGET_DATE}}'::date"),
    }
}

impl RollupDef {
    /// The probe that asks PostgreSQL for the outputs' types (no rows read).
    pub fn probe_sql(&self, base: &str) -> String {
        format!("{} LIMIT 0", self.query_over(base, "false"))
    }

    /// The rollup's query for one tenant-day, stored as its template's query: `$1` is the
    /// tenant, `'{TARGET_DATE}'` the day (rendered like any template's).
    pub fn day_query(&self, base: &str, base_tc: &str, kind: TimeKind) -> String {
        let tenant = format!("wh_b.{} = $1::text", crate::pure::sql::tenant_col());
        self.query_over(base, &format!("{tenant} AND {}", day_filter(base_tc, kind)))
    }

    fn query_over(&self, base: &str, filter: &str) -> String {
        let cols: Vec<String> = self
            .outputs
            .iter()
            .map(|o| format!("{} AS {}", o.expr, quote_ident(&o.name)))
            .collect();
        format!(
            "SELECT {} FROM {}.{} AS wh_b WHERE {filter} GROUP BY {}",
            cols.join(", "),
            quote_ident(crate::pure::names::DATA_SCHEMA),
            quote_ident(base),
            self.group_by.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TC: &str = "logged_time";

    fn ok(select: &str, group: &str) -> RollupDef {
        parse(select, group, TC).unwrap_or_else(|e| panic!("{select} / {group}: {e}"))
    }
    fn err(select: &str, group: &str) -> String {
        parse(select, group, TC).expect_err(&format!("{select} / {group} should fail"))
    }

    #[test]
    fn an_hourly_store_rollup() {
        let d = ok(
            "store, date_trunc('hour', logged_time) AS hour, count(*) AS n, sum(weight) AS weight, min(weight) AS lo",
            "store, date_trunc('hour', logged_time)",
        );
        assert_eq!(d.time_column, "hour");
        assert_eq!(d.unique_key, vec!["store", "hour"]);
        assert_eq!(d.functions, vec!["date_trunc", "count", "sum", "min"]);
        assert_eq!(d.outputs[1].expr, "date_trunc('hour', logged_time)");
        assert_eq!(
            d.day_query("foodlogstats", TC, TimeKind::Timestamptz),
            "SELECT store AS \"store\", date_trunc('hour', logged_time) AS \"hour\", count(*) AS \"n\", sum(weight) AS \"weight\", min(weight) AS \"lo\" \
             FROM \"_wh_data\".\"foodlogstats\" AS wh_b WHERE wh_b.\"schema_name\" = $1::text AND \
             wh_b.\"logged_time\" >= pg_catalog.timezone('UTC'::text, '{TARGET_DATE}'::date::timestamp) \
             AND wh_b.\"logged_time\" < pg_catalog.timezone('UTC'::text, ('{TARGET_DATE}'::date + 1)::timestamp) \
             GROUP BY store, date_trunc('hour', logged_time)"
        );
        assert_eq!(
            d.probe_sql("foodlogstats"),
            "SELECT store AS \"store\", date_trunc('hour', logged_time) AS \"hour\", count(*) AS \"n\", sum(weight) AS \"weight\", min(weight) AS \"lo\" \
             FROM \"_wh_data\".\"foodlogstats\" AS wh_b WHERE false GROUP BY store, date_trunc('hour', logged_time) LIMIT 0"
        );
    }

    #[test]
    fn buckets_by_name_by_day_and_the_column_itself() {
        assert_eq!(
            ok("logged_time::date AS day, count(*) AS n", "day").time_column,
            "day"
        );
        assert_eq!(
            ok("date(logged_time) AS d, count(*) AS n", "date(logged_time)").time_column,
            "d"
        );
        assert_eq!(
            ok("CAST(logged_time AS date) AS d, count(*) AS n", "1 + 0, d").time_column,
            "d"
        );
        assert_eq!(
            ok("logged_time, count(*) AS n", "logged_time").time_column,
            "logged_time"
        );
        let d = ok(
            "date_trunc('DAY', logged_time)::date AS day, store, sum(weight) AS w",
            "1, store, day",
        );
        assert_eq!(d.time_column, "day");
        // A position stands for its output.
        assert_eq!(d.unique_key, vec!["day", "store"]);
        // A group_by item that is no output: no unique key.
        assert!(ok("logged_time::date AS day, count(*) AS n", "day, store")
            .unique_key
            .is_empty());
        assert_eq!(
            ok(
                "date_trunc('minute', \"logged_time\") AS m, count(*) AS n",
                "m"
            )
            .time_column,
            "m"
        );
        assert_eq!(
            d.day_query("b", "logged_time", TimeKind::Date),
            "SELECT date_trunc('DAY', logged_time)::date AS \"day\", store AS \"store\", sum(weight) AS \"w\" FROM \"_wh_data\".\"b\" AS wh_b \
             WHERE wh_b.\"schema_name\" = $1::text AND wh_b.\"logged_time\" = '{TARGET_DATE}'::date \
             GROUP BY date_trunc('DAY', logged_time)::date, store, date_trunc('DAY', logged_time)::date"
        );
    }

    #[test]
    fn buckets_that_span_days_are_refused_with_the_reason() {
        let e = err("date_trunc('week', logged_time) AS w, count(*) AS n", "w");
        assert!(
            e.contains("date_trunc('week', logged_time) spans several days"),
            "{e}"
        );
        assert!(err(
            "date_trunc('month', logged_time) AS m, count(*) AS n",
            "date_trunc('month', logged_time)"
        )
        .contains("spans several days"));
        let e = err(
            "date_bin('2 days', logged_time, '2020-01-01') AS b, count(*) AS n",
            "b",
        );
        assert!(
            e.contains("is not a bucket wh can keep a day at a time"),
            "{e}"
        );
        let e = err(
            "(logged_time - interval '3 hours')::date AS d, count(*) AS n",
            "d",
        );
        assert!(e.contains("not a bucket"), "{e}");
        let e = err("store, count(*) AS n", "store");
        assert!(
            e.contains("group_by must hold a bucket of logged_time"),
            "{e}"
        );
        let e = err(
            "store, count(*) AS n",
            "store, date_trunc('hour', logged_time)",
        );
        assert!(
            e.contains("select_list must hold the bucket date_trunc('hour', logged_time)"),
            "{e}"
        );
        assert!(err("count(*) AS n", "").contains("group_by is empty"));
    }

    #[test]
    fn what_reaches_beyond_a_group_or_the_catalog_is_refused() {
        let h = "date_trunc('hour', logged_time)";
        for (select, why) in [
            ("sum(weight) OVER (ORDER BY logged_time) AS s", "OVER"),
            ("(SELECT max(id) FROM foodlogstats) AS m", "subqueries"),
            ("evil.f(weight) AS w", "qualified name evil"),
            ("pg_catalog.sum(weight) AS w", "qualified name pg_catalog"),
            ("\"Sum\"(weight) AS w", "quoted function name"),
            (
                "table_to_xml('_wh.mv_templates', true, false, '') AS w",
                "reads other relations",
            ),
            ("length(wh_b) AS w", "whole row"),
            ("max(\"xmin\"::text) AS w", "system column"),
            ("max(now()) AS w", "now(…) depends on who or when"),
            ("max(current_user) AS w", "current_user depends"),
            (
                "sum(weight) FROM pg_class AS w",
                "FROM would start another clause",
            ),
            ("max('a\\b') AS w", "'\\' is not allowed"),
            ("sum(weight) AS w; DROP TABLE x", "';'"),
            ("sum(weight) AS w -- c", "comments"),
            ("sum(weight) /* c */ AS w", "comments"),
            ("sum($1) AS w", "'$'"),
            ("$$x$$ AS w", "'$'"),
            ("E'x' AS w", "prefixed literals"),
            ("weight OPERATOR(pg_catalog.+) 1 AS w", "OPERATOR"),
            ("*", "* is not allowed"),
            ("sum(weight) + 1", "needs a name"),
            ("'x' AS w, 'y' AS w", "named twice"),
            ("sum((weight) AS w", "unbalanced"),
            ("'abc AS w", "unterminated"),
        ] {
            let e = err(&format!("{h} AS hour, {select}"), "hour");
            assert!(e.contains(why), "{select}: {e}");
        }
    }

    #[test]
    fn group_by_clauses_are_refused_and_names_are_written_as_expressions() {
        let h = "date_trunc('hour', logged_time) AS hour, count(*) AS n";
        for (group, why) in [
            (
                "hour HAVING count(*) > 1",
                "HAVING would start another clause",
            ),
            ("hour ORDER BY 1", "ORDER would start another clause"),
            ("hour OFFSET 1", "OFFSET would start another clause"),
            ("hour UNION SELECT 1", "UNION would start another clause"),
            ("3", "position 3 is not a column"),
        ] {
            let e = err(h, group);
            assert!(e.contains(why), "{group}: {e}");
        }
        // An output named like a base column: the GROUP BY groups by its expression.
        let d = ok(
            "date_trunc('hour', logged_time) AS logged_time, lower(store) AS store, count(*) AS n",
            "logged_time, 2",
        );
        assert_eq!(d.time_column, "logged_time");
        assert_eq!(d.unique_key, vec!["logged_time", "store"]);
        assert_eq!(
            d.group_by,
            vec!["date_trunc('hour', logged_time)", "lower(store)"]
        );
        // WITHIN GROUP, and IS DISTINCT FROM inside an expression, are not clauses.
        ok(
            "date_trunc('hour', logged_time) AS hour, percentile_cont(0.5) WITHIN GROUP (ORDER BY weight) AS p, \
             count(*) FILTER (WHERE store IS DISTINCT FROM 'x') AS m",
            "hour",
        );
        ok(
            "date_trunc('hour', logged_time) AS hour, count(*) FILTER (WHERE store IS DISTINCT FROM 'x') AS n",
            "hour",
        );
    }

    #[test]
    fn casts_and_keywords_are_not_taken_for_functions() {
        let d = ok(
            "date_trunc('hour', logged_time) AS hour, CAST(sum(weight) AS numeric(12,3)) AS w, \
             coalesce(max(store), 'none')::varchar(20) AS s, count(*) FILTER (WHERE weight > 0) AS pos, \
             extract(hour FROM min(logged_time)) AS h0",
            "hour",
        );
        assert_eq!(
            d.functions,
            vec!["date_trunc", "sum", "max", "count", "min"]
        );
        assert_eq!(
            d.outputs[2].expr,
            "coalesce(max(store), 'none')::varchar(20)"
        );
    }
}
