//! Identifier validation and naming. Pure: no SPI.
//!
//! A tenant or template name is checked once, at the boundary, into a `CheckedName`
//! that carries its quoted form; everything downstream trusts it.

use crate::pure::dates::Day;
use crate::pure::error::{WhError, WhResult};

/// PostgreSQL's NAMEDATALEN - 1.
pub const MAX_IDENTIFIER: usize = 63;
/// Tenant names become schema names and `wh_<tenant>` foreign-server names.
pub const MAX_TENANT: usize = MAX_IDENTIFIER - 3;
/// Template names get `_YYYY_MM_DD` (11), a build suffix `_new` (4), `wh_stage_` (9) and
/// index suffixes such as `_tenant_time` (12).
pub const MAX_TEMPLATE: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NameKind {
    Tenant,
    Template,
    Column,
}

impl NameKind {
    fn what(self) -> &'static str {
        match self {
            NameKind::Tenant => "tenant_name",
            NameKind::Template => "template_name",
            NameKind::Column => "column name",
        }
    }
    fn max(self) -> usize {
        match self {
            NameKind::Tenant => MAX_TENANT,
            NameKind::Template => MAX_TEMPLATE,
            NameKind::Column => MAX_IDENTIFIER,
        }
    }
}

/// A validated lower-case identifier (`^[a-z_][a-z0-9_]*$`, length-checked) that needs
/// no quoting but is quoted anyway wherever it reaches SQL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CheckedName {
    raw: String,
    kind: NameKind,
}

/// Names PostgreSQL reserves or wh uses itself (and every `pg_*`, `_wh_*`: the seeds'
/// schemas set aside by an adoption among them); a tenant may not take them as its schema.
const RESERVED_SCHEMAS: &[&str] = &["public", "_wh", "_wh_data", "cron", "information_schema"];
/// Tenant names that would collide with a template's own pg_cron jobs.
const RESERVED_TENANTS: &[&str] = &["all", "fold", "verify"];

impl CheckedName {
    pub fn new(kind: NameKind, value: Option<&str>) -> WhResult<Self> {
        let what = kind.what();
        let v = value.ok_or(WhError::NullArgument { what })?;
        let bad = |reason: &str| WhError::InvalidName {
            what,
            value: v.to_string(),
            reason: reason.to_string(),
        };
        if v.is_empty() {
            return Err(bad("must not be empty"));
        }
        if v.len() > kind.max() {
            return Err(bad(&format!(
                "is {} bytes, the limit is {}",
                v.len(),
                kind.max()
            )));
        }
        let mut chars = v.chars();
        let first = chars.next().unwrap();
        if !(first.is_ascii_lowercase() || first == '_') {
            return Err(bad(
                "must start with a lower-case letter or underscore (^[a-z_][a-z0-9_]*$)",
            ));
        }
        if !v
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(bad(
                "may hold only lower-case letters, digits and underscores (^[a-z_][a-z0-9_]*$)",
            ));
        }
        if kind == NameKind::Tenant
            && (RESERVED_SCHEMAS.contains(&v) || v.starts_with("pg_") || v.starts_with("_wh_"))
        {
            return Err(bad(
                "is reserved (PostgreSQL's and wh's schemas: pg_*, _wh, _wh_*, public, cron, information_schema)",
            ));
        }
        if kind == NameKind::Tenant && RESERVED_TENANTS.contains(&v) {
            return Err(bad(
                "is reserved: wh:<template>:all, :fold and :verify are a template's own jobs",
            ));
        }
        Ok(CheckedName {
            raw: v.to_string(),
            kind,
        })
    }

    pub fn tenant(value: Option<&str>) -> WhResult<Self> {
        Self::new(NameKind::Tenant, value)
    }
    pub fn template(value: Option<&str>) -> WhResult<Self> {
        Self::new(NameKind::Template, value)
    }
    pub fn column(value: &str) -> WhResult<Self> {
        Self::new(NameKind::Column, Some(value))
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }
    /// The name as a quoted SQL identifier.
    pub fn quoted(&self) -> String {
        quote_ident(&self.raw)
    }
}

impl std::fmt::Display for CheckedName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.raw)
    }
}

/// Always-quote identifier quoting (PostgreSQL rules: double the embedded quotes).
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// SQL string literal quoting (standard_conforming_strings: double the quotes; an
/// E'' literal when a backslash is present).
pub fn quote_literal(s: &str) -> String {
    if s.contains('\\') {
        format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

/// `_wh_scope.reads_every_tenant()`: whether the current role reads every tenant (a member
/// of wh_reader or wh_admin, or a superuser). IMMUTABLE on purpose, so the planner folds it
/// to a constant: the branch of a tenant view a role may not take is removed before any
/// estimate is made (sql/bootstrap.sql says why that is safe).
pub const READS_EVERY_TENANT: &str = "\"_wh_scope\".\"reads_every_tenant\"()";

/// The schema of the all-tenant readers' views `public.<template>`.
pub const READER_SCHEMA: &str = "public";

/// If `name` has the shape of a partition of another template (`<t>_YYYY`, `<t>_YYYY_MM`,
/// `<t>_YYYY_new`, …), that template's name: the tables and partitions share `_wh_data`.
pub fn partition_owner(name: &str) -> Option<&str> {
    let base = name.strip_suffix("_new").unwrap_or(name);
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let (head, last) = base.rsplit_once('_')?;
    if digits(last, 4) {
        return Some(head);
    }
    let (head2, year) = head.rsplit_once('_')?;
    (digits(year, 4) && digits(last, 2)).then_some(head2)
}

/// The schema that holds every partition: wh_admin owns it, readers have no rights on it
/// (reads through `public.<template>` need none), so a BI tool browsing `public` sees one
/// relation per template.
pub const DATA_SCHEMA: &str = "_wh_data";

/// Which tenants each tenant-scoped reader role reads (by role oid): what the tables'
/// policy `"wh:scoped"` looks up, a role seeing only its own rows (sql/bootstrap.sql). Kept
/// from `_wh.tenant_readers` with DML only, so granting or revoking takes no lock readers hold.
pub const SCOPE_TABLE: &str = "\"_wh_scope\".\"readers\"";

/// The names of one template's storage: the table `public.<template>`, its partitions
/// `_wh_data.<template>_YYYY_MM` / `_wh_data.<template>_YYYY`, its indexes, row-level
/// security policies and the session's staging table.
#[derive(Debug, Clone)]
pub struct TableNames {
    pub template: CheckedName,
    /// A hash of the template's columns: the staging table's name changes with them, so a
    /// session never stages into a table of an older shape.
    shape: u32,
}

/// FNV-1a, 32 bits: a stable, dependency-free hash for derived names.
pub fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    })
}

impl TableNames {
    pub fn new(template: &CheckedName) -> Self {
        TableNames {
            template: template.clone(),
            shape: 0,
        }
    }
    /// Names for a template whose columns are `columns` (as `column_definitions_text`).
    pub fn with_columns(template: &CheckedName, columns: &str) -> Self {
        TableNames {
            template: template.clone(),
            shape: fnv1a(columns),
        }
    }
    /// `"_wh_data"."<template>"`: the warehouse table every tenant's rows live in (wh
    /// writes it; tenant views and scoped readers read it under row-level security).
    pub fn table(&self) -> String {
        self.data(self.template.as_str())
    }
    /// `"public"."<template>"`: the all-tenant readers' view of the table. It runs with its
    /// owner's rights, so no row-level security is in play and the planner reads the
    /// table's statistics as it would a flat table's.
    pub fn reader_view(&self) -> String {
        format!("{}.{}", quote_ident(READER_SCHEMA), self.template.quoted())
    }
    /// `"_wh_data"."<template>:all"`: the table's rows with its owner's rights, for readers of
    /// every tenant only (`READS_EVERY_TENANT` is false, at planning, for anyone else): the
    /// tenant views read it, so all-tenant readers plan them as a flat table too. The `:`
    /// keeps it apart from any template's table or partitions.
    pub fn all_rows_view(&self) -> String {
        self.data(&format!("{}:all", self.template))
    }
    /// `"public"."<template>"` as 0.7.0 and earlier kept the table itself.
    pub fn legacy_table(&self) -> String {
        self.reader_view()
    }
    /// `<template>_YYYY_MM`, a month partition (unqualified).
    pub fn month(&self, first: Day) -> String {
        let (y, m, _) = first.ymd();
        format!("{}_{y:04}_{m:02}", self.template)
    }
    /// `<template>_YYYY`, a year partition (unqualified).
    pub fn year(&self, year: i32) -> String {
        format!("{}_{year:04}", self.template)
    }
    /// `<relation>_new`: a partition built aside before it is swapped in.
    pub fn aside(&self, relation: &str) -> String {
        format!("{relation}_new")
    }
    /// `"_wh_data"."<relation>"`
    pub fn data(&self, relation: &str) -> String {
        format!("{}.{}", quote_ident(DATA_SCHEMA), quote_ident(relation))
    }
    /// `pg_temp."wh_stage_<template>"`: this session's staging table.
    pub fn stage(&self) -> String {
        format!("pg_temp.{}", quote_ident(&self.stage_relname()))
    }
    pub fn stage_relname(&self) -> String {
        format!("wh_stage_{}_{:08x}", self.template, self.shape)
    }
    /// wh's own index on `(schema_name, <time column>)`.
    pub fn tenant_time_index(&self) -> String {
        format!("{}_tenant_time", self.template)
    }
    /// The n-th (1-based) index the template declares.
    pub fn index(&self, n: usize) -> String {
        format!("{}_ix{n}", self.template)
    }
    /// The policy that lets wh_reader and wh_admin members read every row.
    pub fn policy_all(&self) -> String {
        quote_ident("wh:all")
    }
    /// The policy that lets each tenant-scoped reader read its tenants' rows, as listed
    /// in `SCOPE_TABLE`.
    pub fn policy_scoped(&self) -> String {
        quote_ident("wh:scoped")
    }
}

/// Names of one tenant's relation of a template: the view `<tenant>.<template>`.
#[derive(Debug, Clone)]
pub struct SliceNames {
    /// The tenant (its schema holds the tenant view).
    pub tenant: CheckedName,
    pub template: CheckedName,
}

impl SliceNames {
    pub fn new(tenant: &CheckedName, template: &CheckedName) -> Self {
        SliceNames {
            tenant: tenant.clone(),
            template: template.clone(),
        }
    }
    /// `<template>_YYYY_MM_DD`: the registry's name of one tenant-day (not a table).
    pub fn day(&self, day: Day) -> String {
        format!("{}_{}", self.template, day.suffix())
    }
    /// `"<tenant>"."<relation>"`
    pub fn qualified(&self, relation: &str) -> String {
        format!("{}.{}", self.tenant.quoted(), quote_ident(relation))
    }
    /// The tenant's view of the template.
    pub fn view(&self) -> String {
        self.qualified(self.template.as_str())
    }
    pub fn table(&self) -> TableNames {
        TableNames::new(&self.template)
    }
}

/// The dblink_fdw foreign server that holds a tenant's connection.
pub fn server_name(tenant: &CheckedName) -> String {
    format!("wh_{}", tenant)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> WhResult<CheckedName> {
        CheckedName::tenant(Some(s))
    }

    #[test]
    fn accepts_plain_names() {
        for ok in ["tenant_a", "_x", "a1", "t_2025"] {
            assert_eq!(t(ok).unwrap().as_str(), ok);
        }
        assert_eq!(t("tenant_a").unwrap().quoted(), "\"tenant_a\"");
    }

    #[test]
    fn rejects_hostile_names() {
        let long = "a".repeat(61);
        for bad in [
            "",
            "A",
            "Tenant",
            "a b",
            "a;drop",
            "a\"b",
            "a'b",
            "1abc",
            "tënant",
            "a-b",
            "public",
            "pg_x",
            "_wh",
            "all",
            "fold",
            long.as_str(),
        ] {
            let e = t(bad).unwrap_err();
            assert!(matches!(e, WhError::InvalidName { .. }), "{bad}: {e}");
            assert!(e.to_string().contains("tenant_name"), "{e}");
        }
        assert!(matches!(
            CheckedName::tenant(None),
            Err(WhError::NullArgument {
                what: "tenant_name"
            })
        ));
    }

    #[test]
    fn partition_shaped_names_name_their_template() {
        assert_eq!(partition_owner("sales_2026"), Some("sales"));
        assert_eq!(partition_owner("sales_2026_01"), Some("sales"));
        assert_eq!(partition_owner("sales_2026_01_new"), Some("sales"));
        assert_eq!(partition_owner("sales_2026_new"), Some("sales"));
        assert_eq!(partition_owner("a_b_2026"), Some("a_b"));
        for none in [
            "sales",
            "sales_26",
            "sales_2026_1",
            "sales_new",
            "s_20261",
            "2026",
        ] {
            assert_eq!(partition_owner(none), None, "{none}");
        }
    }

    #[test]
    fn template_length_leaves_room_for_slice_suffixes() {
        let max = "t".repeat(MAX_TEMPLATE);
        let name = CheckedName::template(Some(&max)).unwrap();
        let names = SliceNames::new(&t("x").unwrap(), &name);
        let day = Day::parse("2025-09-24").unwrap();
        assert!(names.day(day).len() <= MAX_IDENTIFIER);
        let tn = names.table();
        assert!(tn.aside(&tn.month(day)).len() <= MAX_IDENTIFIER);
        assert!(
            tn.tenant_time_index().len() <= MAX_IDENTIFIER
                && tn.stage_relname().len() <= MAX_IDENTIFIER
        );
        assert!(format!("wh:{}", "t".repeat(MAX_TENANT)).len() <= MAX_IDENTIFIER);
        assert!(CheckedName::template(Some(&"t".repeat(MAX_TEMPLATE + 1))).is_err());
        assert!(CheckedName::tenant(Some(&"t".repeat(MAX_TENANT))).is_ok());
        assert_eq!(
            server_name(&t(&"t".repeat(MAX_TENANT)).unwrap()).len(),
            MAX_IDENTIFIER
        );
    }

    #[test]
    fn slice_names() {
        let names = SliceNames::new(
            &t("tenant_a").unwrap(),
            &CheckedName::template(Some("foodlogstats")).unwrap(),
        );
        assert_eq!(
            names.day(Day::parse("2025-09-24").unwrap()),
            "foodlogstats_2025_09_24"
        );
        assert_eq!(names.view(), "\"tenant_a\".\"foodlogstats\"");
        let tn = names.table();
        assert_eq!(tn.table(), "\"_wh_data\".\"foodlogstats\"");
        assert_eq!(tn.reader_view(), "\"public\".\"foodlogstats\"");
        assert_eq!(tn.all_rows_view(), "\"_wh_data\".\"foodlogstats:all\"");
        assert_eq!(
            tn.month(Day::parse("2025-09-01").unwrap()),
            "foodlogstats_2025_09"
        );
        assert_eq!(
            tn.data(&tn.year(2024)),
            "\"_wh_data\".\"foodlogstats_2024\""
        );
        assert_eq!(tn.stage(), "pg_temp.\"wh_stage_foodlogstats_00000000\"");
        let a = TableNames::with_columns(&tn.template, "id bigint, t date");
        let b = TableNames::with_columns(&tn.template, "id bigint, t timestamptz");
        assert_ne!(a.stage(), b.stage());
        assert_eq!(fnv1a("a"), 0xe40c_292c);
        assert_eq!(tn.policy_scoped(), "\"wh:scoped\"");
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b'"), "E'a\\\\b'''");
    }
}
