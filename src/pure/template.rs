//! Templates: validation and rendering. Pure: no SPI.
//!
//! A template is the SQL wh sends to a tenant for one day. The day is written as the
//! quoted literal `'{TARGET_DATE}'` and only ever replaced by a validated ISO date; the
//! query is always sent wrapped as a subquery, so it can only be a single SELECT.

use crate::pure::dates::Day;
use crate::pure::error::{WhError, WhResult};
use crate::pure::names::CheckedName;

pub const PLACEHOLDER: &str = "{TARGET_DATE}";
const QUOTED_PLACEHOLDER: &str = "'{TARGET_DATE}'";
pub const MAX_LOOKBACK_DAYS: i32 = 31;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: CheckedName,
    /// The type as written (validated: a restricted alphabet here, `to_regtype` in the database).
    pub type_sql: String,
}

/// What the time column holds; decides how day bounds are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeKind {
    Timestamptz,
    Timestamp,
    Date,
}

impl TimeKind {
    /// From `format_type(to_regtype(..))`.
    pub fn from_canonical(t: &str) -> Option<TimeKind> {
        match t {
            "timestamp with time zone" => Some(TimeKind::Timestamptz),
            "timestamp without time zone" => Some(TimeKind::Timestamp),
            "date" => Some(TimeKind::Date),
            _ => None,
        }
    }

    /// The literal for midnight UTC starting `day`, typed for the column.
    pub fn bound(self, day: Day) -> String {
        match self {
            TimeKind::Timestamptz => format!("'{} 00:00:00+00'::timestamptz", day.iso()),
            TimeKind::Timestamp => format!("'{} 00:00:00'::timestamp", day.iso()),
            TimeKind::Date => format!("'{}'::date", day.iso()),
        }
    }

    /// The UTC calendar day of a value of the column `col`, as a date, whatever the
    /// session's TimeZone.
    pub fn day_of(self, col: &str) -> String {
        match self {
            TimeKind::Timestamptz => format!("(pg_catalog.timezone('UTC'::text, {col}))::date"),
            TimeKind::Timestamp => format!("({col})::date"),
            TimeKind::Date => col.to_string(),
        }
    }

    /// The untyped literal for a partition bound.
    pub fn partition_bound(self, day: Day) -> String {
        match self {
            TimeKind::Timestamptz => format!("'{} 00:00:00+00'", day.iso()),
            TimeKind::Timestamp => format!("'{} 00:00:00'", day.iso()),
            TimeKind::Date => format!("'{}'", day.iso()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    pub unique: bool,
    pub columns: Vec<CheckedName>,
}

impl IndexSpec {
    /// The spec as stored: `unique (id)` or `(store, logged_time)`.
    pub fn canonical(&self) -> String {
        let cols: Vec<&str> = self.columns.iter().map(|c| c.as_str()).collect();
        format!(
            "{}({})",
            if self.unique { "unique " } else { "" },
            cols.join(", ")
        )
    }
    pub fn column_list_sql(&self) -> String {
        self.columns
            .iter()
            .map(|c| c.quoted())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// How a folded year is stored (`set_template_policy(fold_storage => ...)`): heap, as every
/// other partition, or columnar (`citus_columnar`: compressed, read by column, append-only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessMethod {
    #[default]
    Heap,
    Columnar,
}

impl AccessMethod {
    pub fn parse(s: &str) -> WhResult<AccessMethod> {
        match s {
            "heap" => Ok(AccessMethod::Heap),
            "columnar" => Ok(AccessMethod::Columnar),
            other => Err(WhError::invalid(
                "storage",
                format!("{other:?} is not 'heap' or 'columnar'"),
            )),
        }
    }

    /// The table access method's name (`pg_am.amname`, `CREATE TABLE ... USING`).
    pub fn as_str(self) -> &'static str {
        match self {
            AccessMethod::Heap => "heap",
            AccessMethod::Columnar => "columnar",
        }
    }

    /// Can rows be deleted or updated in place? (columnar in Citus 13.2 only appends.)
    pub fn allows_delete(self) -> bool {
        self == AccessMethod::Heap
    }
}

/// A template's caps on what one tenant's source may send (`_wh.set_template_limits`),
/// and how much of a stored day a refresh may take away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_rows_per_day: i64,
    pub max_bytes_per_day: i64,
    pub max_row_bytes: i64,
    /// The share (percent) of a stored day's rows a refresh may remove; 100 lets it empty
    /// a day. More than that is refused unless the caller allows it: the warehouse is
    /// where history outlives a source that purged it.
    pub max_shrink_percent: i64,
}

impl Limits {
    /// Would replacing `stored` rows by `fetched` take away more than the template allows?
    pub fn shrink_refused(&self, stored: i64, fetched: i64) -> bool {
        stored > 0
            && fetched < stored
            && (stored - fetched) * 100 > self.max_shrink_percent * stored
    }
}

impl Default for Limits {
    /// 10 million rows and 256 MiB per tenant-day, 8 MiB per row: far above the documented
    /// workloads (100,000 rows of ~100 bytes a day), far below what harms the warehouse.
    fn default() -> Self {
        Limits {
            max_rows_per_day: 10_000_000,
            max_bytes_per_day: 256 << 20,
            max_row_bytes: 8 << 20,
            max_shrink_percent: 50,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub name: CheckedName,
    pub description: Option<String>,
    pub query: String,
    pub columns: Vec<Column>,
    pub time_column: CheckedName,
    pub unique_key: Vec<CheckedName>,
    pub indexes: Vec<IndexSpec>,
    pub lookback_days: i32,
    /// How many leading columns a row's checksum hashes as one record: all (None), or the
    /// columns the template had when a column was first appended to it. Each appended
    /// column adds its own hash when it is not NULL, so a day fetched before a column was
    /// added keeps the checksum it was registered with.
    pub hashed: Option<usize>,
}

/// The raw arguments of `set_template` / a row of `_wh.mv_templates`.
#[derive(Debug, Clone, Default)]
pub struct TemplateInput<'a> {
    pub name: Option<&'a str>,
    pub query: Option<&'a str>,
    pub column_definitions: Option<&'a str>,
    pub time_column: Option<&'a str>,
    pub unique_key: Option<&'a str>,
    pub indexes: Vec<String>,
    pub description: Option<&'a str>,
    pub lookback_days: i32,
}

impl Template {
    /// Validate everything that can be checked without a database. Types are checked
    /// again with `to_regtype` by the caller.
    pub fn parse(input: &TemplateInput) -> WhResult<Template> {
        let name = CheckedName::template(input.name)?;
        let bad = |reason: String| WhError::InvalidTemplate {
            template: name.to_string(),
            reason,
        };
        let query = input.query.ok_or(WhError::NullArgument {
            what: "query_template",
        })?;
        check_query(query).map_err(bad)?;
        let defs = input.column_definitions.ok_or(WhError::NullArgument {
            what: "column_definitions",
        })?;
        let columns = parse_columns(defs).map_err(bad)?;
        let find = |c: &str, what: &str| -> Result<CheckedName, String> {
            let c = c.trim();
            columns
                .iter()
                .find(|col| col.name.as_str() == c)
                .map(|col| col.name.clone())
                .ok_or_else(|| format!("{what} {c:?} is not one of the columns"))
        };
        let tc = input.time_column.ok_or(WhError::NullArgument {
            what: "time_column",
        })?;
        let time_column = find(tc, "time_column").map_err(bad)?;
        let unique_key = match input.unique_key {
            None => vec![],
            Some(k) if k.trim().is_empty() => vec![],
            Some(k) => k
                .split(',')
                .map(|c| find(c, "unique_key column"))
                .collect::<Result<_, _>>()
                .map_err(bad)?,
        };
        let mut indexes = Vec::new();
        for spec in &input.indexes {
            let parsed = parse_index(spec).map_err(bad)?;
            for c in &parsed.columns {
                find(c.as_str(), "index column").map_err(bad)?;
            }
            if indexes.contains(&parsed) {
                return Err(bad(format!("index {spec:?} is listed twice")));
            }
            indexes.push(parsed);
        }
        if indexes.len() > 9 {
            return Err(bad("at most 9 indexes".into()));
        }
        if !(0..=MAX_LOOKBACK_DAYS).contains(&input.lookback_days) {
            return Err(bad(format!("lookback_days must be 0..{MAX_LOOKBACK_DAYS}")));
        }
        Ok(Template {
            name,
            description: input.description.map(str::to_string),
            query: query.to_string(),
            columns,
            time_column,
            unique_key,
            indexes,
            lookback_days: input.lookback_days,
            hashed: None,
        })
    }

    /// One row's hash as SQL, each column written by `col`: the record of the hashed
    /// columns (all, for a template never evolved: the form every release computed), plus,
    /// for each appended column among the first `known`, its own hash when not NULL (an
    /// appended column past `known` counts as NULL: a day fetched before it existed).
    pub fn row_hash_sql(&self, col: impl Fn(&Column) -> String, known: usize) -> String {
        let n = self
            .hashed
            .unwrap_or(self.columns.len())
            .min(self.columns.len());
        let head: Vec<String> = self.columns[..n].iter().map(&col).collect();
        let record = format!(
            "pg_catalog.hash_record_extended(ROW({}), 0::int8)",
            head.join(", ")
        );
        if n == self.columns.len() {
            return record;
        }
        let mut parts = vec![format!("{record}::numeric")];
        for (i, c) in self
            .columns
            .iter()
            .enumerate()
            .skip(n)
            .take(known.saturating_sub(n))
        {
            let v = col(c);
            parts.push(format!(
                "(CASE WHEN {v} IS NULL THEN 0 ELSE pg_catalog.hash_record_extended(ROW({v}), {}::int8) END)::numeric",
                i + 1
            ));
        }
        format!("({})", parts.join(" OPERATOR(pg_catalog.+) "))
    }

    /// The query with the day filled in: every `'{TARGET_DATE}'` becomes `'YYYY-MM-DD'`.
    pub fn render(&self, day: Day) -> String {
        self.query
            .replace(QUOTED_PLACEHOLDER, &format!("'{}'", day.iso()))
    }

    /// The days' rows, as one query: each day's rendered query wrapped as a subquery
    /// (newlines keep a trailing line comment from swallowing the closing parenthesis),
    /// tagged with its day in a first column `wh_day`, the days joined by UNION ALL. The
    /// warehouse splits the rows by `wh_day` and checks each row's time against it.
    pub fn days_sql(&self, days: &[Day]) -> String {
        days.iter()
            .map(|d| {
                format!(
                    "SELECT '{}'::date AS wh_day, wh_q.* FROM (\n{}\n) AS wh_q",
                    d.iso(),
                    self.render(*d)
                )
            })
            .collect::<Vec<_>>()
            .join("\nUNION ALL\n")
    }

    /// The rows sent to the tenant's `COPY … TO STDOUT`: `days_sql`, the day first and
    /// then the template's columns by name, in its order, as the staging table holds them.
    /// The template's caps are counted here as the rows arrive (`caps::CapCounter`); the
    /// source runs nothing but the query.
    pub fn copy_select(&self, days: &[Day]) -> String {
        let cols = self
            .columns
            .iter()
            .map(|c| format!("wh_g.{}", c.name.quoted()))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "SELECT wh_g.wh_day, {cols} FROM (\n{}\n) AS wh_g",
            self.days_sql(days)
        )
    }

    /// The template's columns a source's query does not return (`missing`: every build
    /// fails), and the columns it returns that the template does not declare (`extra`:
    /// never stored), given the names the query returns.
    pub fn column_differences(&self, returned: &[String]) -> (Vec<String>, Vec<String>) {
        let missing = self
            .columns
            .iter()
            .map(|c| c.name.as_str().to_string())
            .filter(|n| !returned.contains(n))
            .collect();
        let extra = returned
            .iter()
            .filter(|r| !self.columns.iter().any(|c| c.name.as_str() == r.as_str()))
            .cloned()
            .collect();
        (missing, extra)
    }

    /// `"id" bigint, "store" text, ...` for CREATE TABLE (the staging table's too).
    pub fn column_defs_sql(&self) -> String {
        self.columns
            .iter()
            .map(|c| format!("{} {}", c.name.quoted(), c.type_sql))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn column_names_sql(&self) -> String {
        self.columns
            .iter()
            .map(|c| c.name.quoted())
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn time_column_type(&self) -> &str {
        &self
            .columns
            .iter()
            .find(|c| c.name == self.time_column)
            .expect("validated")
            .type_sql
    }

    pub fn column_definitions_text(&self) -> String {
        self.columns
            .iter()
            .map(|c| format!("{} {}", c.name, c.type_sql))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn unique_key_text(&self) -> Option<String> {
        if self.unique_key.is_empty() {
            None
        } else {
            Some(
                self.unique_key
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        }
    }
}

/// The template with another query (a tenant's override), validated like any template's.
impl Template {
    /// The template with `column` named `new_name` everywhere it is named (columns, unique
    /// key, indexes) and `query` (which must return the new name), validated as a new one.
    pub fn renamed(
        &self,
        column: &CheckedName,
        new_name: &CheckedName,
        query: &str,
    ) -> WhResult<Template> {
        fn name<'a>(
            c: &'a CheckedName,
            column: &CheckedName,
            new_name: &'a CheckedName,
        ) -> &'a str {
            if c == column {
                new_name.as_str()
            } else {
                c.as_str()
            }
        }
        let name = |c| name(c, column, new_name);
        let defs: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("{} {}", name(&c.name), c.type_sql))
            .collect();
        let key: Vec<&str> = self.unique_key.iter().map(&name).collect();
        let indexes: Vec<String> = self
            .indexes
            .iter()
            .map(|i| {
                let cols: Vec<&str> = i.columns.iter().map(&name).collect();
                format!(
                    "{}({})",
                    if i.unique { "unique " } else { "" },
                    cols.join(", ")
                )
            })
            .collect();
        let mut t = Template::parse(&TemplateInput {
            name: Some(self.name.as_str()),
            query: Some(query),
            column_definitions: Some(&defs.join(", ")),
            time_column: Some(self.time_column.as_str()),
            unique_key: (!key.is_empty()).then(|| key.join(", ")).as_deref(),
            indexes,
            description: self.description.as_deref(),
            lookback_days: self.lookback_days,
        })?;
        t.hashed = self.hashed;
        Ok(t)
    }

    pub fn with_query(&self, query: &str) -> Result<Template, String> {
        check_query(query)?;
        Ok(Template {
            query: query.to_string(),
            ..self.clone()
        })
    }
}

fn check_query(q: &str) -> Result<(), String> {
    let trimmed = q.trim_start();
    let head: String = trimmed
        .chars()
        .take(6)
        .collect::<String>()
        .to_ascii_lowercase();
    if !(head.starts_with("select") || head.starts_with("with")) {
        return Err("query_template must start with SELECT or WITH".into());
    }
    let head_word: String = trimmed
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    if !head_word.eq_ignore_ascii_case("select") && !head_word.eq_ignore_ascii_case("with") {
        return Err("query_template must start with SELECT or WITH".into());
    }
    if q.contains(';') {
        return Err(
            "query_template must not contain ';' (one statement, sent as a subquery)".into(),
        );
    }
    if q.contains('\0') {
        return Err("query_template must not contain NUL".into());
    }
    if !q.contains(PLACEHOLDER) {
        return Err(format!(
            "query_template must contain the placeholder {QUOTED_PLACEHOLDER}"
        ));
    }
    // Every placeholder must be the quoted literal: unquoted, 2025-09-24 is arithmetic.
    let mut rest = q;
    let mut offset = 0;
    while let Some(i) = rest.find(PLACEHOLDER) {
        let at = offset + i;
        let before = q[..at].chars().last();
        let after = q[at + PLACEHOLDER.len()..].chars().next();
        if before != Some('\'') || after != Some('\'') {
            return Err(format!(
                "placeholder at byte {at} must be written as the quoted literal {QUOTED_PLACEHOLDER} \
                 (e.g. logged_time >= '{{TARGET_DATE}}'::date); unquoted, a date is arithmetic"
            ));
        }
        offset = at + PLACEHOLDER.len();
        rest = &q[offset..];
    }
    Ok(())
}

/// Split on commas that are not inside parentheses or brackets.
fn split_top_level(s: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut depth: i32 = 0;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => {
                depth -= 1;
                if depth < 0 {
                    return Err("unbalanced parentheses in column_definitions".into());
                }
            }
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced parentheses in column_definitions".into());
    }
    parts.push(&s[start..]);
    Ok(parts)
}

/// `id bigint, store text, weight numeric(12,3)` into (name, type) pairs.
pub fn parse_columns(defs: &str) -> Result<Vec<Column>, String> {
    let mut cols: Vec<Column> = Vec::new();
    for part in split_top_level(defs)? {
        let part = part.trim();
        if part.is_empty() {
            return Err("empty entry in column_definitions".into());
        }
        let (name, ty) = part
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("column definition {part:?} needs a name and a type"))?;
        let name = CheckedName::column(name).map_err(|e| e.to_string())?;
        let ty = ty.trim();
        let allowed = |c: char| c.is_ascii_alphanumeric() || " _(),[].".contains(c);
        if ty.is_empty() || !ty.chars().all(allowed) {
            return Err(format!(
                "column {name}: type {ty:?} is not a plain type name"
            ));
        }
        // A type, nothing more: no constraint, default or collation rides along into the
        // table's DDL (a definition written straight into _wh.mv_templates is parsed here too).
        const CLAUSES: &[&str] = &[
            "default",
            "check",
            "collate",
            "constraint",
            "references",
            "not",
            "null",
            "generated",
            "primary",
            "unique",
            "as",
            "stored",
            "identity",
        ];
        if let Some(k) = ty
            .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',')
            .find(|w| CLAUSES.contains(&w.to_ascii_lowercase().as_str()))
        {
            return Err(format!("column {name}: type {ty:?} carries a {} clause; column_definitions holds names and types only", k.to_ascii_uppercase()));
        }
        if cols.iter().any(|c| c.name == name) {
            return Err(format!("column {name} is defined twice"));
        }
        cols.push(Column {
            name,
            type_sql: ty.to_string(),
        });
    }
    if cols.len() > 1000 {
        return Err("too many columns".into());
    }
    Ok(cols)
}

/// `unique (id)`, `(store, logged_time)`, `logged_time`.
pub fn parse_index(spec: &str) -> Result<IndexSpec, String> {
    let s = spec.trim();
    let lower = s.to_ascii_lowercase();
    let (unique, rest) = match lower.strip_prefix("unique") {
        Some(r) if r.starts_with([' ', '(']) => (true, s[6..].trim()),
        _ => (false, s),
    };
    let inner = match rest.strip_prefix('(') {
        Some(r) => r
            .strip_suffix(')')
            .ok_or_else(|| format!("index {spec:?}: unbalanced parentheses"))?,
        None => rest,
    };
    let columns = inner
        .split(',')
        .map(|c| {
            CheckedName::column(c.trim())
                .map_err(|_| format!("index {spec:?}: {:?} is not a column name", c.trim()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(IndexSpec { unique, columns })
}

/// What `set_template` may change in place on a template that holds days: columns
/// appended at the end, and column types widened where PostgreSQL changes only the catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evolution {
    pub added: Vec<Column>,
    /// (column, its new type)
    pub widened: Vec<(CheckedName, String)>,
}

impl Evolution {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.widened.is_empty()
    }
}

/// A type as written, in one spelling (lower case, single spaces, PostgreSQL's names for
/// the usual aliases), for comparing two templates' column types.
fn spelled(ty: &str) -> String {
    let t = ty
        .trim()
        .to_ascii_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let (base, args) = match t.find('(') {
        Some(i) => (t[..i].trim().to_string(), t[i..].replace(' ', "")),
        None => (t.clone(), String::new()),
    };
    let base = match base.as_str() {
        "int" | "int4" => "integer",
        "int8" => "bigint",
        "int2" => "smallint",
        "varchar" => "character varying",
        "decimal" => "numeric",
        "bool" => "boolean",
        "float8" => "double precision",
        "float4" => "real",
        "timestamptz" => "timestamp with time zone",
        "timestamp" => "timestamp without time zone",
        other => other,
    };
    format!("{base}{args}")
}

/// The numbers in a type's parentheses (`numeric(12,3)` → [12, 3]).
fn type_args(spelled: &str) -> (String, Vec<u32>) {
    match spelled.find('(') {
        Some(i) => (
            spelled[..i].to_string(),
            spelled[i + 1..]
                .trim_end_matches(')')
                .split(',')
                .filter_map(|n| n.trim().parse().ok())
                .collect(),
        ),
        None => (spelled.to_string(), Vec::new()),
    }
}

/// Can a column of type `old` become `new` without PostgreSQL rewriting the table?
/// varchar(n) → varchar(m ≥ n) or text or unbounded varchar; numeric(p,s) → numeric(q ≥ p, s)
/// or unbounded numeric. (int → bigint and the like rewrite every row: refused.)
pub fn widens(old: &str, new: &str) -> bool {
    let (o, n) = (type_args(&spelled(old)), type_args(&spelled(new)));
    match (o.0.as_str(), n.0.as_str()) {
        ("character varying", "text") => true,
        ("character varying", "character varying") => {
            n.1.is_empty() || (o.1.len() == 1 && n.1.len() == 1 && n.1[0] >= o.1[0])
        }
        ("numeric", "numeric") => {
            n.1.is_empty()
                || (o.1.len() == 2 && n.1.len() == 2 && n.1[0] >= o.1[0] && n.1[1] == o.1[1])
        }
        _ => false,
    }
}

/// How `old` columns become `new` in place, or why they cannot: every old column keeps
/// its place and name (a rename is `rename_template_column`), its type the same or
/// widened; new columns only at the end.
pub fn evolution(old: &[Column], new: &[Column]) -> Result<Evolution, String> {
    let mut e = Evolution::default();
    for (i, o) in old.iter().enumerate() {
        let Some(n) = new.get(i) else {
            return Err(format!(
                "column {} would be removed: a template's columns can only be added at the end (its days hold it)",
                o.name
            ));
        };
        if n.name != o.name {
            return Err(format!(
                "column {} (number {}) would become {}: columns keep their place; add new ones at the end, rename with _wh.rename_template_column",
                o.name,
                i + 1,
                n.name
            ));
        }
        if spelled(&n.type_sql) != spelled(&o.type_sql) {
            if !widens(&o.type_sql, &n.type_sql) {
                return Err(format!(
                    "column {} cannot change from {} to {} in place: only widening PostgreSQL does without rewriting the table (varchar(n) to varchar(m >= n) or text, numeric(p,s) to numeric(q >= p,s) or numeric)",
                    o.name, o.type_sql, n.type_sql
                ));
            }
            e.widened.push((n.name.clone(), n.type_sql.clone()));
        }
    }
    e.added = new[old.len().min(new.len())..].to_vec();
    Ok(e)
}

/// A failed build's message with what it means for the template, when wh can tell:
/// a column the source's query does not return (it must be aliased), or a value that
/// does not fit the type the template declares (the columns of that type named).
/// `columns` are (name, type as PostgreSQL names it, without typmod).
pub fn explain_failure(message: &str, columns: &[(String, String)]) -> Option<String> {
    let missing =
        regex::Regex::new(r#"column wh_[a-z]+\."?([A-Za-z0-9_]+)"? does not exist"#).ok()?;
    if let Some(m) = missing.captures(message) {
        return Some(format!(
            "the template's query returns no column named {0}: alias it in the query's select list (… AS {0})",
            &m[1]
        ));
    }
    let typed = regex::Regex::new(
        r"(?:invalid input syntax for type|out of range for type|value too long for type|for type) ([a-z][a-z ]*[a-z])",
    )
    .ok()?;
    let ty = match typed.captures(message) {
        Some(m) => m[1].to_string(),
        None if message.contains("numeric field overflow") => "numeric".to_string(),
        None => return None,
    };
    let named: Vec<&str> = columns
        .iter()
        .filter(|(_, t)| *t == ty)
        .map(|(n, _)| n.as_str())
        .collect();
    if named.is_empty() {
        return None;
    }
    Some(format!(
        "the source sent a value that is not a valid {ty} for the template's column {}: declare the column's real type, or cast it in the query",
        named.join(" or ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn year_storage_names_its_access_method() {
        for (name, storage) in [
            ("heap", AccessMethod::Heap),
            ("columnar", AccessMethod::Columnar),
        ] {
            assert_eq!(AccessMethod::parse(name).unwrap(), storage);
            assert_eq!(storage.as_str(), name);
        }
        assert!(AccessMethod::Heap.allows_delete());
        assert!(!AccessMethod::Columnar.allows_delete());
        assert_eq!(AccessMethod::default(), AccessMethod::Heap);
        let e = AccessMethod::parse("parquet").unwrap_err();
        assert!(e.to_string().contains("storage"), "{e}");
    }

    const Q: &str =
        "SELECT id, logged_time, weight FROM f WHERE logged_time >= '{TARGET_DATE}'::date \
                     AND logged_time < '{TARGET_DATE}'::date + 1";

    fn input(q: &'static str) -> TemplateInput<'static> {
        TemplateInput {
            name: Some("foodlogstats"),
            query: Some(q),
            column_definitions: Some("id bigint, logged_time timestamptz, weight numeric(12,3)"),
            time_column: Some("logged_time"),
            unique_key: Some("id"),
            indexes: vec![
                "unique (id)".into(),
                "(logged_time)".into(),
                "weight".into(),
            ],
            description: None,
            lookback_days: 1,
        }
    }

    #[test]
    fn a_good_template() {
        let t = Template::parse(&input(Q)).unwrap();
        assert_eq!(t.columns.len(), 3);
        assert_eq!(t.columns[2].type_sql, "numeric(12,3)");
        assert_eq!(t.indexes[0].canonical(), "unique (id)");
        assert_eq!(t.indexes[2].canonical(), "(weight)");
        let d = Day::parse("2025-09-24").unwrap();
        assert!(t.render(d).contains(
            "logged_time >= '2025-09-24'::date AND logged_time < '2025-09-24'::date + 1"
        ));
        let one = t.days_sql(&[d]);
        assert!(
            one.starts_with("SELECT '2025-09-24'::date AS wh_day, wh_q.* FROM (\n"),
            "{one}"
        );
        assert!(one.ends_with("\n) AS wh_q"));
        let copy = crate::pure::sql::copy_out(
            &t.copy_select(&[d, d.succ()]),
            crate::pure::caps::CopyFormat::Text,
        );
        assert!(
            copy.starts_with(
                "COPY (SELECT wh_g.wh_day, wh_g.\"id\", wh_g.\"logged_time\", wh_g.\"weight\" FROM (\n"
            ) && copy.ends_with("\n) AS wh_g) TO STDOUT"),
            "{copy}"
        );
        assert!(copy.contains(&t.days_sql(&[d, d.succ()])), "{copy}");
        assert!(
            !copy.contains("OVER") && !copy.contains("ORDER BY"),
            "the source runs the query alone: {copy}"
        );
        let two = t.days_sql(&[d, d.succ()]);
        assert_eq!(two.matches("UNION ALL").count(), 1);
        assert!(two.contains("'2025-09-25'::date AS wh_day"));
        assert_eq!(
            t.column_defs_sql(),
            "\"id\" bigint, \"logged_time\" timestamptz, \"weight\" numeric(12,3)"
        );
    }

    #[test]
    fn a_tenants_query_is_checked_like_a_templates() {
        let t = Template::parse(&input(Q)).unwrap();
        let o = t.with_query("SELECT id, logged_time, NULL::numeric AS weight FROM x WHERE logged_time >= '{TARGET_DATE}'::date").unwrap();
        assert!(
            o.render(Day::parse("2025-01-02").unwrap())
                .contains("'2025-01-02'::date")
                && o.columns == t.columns
        );
        assert!(t.with_query("SELECT 1; DROP TABLE x").is_err());
        assert!(t.with_query("SELECT 1 WHERE d = {TARGET_DATE}").is_err());
    }

    #[test]
    fn a_sources_columns_against_the_templates() {
        let t = Template::parse(&input(Q)).unwrap();
        let returned: Vec<String> = ["id", "logged_time", "name", "note"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (missing, extra) = t.column_differences(&returned);
        assert_eq!(missing, ["weight"]);
        assert_eq!(extra, ["name", "note"]);
    }

    #[test]
    fn a_refresh_may_not_empty_or_halve_a_day() {
        let l = Limits::default();
        assert!(l.shrink_refused(3590, 0));
        assert!(l.shrink_refused(100, 49));
        assert!(!l.shrink_refused(100, 50));
        assert!(!l.shrink_refused(100, 120));
        assert!(!l.shrink_refused(0, 0));
        let anything = Limits {
            max_shrink_percent: 100,
            ..l
        };
        assert!(!anything.shrink_refused(3590, 0));
        let nothing = Limits {
            max_shrink_percent: 0,
            ..l
        };
        assert!(nothing.shrink_refused(100, 99));
    }

    #[test]
    fn templates_evolve_only_where_no_day_is_lost() {
        let cols = |d: &str| parse_columns(d).unwrap();
        let old = cols("id bigint, store varchar(20), weight numeric(12,3), t timestamptz");
        let e = evolution(
            &old,
            &cols("id int8, store varchar(40), weight numeric(14,3), t timestamptz, note text"),
        )
        .unwrap();
        assert_eq!(e.added.len(), 1);
        assert_eq!(e.added[0].name.as_str(), "note");
        assert_eq!(e.widened.len(), 2);
        assert!(evolution(&old, &old).unwrap().is_empty());
        assert!(evolution(
            &old,
            &cols("id bigint, store text, weight numeric, t timestamptz")
        )
        .is_ok());
        for (new, says) in [
            (
                "id bigint, store varchar(20), t timestamptz",
                "weight (number 3) would become t",
            ),
            (
                "id bigint, store varchar(20), weight numeric(12,3)",
                "would be removed",
            ),
            (
                "id bigint, shop varchar(20), weight numeric(12,3), t timestamptz",
                "rename_template_column",
            ),
            (
                "id bigint, store varchar(10), weight numeric(12,3), t timestamptz",
                "cannot change",
            ),
            (
                "id bigint, store varchar(20), weight numeric(12,4), t timestamptz",
                "cannot change",
            ),
            (
                "id text, store varchar(20), weight numeric(12,3), t timestamptz",
                "cannot change",
            ),
        ] {
            let e = evolution(&old, &cols(new)).unwrap_err();
            assert!(e.contains(says), "{new}: {e}");
        }
        assert!(!widens("integer", "bigint"));
        assert!(widens("varchar(3)", "character varying"));
    }

    #[test]
    fn appended_columns_leave_old_checksums_alone() {
        let mut t = Template::parse(&input(Q)).unwrap();
        let all = t.row_hash_sql(|c| c.name.as_str().to_string(), 3);
        assert_eq!(
            all,
            "pg_catalog.hash_record_extended(ROW(id, logged_time, weight), 0::int8)"
        );
        t.hashed = Some(2);
        let known2 = t.row_hash_sql(|c| c.name.as_str().to_string(), 2);
        assert_eq!(
            known2,
            "(pg_catalog.hash_record_extended(ROW(id, logged_time), 0::int8)::numeric)"
        );
        let known3 = t.row_hash_sql(|c| c.name.as_str().to_string(), 3);
        assert!(known3.contains("CASE WHEN weight IS NULL THEN 0 ELSE pg_catalog.hash_record_extended(ROW(weight), 3::int8) END"), "{known3}");
    }

    #[test]
    fn failures_name_the_column() {
        let cols: Vec<(String, String)> = [
            ("id", "bigint"),
            ("qty", "integer"),
            ("store", "text"),
            ("code", "character varying"),
            ("weight", "numeric"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let e = |m: &str| explain_failure(m, &cols).unwrap_or_default();
        assert!(e("wh: tenant a: column wh_u.store does not exist")
            .contains("alias it in the query's select list (… AS store)"));
        assert!(e("column wh_g.\"store\" does not exist").contains("AS store"));
        assert!(e("wh: tenant a: the source answered, but the warehouse could not store its rows: invalid input syntax for type integer: \"abc\"")
            .contains("valid integer for the template's column qty"));
        assert!(e("value too long for type character varying(3)").contains("column code"));
        assert!(e("numeric field overflow").contains("column weight"));
        assert!(e("value \"99999999999\" is out of range for type integer").contains("qty"));
        assert_eq!(explain_failure("connection refused", &cols), None);
        assert_eq!(
            explain_failure("invalid input syntax for type uuid: \"x\"", &cols),
            None
        );
    }

    #[test]
    fn column_types_carry_no_clauses() {
        assert!(parse_columns(
            "id bigint, t timestamp with time zone, v character varying(10), a double precision[]"
        )
        .is_ok());
        for bad in [
            "id bigint DEFAULT 1",
            "id bigint CHECK (public.pwn())",
            "id int NOT NULL",
            "n text COLLATE C",
            "x int GENERATED ALWAYS AS (1) STORED",
        ] {
            let e = parse_columns(bad).unwrap_err();
            assert!(e.contains("clause"), "{bad}: {e}");
        }
    }

    #[test]
    fn bad_templates_are_refused_with_reasons() {
        let cases: &[(&str, &str)] = &[
            ("SELECT 1 WHERE d = {TARGET_DATE}", "quoted literal"),
            (
                "SELECT 1 WHERE d = '{TARGET_DATE}' AND e = {TARGET_DATE}",
                "quoted literal",
            ),
            ("SELECT 1 WHERE d = '{TARGET_DATE}'; DROP TABLE x", "';'"),
            ("SELECT 1", "placeholder"),
            ("DELETE FROM f WHERE d = '{TARGET_DATE}'", "SELECT or WITH"),
            ("  selectx 1 WHERE d = '{TARGET_DATE}'", "SELECT or WITH"),
            ("", "SELECT or WITH"),
        ];
        for (q, why) in cases {
            let e = Template::parse(&TemplateInput {
                query: Some(q),
                ..input(Q)
            })
            .unwrap_err();
            assert!(e.to_string().contains(why), "{q}: {e}");
            assert!(e.to_string().contains("foodlogstats"), "{e}");
        }
        let with = "WITH x AS (SELECT 1) SELECT * FROM x WHERE '{TARGET_DATE}' IS NOT NULL";
        assert!(Template::parse(&TemplateInput {
            query: Some(with),
            ..input(Q)
        })
        .is_ok());
    }

    #[test]
    fn columns_and_keys_must_agree() {
        let e = Template::parse(&TemplateInput {
            time_column: Some("created"),
            ..input(Q)
        })
        .unwrap_err();
        assert!(e.to_string().contains("time_column \"created\""), "{e}");
        let e = Template::parse(&TemplateInput {
            unique_key: Some("nope"),
            ..input(Q)
        })
        .unwrap_err();
        assert!(e.to_string().contains("unique_key"), "{e}");
        let e = Template::parse(&TemplateInput {
            indexes: vec!["(nope)".into()],
            ..input(Q)
        })
        .unwrap_err();
        assert!(e.to_string().contains("index column"), "{e}");
        for defs in [
            "id bigint, id int",
            "id",
            "Id bigint",
            "id bigint; drop",
            "id int) x(",
            "id bigint,",
            "x 'text'",
        ] {
            let e = Template::parse(&TemplateInput {
                column_definitions: Some(defs),
                ..input(Q)
            });
            assert!(e.is_err(), "{defs}");
        }
        let e = Template::parse(&TemplateInput {
            lookback_days: 40,
            ..input(Q)
        })
        .unwrap_err();
        assert!(e.to_string().contains("lookback_days"));
    }

    #[test]
    fn index_specs() {
        assert_eq!(
            parse_index("UNIQUE(id)").unwrap().canonical(),
            "unique (id)"
        );
        assert_eq!(
            parse_index("(store, logged_time)").unwrap().columns.len(),
            2
        );
        assert_eq!(
            parse_index("uniqueness").unwrap().canonical(),
            "(uniqueness)"
        );
        assert!(parse_index("(a").is_err());
        assert!(parse_index("a; drop").is_err());
    }

    #[test]
    fn time_bounds() {
        let d = Day::parse("2025-09-24").unwrap();
        assert_eq!(
            TimeKind::Timestamptz.partition_bound(d),
            "'2025-09-24 00:00:00+00'"
        );
        assert_eq!(TimeKind::Date.bound(d), "'2025-09-24'::date");
        assert_eq!(
            TimeKind::from_canonical("timestamp with time zone"),
            Some(TimeKind::Timestamptz)
        );
        assert_eq!(TimeKind::from_canonical("text"), None);
    }
}
