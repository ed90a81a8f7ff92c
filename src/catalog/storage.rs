//! The relations readers query (storage v2): the table `_wh_data.<template>` (every
//! tenant's rows, RANGE-partitioned on the time column, its partitions beside it), the
//! all-tenant readers' view `public.<template>` (owner's rights: plans as a flat table)
//! and the tenant views `<tenant>.<template>` (reader's rights: row-level security).
//!
//! Locks: partitions are created aside and ATTACHed (SHARE UPDATE EXCLUSIVE on the
//! parent: readers and writers go on); DDL that needs ACCESS EXCLUSIVE on the parent
//! (dropping or swapping partitions, policies) runs through `_wh._ddl`, which waits at
//! most a short `lock_timeout` per try and retries, so a slow reader delays wh, never
//! the readers queued behind it. No DDL runs on a refresh path once the day's partition
//! exists (maintenance makes them ahead).

use pgrx::datum::DatumWithOid;
use serde_json::{json, Value};

use crate::catalog::db::{col, coordinator_only, exec, exec_all, one, rows};
use crate::catalog::{self, LoadedTemplate};
use crate::pure::dates::{Day, Grain};
use crate::pure::error::{raise, WhError};
use crate::pure::names::{CheckedName, SliceNames, TableNames, DATA_SCHEMA};
use crate::pure::sql;
use crate::pure::template::AccessMethod;

pub use crate::catalog::citus::{citus_installed, distribute_aside, is_distributed};
pub use crate::catalog::db::{ddl, relation_exists};

/// A tenant's schema, made if missing. wh_admin has no CREATE on the database: the schema
/// comes from wh's one narrow path (`_wh._make_tenant_schema`), which refuses a reserved
/// name, a role's name or a schema wh did not make.
pub fn make_tenant_schema(tenant: &CheckedName) {
    exec(
        "SELECT _wh._make_tenant_schema($1, true)",
        &[DatumWithOid::from(tenant.as_str())],
    );
}

/// The oid of the relation named `qualified` (which must exist).
pub fn relation_oid(qualified: &str) -> pgrx::pg_sys::Oid {
    one::<pgrx::pg_sys::Oid>(
        "SELECT pg_catalog.to_regclass($1)::oid",
        &[DatumWithOid::from(qualified)],
    )
    .unwrap_or(pgrx::pg_sys::InvalidOid)
}

/// Is `qualified` a template's table (wh_admin's, partitioned), as DROP EXTENSION or
/// `drop_template(keep_data => true)` leave it, rather than some other relation of that name?
fn is_template_relation(qualified: &str) -> bool {
    one::<bool>(
        "SELECT c.relkind = 'p' AND c.relowner = 'wh_admin'::pg_catalog.regrole FROM pg_catalog.pg_class c \
         WHERE c.oid = pg_catalog.to_regclass($1)",
        &[DatumWithOid::from(qualified)],
    )
    .unwrap_or(false)
}

/// Is `_wh_data.<template>` a template's table?
pub fn is_template_table(tn: &TableNames) -> bool {
    is_template_relation(&tn.table())
}

/// Is `public.<template>` wh's readers' view of the template's table (or, as 0.7.0 and
/// earlier kept it, the table itself, which `ensure_table` moves into `_wh_data`)?
fn is_readers_relation(tn: &TableNames) -> bool {
    is_template_relation(&tn.legacy_table())
        || one::<bool>(
            "SELECT c.relkind = 'v' AND c.relowner = 'wh_admin'::pg_catalog.regrole \
                    AND EXISTS (SELECT 1 FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_rewrite w ON w.oid = d.objid \
                                WHERE w.ev_class = c.oid AND d.refobjid = pg_catalog.to_regclass($2)) \
             FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass($1)",
            &[
                DatumWithOid::from(tn.reader_view().as_str()),
                DatumWithOid::from(tn.table().as_str()),
            ],
        )
        .unwrap_or(false)
}

/// Why a new template may not take this name, if it may not: a relation of its name that is
/// not wh's (in `public` or `_wh_data`), or the name of another template's partitions.
pub fn name_taken(tn: &TableNames) -> Option<String> {
    if relation_exists(&tn.reader_view()) && !is_readers_relation(tn) {
        return Some(format!(
            "{} already exists and is not a template's table or its readers' view",
            tn.reader_view()
        ));
    }
    if relation_exists(&tn.table()) && !is_template_table(tn) {
        return Some(format!(
            "{} already exists and is not a template's table",
            tn.table()
        ));
    }
    let template = tn.template.as_str();
    catalog::template_names()
        .into_iter()
        .find(|other| {
            crate::pure::names::partition_owner(template) == Some(other.as_str())
                || crate::pure::names::partition_owner(other.as_str()) == Some(template)
        })
        .map(|other| {
            format!("its table and template {other}'s would share names in {DATA_SCHEMA} (<template>_YYYY_MM are partitions)")
        })
}

/// `ddl` that gives up after `tries` (returns false) instead of raising.
pub fn try_ddl(stmts: &[String], tries: i32) -> bool {
    one::<i32>(
        "SELECT _wh._ddl($1::text[], 200, $2, true)",
        &[
            DatumWithOid::from(stmts.to_vec()),
            DatumWithOid::from(tries),
        ],
    )
    .unwrap_or(0)
        > 0
}

/// A partition of the table: its name, `[lo, hi)` and its access method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    pub lo: Day,
    pub hi: Day,
    pub access: AccessMethod,
}

/// The range a partition name covers: `<t>_YYYY_MM` or `<t>_YYYY`.
pub fn partition_range(tn: &TableNames, relname: &str) -> Option<(Day, Day)> {
    let suffix = relname
        .strip_prefix(tn.template.as_str())?
        .strip_prefix('_')?;
    match suffix.len() {
        7 => {
            let first = Day::parse(&format!("{}-01", suffix.replace('_', "-"))).ok()?;
            Some(Grain::Month.span(first))
        }
        4 => Some(crate::pure::dates::year_span(suffix.parse().ok()?)),
        _ => None,
    }
}

/// The partitions attached to the template's table, in time order.
pub fn partitions(tn: &TableNames) -> Vec<Partition> {
    let mut v: Vec<Partition> = rows(
        sql::PARTITIONS_OF,
        &[DatumWithOid::from(tn.table().as_str())],
        |r| {
            (
                col::<String>(r, "relname").unwrap_or_default(),
                col::<String>(r, "access"),
            )
        },
    )
    .into_iter()
    .filter_map(|(name, access)| {
        let (lo, hi) = partition_range(tn, &name)?;
        // Another access method than wh makes (none: heap) is taken as heap.
        let access = AccessMethod::parse(access.as_deref().unwrap_or("heap")).unwrap_or_default();
        Some(Partition {
            name,
            lo,
            hi,
            access,
        })
    })
    .collect();
    v.sort_by_key(|p| p.lo);
    v
}

/// Record that `year` of the template was folded, stored as `access` (a rebuild folds it
/// again so; the nightly maintenance compresses a columnar one a late change rewrote).
pub fn record_folded_year(template: &CheckedName, year: i32, access: AccessMethod) {
    exec(
        sql::RECORD_FOLDED_YEAR,
        &[
            DatumWithOid::from(template.as_str()),
            DatumWithOid::from(year),
            DatumWithOid::from(access.as_str()),
        ],
    );
}

/// The folded years of a template recorded before `before` (a year), oldest first.
pub fn folded_years(template: &CheckedName, before: i32) -> Vec<i32> {
    rows(
        sql::FOLDED_YEARS_BEFORE,
        &[
            DatumWithOid::from(template.as_str()),
            DatumWithOid::from(before),
        ],
        |r| col::<i32>(r, "year").unwrap_or(0),
    )
}

/// How a year was recorded as folded (None: never folded, or forgotten).
pub fn folded_access(template: &CheckedName, year: i32) -> Option<AccessMethod> {
    one::<String>(
        sql::FOLDED_YEAR_STORAGE,
        &[
            DatumWithOid::from(template.as_str()),
            DatumWithOid::from(year),
        ],
    )
    .and_then(|s| AccessMethod::parse(&s).ok())
}

/// Forget the folded years of a template before `year` (their partitions were dropped).
pub fn forget_folded_years(template: &CheckedName, before: i32) {
    exec(
        sql::FORGET_FOLDED_YEARS,
        &[
            DatumWithOid::from(template.as_str()),
            DatumWithOid::from(before),
        ],
    );
}

/// The folded years recorded as columnar (some may be heap now: a late change rewrote
/// them): template and year.
pub fn columnar_years() -> Vec<(CheckedName, i32)> {
    rows(sql::COLUMNAR_YEARS, &[], |r| {
        (
            col::<String>(r, "template_name").unwrap_or_default(),
            col::<i32>(r, "year").unwrap_or(0),
        )
    })
    .into_iter()
    .filter_map(|(t, y)| CheckedName::template(Some(&t)).ok().map(|t| (t, y)))
    .collect()
}

/// Refuse (55000) what needs columnar storage (`what`) where `citus_columnar` is not installed.
pub fn require_columnar(what: &str) {
    if !one::<bool>(sql::COLUMNAR_INSTALLED, &[]).unwrap_or(false) {
        raise(WhError::State(format!(
            "{what} needs the columnar access method, and citus_columnar is not installed in this database: \
             a superuser runs CREATE EXTENSION citus_columnar (Citus 13.2 on this server: see README, Past one machine)"
        )));
    }
}

/// An index of `relation` a columnar table cannot hold (not btree or hash), named with
/// its access method; None when there is none.
pub fn index_columnar_refuses(relation: &str) -> Option<String> {
    one::<String>(sql::INDEX_COLUMNAR_REFUSES, &[DatumWithOid::from(relation)])
}

/// The tablespace a relation lives in (None: the database's default).
pub fn tablespace_of(qualified: &str) -> Option<String> {
    one::<String>(sql::TABLESPACE_OF, &[DatumWithOid::from(qualified)])
}

/// Create `_wh_data.<template>` with its indexes, grants, row-level security and the
/// policies of existing tenant readers, if it is missing (0.7.0's `public.<template>` is
/// moved there instead, with its indexes, policies and grants), with its views. Cheap when
/// it exists (one catalog read: refreshes call it); `update_public_view` repairs the views.
/// Returns true when the table was created.
pub fn ensure_table(lt: &LoadedTemplate) -> bool {
    let tn = TableNames::new(&lt.t.name);
    let mut created = false;
    if !relation_exists(&tn.table()) {
        if is_template_relation(&tn.legacy_table()) {
            ddl(&[sql::set_schema(&tn.legacy_table(), DATA_SCHEMA)]);
        } else {
            exec(&sql::create_table(&tn, &lt.t), &[]);
            exec_all(&sql::table_indexes(&tn, &lt.t));
            exec_all(&sql::table_grants(&tn));
            exec_all(&sql::table_policies(&tn).map(|(_, create)| create));
            for tenant in crate::catalog::tenants_with_readers() {
                grant_readers_select(&tn, &tenant);
            }
            // Empty and without views yet: distributed here when the warehouse is.
            crate::catalog::citus::distribute_new_table(&lt.t.name, &tn);
            created = true;
        }
        ensure_table_views(&tn);
    }
    created
}

/// The table's columns, in their order.
pub fn table_columns(tn: &TableNames) -> Vec<String> {
    rows(
        sql::RELATION_COLUMNS,
        &[DatumWithOid::from(tn.table().as_str())],
        |r| col::<String>(r, "column").unwrap_or_default(),
    )
}

/// Create `public.<template>` and `_wh_data."<template>:all"` if they are missing.
pub fn ensure_table_views(tn: &TableNames) {
    if !relation_exists(&tn.all_rows_view()) {
        coordinator_only(|| {
            exec(&sql::all_rows_view(tn, &table_columns(tn)), &[]);
            exec_all(&sql::all_rows_view_grants(tn));
        });
        for tenant in crate::catalog::tenants_with_readers() {
            grant_readers_select(tn, &tenant);
        }
    }
    if !relation_exists(&tn.reader_view()) {
        coordinator_only(|| {
            exec(&sql::reader_view(tn, &table_columns(tn)), &[]);
            exec_all(&sql::reader_view_grants(tn));
        });
    }
}

/// The views of the whole table made again with its columns (after they changed: a column
/// appended keeps each view and its grants; a view dropped for a widened type comes back).
pub fn remake_table_views(tn: &TableNames) {
    let columns = table_columns(tn);
    coordinator_only(|| {
        ddl(&[
            sql::reader_view(tn, &columns),
            sql::all_rows_view(tn, &columns),
        ]);
        exec_all(&sql::reader_view_grants(tn));
        exec_all(&sql::all_rows_view_grants(tn));
    });
    for tenant in crate::catalog::tenants_with_readers() {
        grant_readers_select(tn, &tenant);
    }
}

/// One session makes a template's partitions at a time (its row FOR NO KEY UPDATE, until
/// the transaction ends: a backfill's chunk that attached a month holds it while it keeps
/// the month's rollups); another waits a bounded time (≈ 20 s, in tries of 200 ms; the
/// wait queues no reader) and then finds them made, or reports the wait (55P03).
const PARTITION_MAKING_TRIES: i32 = 25;

fn lock_partition_making(tn: &TableNames) {
    if !try_ddl(
        &[sql::lock_template_row_in(&tn.template, "NO KEY UPDATE")],
        PARTITION_MAKING_TRIES,
    ) {
        raise(WhError::Busy(format!(
            "{}: another session is making partitions (or folding) right now; try again",
            tn.table()
        )));
    }
}

/// Make sure every day of `[lo, hi)` has a partition. Cheap when they exist (one catalog
/// read); otherwise takes the template's row lock (so two sessions never create the same
/// partition), re-reads, and creates each missing one aside + ATTACH.
pub fn ensure_partitions(lt: &LoadedTemplate, lo: Day, hi: Day) -> Vec<String> {
    let tn = TableNames::new(&lt.t.name);
    ensure_table(lt);
    let missing = |have: &[Partition]| -> Vec<(Day, Day)> {
        lt.grain
            .spans(lo, hi)
            .into_iter()
            .filter(|(a, _)| !have.iter().any(|p| p.lo <= *a && *a < p.hi))
            .collect()
    };
    if missing(&partitions(&tn)).is_empty() {
        return vec![];
    }
    lock_partition_making(&tn);
    let mut made = Vec::new();
    for (a, b) in missing(&partitions(&tn)) {
        let name = match lt.grain {
            Grain::Month => tn.month(a),
            Grain::Year => tn.year(a.year()),
        };
        let mut stmts = sql::create_partition_table(
            &tn,
            &name,
            &name,
            &lt.t,
            lt.time_kind,
            (a, b),
            sql::Storage::default(),
        );
        stmts.push(sql::attach(&tn, &name, lt.time_kind, a, b));
        ddl(&stmts);
        made.push(name);
    }
    made
}

/// The period of the template's grain holding every day of `[first, last]`, when it has
/// no partition yet: its rows can be built aside (`load_period_aside`) instead of going
/// through per-row index maintenance. None when the days span two periods or theirs exists.
pub fn unpartitioned_period(lt: &LoadedTemplate, first: Day, last: Day) -> Option<(Day, Day)> {
    let period = lt.grain.span(first);
    if last >= period.1 {
        return None;
    }
    let tn = TableNames::new(&lt.t.name);
    let held = partitions(&tn)
        .iter()
        .any(|p| p.lo < period.1 && period.0 < p.hi);
    (!held).then_some(period)
}

/// How a period that had no partition was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeriodLoad {
    /// Built aside, indexed, analyzed and attached as the period's partition.
    Attached,
    /// Another session made the period's partition first: the rows went into the table.
    IntoTable,
}

impl PeriodLoad {
    /// Its name in a day's result (`partition_load`).
    pub fn name(self) -> &'static str {
        match self {
            PeriodLoad::Attached => "built aside and attached",
            PeriodLoad::IntoTable => "into the partition another session made",
        }
    }
}

/// Write the rows of a period that has no partition yet the way a bulk load does: `fill`
/// inserts them into a table made aside (`<partition>_new`, the partition's bounds as a
/// CHECK, no index), which then gets the table's indexes, ANALYZE, and is attached as the
/// period's partition (SHARE UPDATE EXCLUSIVE on the table: readers and writers go on;
/// the bounds constraint spares ATTACH its scan). Partitions are made by one session at a
/// time (the template's row FOR NO KEY UPDATE, bounded): when another made this one first,
/// the rows go into the table instead (the caller's days hold no stored row: their rows
/// are only inserted). None, with nothing done, when another session is building the same
/// period aside now or a relation of the aside's name exists.
pub fn load_period_aside(
    lt: &LoadedTemplate,
    (lo, hi): (Day, Day),
    fill: impl FnOnce(&str),
) -> Option<PeriodLoad> {
    let tn = TableNames::new(&lt.t.name);
    let relation = match lt.grain {
        Grain::Month => tn.month(lo),
        Grain::Year => tn.year(lo.year()),
    };
    let aside = tn.aside(&relation);
    let held = one::<bool>(
        sql::TRY_HOLD_ASIDE,
        &[DatumWithOid::from(tn.data(&aside).as_str())],
    )
    .unwrap_or(false);
    if !held || relation_exists(&tn.data(&aside)) {
        return None;
    }
    exec_all(&sql::create_partition_table(
        &tn,
        &aside,
        &relation,
        &lt.t,
        lt.time_kind,
        (lo, hi),
        sql::Storage::default(),
    ));
    distribute_aside(&tn, &aside);
    fill(&tn.data(&aside));
    let made_by_another = || partitions(&tn).iter().any(|p| p.lo < hi && lo < p.hi);
    // Made meanwhile (committed): no index is built for nothing.
    if made_by_another() {
        exec_all(&sql::move_into_table(&tn, &lt.t, &aside));
        return Some(PeriodLoad::IntoTable);
    }
    exec_all(&sql::aside_indexes(&tn, &aside, &index_shapes(&tn.table())));
    exec(&sql::analyze(&tn.data(&aside)), &[]);
    lock_partition_making(&tn);
    if made_by_another() {
        exec_all(&sql::move_into_table(&tn, &lt.t, &aside));
        return Some(PeriodLoad::IntoTable);
    }
    ddl(&swap_in(&tn, lt, &aside, &relation, (lo, hi)));
    Some(PeriodLoad::Attached)
}

/// The statements that make the table `aside` (built by `sql::create_partition_table` and
/// indexed by `sql::aside_indexes`) the partition `relation` of `[lo, hi)`: its name and its
/// indexes' names as PostgreSQL names a partition's own (its bounds constraint was named
/// for it at creation), then ATTACH, which adopts the indexes and, thanks to the
/// constraint, reads no row.
pub fn swap_in(
    tn: &TableNames,
    lt: &LoadedTemplate,
    aside: &str,
    relation: &str,
    (lo, hi): (Day, Day),
) -> Vec<String> {
    let mut stmts = index_renames(tn, aside, relation);
    stmts.push(sql::rename_partition(tn, aside, relation));
    stmts.push(sql::attach(tn, relation, lt.time_kind, lo, hi));
    stmts
}

/// The indexes of a relation as they exist (see `sql::IndexShape`).
pub fn index_shapes(relation: &str) -> Vec<sql::IndexShape> {
    rows(
        &sql::index_shapes_query(),
        &[DatumWithOid::from(relation)],
        |r| {
            let using = col::<String>(r, "using").unwrap_or_else(|| {
                raise(WhError::State(format!("an index of {relation} could not be read back from pg_get_indexdef; nothing was changed")))
            });
            sql::IndexShape {
                unique: col::<bool>(r, "uniq").unwrap_or(false),
                using,
            }
        },
    )
}

/// The indexes built on `aside` named for `relation`, as PostgreSQL names a partition's
/// own (`<table>_2025_new_schema_name_logged_time_idx` becomes
/// `<table>_2025_schema_name_logged_time_idx`): run after the names they take are free
/// (a fold's swap drops the year's old partitions first).
fn index_renames(tn: &TableNames, aside: &str, relation: &str) -> Vec<String> {
    let prefix = format!("{aside}_");
    rows(
        sql::INDEX_NAMES,
        &[DatumWithOid::from(tn.data(aside).as_str())],
        |r| col::<String>(r, "name").unwrap_or_default(),
    )
    .into_iter()
    .filter_map(|name| {
        let rest = name.strip_prefix(&prefix)?;
        Some(sql::rename_index(tn, &name, &format!("{relation}_{rest}")))
    })
    .collect()
}

/// Create the tenant schema and view `<tenant>.<template>` if missing (no DDL when it
/// exists). Returns true when the view was created now.
pub fn ensure_tenant_view(names: &SliceNames, lt: &LoadedTemplate) -> bool {
    if relation_exists(&names.view()) {
        return false;
    }
    ensure_table(lt);
    ensure_table_views(&names.table());
    coordinator_only(|| {
        make_tenant_schema(&names.tenant);
        exec(&sql::tenant_view(names, &lt.t), &[]);
        apply_view_grants(names);
    });
    true
}

pub fn apply_view_grants(names: &SliceNames) {
    exec_all(&sql::view_grants(names));
    for role in crate::catalog::readers_of(&names.tenant) {
        exec_all(&sql::tenant_reader_grants(
            &names.tenant,
            &[names.view()],
            &role,
            true,
        ));
    }
}

/// Is the relation owned by wh_admin, readable by wh_reader and not by PUBLIC (and, for
/// the table, under row-level security)? Repairs are DDL that queue readers: they run
/// only when this says something is wrong.
fn grants_hold(qualified: &str, table: bool) -> bool {
    one::<bool>(
        "SELECT c.relowner = 'wh_admin'::regrole AND (c.relrowsecurity OR NOT $2) \
                AND pg_catalog.has_table_privilege('wh_reader', c.oid, 'SELECT') \
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.aclexplode(coalesce(c.relacl, pg_catalog.acldefault('r', c.relowner))) a \
                                WHERE a.grantee = 0) \
         FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass($1)",
        &[DatumWithOid::from(qualified), DatumWithOid::from(table)],
    )
    .unwrap_or(false)
}

/// The rows of `SCOPE_TABLE`: exactly the registered readers that exist (by oid and name,
/// so a new role that took a dropped one's name gets nothing), every tenant's at once (a
/// dropped role's rows go too). DML only: the tables' policy `"wh:scoped"` reads them with
/// each statement, so a grant or a revocation takes effect at the reader's next statement
/// (its next transaction under REPEATABLE READ) and never waits for a reader's lock. On a
/// distributed warehouse, every worker's copy too (`citus::sync_scopes_to_workers`).
pub fn sync_reader_scopes() {
    // One sync at a time (readers reading the table do not wait: SHARE ROW EXCLUSIVE does not
    // conflict with their ACCESS SHARE): each pushes to the workers what the one before committed.
    exec(&sql::lock_scopes(), &[]);
    exec(&sql::scopes_of_gone_readers(), &[]);
    exec(&sql::scopes_of_readers(), &[]);
    crate::catalog::citus::sync_scopes_to_workers();
}

/// SELECT on the table and `_wh_data."<template>:all"` for `tenant`'s readers: the tenant
/// views read them with the reader's rights (row-level security keeps them to its rows;
/// the other is empty for them).
pub fn grant_readers_select(tn: &TableNames, tenant: &CheckedName) {
    for relation in [tn.table(), tn.all_rows_view()] {
        if !relation_exists(&relation) {
            continue;
        }
        for role in crate::catalog::readers_of(tenant) {
            exec(&sql::grant_select(&relation, &role), &[]);
        }
    }
}

/// `update_tenant_union_view`: create or repair `<tenant>.<template>` (owner, grants).
pub fn update_tenant_union_view(tenant: &CheckedName, template: &CheckedName) -> Value {
    let lt = catalog::load_template(template);
    let names = SliceNames::new(tenant, template);
    let created = ensure_tenant_view(&names, &lt);
    let repaired = !created && !grants_hold(&names.view(), false);
    if repaired {
        ddl(&sql::view_grants(&names));
    }
    for role in crate::catalog::readers_of(tenant) {
        exec_all(&sql::tenant_reader_grants(
            tenant,
            &[names.view()],
            &role,
            true,
        ));
    }
    json!({
        "operation": "update_tenant_union_view",
        "status": "succeeded",
        "relation": format!("{tenant}.{template}"),
        "created": created,
        "repaired": repaired,
    })
}

/// The table's two policies, made if missing (a distributed table's scoped readers' policy
/// without its subquery, which Citus refuses): DDL through `ddl`, only when one is missing.
/// Whether one was made.
pub fn ensure_policies(tn: &TableNames) -> bool {
    if !relation_exists(&tn.table()) {
        return false;
    }
    let distributed = is_distributed(tn);
    let mut made = false;
    for (name, create) in sql::table_policies(tn) {
        let has = one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_policy WHERE polrelid = pg_catalog.to_regclass($1) AND polname = $2)",
            &[DatumWithOid::from(tn.table().as_str()), DatumWithOid::from(name)],
        )
        .unwrap_or(false);
        if !has {
            let create = if distributed && name == sql::SCOPED_POLICY {
                sql::scoped_policy_distributed(tn)
            } else {
                create
            };
            ddl(&[create]);
            made = true;
        }
    }
    made
}

/// `update_public_view`: create or repair the table `_wh_data.<template>` and its readers'
/// view `public.<template>`: partitions for this period and the next two, grants,
/// row-level security and policies.
pub fn update_public_view(template: &CheckedName, today: Day) -> Value {
    let lt = catalog::load_template(template);
    let tn = TableNames::new(template);
    let created = ensure_table(&lt);
    ensure_table_views(&tn);
    if !created {
        if !grants_hold(&tn.table(), true) {
            ddl(&sql::table_grants(&tn));
        }
        if !grants_hold(&tn.reader_view(), false) {
            ddl(&sql::reader_view_grants(&tn));
        }
        if !grants_hold(&tn.all_rows_view(), false) {
            ddl(&sql::all_rows_view_grants(&tn));
        }
        ensure_policies(&tn);
        sync_reader_scopes();
        for tenant in crate::catalog::tenants_with_readers() {
            grant_readers_select(&tn, &tenant);
        }
        crate::catalog::citus::record_distribution(template, &tn);
    }
    let made = make_ahead(&lt, today);
    json!({
        "operation": "update_public_view",
        "status": "succeeded",
        "table": tn.table(),
        "view": tn.reader_view(),
        "created": created,
        "partitions_created": made,
        "partitions": partitions(&tn).len(),
    })
}

/// Partitions for the period holding `today` and the two after it.
pub fn make_ahead(lt: &LoadedTemplate, today: Day) -> Vec<String> {
    let (lo, _) = lt.grain.span(today);
    let mut hi = lo;
    for _ in 0..3 {
        hi = lt.grain.span(hi).1;
    }
    ensure_partitions(lt, lo, hi)
}

/// The schema partitions live in (for messages and tests).
pub fn data_schema() -> &'static str {
    DATA_SCHEMA
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_give_their_range() {
        let tn = TableNames::new(&CheckedName::template(Some("foodlogstats")).unwrap());
        let d = |s: &str| Day::parse(s).unwrap();
        assert_eq!(
            partition_range(&tn, "foodlogstats_2024_02"),
            Some((d("2024-02-01"), d("2024-03-01")))
        );
        assert_eq!(
            partition_range(&tn, "foodlogstats_2024"),
            Some((d("2024-01-01"), d("2025-01-01")))
        );
        assert_eq!(partition_range(&tn, "foodlogstats_2024_new"), None);
        assert_eq!(partition_range(&tn, "other_2024"), None);
        assert_eq!(partition_range(&tn, "foodlogstats_2024_13"), None);
    }
}
