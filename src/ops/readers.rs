//! Tenant-scoped readers: a role that may read one tenant's views and sees only that
//! tenant's rows of `public.<template>`: row-level security, the table's policy
//! `"wh:scoped"` reading the role's tenants from `names::SCOPE_TABLE`, which grants and
//! revocations change with DML (never a policy, so they never wait for a reader's lock).

use pgrx::datum::DatumWithOid;
use serde_json::{json, Value};

use crate::catalog::db::{col, exec, exec_all, one, rows};
use crate::catalog::storage::{self, grant_readers_select, relation_exists, sync_reader_scopes};
use crate::catalog::{self, log_run};
use crate::pure::error::{raise, WhError};
use crate::pure::names::{CheckedName, SliceNames, TableNames};
use crate::pure::report::OpResult;
use crate::pure::sql;

/// The tenant's views that exist.
fn tenant_relations(tenant: &CheckedName) -> Vec<String> {
    crate::catalog::templates()
        .iter()
        .map(|t| SliceNames::new(tenant, t).view())
        .filter(|r| relation_exists(r))
        .collect()
}

/// The templates whose table exists.
fn tables() -> Vec<TableNames> {
    crate::catalog::templates()
        .iter()
        .map(TableNames::new)
        .filter(|tn| relation_exists(&tn.table()))
        .collect()
}

fn schema_exists(tenant: &CheckedName) -> bool {
    one::<bool>(
        "SELECT pg_catalog.to_regnamespace($1) IS NOT NULL",
        &[DatumWithOid::from(tenant.as_str())],
    )
    .unwrap_or(false)
}

fn role_arg(role: Option<&str>) -> &str {
    role.unwrap_or_else(|| raise(WhError::NullArgument { what: "role_name" }))
}

/// A role that may be scoped to a tenant: it exists, and it is not one that reads every
/// tenant anyway or that wh's access rests on (wh_admin, wh_reader and their members,
/// superusers, BYPASSRLS roles, PostgreSQL's predefined pg_* roles).
fn check_reader_role(role: &str) -> pgrx::pg_sys::Oid {
    let invalid = |reason: &str| -> ! {
        raise(WhError::InvalidName {
            what: "role_name",
            value: role.to_string(),
            reason: reason.into(),
        })
    };
    let found = rows(
        "SELECT r.oid, r.rolsuper OR r.rolbypassrls AS sees_all, \
                r.rolname IN ('wh_admin', 'wh_reader') OR r.rolname ~ '^pg_' AS reserved, \
                pg_catalog.pg_has_role(r.oid, 'wh_reader', 'USAGE') OR pg_catalog.pg_has_role(r.oid, 'wh_admin', 'USAGE') AS member \
         FROM pg_catalog.pg_roles r WHERE r.rolname = $1",
        &[DatumWithOid::from(role)],
        |r| {
            (
                col::<pgrx::pg_sys::Oid>(r, "oid"),
                col::<bool>(r, "sees_all").unwrap_or(false),
                col::<bool>(r, "reserved").unwrap_or(false),
                col::<bool>(r, "member").unwrap_or(false),
            )
        },
    );
    let Some((Some(oid), sees_all, reserved, member)) = found.into_iter().next() else {
        invalid("is not an existing role")
    };
    if role.eq_ignore_ascii_case("public") {
        invalid("is not an existing role");
    }
    if reserved {
        invalid("is one of wh's or PostgreSQL's own roles, never a tenant reader");
    }
    if sees_all {
        invalid("is a superuser or has BYPASSRLS: it reads every tenant, a tenant scope would mean nothing");
    }
    if member {
        invalid("is a member of wh_reader or wh_admin, which read every tenant: scope a role outside them");
    }
    oid
}

pub fn grant_tenant_reader(role: Option<&str>, tenant: &CheckedName) -> Value {
    let role = role_arg(role).to_string();
    let oid = check_reader_role(&role);
    catalog::load_tenant(tenant);
    // A row left by a dropped role of the same name is taken over by this role, explicitly.
    exec(
        "INSERT INTO _wh.tenant_readers AS t (tenant_name, role_name, role_oid) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant_name, role_name) DO UPDATE SET role_oid = EXCLUDED.role_oid, made_in = EXCLUDED.made_in",
        &[DatumWithOid::from(tenant.as_str()), DatumWithOid::from(role.as_str()), DatumWithOid::from(oid)],
    );
    if schema_exists(tenant) {
        exec_all(&sql::tenant_reader_grants(
            tenant,
            &tenant_relations(tenant),
            &role,
            true,
        ));
    }
    for tn in tables() {
        grant_readers_select(&tn, tenant);
    }
    // Last: on a distributed warehouse the workers' copies commit on their own, now.
    sync_reader_scopes();
    let mut r = OpResult::new("grant_tenant_reader", None, Some(tenant.as_str()), None);
    r.detail("role", json!(role));
    log_run(&r);
    r.to_json()
}

/// After a restore, the readers the registry lists as granted in another warehouse whose
/// oid no role here has: granted again to the role that has that name here, if one does
/// (the restoring operator asks for it). A row granted in this warehouse never passes by
/// name: a new role that took a dropped reader's name here gets nothing.
/// Returns (granted again, role names missing).
pub fn regrant_by_name() -> (Vec<Value>, Vec<String>) {
    let stale: Vec<(String, String, bool)> = rows(
        "SELECT r.tenant_name, r.role_name::text AS role_name, EXISTS (SELECT 1 FROM pg_catalog.pg_roles o WHERE o.rolname = r.role_name) AS found \
         FROM _wh.tenant_readers r \
         WHERE r.made_in <> _wh._here() \
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles o WHERE o.oid = r.role_oid AND o.rolname = r.role_name) \
         ORDER BY 1, 2",
        &[],
        |r| {
            (
                col::<String>(r, "tenant_name").unwrap_or_default(),
                col::<String>(r, "role_name").unwrap_or_default(),
                col::<bool>(r, "found").unwrap_or(false),
            )
        },
    );
    let (mut granted, mut missing) = (Vec::new(), Vec::new());
    for (tenant, role, found) in stale {
        let Ok(t) = CheckedName::tenant(Some(&tenant)) else {
            continue;
        };
        if found && catalog::tenant_registered(&t) {
            grant_tenant_reader(Some(&role), &t);
            granted.push(json!({"role": role, "tenant": tenant}));
        } else {
            missing.push(role);
        }
    }
    (granted, missing)
}

/// Revoke by name: also for a role that was dropped since (its row goes; there is nothing
/// left to revoke from it) or whose name a new role took (that role never had the grant).
pub fn revoke_tenant_reader(role: Option<&str>, tenant: &CheckedName) -> Value {
    catalog::check_caller();
    let role = role_arg(role).to_string();
    let removed = one::<i64>(
        "WITH d AS (DELETE FROM _wh.tenant_readers WHERE tenant_name = $1 AND role_name = $2 RETURNING 1) SELECT count(*) FROM d",
        &[DatumWithOid::from(tenant.as_str()), DatumWithOid::from(role.as_str())],
    )
    .unwrap_or(0);
    let exists = one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)",
        &[DatumWithOid::from(role.as_str())],
    )
    .unwrap_or(false);
    if !exists {
        if removed == 0 {
            raise(WhError::InvalidName {
                what: "role_name",
                value: role,
                reason: "is neither an existing role nor a reader of this tenant".into(),
            });
        }
        sync_reader_scopes();
        let mut r = OpResult::new("revoke_tenant_reader", None, Some(tenant.as_str()), None);
        r.detail("role", json!(role));
        r.detail("role_dropped", json!(true));
        log_run(&r);
        return r.to_json();
    }
    if schema_exists(tenant) {
        exec_all(&sql::tenant_reader_grants(
            tenant,
            &tenant_relations(tenant),
            &role,
            false,
        ));
    }
    let still = one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM _wh.tenant_readers WHERE role_name = $1)",
        &[DatumWithOid::from(role.as_str())],
    )
    .unwrap_or(false);
    // First the rows the policy reads: from the reader's next statement on, it sees
    // none of the tenant's rows, whatever it holds open.
    sync_reader_scopes();
    for tn in tables() {
        if !still {
            for relation in [tn.table(), tn.all_rows_view()] {
                if !relation_exists(&relation) {
                    continue;
                }
                exec(&sql::revoke_select(&relation, &role), &[]);
            }
        } else if storage::is_distributed(&tn) {
            // Its policy's tenants were folded into cached plans: granting again invalidates
            // them on every node (no lock a reader holds is waited for).
            exec(&sql::grant_select(&tn.table(), &role), &[]);
        }
    }
    let mut r = OpResult::new("revoke_tenant_reader", None, Some(tenant.as_str()), None);
    r.detail("role", json!(role));
    log_run(&r);
    r.to_json()
}
