//! SQL text builders. Pure: no SPI. Every identifier arrives as a `CheckedName` or a
//! name derived from one and is quoted here; every value that is not a validated day
//! bound travels as a `$n` parameter. Operators and casts are written with exact types
//! and catalog functions are schema-qualified.
//!
//! Storage v2: `public.<template>` is one table for every tenant, RANGE-partitioned on
//! the time column, with a `schema_name` column naming the tenant. A tenant-day is
//! refreshed by DML: stage it in a temporary table, check it, then DELETE + INSERT.

use crate::pure::dates::Day;
use crate::pure::names::{
    quote_ident, quote_literal, CheckedName, SliceNames, TableNames, READS_EVERY_TENANT,
    SCOPE_TABLE,
};
use crate::pure::template::{AccessMethod, IndexSpec, Template, TimeKind};

pub const ADMIN_ROLE: &str = "wh_admin";
pub const READER_ROLE: &str = "wh_reader";
/// The column that names a row's tenant.
pub const TENANT_COLUMN: &str = "schema_name";

pub fn tenant_col() -> String {
    quote_ident(TENANT_COLUMN)
}

// ---------------------------------------------------------------- the table

/// `public.<template>`: the template's columns plus `schema_name`, partitioned by RANGE
/// on the time column.
pub fn create_table(tn: &TableNames, t: &Template) -> String {
    format!(
        "CREATE TABLE {} ({}, {} text NOT NULL) PARTITION BY RANGE ({})",
        tn.table(),
        t.column_defs_sql(),
        tenant_col(),
        t.time_column.quoted()
    )
}

/// The key columns of an index on the shared table. A template's unique index is unique
/// per tenant and, because PostgreSQL's unique indexes on a partitioned table must hold
/// the partition key, per time value: `(schema_name, <columns>, <time column>)`.
pub fn index_columns(t: &Template, ix: &IndexSpec) -> String {
    if !ix.unique {
        return ix.column_list_sql();
    }
    let mut cols = vec![tenant_col()];
    cols.extend(ix.columns.iter().map(|c| c.quoted()));
    if !ix.columns.contains(&t.time_column) {
        cols.push(t.time_column.quoted());
    }
    cols.join(", ")
}

/// wh's `(schema_name, time)` index, then the template's own indexes, on the parent
/// (each partition gets its own copy).
pub fn table_indexes(tn: &TableNames, t: &Template) -> Vec<String> {
    let mut out = vec![format!(
        "CREATE INDEX {} ON {} ({}, {})",
        quote_ident(&tn.tenant_time_index()),
        tn.table(),
        tenant_col(),
        t.time_column.quoted()
    )];
    out.extend(t.indexes.iter().enumerate().map(|(i, ix)| {
        format!(
            "CREATE {}INDEX {} ON {} ({})",
            if ix.unique { "UNIQUE " } else { "" },
            quote_ident(&tn.index(i + 1)),
            tn.table(),
            index_columns(t, ix)
        )
    }));
    out
}

/// One index as it exists on a relation: unique or not, and everything after `USING` in
/// `pg_get_indexdef` (method, columns with their collations, operator classes and
/// ordering, INCLUDE, NULLS NOT DISTINCT, storage parameters, predicate), to be built
/// again with the same shape on another relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexShape {
    pub unique: bool,
    pub using: String,
}

/// The indexes that exist on the template's table (or on the partition being moved) built
/// on a table aside (a folded year, a month loaded in bulk): ATTACH PARTITION adopts them
/// instead of building its own. Taken from the catalog, not from the template's text, which may differ (a DBA's
/// own index). The tablespace comes from `default_tablespace` (see `fold.rs`).
pub fn aside_indexes(tn: &TableNames, relation: &str, shapes: &[IndexShape]) -> Vec<String> {
    shapes
        .iter()
        .map(|ix| {
            format!(
                "CREATE {}INDEX ON {} USING {}",
                if ix.unique { "UNIQUE " } else { "" },
                tn.data(relation),
                ix.using
            )
        })
        .collect()
}

/// The shapes of the indexes of relation $1 (see `IndexShape`): `pg_get_indexdef` without
/// its `CREATE [UNIQUE] INDEX <name> ON [ONLY] <relation> USING ` head, which the query
/// rebuilds and checks (NULL `using` when it does not match, never a guess).
pub fn index_shapes_query() -> String {
    "SELECT i.indisunique AS uniq, \
            CASE WHEN pg_catalog.starts_with(d.def, d.head) THEN pg_catalog.substr(d.def, pg_catalog.length(d.head) + 1) END AS using \
     FROM pg_catalog.pg_index i \
     JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid \
     JOIN pg_catalog.pg_class r ON r.oid = i.indrelid \
     JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace \
     CROSS JOIN LATERAL (SELECT pg_catalog.pg_get_indexdef(i.indexrelid) AS def, \
            'CREATE ' || CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END || 'INDEX ' || pg_catalog.quote_ident(ic.relname) \
            || ' ON ' || CASE WHEN r.relkind = 'p' THEN 'ONLY ' ELSE '' END \
            || pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(r.relname) || ' USING ' AS head) d \
     WHERE i.indrelid = pg_catalog.to_regclass($1) ORDER BY ic.relname"
        .to_string()
}

/// What already uses a tenant name ($1), or NULL: a registered tenant, a removed one's
/// days, readers or per-tenant queries, rows in one of `tables` (which exist), or a schema.
pub fn name_in_use(tables: &[TableNames]) -> String {
    let mut checks = vec![
        "SELECT 'a registered tenant' WHERE EXISTS (SELECT 1 FROM _wh.tenant_connections WHERE tenant_name = $1)".to_string(),
        "SELECT 'days in _wh.slices' WHERE EXISTS (SELECT 1 FROM _wh.slices WHERE tenant_name = $1 OR schema_name = $1)".to_string(),
        "SELECT 'readers in _wh.tenant_readers' WHERE EXISTS (SELECT 1 FROM _wh.tenant_readers WHERE tenant_name = $1)".to_string(),
        "SELECT 'a query in _wh.tenant_queries' WHERE EXISTS (SELECT 1 FROM _wh.tenant_queries WHERE tenant_name = $1)".to_string(),
        // An empty schema wh made (left by a rename that kept objects the DBA since removed) is free.
        format!(
            "SELECT 'a schema that is not wh''s or not empty' WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname = $1 \
               AND (n.nspowner <> 'wh_admin'::pg_catalog.regrole OR ({}) > 0))",
            SCHEMA_OBJECTS
        ),
    ];
    for tn in tables {
        checks.push(format!(
            "SELECT {} WHERE EXISTS (SELECT 1 FROM {} WHERE {} = $1)",
            quote_literal(&format!("rows in {}", tn.table())),
            tn.table(),
            tenant_col()
        ));
    }
    format!("{} LIMIT 1", checks.join(" UNION ALL "))
}

/// A copy of tenant $1's connection row as tenant $2 with server $3.
pub fn copy_tenant_connection() -> String {
    "INSERT INTO _wh.tenant_connections (tenant_name, host, port, dbname, username, sslmode, channel_binding, \
       remote_timeout, server_name, paused_at, created_at) \
     SELECT $2, host, port, dbname, username, sslmode, channel_binding, remote_timeout, $3, paused_at, created_at \
     FROM _wh.tenant_connections WHERE tenant_name = $1"
        .to_string()
}

pub fn rename_server(old: &str, new: &str) -> String {
    format!(
        "ALTER SERVER {} RENAME TO {}",
        quote_ident(old),
        quote_ident(new)
    )
}

/// A tenant's rows ($1) in `[lo, hi)` become another's ($2).
pub fn rename_tenant_rows(
    tn: &TableNames,
    t: &Template,
    kind: TimeKind,
    lo: Day,
    hi: Day,
) -> String {
    format!(
        "UPDATE {} SET {} = $2 WHERE {} = $1 AND {}",
        tn.table(),
        tenant_col(),
        tenant_col(),
        in_range(t, kind, lo, hi)
    )
}

/// `rename_tenant_rows` where the tenant is the distribution column (Citus refuses to
/// UPDATE it): every column of the table (`columns`, in their order) copied under the new
/// name, then the old rows deleted.
pub fn move_tenant_rows(
    tn: &TableNames,
    columns: &[String],
    t: &Template,
    kind: TimeKind,
    (lo, hi): (Day, Day),
) -> [String; 2] {
    let tenant = tenant_col();
    let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    let values: Vec<String> = columns
        .iter()
        .map(|c| {
            if quote_ident(c) == tenant {
                "$2::text".to_string()
            } else {
                quote_ident(c)
            }
        })
        .collect();
    let scope = format!("{tenant} = $1::text AND {}", in_range(t, kind, lo, hi));
    [
        format!(
            "INSERT INTO {table} ({}) SELECT {} FROM {table} WHERE {scope}",
            cols.join(", "),
            values.join(", "),
            table = tn.table(),
        ),
        format!("DELETE FROM {} WHERE {scope}", tn.table()),
    ]
}

pub fn drop_view(qualified: &str) -> String {
    format!("DROP VIEW {qualified}")
}

/// How many objects of any kind are in schema $1 owned by wh_admin (NULL: no such schema).
pub fn objects_in_schema() -> String {
    format!("SELECT ({SCHEMA_OBJECTS}) FROM pg_catalog.pg_namespace n WHERE n.nspname = $1 AND n.nspowner = 'wh_admin'::pg_catalog.regrole")
}

/// How many objects of any kind are in schema `n` (every object depends on its schema).
const SCHEMA_OBJECTS: &str = "SELECT count(*) FROM pg_catalog.pg_depend d \
     WHERE d.refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass AND d.refobjid = n.oid AND d.deptype = 'n'";

pub fn owner_to_admin(kind: &str, qualified: &str) -> String {
    format!("ALTER {kind} {qualified} OWNER TO {ADMIN_ROLE}")
}

/// The table belongs to wh_admin; wh_reader reads it through the tenant views (which run
/// with the reader's rights); row-level security keeps a tenant-scoped reader to its
/// tenants' rows (`table_policies`).
pub fn table_grants(tn: &TableNames) -> Vec<String> {
    vec![
        owner_to_admin("TABLE", &tn.table()),
        format!("REVOKE ALL ON {} FROM PUBLIC", tn.table()),
        format!("GRANT SELECT ON {} TO {READER_ROLE}", tn.table()),
        format!("ALTER TABLE {} ENABLE ROW LEVEL SECURITY", tn.table()),
    ]
}

/// `public.<template>`, the all-tenant readers' view: the table's columns as they are, read
/// with the rights of the view's owner (wh_admin, the table's owner), so no row-level
/// security is in play and the planner reads the table's statistics for every comparison
/// (a `timestamp` column against a date or `now()` included), as on a flat table. Gated
/// like `all_rows_view`: a role that does not read every tenant (one a DBA granted SELECT
/// on it, a member of pg_read_all_data) reads nothing, and its quals meet no statistics.
pub fn reader_view(tn: &TableNames, columns: &[String]) -> String {
    let list: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    format!(
        "CREATE OR REPLACE VIEW {} AS SELECT {} FROM {} WHERE {READS_EVERY_TENANT}",
        tn.reader_view(),
        list.join(", "),
        tn.table()
    )
}

/// `_wh_data."<template>:all"`: the table's columns with its owner's rights, for readers of
/// every tenant only: the tenant views' first branch. For anyone else the planner folds
/// its condition to false and removes it before estimating anything.
pub fn all_rows_view(tn: &TableNames, columns: &[String]) -> String {
    let list: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    format!(
        "CREATE OR REPLACE VIEW {} AS SELECT {} FROM {} WHERE {READS_EVERY_TENANT}",
        tn.all_rows_view(),
        list.join(", "),
        tn.table()
    )
}

/// Only wh_reader (and wh_admin, its owner) read `public.<template>`: a tenant-scoped reader
/// reads `<tenant>.<template>`, under row-level security. It must never plan against the
/// owner's statistics: an operator of its own would be estimated on other tenants' values.
pub fn reader_view_grants(tn: &TableNames) -> Vec<String> {
    vec![
        owner_to_admin("VIEW", &tn.reader_view()),
        format!("REVOKE ALL ON {} FROM PUBLIC", tn.reader_view()),
        format!("GRANT SELECT ON {} TO {READER_ROLE}", tn.reader_view()),
    ]
}

/// `_wh_data."<template>:all"` is read through the tenant views, with the reader's rights:
/// wh_reader (and each tenant-scoped reader, `grant_readers_select`) may read it; PUBLIC not.
pub fn all_rows_view_grants(tn: &TableNames) -> Vec<String> {
    vec![
        owner_to_admin("VIEW", &tn.all_rows_view()),
        format!("REVOKE ALL ON {} FROM PUBLIC", tn.all_rows_view()),
        format!("GRANT SELECT ON {} TO {READER_ROLE}", tn.all_rows_view()),
    ]
}

/// The columns of relation $1, in their order.
pub const RELATION_COLUMNS: &str = "SELECT a.attname::text AS column FROM pg_catalog.pg_attribute a \
     WHERE a.attrelid = pg_catalog.to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum";

/// The tenant-scoped readers' policy (of `table_policies`).
pub const SCOPED_POLICY: &str = "wh:scoped";

/// The table's two policies, by name: `"wh:all"` (wh_reader and wh_admin members read every
/// row) and `"wh:scoped"` (any other role with SELECT reads the rows of the tenants
/// `SCOPE_TABLE` lists for it: an initplan, so the `(schema_name, time)` index serves it,
/// and `true OR …` for wh_reader folds away). Neither names a reader: granting or revoking
/// one changes rows of `SCOPE_TABLE`, never a policy, so it never waits for readers.
pub fn table_policies(tn: &TableNames) -> [(&'static str, String); 2] {
    policies_on(tn, &tn.table())
}

/// `table_policies` on `table`: the template's table wherever it is (the upgrade scripts
/// from 0.5.0 make them on `public.<template>`, where 0.7.0 and earlier kept it).
pub fn policies_on(tn: &TableNames, table: &str) -> [(&'static str, String); 2] {
    [
        (
            "wh:all",
            format!(
                "CREATE POLICY {} ON {} AS PERMISSIVE FOR SELECT TO {READER_ROLE}, {ADMIN_ROLE} USING (true)",
                tn.policy_all(),
                table
            ),
        ),
        (
            SCOPED_POLICY,
            format!(
                "CREATE POLICY {} ON {} AS PERMISSIVE FOR SELECT TO PUBLIC \
                 USING ({} OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT s.tenant_name FROM {SCOPE_TABLE} s)))",
                tn.policy_scoped(),
                table,
                tenant_col(),
            ),
        ),
    ]
}

// ---------------------------------------------------------------- partitions

/// Where and how a partition built aside is stored: its tablespace (none: the default) and
/// its access method (heap unless a columnar year).
#[derive(Debug, Clone, Copy, Default)]
pub struct Storage<'a> {
    pub tablespace: Option<&'a str>,
    pub access: AccessMethod,
}

/// A new, empty partition table `relation` in `_wh_data`, shaped like the parent, owned by
/// wh_admin, with the CHECK constraint that lets ATTACH PARTITION skip its scan, named for
/// the partition it becomes (`<named_for>_bounds`: a table built aside keeps it when it
/// is renamed into place; constraint names are per table, and Citus refuses to rename
/// one on a distributed table).
pub fn create_partition_table(
    tn: &TableNames,
    relation: &str,
    named_for: &str,
    t: &Template,
    kind: TimeKind,
    (lo, hi): (Day, Day),
    storage: Storage,
) -> Vec<String> {
    let access = match storage.access {
        AccessMethod::Heap => String::new(),
        other => format!(" USING {}", other.as_str()),
    };
    let ts = storage
        .tablespace
        .map(|s| format!(" TABLESPACE {}", quote_ident(s)))
        .unwrap_or_default();
    vec![
        format!(
            "CREATE TABLE {} (LIKE {}){access}{ts}",
            tn.data(relation),
            tn.table()
        ),
        owner_to_admin("TABLE", &tn.data(relation)),
        format!(
            "ALTER TABLE {} ADD CONSTRAINT {} CHECK ({})",
            tn.data(relation),
            quote_ident(&format!("{named_for}_bounds")),
            in_range(t, kind, lo, hi)
        ),
    ]
}

/// ATTACH takes SHARE UPDATE EXCLUSIVE on the parent: readers and writers go on.
pub fn attach(tn: &TableNames, relation: &str, kind: TimeKind, lo: Day, hi: Day) -> String {
    format!(
        "ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})",
        tn.table(),
        tn.data(relation),
        kind.partition_bound(lo),
        kind.partition_bound(hi)
    )
}

/// The template's row of `_wh.mv_templates` FOR UPDATE: refreshes of the template take
/// it FOR KEY SHARE, so a fold or a partition drop never runs beside one.
pub fn lock_template_row(template: &CheckedName) -> String {
    lock_template_row_in(template, "UPDATE")
}

/// The template's row in another mode: `NO KEY UPDATE` (making partitions: one session at
/// a time), `KEY SHARE` (writing rows: any number at once, never beside a fold).
pub fn lock_template_row_in(template: &CheckedName, mode: &str) -> String {
    format!(
        "SELECT 1 FROM _wh.mv_templates WHERE template_name = {}::text FOR {mode}",
        quote_literal(template.as_str())
    )
}

/// Waits for readers of the parent (under wh's lock_timeout), then holds them off for
/// the few catalog changes of a swap.
pub fn lock_exclusive(tn: &TableNames) -> String {
    format!("LOCK TABLE ONLY {} IN ACCESS EXCLUSIVE MODE", tn.table())
}

/// The partitions of the table `$1`: name and access method (NULL: none, a foreign table).
pub const PARTITIONS_OF: &str =
    "SELECT c.relname::text AS relname, a.amname::text AS access FROM pg_catalog.pg_inherits i \
     JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid \
     LEFT JOIN pg_catalog.pg_am a ON a.oid = c.relam \
     WHERE i.inhparent = pg_catalog.to_regclass($1)";

// ---------------------------------------------------------------- Citus

/// Is Citus installed in this database?
pub const CITUS_INSTALLED: &str =
    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus')";

/// Is relation `$1` a Citus table (distributed)? Only where Citus is installed.
pub const CITUS_DISTRIBUTED: &str =
    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition WHERE logicalrelid = pg_catalog.to_regclass($1) AND partmethod = 'h')";

/// A wh table already distributed, to colocate another with (NULL: none yet).
pub const CITUS_COLOCATE_WITH: &str =
    "SELECT p.logicalrelid::pg_catalog.regclass::text FROM pg_catalog.pg_dist_partition p \
     JOIN pg_catalog.pg_class c ON c.oid = p.logicalrelid \
     WHERE c.relnamespace = '_wh_data'::pg_catalog.regnamespace AND c.relispartition IS FALSE AND p.partmethod = 'h' \
       AND p.logicalrelid <> pg_catalog.to_regclass($1) ORDER BY 1 LIMIT 1";

/// Distribute table `$1` by tenant, colocated with `$2` (or Citus's default group), in
/// `$3` shards (NULL: Citus's default).
pub const CITUS_DISTRIBUTE: &str =
    "SELECT pg_catalog.create_distributed_table($1::pg_catalog.regclass, 'schema_name', \
     colocate_with => coalesce($2, 'default'), shard_count => $3)";

/// The rows Citus copied into the shards, gone from the coordinator's own table `$1`.
pub const CITUS_TRUNCATE_LOCAL: &str =
    "SELECT pg_catalog.truncate_local_data_after_distributing_table($1::pg_catalog.regclass)";

/// The registry records template `$1`'s table `$2` as Citus has it: its shard count; 0 once
/// a table that was distributed is not any more (`undistribute_table` by hand: kept on the
/// coordinator); NULL while it never was (it follows the warehouse). Written only when it
/// changed. A table made again is distributed again as recorded.
pub const RECORD_DISTRIBUTION: &str = "WITH d AS ( \
         SELECT pg_catalog.count(DISTINCT s.shardid)::integer AS shards FROM pg_catalog.pg_dist_shard s \
         JOIN pg_catalog.pg_dist_partition p ON p.logicalrelid = s.logicalrelid AND p.partmethod = 'h' \
         WHERE s.logicalrelid = $2::pg_catalog.regclass), \
     t AS (SELECT CASE WHEN d.shards > 0 THEN d.shards WHEN m.distributed_shards IS NOT NULL THEN 0 END AS shards \
           FROM d, _wh.mv_templates m WHERE m.template_name = $1) \
     UPDATE _wh.mv_templates m SET distributed_shards = t.shards FROM t \
     WHERE m.template_name = $1 AND m.distributed_shards IS DISTINCT FROM t.shards";

/// A unique index of relation `$1` whose columns do not include `schema_name` (Citus can
/// keep a unique index only when it holds the distribution column).
pub const UNIQUE_WITHOUT_TENANT: &str = "SELECT i.indexrelid::pg_catalog.regclass::text FROM pg_catalog.pg_index i \
     WHERE i.indrelid = pg_catalog.to_regclass($1) AND i.indisunique \
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid = i.indrelid \
                       AND a.attname = 'schema_name' AND a.attnum = ANY (i.indkey)) ORDER BY 1 LIMIT 1";

/// On every worker, readers may enter `_wh_data`: Citus runs a reader's shard queries as
/// the reader, by name, where the coordinator reads through views (which need no USAGE on
/// the schema). PUBLIC there, so tenant-scoped readers too: the schema holds only shards,
/// each readable only with SELECT on its table and under its policies. Whether every
/// worker took it, and the first error.
pub const CITUS_READERS_ON_WORKERS: &str = "SELECT coalesce(bool_and(success), true) AS ok, min(result) FILTER (WHERE NOT success) AS error \
     FROM pg_catalog.run_command_on_workers($$SET citus.enable_ddl_propagation = off; GRANT USAGE ON SCHEMA _wh_data TO PUBLIC$$)";

/// The tenant-scoped readers' policy on a table Citus distributes (copied onto every shard,
/// where Citus refuses a subquery; evaluated on the workers as the reader): each node folds
/// `_wh_scope.tenants_of_current_role()` (IMMUTABLE on purpose) into the reader's tenants
/// from its own `SCOPE_TABLE` when it plans (no call per row).
pub fn scoped_policy_distributed(tn: &TableNames) -> String {
    format!(
        "CREATE POLICY {} ON {} AS PERMISSIVE FOR SELECT TO PUBLIC \
         USING ({} OPERATOR(pg_catalog.=) ANY (\"_wh_scope\".tenants_of_current_role()))",
        tn.policy_scoped(),
        tn.table(),
        tenant_col(),
    )
}

/// Every worker's `SCOPE_TABLE` made equal to this node's, by role name (a role's oid differs
/// from node to node; Citus makes roles by name), the names and tenants quoted by `format`:
/// one command per worker, in its own transaction there. Whether every worker took it, and
/// the first error.
pub fn citus_scopes_to_workers() -> String {
    format!(
        "SELECT coalesce(pg_catalog.bool_and(w.success), true) AS ok, \
         pg_catalog.min(w.result) FILTER (WHERE NOT w.success) AS error \
         FROM pg_catalog.run_command_on_workers( \
           'DELETE FROM {SCOPE_TABLE}' OPERATOR(pg_catalog.||) coalesce( \
             '; INSERT INTO {SCOPE_TABLE} (role_oid, tenant_name) SELECT r.oid, v.tenant FROM (VALUES ' \
             OPERATOR(pg_catalog.||) (SELECT pg_catalog.string_agg(pg_catalog.format('(%L, %L)', o.rolname, s.tenant_name), ', ') \
                                      FROM {SCOPE_TABLE} s JOIN pg_catalog.pg_roles o ON o.oid = s.role_oid) \
             OPERATOR(pg_catalog.||) ') v (role_name, tenant) JOIN pg_catalog.pg_roles r ON r.rolname OPERATOR(pg_catalog.=) v.role_name', '')) w"
    )
}

/// Is any wh table distributed by Citus (where Citus is installed)?
pub const CITUS_WAREHOUSE_DISTRIBUTED: &str =
    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition p \
     JOIN pg_catalog.pg_class c ON c.oid = p.logicalrelid \
     WHERE c.relnamespace = '_wh_data'::pg_catalog.regnamespace AND p.partmethod = 'h')";

/// Drop the tenant-scoped readers' policy (a subquery: Citus refuses it on a distributed table).
pub fn drop_scoped_policy(tn: &TableNames) -> String {
    format!(
        "DROP POLICY IF EXISTS {} ON {}",
        tn.policy_scoped(),
        tn.table()
    )
}

// ---------------------------------------------------------------- folded years and their storage

/// Record year `$2` of template `$1` as folded to storage `$3`.
pub const RECORD_FOLDED_YEAR: &str = "INSERT INTO _wh.folded_years (template_name, year, storage) VALUES ($1, $2, $3) \
     ON CONFLICT (template_name, year) DO UPDATE SET storage = EXCLUDED.storage, folded_at = pg_catalog.now()";

/// The folded years of template `$1` before year `$2`.
pub const FOLDED_YEARS_BEFORE: &str =
    "SELECT year FROM _wh.folded_years WHERE template_name = $1 AND year < $2 ORDER BY year";

/// The storage year `$2` of template `$1` was folded to.
pub const FOLDED_YEAR_STORAGE: &str =
    "SELECT storage FROM _wh.folded_years WHERE template_name = $1 AND year = $2";

/// Forget the folded years of template `$1` before year `$2`.
pub const FORGET_FOLDED_YEARS: &str =
    "DELETE FROM _wh.folded_years WHERE template_name = $1 AND year < $2";

/// Every folded year recorded as columnar.
pub const COLUMNAR_YEARS: &str =
    "SELECT template_name, year FROM _wh.folded_years WHERE storage = 'columnar' ORDER BY 1, 2";

/// Is the columnar table access method (citus_columnar) installed in this database?
pub const COLUMNAR_INSTALLED: &str =
    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_am WHERE amname = 'columnar' AND amtype = 't')";

/// An index of relation `$1` that is not btree or hash (columnar holds no other), as
/// `<index> (<method>)`.
pub const INDEX_COLUMNAR_REFUSES: &str = "SELECT i.indexrelid::pg_catalog.regclass::text || ' (' || a.amname || ')' \
     FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid \
     JOIN pg_catalog.pg_am a ON a.oid = c.relam \
     WHERE i.indrelid = pg_catalog.to_regclass($1) AND a.amname NOT IN ('btree', 'hash') ORDER BY 1 LIMIT 1";

/// The tablespace of relation `$1` (NULL: the database's default).
pub const TABLESPACE_OF: &str = "SELECT t.spcname::text FROM pg_catalog.pg_class c \
     JOIN pg_catalog.pg_tablespace t ON t.oid = c.reltablespace WHERE c.oid = pg_catalog.to_regclass($1)";

/// Holds off every writer of a relation (and any other session doing the same) while
/// readers go on: SHARE ROW EXCLUSIVE.
pub fn lock_writers_out(qualified: &str) -> String {
    format!("LOCK TABLE ONLY {qualified} IN SHARE ROW EXCLUSIVE MODE")
}

/// Drop several partitions in one statement.
pub fn drop_partitions(tn: &TableNames, relations: &[String]) -> String {
    let list: Vec<String> = relations.iter().map(|r| tn.data(r)).collect();
    format!("DROP TABLE {}", list.join(", "))
}

pub fn rename_partition(tn: &TableNames, from: &str, to: &str) -> String {
    format!(
        "ALTER TABLE {} RENAME TO {}",
        tn.data(from),
        quote_ident(to)
    )
}

/// Rename an index of the data schema.
pub fn rename_index(tn: &TableNames, from: &str, to: &str) -> String {
    format!(
        "ALTER INDEX {} RENAME TO {}",
        tn.data(from),
        quote_ident(to)
    )
}

/// The names of relation $1's indexes.
pub const INDEX_NAMES: &str = "SELECT ic.relname::text AS name FROM pg_catalog.pg_index i \
     JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid \
     WHERE i.indrelid = pg_catalog.to_regclass($1) ORDER BY 1";

pub fn analyze(qualified: &str) -> String {
    format!("ANALYZE {qualified}")
}

// ---------------------------------------------------------------- template evolution

/// A column appended to the table (its partitions follow): nullable, no default, so
/// PostgreSQL changes only the catalog.
pub fn add_column(tn: &TableNames, c: &crate::pure::template::Column) -> String {
    format!(
        "ALTER TABLE {} ADD COLUMN {} {}",
        tn.table(),
        c.name.quoted(),
        c.type_sql
    )
}

/// A column's type widened (`template::widens`: no rewrite).
pub fn widen_column(tn: &TableNames, column: &CheckedName, type_sql: &str) -> String {
    format!(
        "ALTER TABLE {} ALTER COLUMN {} TYPE {type_sql}",
        tn.table(),
        column.quoted()
    )
}

/// What `rename_column` renames a column of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationKind {
    Table,
    View,
}

/// A column renamed in a table or a view.
pub fn rename_column(
    kind: RelationKind,
    qualified: &str,
    column: &CheckedName,
    to: &CheckedName,
) -> String {
    let kind = match kind {
        RelationKind::Table => "TABLE",
        RelationKind::View => "VIEW",
    };
    format!(
        "ALTER {kind} {qualified} RENAME COLUMN {} TO {}",
        column.quoted(),
        to.quoted()
    )
}

/// The table and, with it, its partitions and every view over it.
pub fn drop_table_cascade(tn: &TableNames) -> String {
    format!("DROP TABLE {} CASCADE", tn.table())
}

// ---------------------------------------------------------------- tenant views

/// `<tenant>.<template>`: the tenant's rows, filtered by a constant on `schema_name`, in two
/// branches of which the planner keeps one. It runs with the reader's rights
/// (`security_invoker`). A reader of every tenant reads `_wh_data."<template>:all"` (its
/// owner's rights: no row-level security, so it plans as a flat table of the tenant's rows
/// whatever the type of its bounds); any other reader reads the table itself, where its
/// row-level security applies: a tenant-scoped reader's own functions in a WHERE clause
/// never see another tenant's rows, and its quals are never estimated on the owner's
/// statistics (the first branch is gone before that).
pub fn tenant_view(names: &SliceNames, t: &Template) -> String {
    let tn = names.table();
    let tenant = quote_literal(names.tenant.as_str());
    format!(
        "CREATE OR REPLACE VIEW {} WITH (security_invoker = true) AS \
         SELECT {cols} FROM {} WHERE {col} = {tenant}::text \
         UNION ALL SELECT {cols} FROM {} WHERE {col} = {tenant}::text AND NOT {READS_EVERY_TENANT}",
        names.view(),
        tn.all_rows_view(),
        tn.table(),
        cols = t.column_names_sql(),
        col = tenant_col(),
    )
}

/// Readers see the tenant schema and its view; PUBLIC nothing.
pub fn view_grants(names: &SliceNames) -> Vec<String> {
    vec![
        owner_to_admin("VIEW", &names.view()),
        format!("REVOKE ALL ON SCHEMA {} FROM PUBLIC", names.tenant.quoted()),
        format!(
            "GRANT USAGE ON SCHEMA {} TO {READER_ROLE}",
            names.tenant.quoted()
        ),
        format!("REVOKE ALL ON {} FROM PUBLIC", names.view()),
        format!("GRANT SELECT ON {} TO {READER_ROLE}", names.view()),
    ]
}

/// A tenant-scoped reader may use the tenant schema and read its views.
pub fn tenant_reader_grants(
    schema: &CheckedName,
    relations: &[String],
    role: &str,
    grant: bool,
) -> Vec<String> {
    let (verb, prep) = if grant {
        ("GRANT", "TO")
    } else {
        ("REVOKE", "FROM")
    };
    let r = quote_ident(role);
    let mut out = vec![format!(
        "{verb} USAGE ON SCHEMA {} {prep} {r}",
        schema.quoted()
    )];
    out.extend(
        relations
            .iter()
            .map(|rel| format!("{verb} SELECT ON {rel} {prep} {r}")),
    );
    out
}

// ---------------------------------------------------------------- staging a run of days

/// `COPY (<select>) TO STDOUT` in `format`.
pub fn copy_out(select: &str, format: crate::pure::caps::CopyFormat) -> String {
    match format {
        crate::pure::caps::CopyFormat::Text => format!("COPY ({select}) TO STDOUT"),
        crate::pure::caps::CopyFormat::Binary => {
            format!("COPY ({select}) TO STDOUT (FORMAT binary)")
        }
    }
}

/// What a source runs to name the types of `select`'s columns: no row.
pub fn describe(select: &str) -> String {
    format!("SELECT * FROM ({select}) AS wh_t LIMIT 0")
}

/// This session's staging table: `wh_day` then the template's columns.
pub fn create_stage(tn: &TableNames, t: &Template) -> String {
    format!(
        "CREATE TEMP TABLE {} (wh_day date, {})",
        quote_ident(&tn.stage_relname()),
        t.column_defs_sql()
    )
}

pub fn truncate_stage(tn: &TableNames) -> String {
    format!("TRUNCATE {}", tn.stage())
}

/// Per staged day, the figures of the rows a source's answer put in the staging table:
/// rows, rows outside their day, checksum (one scan; the rows arrived by COPY).
pub fn staged_summary(tn: &TableNames, t: &Template, kind: TimeKind) -> String {
    summarize(t, kind, &format!("{} AS wh_s", tn.stage()))
}

/// Stage a rollup's days computed here from its base (tenant `$1`; see `rollup_def`),
/// each column cast to its declared type, summarized per day in the same pass. Every
/// row's bucket is checked to lie in its day, like a source's rows.
pub fn stage_from_local(tn: &TableNames, t: &Template, kind: TimeKind, days: &[Day]) -> String {
    let cols: Vec<String> = t
        .columns
        .iter()
        .map(|c| format!("wh_d.{}::{}", c.name.quoted(), c.type_sql))
        .collect();
    stage_and_summarize(
        tn,
        t,
        kind,
        &format!(
            "(SELECT wh_d.wh_day, {} FROM (\n{}\n) AS wh_d) AS wh_r",
            cols.join(", "),
            t.days_sql(days)
        ),
    )
}

fn stage_and_summarize(tn: &TableNames, t: &Template, kind: TimeKind, source: &str) -> String {
    format!(
        "WITH wh_s AS (INSERT INTO {} SELECT * FROM {source} RETURNING *) {}",
        tn.stage(),
        summarize(t, kind, "wh_s")
    )
}

/// Per day of the rows `from` (aliased `wh_s`): rows, rows outside their day, checksum.
fn summarize(t: &Template, kind: TimeKind, from: &str) -> String {
    let tc = format!("wh_s.{}", t.time_column.quoted());
    format!(
        "SELECT wh_day, count(*) AS n, count(*) FILTER (WHERE {tc} IS NULL OR {} <> wh_s.wh_day) AS outside, \
         {} AS checksum FROM {from} GROUP BY wh_day",
        kind.day_of(&tc),
        checksum(t, "wh_s"),
    )
}

/// Per staged day of `$1`: how many rows repeat a unique key (a hash aggregate, no sort).
pub fn stage_duplicates(tn: &TableNames, t: &Template) -> Option<String> {
    if t.unique_key.is_empty() {
        return None;
    }
    let key: Vec<String> = t
        .unique_key
        .iter()
        .map(|c| format!("wh_s.{}", c.quoted()))
        .collect();
    Some(format!(
        "SELECT wh_day, sum(n - 1)::int8 AS duplicates FROM \
         (SELECT wh_s.wh_day, count(*) AS n FROM {} AS wh_s WHERE wh_s.wh_day = ANY ($1::date[]) \
         GROUP BY wh_s.wh_day, {} HAVING count(*) > 1) AS wh_d GROUP BY wh_day",
        tn.stage(),
        key.join(", ")
    ))
}

/// The checksum of a day without rows: the sum over no rows, `coalesce`d to 0 (a day
/// with rows has the sum of its rows' hashes).
pub const EMPTY_DAY_CHECKSUM: &str = "0";

/// An order-independent checksum over every column of the rows aliased `alias`.
fn checksum(t: &Template, alias: &str) -> String {
    let row = t.row_hash_sql(|c| format!("{alias}.{}", c.name.quoted()), t.columns.len());
    format!("coalesce(sum({row}), 0::numeric)::text")
}

/// What a source runs for `_wh.verify`: per day of `days`, its rows and the checksum wh
/// computes over stored rows (every column, cast to its declared type), so the two
/// compare exactly; of the columns appended to the template, only the first `known` count
/// (those the days were fetched with). Days without rows are absent.
pub fn source_day_summary(t: &Template, days: &[Day], known: usize) -> String {
    let row = t.row_hash_sql(
        |c| format!("wh_v.{}::{}", c.name.quoted(), c.type_sql),
        known,
    );
    format!(
        "SELECT wh_v.wh_day, pg_catalog.count(*)::int8 AS n, \
         coalesce(pg_catalog.sum({row}), 0::numeric)::text AS checksum \
         FROM (\n{}\n) AS wh_v GROUP BY 1",
        t.days_sql(days)
    )
}

/// What a source runs to name the columns the template's query returns for `day`: at
/// most one row, as JSON (its keys are the column names; none for a day without rows).
pub fn source_columns_probe(t: &Template, day: Day) -> String {
    format!(
        "SELECT pg_catalog.to_json(wh_q)::text FROM (\n{}\n) AS wh_q LIMIT 1",
        t.render(day)
    )
}

/// Fails (42883, naming the type) when a column type has no extended hash function, so
/// `set_template` refuses a template whose days could not be checksummed.
pub fn checksum_probe(t: &Template) -> String {
    let nulls: Vec<String> = t
        .columns
        .iter()
        .map(|c| format!("NULL::{}", c.type_sql))
        .collect();
    format!(
        "SELECT pg_catalog.hash_record_extended(ROW({}), 0::int8)",
        nulls.join(", ")
    )
}

/// Mark the days `$3` of tenant `$2` that the rollups of template `$1` (and theirs) hold
/// refreshed, skipping days another session holds.
pub const TOUCH_ROLLUP_DAYS: &str = "WITH RECURSIVE r(name, depth) AS ( \
     SELECT template_name, 1 FROM _wh.mv_templates WHERE base_template = $1 \
     UNION ALL SELECT m.template_name, r.depth + 1 FROM _wh.mv_templates m JOIN r ON m.base_template = r.name WHERE r.depth < 32) \
     UPDATE _wh.slices AS s SET refreshed_at = pg_catalog.now() FROM ( \
     SELECT template_name, tenant_name, kind, range_start FROM _wh.slices \
     WHERE template_name IN (SELECT name FROM r) AND tenant_name = $2 AND kind = 'day' AND range_start = ANY ($3::date[]) \
     AND checksum IS NOT NULL FOR UPDATE SKIP LOCKED) AS x \
     WHERE s.template_name = x.template_name AND s.tenant_name = x.tenant_name AND s.kind = x.kind AND s.range_start = x.range_start";

/// Per stored day of tenant `$1` inside `[lo, hi)`: rows only (a rollup's check of its base).
pub fn stored_day_counts(
    tn: &TableNames,
    t: &Template,
    kind: TimeKind,
    lo: Day,
    hi: Day,
) -> String {
    stored_per_day(tn, t, kind, lo, hi, "count(*) AS n")
}

/// Per stored day of tenant `$1` inside `[lo, hi)`: rows and checksum.
pub fn stored_summary(tn: &TableNames, t: &Template, kind: TimeKind, lo: Day, hi: Day) -> String {
    let figures = format!("count(*) AS n, {} AS checksum", checksum(t, "wh_x"));
    stored_per_day(tn, t, kind, lo, hi, &figures)
}

fn stored_per_day(
    tn: &TableNames,
    t: &Template,
    kind: TimeKind,
    lo: Day,
    hi: Day,
    figures: &str,
) -> String {
    let tc = format!("wh_x.{}", t.time_column.quoted());
    format!(
        "SELECT {} AS wh_day, {figures} FROM {} AS wh_x WHERE wh_x.{} = $1::text AND {} GROUP BY 1",
        kind.day_of(&tc),
        tn.table(),
        tenant_col(),
        in_range_of(&tc, kind, lo, hi)
    )
}

/// Per tenant and day inside `[lo, hi)` of a relation holding `schema_name`: rows and
/// checksum (the fold's validation against the registry).
pub fn tenant_day_summary(
    relation: &str,
    t: &Template,
    kind: TimeKind,
    lo: Day,
    hi: Day,
) -> String {
    let tc = format!("wh_x.{}", t.time_column.quoted());
    format!(
        "SELECT wh_x.{} AS tenant, {} AS wh_day, count(*) AS n, {} AS checksum FROM {relation} AS wh_x \
         WHERE {} GROUP BY 1, 2",
        tenant_col(),
        kind.day_of(&tc),
        checksum(t, "wh_x"),
        in_range_of(&tc, kind, lo, hi)
    )
}

/// The fold's check of a year copied aside: every registered tenant-day in scope (template
/// `$1`, tenant `$2` or NULL for every tenant, days `[$3, $4)`) against `got` (a query of
/// `tenant, wh_day, n, checksum` per tenant and day: `tenant_day_summary` of the copy), in
/// one query the server runs within work_mem (its join and aggregates spill to disk; no
/// tenant-day is held in the backend). A day is wrong when its rows differ, or its checksum
/// where the registry has one (an empty day: no rows in the copy); rows of a tenant in scope
/// on a day the registry does not hold are wrong too.
fn fold_comparison(got: &str) -> String {
    format!(
        "WITH got AS ({got}), \
         want AS (SELECT s.tenant_name AS tenant, s.range_start AS wh_day, s.row_count AS n, s.checksum \
                  FROM _wh.slices s WHERE s.template_name = $1 AND s.kind = 'day' \
                    AND ($2::text IS NULL OR s.tenant_name = $2) AND s.range_start >= $3 AND s.range_start < $4), \
         cmp AS (SELECT w.tenant AS want_tenant, g.tenant AS got_tenant, coalesce(w.wh_day, g.wh_day) AS wh_day, \
                        w.n AS want_n, w.checksum AS want_checksum, g.n AS got_n, g.checksum AS got_checksum, \
                        CASE WHEN w.tenant IS NULL THEN ($2::text IS NULL OR g.tenant = $2) AND g.n > 0 \
                             ELSE w.n <> coalesce(g.n, 0) \
                                  OR (w.n > 0 AND w.checksum <> CASE WHEN g.tenant IS NULL THEN '{EMPTY_DAY_CHECKSUM}' \
                                                                     ELSE g.checksum END) IS TRUE \
                        END AS bad \
                 FROM want w FULL JOIN got g ON g.tenant = w.tenant AND g.wh_day = w.wh_day) "
    )
}

/// A checksum's value (a sum of 64-bit hashes, as text; anything else counts 0).
fn checksum_value(col: &str) -> String {
    format!("CASE WHEN {col} ~ '^-?[0-9]+$' THEN {col}::numeric END")
}

/// `fold_comparison`'s one row: the wrong days, the tenant-days in scope, their rows and
/// checksum as registered and as copied.
pub fn fold_check(got: &str) -> String {
    format!(
        "{} SELECT count(*) FILTER (WHERE bad) AS bad, count(want_tenant) AS tenant_days, \
                coalesce(sum(want_n), 0)::int8 AS rows_in_days, \
                coalesce(sum({}), 0)::text AS checksum_days, \
                coalesce(sum(got_n) FILTER (WHERE want_tenant IS NOT NULL), 0)::int8 AS rows_in_year, \
                coalesce(sum({}) FILTER (WHERE want_tenant IS NOT NULL), 0)::text AS checksum_year \
         FROM cmp",
        fold_comparison(got),
        checksum_value("want_checksum"),
        checksum_value("got_checksum")
    )
}

/// `fold_comparison`'s first three wrong days, named.
pub fn fold_check_examples(got: &str) -> String {
    format!(
        "{} SELECT CASE WHEN want_tenant IS NULL \
                   THEN pg_catalog.format('%s %s: %s rows in the copy, no registry row', got_tenant, \
                                          pg_catalog.to_char(wh_day, 'YYYY-MM-DD'), got_n) \
                   ELSE pg_catalog.format('%s %s: %s rows in the registry, %s in the copy', want_tenant, \
                                          pg_catalog.to_char(wh_day, 'YYYY-MM-DD'), want_n, coalesce(got_n, 0)) END AS what \
         FROM cmp WHERE bad ORDER BY coalesce(want_tenant, got_tenant), wh_day LIMIT 3",
        fold_comparison(got)
    )
}

/// Whether the registry holds a day in scope (`fold_comparison`'s `$1`..`$4`).
pub const REGISTRY_HOLDS_DAYS: &str = "SELECT EXISTS (SELECT 1 FROM _wh.slices s WHERE s.template_name = $1 \
     AND s.kind = 'day' AND ($2::text IS NULL OR s.tenant_name = $2) AND s.range_start >= $3 AND s.range_start < $4)";

/// Delete tenant `$1`'s rows of one day (bounds are literals, so the planner prunes to
/// the one partition at plan time).
pub fn delete_day(tn: &TableNames, t: &Template, kind: TimeKind, day: Day) -> String {
    format!(
        "DELETE FROM {} WHERE {} = $1::text AND {}",
        tn.table(),
        tenant_col(),
        in_range(t, kind, day, day.succ())
    )
}

/// Insert the staged rows of the days `$2` for tenant `$1` into `target` (qualified: the
/// table, or a partition being built aside).
pub fn insert_staged(tn: &TableNames, t: &Template, target: &str) -> String {
    let cols = t.column_names_sql();
    format!(
        "INSERT INTO {target} ({cols}, {}) SELECT {cols}, $1::text FROM {} WHERE wh_day = ANY ($2::date[])",
        tenant_col(),
        tn.stage()
    )
}

/// Every row of the data schema's `from` into the table (a period built aside that another
/// session partitioned first), then `from` dropped.
pub fn move_into_table(tn: &TableNames, t: &Template, from: &str) -> Vec<String> {
    let cols = format!("{}, {}", t.column_names_sql(), tenant_col());
    vec![
        format!(
            "INSERT INTO {} ({cols}) SELECT {cols} FROM {}",
            tn.table(),
            tn.data(from)
        ),
        format!("DROP TABLE {}", tn.data(from)),
    ]
}

/// This transaction's hold on building `$1` (a qualified relation) aside, or false when
/// another transaction holds it (two-key advisory lock, released at the transaction's end).
pub const TRY_HOLD_ASIDE: &str =
    "SELECT pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext('wh aside'), pg_catalog.hashtext($1))";

/// Delete tenant `$1`'s rows in `[lo, hi)` (per-tenant retention, removing a tenant).
pub fn delete_tenant_range(
    tn: &TableNames,
    t: &Template,
    kind: TimeKind,
    lo: Day,
    hi: Day,
) -> String {
    format!(
        "DELETE FROM {} WHERE {} = $1::text AND {}",
        tn.table(),
        tenant_col(),
        in_range(t, kind, lo, hi)
    )
}

/// Whether the table holds a row of tenant `$1` (NULL: of any tenant) in `[lo, hi)`.
pub fn rows_held(tn: &TableNames, t: &Template, kind: TimeKind, lo: Day, hi: Day) -> String {
    format!(
        "SELECT EXISTS (SELECT 1 FROM {} WHERE ($1::text IS NULL OR {} = $1::text) AND {})",
        tn.table(),
        tenant_col(),
        in_range(t, kind, lo, hi)
    )
}

/// Delete every tenant's rows in `[lo, hi)` (retention inside a partition that stays).
pub fn delete_range(tn: &TableNames, t: &Template, kind: TimeKind, lo: Day, hi: Day) -> String {
    format!(
        "DELETE FROM {} WHERE {}",
        tn.table(),
        in_range(t, kind, lo, hi)
    )
}

// ---------------------------------------------------------------- migrating 0.1.0 storage

/// Per day of a relation without `schema_name` (a 0.1.0 tenant table): rows, checksum.
pub fn day_summary(relation: &str, t: &Template, kind: TimeKind) -> String {
    let tc = format!("wh_x.{}", t.time_column.quoted());
    format!(
        "SELECT {} AS wh_day, count(*) AS n, {} AS checksum FROM {relation} AS wh_x WHERE {tc} IS NOT NULL GROUP BY 1",
        kind.day_of(&tc),
        checksum(t, "wh_x")
    )
}

/// Copy a 0.1.0 tenant table's rows into the table as tenant `$1`.
pub fn copy_old(tn: &TableNames, old: &str, t: &Template) -> String {
    let cols = t.column_names_sql();
    format!(
        "INSERT INTO {} ({cols}, {}) SELECT {cols}, $1::text FROM {old}",
        tn.table(),
        tenant_col()
    )
}

/// Move a table (its indexes, policies and grants go with it) into `schema`.
pub fn set_schema(qualified: &str, schema: &str) -> String {
    format!("ALTER TABLE {qualified} SET SCHEMA {}", quote_ident(schema))
}

pub fn rename_relation(qualified: &str, to: &str) -> String {
    format!("ALTER TABLE {qualified} RENAME TO {}", quote_ident(to))
}

// ---------------------------------------------------------------- folding a year

/// Copy `[lo, hi)` of the table into a partition built aside, sorted by tenant and time
/// so one tenant's days sit together on disk.
pub fn copy_range(
    tn: &TableNames,
    aside: &str,
    t: &Template,
    kind: TimeKind,
    lo: Day,
    hi: Day,
) -> String {
    format!(
        "INSERT INTO {} SELECT * FROM {} WHERE {} ORDER BY {}, {}",
        tn.data(aside),
        tn.table(),
        in_range(t, kind, lo, hi),
        tenant_col(),
        t.time_column.quoted()
    )
}

fn in_range_of(col: &str, kind: TimeKind, lo: Day, hi: Day) -> String {
    format!(
        "{col} IS NOT NULL AND {col} >= {} AND {col} < {}",
        kind.bound(lo),
        kind.bound(hi)
    )
}

fn in_range(t: &Template, kind: TimeKind, lo: Day, hi: Day) -> String {
    in_range_of(&t.time_column.quoted(), kind, lo, hi)
}

/// wh's tables that name a tenant in `tenant_name` (besides the registry and connections),
/// renamed with it.
pub const TABLES_NAMING_TENANTS: [&str; 5] = [
    "tenant_queries",
    "pool_items",
    "tenant_readers",
    "run_log",
    "verify_findings",
];

/// Rename tenant `$1` to `$2` in one of `TABLES_NAMING_TENANTS`.
pub fn rename_tenant_in(table: &str) -> String {
    format!(
        "UPDATE _wh.{} SET tenant_name = $2 WHERE tenant_name = $1",
        quote_ident(table)
    )
}

/// Drop a tenant's (empty) schema.
pub fn drop_schema(schema: &CheckedName) -> String {
    format!("DROP SCHEMA {}", schema.quoted())
}

/// Take a role's rights on a schema away.
pub fn revoke_schema(schema: &CheckedName, role: &str) -> String {
    format!(
        "REVOKE ALL ON SCHEMA {} FROM {}",
        schema.quoted(),
        quote_ident(role)
    )
}

/// SELECT on a relation for a reader role.
pub fn grant_select(relation: &str, role: &str) -> String {
    format!("GRANT SELECT ON {relation} TO {}", quote_ident(role))
}

/// Syncs of `SCOPE_TABLE` one at a time (readers' ACCESS SHARE never waits for it).
pub fn lock_scopes() -> String {
    format!("LOCK TABLE {SCOPE_TABLE} IN SHARE ROW EXCLUSIVE MODE")
}

/// SELECT on a relation taken back from a reader role.
pub fn revoke_select(relation: &str, role: &str) -> String {
    format!("REVOKE SELECT ON {relation} FROM {}", quote_ident(role))
}

/// The registered readers that exist (by oid and name): the rows `SCOPE_TABLE` must hold.
const EXISTING_READERS: &str = "SELECT r.role_oid, r.tenant_name FROM _wh.tenant_readers r \
     JOIN pg_catalog.pg_roles o ON o.oid = r.role_oid AND o.rolname = r.role_name";

/// `SCOPE_TABLE`'s rows of readers no longer registered (or dropped), deleted.
pub fn scopes_of_gone_readers() -> String {
    format!(
        "DELETE FROM {SCOPE_TABLE} s WHERE (s.role_oid, s.tenant_name) NOT IN ({EXISTING_READERS})"
    )
}

/// `SCOPE_TABLE`'s rows of every existing registered reader, made.
pub fn scopes_of_readers() -> String {
    format!("INSERT INTO {SCOPE_TABLE} (role_oid, tenant_name) {EXISTING_READERS} ON CONFLICT DO NOTHING")
}

/// Drop a (schema-qualified, already quoted) table and what depends on it.
pub fn drop_table_cascade_named(qualified: &str) -> String {
    format!("DROP TABLE {qualified} CASCADE")
}

/// Drop one of the seeds' objects adoption replaces: `what` is `VIEW`, `MATERIALIZED VIEW`
/// or `FUNCTION` as the catalog query names it, `object` its quoted name (or signature).
pub fn drop_seed_object(what: &str, object: &str) -> String {
    format!("DROP {what} IF EXISTS {object} CASCADE")
}

/// Drop a tenant's schema and everything in it (a tenant removed with its data).
pub fn drop_tenant_schema(tenant: &CheckedName) -> String {
    format!("DROP SCHEMA IF EXISTS {} CASCADE", tenant.quoted())
}

/// Drop a tenant's foreign server and its user mapping.
pub fn drop_server(server: &str) -> String {
    format!("DROP SERVER IF EXISTS {} CASCADE", quote_ident(server))
}

/// A tenant's foreign server owned by wh_admin, usable by it alone.
pub fn server_for_admin(server: &str) -> [String; 3] {
    let s = quote_ident(server);
    [
        format!("ALTER SERVER {s} OWNER TO {ADMIN_ROLE}"),
        format!("REVOKE ALL ON FOREIGN SERVER {s} FROM PUBLIC"),
        format!("GRANT USAGE ON FOREIGN SERVER {s} TO {ADMIN_ROLE}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pure::template::TemplateInput;

    #[test]
    fn identifiers_are_quoted_in_every_ddl_builder() {
        let tenant = CheckedName::tenant(Some("acme")).unwrap();
        let tn = TableNames::new(&CheckedName::template(Some("sales")).unwrap());
        assert_eq!(
            rename_tenant_in("run_log"),
            "UPDATE _wh.\"run_log\" SET tenant_name = $2 WHERE tenant_name = $1"
        );
        assert_eq!(
            grant_select("\"_wh_data\".\"sales\"", "Bob \"x\""),
            "GRANT SELECT ON \"_wh_data\".\"sales\" TO \"Bob \"\"x\"\"\""
        );
        assert_eq!(revoke_select("t", "bob"), "REVOKE SELECT ON t FROM \"bob\"");
        assert_eq!(
            drop_tenant_schema(&tenant),
            "DROP SCHEMA IF EXISTS \"acme\" CASCADE"
        );
        assert_eq!(
            drop_server("wh tenant"),
            "DROP SERVER IF EXISTS \"wh tenant\" CASCADE"
        );
        assert_eq!(
            server_for_admin("wh_acme")[0],
            "ALTER SERVER \"wh_acme\" OWNER TO wh_admin"
        );
        assert_eq!(
            rename_index(&tn, "sales_2025_new_id_idx", "sales_2025_id_idx"),
            format!(
                "ALTER INDEX {} RENAME TO \"sales_2025_id_idx\"",
                tn.data("sales_2025_new_id_idx")
            )
        );
        assert!(scopes_of_gone_readers().starts_with(&format!("DELETE FROM {SCOPE_TABLE} s")));
        assert!(scopes_of_readers().contains("ON CONFLICT DO NOTHING"));
    }

    fn tpl() -> Template {
        Template::parse(&TemplateInput {
            name: Some("foodlogstats"),
            query: Some("SELECT id, logged_time FROM f WHERE logged_time >= '{TARGET_DATE}'"),
            column_definitions: Some("id bigint, logged_time timestamptz"),
            time_column: Some("logged_time"),
            unique_key: Some("id"),
            indexes: vec!["unique (id)".into(), "logged_time".into()],
            description: None,
            lookback_days: 1,
        })
        .unwrap()
    }

    fn tn() -> TableNames {
        TableNames::new(&tpl().name)
    }

    #[test]
    fn the_table_and_its_indexes() {
        let t = tpl();
        assert_eq!(
            create_table(&tn(), &t),
            "CREATE TABLE \"_wh_data\".\"foodlogstats\" (\"id\" bigint, \"logged_time\" timestamptz, \"schema_name\" text NOT NULL) \
             PARTITION BY RANGE (\"logged_time\")"
        );
        let ix = table_indexes(&tn(), &t);
        assert_eq!(ix[0], "CREATE INDEX \"foodlogstats_tenant_time\" ON \"_wh_data\".\"foodlogstats\" (\"schema_name\", \"logged_time\")");
        assert_eq!(
            ix[1],
            "CREATE UNIQUE INDEX \"foodlogstats_ix1\" ON \"_wh_data\".\"foodlogstats\" (\"schema_name\", \"id\", \"logged_time\")"
        );
        assert_eq!(
            ix[2],
            "CREATE INDEX \"foodlogstats_ix2\" ON \"_wh_data\".\"foodlogstats\" (\"logged_time\")"
        );
        let shapes = [
            IndexShape {
                unique: true,
                using: "btree (schema_name, id, logged_time)".into(),
            },
            IndexShape {
                unique: false,
                using: "gin (note gin_trgm_ops) WHERE (weight > (0)::numeric)".into(),
            },
        ];
        assert_eq!(
            aside_indexes(&tn(), "foodlogstats_2024_new", &shapes),
            [
                "CREATE UNIQUE INDEX ON \"_wh_data\".\"foodlogstats_2024_new\" USING btree (schema_name, id, logged_time)",
                "CREATE INDEX ON \"_wh_data\".\"foodlogstats_2024_new\" USING gin (note gin_trgm_ops) WHERE (weight > (0)::numeric)",
            ]
        );
    }

    #[test]
    fn the_source_sums_days_like_the_warehouse() {
        let t = tpl();
        let d = Day::parse("2025-09-24").unwrap();
        let q = source_day_summary(&t, &[d, d.succ()], t.columns.len());
        assert!(q.starts_with("SELECT wh_v.wh_day, pg_catalog.count(*)::int8 AS n, coalesce(pg_catalog.sum(pg_catalog.hash_record_extended(ROW(wh_v.\"id\"::bigint, "), "{q}");
        assert!(
            q.contains("'2025-09-24'::date AS wh_day")
                && q.contains("'2025-09-25'::date AS wh_day")
                && q.ends_with(") AS wh_v GROUP BY 1"),
            "{q}"
        );
        // The warehouse's checksum is the same expression over the stored (typed) columns.
        let w = stored_summary(&tn(), &t, TimeKind::Timestamptz, d, d.succ());
        assert!(
            w.contains("coalesce(sum(pg_catalog.hash_record_extended(ROW(wh_x.\"id\", "),
            "{w}"
        );
    }

    #[test]
    fn a_tenant_is_renamed_by_copy_and_delete() {
        let t = tpl();
        let span = (
            Day::parse("2025-09-01").unwrap(),
            Day::parse("2025-10-01").unwrap(),
        );
        let columns = [
            "id".to_string(),
            "schema_name".to_string(),
            "note".to_string(),
        ];
        let [copy, delete] = move_tenant_rows(&tn(), &columns, &t, TimeKind::Timestamptz, span);
        assert!(copy.starts_with(
            "INSERT INTO \"_wh_data\".\"foodlogstats\" (\"id\", \"schema_name\", \"note\") SELECT \"id\", $2::text, \"note\" FROM \"_wh_data\".\"foodlogstats\" WHERE \"schema_name\" = $1::text AND "
        ), "{copy}");
        assert!(
            delete.starts_with(
                "DELETE FROM \"_wh_data\".\"foodlogstats\" WHERE \"schema_name\" = $1::text AND "
            ),
            "{delete}"
        );
        assert!(!delete.contains("$2"), "{delete}");
        let update = rename_tenant_rows(&tn(), &t, TimeKind::Timestamptz, span.0, span.1);
        assert!(
            update
                .starts_with("UPDATE \"_wh_data\".\"foodlogstats\" SET \"schema_name\" = $2 WHERE"),
            "{update}"
        );
    }

    #[test]
    fn partitions_and_policies() {
        let t = tpl();
        let (lo, hi) = (
            Day::parse("2025-09-01").unwrap(),
            Day::parse("2025-10-01").unwrap(),
        );
        let p = create_partition_table(
            &tn(),
            "foodlogstats_2025_09",
            "foodlogstats_2025_09",
            &t,
            TimeKind::Timestamptz,
            (lo, hi),
            Storage::default(),
        );
        assert_eq!(
            p[0],
            "CREATE TABLE \"_wh_data\".\"foodlogstats_2025_09\" (LIKE \"_wh_data\".\"foodlogstats\")"
        );
        let year = create_partition_table(
            &tn(),
            "foodlogstats_2025_new",
            "foodlogstats_2025",
            &t,
            TimeKind::Timestamptz,
            (
                Day::parse("2025-01-01").unwrap(),
                Day::parse("2026-01-01").unwrap(),
            ),
            Storage {
                tablespace: Some("cold"),
                access: AccessMethod::Columnar,
            },
        );
        assert_eq!(
            year[0],
            "CREATE TABLE \"_wh_data\".\"foodlogstats_2025_new\" (LIKE \"_wh_data\".\"foodlogstats\") USING columnar TABLESPACE \"cold\""
        );
        // Built aside, its bounds are named for the partition it becomes.
        assert!(year[2].starts_with("ALTER TABLE \"_wh_data\".\"foodlogstats_2025_new\" ADD CONSTRAINT \"foodlogstats_2025_bounds\" CHECK"), "{}", year[2]);
        assert!(p[2].contains("CHECK (\"logged_time\" IS NOT NULL AND \"logged_time\" >= '2025-09-01 00:00:00+00'::timestamptz"));
        assert_eq!(
            attach(&tn(), "foodlogstats_2025_09", TimeKind::Timestamptz, lo, hi),
            "ALTER TABLE \"_wh_data\".\"foodlogstats\" ATTACH PARTITION \"_wh_data\".\"foodlogstats_2025_09\" \
             FOR VALUES FROM ('2025-09-01 00:00:00+00') TO ('2025-10-01 00:00:00+00')"
        );
        let [all, scoped] = table_policies(&tn());
        assert_eq!(all.0, "wh:all");
        assert_eq!(
            scoped.1,
            "CREATE POLICY \"wh:scoped\" ON \"_wh_data\".\"foodlogstats\" AS PERMISSIVE FOR SELECT TO PUBLIC \
             USING (\"schema_name\" OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT s.tenant_name FROM \"_wh_scope\".\"readers\" s)))"
        );
        assert!(table_grants(&tn())
            .iter()
            .any(|g| g.contains("ENABLE ROW LEVEL SECURITY")));
    }

    #[test]
    fn staging_and_apply() {
        let t = tpl();
        let s = staged_summary(&tn(), &t, TimeKind::Timestamptz);
        assert!(
            s.starts_with("SELECT wh_day, count(*) AS n, ")
                && s.ends_with(
                    "FROM pg_temp.\"wh_stage_foodlogstats_00000000\" AS wh_s GROUP BY wh_day"
                ),
            "{s}"
        );
        assert!(
            s.contains(
                "(pg_catalog.timezone('UTC'::text, wh_s.\"logged_time\"))::date <> wh_s.wh_day"
            ),
            "{s}"
        );
        assert!(
            s.contains("hash_record_extended(ROW(wh_s.\"id\", wh_s.\"logged_time\"), 0::int8)"),
            "{s}"
        );
        let d = stage_duplicates(&tn(), &t).unwrap();
        assert!(
            d.contains("GROUP BY wh_s.wh_day, wh_s.\"id\" HAVING count(*) > 1"),
            "{d}"
        );
        let d = Day::parse("2025-09-24").unwrap();
        assert_eq!(
            delete_day(&tn(), &t, TimeKind::Timestamptz, d),
            "DELETE FROM \"_wh_data\".\"foodlogstats\" WHERE \"schema_name\" = $1::text AND \"logged_time\" IS NOT NULL \
             AND \"logged_time\" >= '2025-09-24 00:00:00+00'::timestamptz AND \"logged_time\" < '2025-09-25 00:00:00+00'::timestamptz"
        );
        assert_eq!(
            insert_staged(&tn(), &t, &tn().table()),
            "INSERT INTO \"_wh_data\".\"foodlogstats\" (\"id\", \"logged_time\", \"schema_name\") SELECT \"id\", \"logged_time\", $1::text \
             FROM pg_temp.\"wh_stage_foodlogstats_00000000\" WHERE wh_day = ANY ($2::date[])"
        );
        let st = stored_summary(&tn(), &t, TimeKind::Timestamptz, d, d.succ());
        assert!(
            st.contains(
                "WHERE wh_x.\"schema_name\" = $1::text AND wh_x.\"logged_time\" IS NOT NULL"
            ),
            "{st}"
        );
    }

    #[test]
    fn tenant_view_is_a_constant_filter() {
        let t = tpl();
        let n = SliceNames::new(&CheckedName::tenant(Some("tenant_a")).unwrap(), &t.name);
        assert_eq!(
            tenant_view(&n, &t),
            "CREATE OR REPLACE VIEW \"tenant_a\".\"foodlogstats\" WITH (security_invoker = true) AS SELECT \"id\", \"logged_time\" \
             FROM \"_wh_data\".\"foodlogstats:all\" WHERE \"schema_name\" = 'tenant_a'::text \
             UNION ALL SELECT \"id\", \"logged_time\" FROM \"_wh_data\".\"foodlogstats\" WHERE \"schema_name\" = 'tenant_a'::text \
             AND NOT \"_wh_scope\".\"reads_every_tenant\"()"
        );
        let c = copy_range(
            &tn(),
            "foodlogstats_2024_new",
            &t,
            TimeKind::Date,
            Day::parse("2024-01-01").unwrap(),
            Day::parse("2025-01-01").unwrap(),
        );
        assert!(
            c.ends_with("ORDER BY \"schema_name\", \"logged_time\""),
            "{c}"
        );
    }

    #[test]
    fn the_readers_view_is_a_plain_view_of_the_table_for_wh_reader_only() {
        let cols = ["id", "logged_time", "schema_name"].map(String::from);
        assert_eq!(
            reader_view(&tn(), &cols),
            "CREATE OR REPLACE VIEW \"public\".\"foodlogstats\" AS SELECT \"id\", \"logged_time\", \"schema_name\" \
             FROM \"_wh_data\".\"foodlogstats\" WHERE \"_wh_scope\".\"reads_every_tenant\"()"
        );
        let grants = reader_view_grants(&tn());
        assert!(grants
            .iter()
            .any(|g| g == "REVOKE ALL ON \"public\".\"foodlogstats\" FROM PUBLIC"));
        assert!(grants
            .iter()
            .any(|g| g == "GRANT SELECT ON \"public\".\"foodlogstats\" TO wh_reader"));
        assert_eq!(grants.iter().filter(|g| g.starts_with("GRANT")).count(), 1);
        assert_eq!(
            all_rows_view(&tn(), &cols),
            "CREATE OR REPLACE VIEW \"_wh_data\".\"foodlogstats:all\" AS SELECT \"id\", \"logged_time\", \"schema_name\" \
             FROM \"_wh_data\".\"foodlogstats\" WHERE \"_wh_scope\".\"reads_every_tenant\"()"
        );
        assert_eq!(
            set_schema("\"public\".\"foodlogstats\"", "_wh_data"),
            "ALTER TABLE \"public\".\"foodlogstats\" SET SCHEMA \"_wh_data\""
        );
    }
}
