//! The relations readers query: `<tenant>.<template>` (range-partitioned by the time
//! column, one partition per day or folded year) and `public.<template>` (UNION ALL of
//! the tenants' relations with a `schema_name` column).

use pgrx::datum::DatumWithOid;
use serde_json::{json, Value};

use crate::catalog::{self, LoadedTemplate};
use crate::dates::Day;
use crate::db::{col, exec, exec_all, one, rows};
use crate::names::{CheckedName, SliceNames};
use crate::sql;

pub fn relation_exists(qualified: &str) -> bool {
    one::<bool>("SELECT pg_catalog.to_regclass($1) IS NOT NULL", &[DatumWithOid::from(qualified)]).unwrap_or(false)
}

/// Create the tenant schema and its unified relation if missing, and (re)apply owner and
/// grants. Returns true when the relation was created now.
pub fn ensure_parent(names: &SliceNames, lt: &LoadedTemplate) -> bool {
    let existed = relation_exists(&names.parent());
    if !existed {
        exec(&sql::create_schema(names), &[]);
        exec(&sql::create_parent(names, &lt.t), &[]);
        apply_owner_and_grants(names);
        // A new tenant of this template: give it its branch in public.<template>.
        update_public_view(&names.template);
    }
    !existed
}

/// The unified relation belongs to wh_admin; wh_reader and the tenant's scoped readers read it.
fn apply_owner_and_grants(names: &SliceNames) {
    exec(&sql::owner_to_admin("TABLE", &names.parent()), &[]);
    exec_all(&sql::reader_grants(names));
    for role in crate::readers::readers_of(&names.schema) {
        exec_all(&sql::tenant_reader_grants(&names.schema, &[names.parent()], &role, true));
    }
}

/// Recreate `public.<template>` if it is gone (a tenant schema dropped by hand with
/// CASCADE takes the view with it); the next run of any tenant brings it back.
pub fn ensure_public_view(template: &CheckedName) {
    if !relation_exists(&format!("public.{}", template.quoted())) {
        update_public_view(template);
    }
}

/// Day/year tables of the template in the tenant schema that are not attached.
fn orphans(names: &SliceNames) -> Vec<String> {
    rows(
        "SELECT c.relname::text AS relname FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relkind = 'r' AND NOT c.relispartition \
           AND c.relname ~ ('^' || $2 || '_[0-9]{4}(_[0-9]{2}_[0-9]{2})?$') ORDER BY 1",
        &[DatumWithOid::from(names.schema.as_str()), DatumWithOid::from(names.template.as_str())],
        |r| col::<String>(r, "relname").unwrap_or_default(),
    )
}

/// The day range a slice name covers: `<t>_YYYY_MM_DD` or `<t>_YYYY`.
pub fn slice_range(names: &SliceNames, relname: &str) -> Option<(Day, Day, &'static str)> {
    let suffix = relname.strip_prefix(names.template.as_str())?.strip_prefix('_')?;
    match suffix.len() {
        10 => {
            let d = Day::parse(&suffix.replace('_', "-")).ok()?;
            Some((d, d.succ(), "day"))
        }
        4 => {
            let y: i32 = suffix.parse().ok()?;
            Some((Day::first_of_year(y).ok()?, Day::first_of_year(y + 1).ok()?, "year"))
        }
        _ => None,
    }
}

/// Create or repair `<tenant>.<template>`: create it if missing, attach orphaned slices,
/// re-apply owner and grants. Cheap and idempotent.
pub fn update_tenant_union_view(tenant: &CheckedName, template: &CheckedName) -> Value {
    let lt = catalog::load_template(template);
    let names = SliceNames::new(tenant, template);
    let created = ensure_parent(&names, &lt);
    if !created {
        apply_owner_and_grants(&names);
    }
    let mut attached = Vec::new();
    for rel in orphans(&names) {
        if let Some((lo, hi, kind)) = slice_range(&names, &rel) {
            exec(&sql::attach(&names, &rel, lt.time_kind, lo, hi), &[]);
            let n = one::<i64>(&format!("SELECT count(*) FROM {}", names.qualified(&rel)), &[]).unwrap_or(0);
            catalog::register_slice(&names, &rel, kind, lo, hi, n, 0.0);
            attached.push(rel);
        }
    }
    let partitions = one::<i64>(
        "SELECT count(*) FROM pg_catalog.pg_inherits WHERE inhparent = pg_catalog.to_regclass($1)",
        &[DatumWithOid::from(names.parent().as_str())],
    )
    .unwrap_or(0);
    json!({
        "operation": "update_tenant_union_view",
        "status": "succeeded",
        "relation": format!("{}.{}", tenant, template),
        "created": created,
        "attached": attached,
        "partitions": partitions,
    })
}

/// Create or replace `public.<template>` over every registered tenant whose unified
/// relation exists (a tenant schema dropped by hand simply loses its branch).
pub fn update_public_view(template: &CheckedName) -> Value {
    let lt = catalog::load_template(template);
    let tenants: Vec<SliceNames> = catalog::tenant_names()
        .iter()
        .map(|t| SliceNames::new(t, template))
        .filter(|n| relation_exists(&n.parent()))
        .collect();
    let view = format!("public.{}", template.quoted());
    // Column types may only change by dropping the view (CREATE OR REPLACE cannot).
    if relation_exists(&view) && !same_columns(&view, &lt) {
        exec(&format!("DROP VIEW {view}"), &[]);
    }
    exec(&sql::public_view(&lt.t, &tenants), &[]);
    exec_all(&sql::public_view_grants(&lt.t, &crate::readers::all_readers()));
    json!({
        "operation": "update_public_view",
        "status": "succeeded",
        "view": format!("public.{}", template),
        "tenants": tenants.iter().map(|n| n.schema.to_string()).collect::<Vec<_>>(),
    })
}

fn same_columns(view: &str, lt: &LoadedTemplate) -> bool {
    let have: Vec<(String, String)> = rows(
        "SELECT a.attname::text AS n, pg_catalog.format_type(a.atttypid, a.atttypmod) AS t \
         FROM pg_catalog.pg_attribute a WHERE a.attrelid = pg_catalog.to_regclass($1) AND a.attnum > 0 \
           AND NOT a.attisdropped ORDER BY a.attnum",
        &[DatumWithOid::from(view)],
        |r| (col::<String>(r, "n").unwrap_or_default(), col::<String>(r, "t").unwrap_or_default()),
    );
    let mut want: Vec<(String, String)> = lt
        .t
        .columns
        .iter()
        .map(|c| (c.name.to_string(), catalog::canonical_type(&c.type_sql).unwrap_or_default()))
        .collect();
    want.push(("schema_name".into(), "text".into()));
    have == want
}
