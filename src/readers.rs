//! Tenant-scoped readers: a role that may read one tenant's views and sees only that
//! tenant's rows of `public.<template>`: row-level security, one policy per tenant
//! (`"wh:<tenant>"`, `USING (schema_name = '<tenant>')`) listing the tenant's readers.

use pgrx::datum::DatumWithOid;
use serde_json::{json, Value};

use crate::catalog::{self, log_run};
use crate::db::{col, exec, exec_all, one, rows};
use crate::error::{raise, WhError};
use crate::names::{CheckedName, SliceNames, TableNames};
use crate::report::OpResult;
use crate::sql;
use crate::storage::{relation_exists, sync_tenant_policy};

/// Roles granted `tenant` (only those that still exist).
pub fn readers_of(tenant: &CheckedName) -> Vec<String> {
    rows(
        "SELECT r.role_name::text AS role_name FROM _wh.tenant_readers r \
         JOIN pg_catalog.pg_roles o ON o.rolname = r.role_name WHERE r.tenant_name = $1 ORDER BY 1",
        &[DatumWithOid::from(tenant.as_str())],
        |r| col::<String>(r, "role_name").unwrap_or_default(),
    )
}

/// Tenants that have at least one scoped reader that exists.
pub fn tenants_with_readers() -> Vec<CheckedName> {
    rows(
        "SELECT DISTINCT r.tenant_name FROM _wh.tenant_readers r JOIN pg_catalog.pg_roles o ON o.rolname = r.role_name ORDER BY 1",
        &[],
        |r| col::<String>(r, "tenant_name").unwrap_or_default(),
    )
    .iter()
    .filter_map(|t| CheckedName::tenant(Some(t)).ok())
    .collect()
}

fn templates() -> Vec<CheckedName> {
    rows("SELECT template_name FROM _wh.mv_templates ORDER BY 1", &[], |r| col::<String>(r, "template_name").unwrap_or_default())
        .iter()
        .filter_map(|t| CheckedName::template(Some(t)).ok())
        .collect()
}

/// The tenant's views that exist.
fn tenant_relations(tenant: &CheckedName) -> Vec<String> {
    templates().iter().map(|t| SliceNames::new(tenant, t).view()).filter(|r| relation_exists(r)).collect()
}

/// The templates whose table exists.
fn tables() -> Vec<TableNames> {
    templates().iter().map(TableNames::new).filter(|tn| relation_exists(&tn.table())).collect()
}

fn schema_exists(tenant: &CheckedName) -> bool {
    one::<bool>("SELECT pg_catalog.to_regnamespace($1) IS NOT NULL", &[DatumWithOid::from(tenant.as_str())]).unwrap_or(false)
}

fn check_role(role: Option<&str>) -> String {
    let role = role.unwrap_or_else(|| raise(WhError::NullArgument { what: "role_name" }));
    let exists = one::<bool>("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)", &[DatumWithOid::from(role)])
        .unwrap_or(false);
    if !exists || role.eq_ignore_ascii_case("public") {
        raise(WhError::InvalidName { what: "role_name", value: role.to_string(), reason: "is not an existing role".into() });
    }
    role.to_string()
}

pub fn grant_tenant_reader(role: Option<&str>, tenant: &CheckedName) -> Value {
    let role = check_role(role);
    catalog::load_tenant(tenant);
    exec(
        "INSERT INTO _wh.tenant_readers (tenant_name, role_name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[DatumWithOid::from(tenant.as_str()), DatumWithOid::from(role.as_str())],
    );
    if schema_exists(tenant) {
        exec_all(&sql::tenant_reader_grants(tenant, &tenant_relations(tenant), &role, true));
    }
    for tn in tables() {
        sync_tenant_policy(&tn, tenant);
    }
    let mut r = OpResult::new("grant_tenant_reader", None, Some(tenant.as_str()), None);
    r.detail("role", json!(role));
    log_run(&r);
    r.to_json()
}

pub fn revoke_tenant_reader(role: Option<&str>, tenant: &CheckedName) -> Value {
    let role = check_role(role);
    exec(
        "DELETE FROM _wh.tenant_readers WHERE tenant_name = $1 AND role_name = $2",
        &[DatumWithOid::from(tenant.as_str()), DatumWithOid::from(role.as_str())],
    );
    if schema_exists(tenant) {
        exec_all(&sql::tenant_reader_grants(tenant, &tenant_relations(tenant), &role, false));
    }
    let still = one::<bool>("SELECT EXISTS (SELECT 1 FROM _wh.tenant_readers WHERE role_name = $1)", &[DatumWithOid::from(role.as_str())])
        .unwrap_or(false);
    for tn in tables() {
        sync_tenant_policy(&tn, tenant);
        if !still {
            exec(&format!("REVOKE SELECT ON {} FROM {}", tn.table(), crate::names::quote_ident(&role)), &[]);
        }
    }
    let mut r = OpResult::new("revoke_tenant_reader", None, Some(tenant.as_str()), None);
    r.detail("role", json!(role));
    log_run(&r);
    r.to_json()
}
