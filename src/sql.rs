//! SQL text builders. Pure: no SPI. Every identifier arrives as a `CheckedName` or a
//! name derived from one and is quoted here; every value that is not a validated day
//! bound travels as a `$n` parameter.

use crate::dates::Day;
use crate::names::{quote_ident, quote_literal, CheckedName, SliceNames};
use crate::template::{Template, TimeKind};

pub const ADMIN_ROLE: &str = "wh_admin";
pub const READER_ROLE: &str = "wh_reader";

pub fn create_schema(names: &SliceNames) -> String {
    format!("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {ADMIN_ROLE}", names.schema.quoted())
}

pub fn create_parent(names: &SliceNames, t: &Template) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({}) PARTITION BY RANGE ({})",
        names.parent(),
        t.column_defs_sql(),
        t.time_column.quoted()
    )
}

pub fn owner_to_admin(kind: &str, qualified: &str) -> String {
    format!("ALTER {kind} {qualified} OWNER TO {ADMIN_ROLE}")
}

/// Readers see the tenant schema and its unified relation; PUBLIC nothing.
pub fn reader_grants(names: &SliceNames) -> Vec<String> {
    vec![
        format!("REVOKE ALL ON SCHEMA {} FROM PUBLIC", names.schema.quoted()),
        format!("GRANT USAGE ON SCHEMA {} TO {READER_ROLE}", names.schema.quoted()),
        format!("REVOKE ALL ON {} FROM PUBLIC", names.parent()),
        format!("GRANT SELECT ON {} TO {READER_ROLE}", names.parent()),
    ]
}

/// A new, empty table shaped like the tenant's unified relation.
pub fn create_like_parent(names: &SliceNames, relation: &str) -> String {
    format!("CREATE TABLE {} (LIKE {})", names.qualified(relation), names.parent())
}

/// A new table like the parent, optionally in a tablespace (storage tiering).
pub fn create_like_parent_in(names: &SliceNames, relation: &str, tablespace: Option<&str>) -> String {
    match tablespace {
        Some(ts) => format!("{} TABLESPACE {}", create_like_parent(names, relation), quote_ident(ts)),
        None => create_like_parent(names, relation),
    }
}

/// Copy `[lo, hi)` of the tenant's unified relation into `relation`.
pub fn insert_from_parent(names: &SliceNames, relation: &str, t: &Template, kind: TimeKind, lo: Day, hi: Day) -> String {
    format!(
        "INSERT INTO {} SELECT * FROM {} WHERE {}",
        names.qualified(relation),
        names.parent(),
        in_range(t, kind, lo, hi)
    )
}

/// Row count and an order-independent checksum of the unique key (or the whole row)
/// over `[lo, hi)` of `relation_sql` (a qualified relation).
pub fn count_and_checksum(relation_sql: &str, t: &Template, kind: TimeKind, lo: Day, hi: Day) -> String {
    let key = if t.unique_key.is_empty() {
        "wh_x.*".to_string()
    } else {
        t.unique_key.iter().map(|c| format!("wh_x.{}", c.quoted())).collect::<Vec<_>>().join(", ")
    };
    format!(
        "SELECT count(*) AS n, coalesce(sum(pg_catalog.hash_record_extended(ROW({key}), 0)), 0)::text AS checksum \
         FROM {relation_sql} AS wh_x WHERE {}",
        in_range(t, kind, lo, hi).replace(&t.time_column.quoted(), &format!("wh_x.{}", t.time_column.quoted()))
    )
}

/// Copy `[lo, hi)` of the tenant's unified relation into `relation` and measure what was
/// copied (row count and unique-key checksum, as `count_and_checksum`) in the same pass.
pub fn copy_and_measure(names: &SliceNames, relation: &str, t: &Template, kind: TimeKind, lo: Day, hi: Day) -> String {
    let (returning, key) = if t.unique_key.is_empty() {
        ("*".to_string(), "wh_x.*".to_string())
    } else {
        (
            t.unique_key.iter().map(|c| c.quoted()).collect::<Vec<_>>().join(", "),
            t.unique_key.iter().map(|c| format!("wh_x.{}", c.quoted())).collect::<Vec<_>>().join(", "),
        )
    };
    format!(
        "WITH wh_ins AS ({} RETURNING {returning}) \
         SELECT count(*) AS n, coalesce(sum(pg_catalog.hash_record_extended(ROW({key}), 0)), 0)::text AS checksum \
         FROM wh_ins AS wh_x",
        insert_from_parent(names, relation, t, kind, lo, hi)
    )
}

pub fn delete_range(names: &SliceNames, relation: &str, t: &Template, kind: TimeKind, lo: Day, hi: Day) -> String {
    format!("DELETE FROM {} WHERE {}", names.qualified(relation), in_range(t, kind, lo, hi))
}

pub fn insert_all(names: &SliceNames, target: &str, source: &str) -> String {
    format!("INSERT INTO {} SELECT * FROM {}", names.qualified(target), names.qualified(source))
}

/// Move a table and its indexes to another tablespace.
pub fn set_tablespace(names: &SliceNames, relation: &str, t: &Template, tablespace: &str) -> Vec<String> {
    let mut v = vec![format!("ALTER TABLE {} SET TABLESPACE {}", names.qualified(relation), quote_ident(tablespace))];
    for n in 1..=t.indexes.len() {
        v.push(format!(
            "ALTER INDEX {} SET TABLESPACE {}",
            names.qualified(&index_name(relation, n)),
            quote_ident(tablespace)
        ));
    }
    v
}

/// Fill `relation` from the tenant: `$1` the foreign server name, `$2` the remote query.
pub fn insert_from_dblink(names: &SliceNames, relation: &str, t: &Template, dblink_schema: &str) -> String {
    format!(
        "INSERT INTO {} SELECT * FROM {}.dblink($1, $2) AS wh_r({})",
        names.qualified(relation),
        quote_ident(dblink_schema),
        t.column_defs_sql()
    )
}

/// Fill `relation` from an async query already sent on dblink connection `$1`.
pub fn insert_from_async_result(names: &SliceNames, relation: &str, t: &Template, dblink_schema: &str) -> String {
    format!(
        "INSERT INTO {} SELECT * FROM {}.dblink_get_result($1) AS wh_r({})",
        names.qualified(relation),
        quote_ident(dblink_schema),
        t.column_defs_sql()
    )
}

fn in_range(t: &Template, kind: TimeKind, lo: Day, hi: Day) -> String {
    let c = t.time_column.quoted();
    format!("{c} IS NOT NULL AND {c} >= {} AND {c} < {}", kind.bound(lo), kind.bound(hi))
}

/// Rows of `relation` outside `[lo, hi)`.
pub fn count_outside(names: &SliceNames, relation: &str, t: &Template, kind: TimeKind, lo: Day, hi: Day) -> String {
    format!("SELECT count(*) FROM {} WHERE NOT ({})", names.qualified(relation), in_range(t, kind, lo, hi))
}

/// The CHECK constraint that lets ATTACH PARTITION skip its validation scan.
pub fn add_bounds(names: &SliceNames, relation: &str, constraint: &str, t: &Template, kind: TimeKind, lo: Day, hi: Day) -> String {
    format!(
        "ALTER TABLE {} ADD CONSTRAINT {} CHECK ({})",
        names.qualified(relation),
        quote_ident(constraint),
        in_range(t, kind, lo, hi)
    )
}

pub fn bounds_constraint_name(slice: &str) -> String {
    format!("{slice}_bounds")
}

/// `<relation>_ix<n>` for the n-th (1-based) index of the template.
pub fn index_name(relation: &str, n: usize) -> String {
    format!("{relation}_ix{n}")
}

pub fn create_indexes(names: &SliceNames, relation: &str, t: &Template) -> Vec<String> {
    create_indexes_in(names, relation, t, None)
}

pub fn create_indexes_in(names: &SliceNames, relation: &str, t: &Template, tablespace: Option<&str>) -> Vec<String> {
    let ts = tablespace.map(|s| format!(" TABLESPACE {}", quote_ident(s))).unwrap_or_default();
    t.indexes
        .iter()
        .enumerate()
        .map(|(i, ix)| {
            format!(
                "CREATE {}INDEX {} ON {} ({}){ts}",
                if ix.unique { "UNIQUE " } else { "" },
                quote_ident(&index_name(relation, i + 1)),
                names.qualified(relation),
                ix.column_list_sql()
            )
        })
        .collect()
}

pub fn rename_indexes(names: &SliceNames, from: &str, to: &str, t: &Template) -> Vec<String> {
    (1..=t.indexes.len())
        .map(|n| {
            format!(
                "ALTER INDEX {} RENAME TO {}",
                names.qualified(&index_name(from, n)),
                quote_ident(&index_name(to, n))
            )
        })
        .collect()
}

pub fn analyze(names: &SliceNames, relation: &str) -> String {
    format!("ANALYZE {}", names.qualified(relation))
}

pub fn detach(names: &SliceNames, relation: &str) -> String {
    format!("ALTER TABLE {} DETACH PARTITION {}", names.parent(), names.qualified(relation))
}

pub fn drop_table(names: &SliceNames, relation: &str) -> String {
    format!("DROP TABLE {}", names.qualified(relation))
}

/// Drop several tables in one statement (partitions are detached by their drop): one
/// catalog pass instead of a detach and a drop per day when a year is folded.
pub fn drop_tables(names: &SliceNames, relations: &[String]) -> String {
    let list: Vec<String> = relations.iter().map(|r| names.qualified(r)).collect();
    format!("DROP TABLE {}", list.join(", "))
}

pub fn rename_table(names: &SliceNames, from: &str, to: &str) -> String {
    format!("ALTER TABLE {} RENAME TO {}", names.qualified(from), quote_ident(to))
}

pub fn attach(names: &SliceNames, relation: &str, kind: TimeKind, lo: Day, hi: Day) -> String {
    format!(
        "ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})",
        names.parent(),
        names.qualified(relation),
        kind.partition_bound(lo),
        kind.partition_bound(hi)
    )
}

/// Who sees which rows of a public view: wh_reader and wh_admin members see every tenant,
/// roles granted a tenant with `grant_tenant_reader` see that tenant. It stands above the
/// UNION ALL, so PostgreSQL still flattens the branches into one append (and prunes them
/// by `schema_name` at plan time); the role checks and the uncorrelated ARRAY(...) are
/// evaluated once per query, leaving one constant test per branch. The view reads
/// `_wh.tenant_readers` with its owner's rights.
pub fn visibility_filter(alias: &str) -> String {
    format!(
        "(pg_catalog.pg_has_role('{READER_ROLE}', 'USAGE') OR pg_catalog.pg_has_role('{ADMIN_ROLE}', 'USAGE') \
         OR {alias}.schema_name = ANY (ARRAY(SELECT wh_tr.tenant_name FROM _wh.tenant_readers wh_tr \
            JOIN pg_catalog.pg_roles wh_ro ON wh_ro.rolname = wh_tr.role_name \
            WHERE pg_catalog.pg_has_role(wh_ro.oid, 'USAGE'))))"
    )
}

/// `public.<template>`: one UNION ALL branch per tenant, each tagged with its schema, so
/// `WHERE schema_name = '…'` prunes the other branches at plan time.
pub fn public_view(t: &Template, tenants: &[SliceNames]) -> String {
    let cols = t.column_names_sql();
    let body = if tenants.is_empty() {
        let nulls: Vec<String> =
            t.columns.iter().map(|c| format!("NULL::{} AS {}", c.type_sql, c.name.quoted())).collect();
        format!("SELECT {}, NULL::text AS schema_name WHERE false", nulls.join(", "))
    } else {
        let branches = tenants
            .iter()
            .map(|n| format!("SELECT {cols}, {}::text AS schema_name FROM {}", quote_literal(n.schema.as_str()), n.parent()))
            .collect::<Vec<_>>()
            .join("\nUNION ALL\n");
        let outer: Vec<String> = t.columns.iter().map(|c| format!("wh_u.{}", c.name.quoted())).collect();
        format!(
            "SELECT {}, wh_u.schema_name FROM (\n{branches}\n) AS wh_u\nWHERE {}",
            outer.join(", "),
            visibility_filter("wh_u")
        )
    };
    format!("CREATE OR REPLACE VIEW public.{} AS\n{}", t.name.quoted(), body)
}

pub fn public_view_grants(t: &Template, tenant_readers: &[String]) -> Vec<String> {
    let v = format!("public.{}", t.name.quoted());
    let mut out = vec![
        owner_to_admin("VIEW", &v),
        format!("REVOKE ALL ON {v} FROM PUBLIC"),
        format!("GRANT SELECT ON {v} TO {READER_ROLE}"),
    ];
    out.extend(tenant_readers.iter().map(|r| format!("GRANT SELECT ON {v} TO {}", quote_ident(r))));
    out
}

/// A tenant-scoped reader may use the tenant schema and read its unified relations.
pub fn tenant_reader_grants(schema: &CheckedName, relations: &[String], role: &str, grant: bool) -> Vec<String> {
    let (verb, prep) = if grant { ("GRANT", "TO") } else { ("REVOKE", "FROM") };
    let r = quote_ident(role);
    let mut out = vec![format!("{verb} USAGE ON SCHEMA {} {prep} {r}", schema.quoted())];
    out.extend(relations.iter().map(|rel| format!("{verb} SELECT ON {rel} {prep} {r}")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::TemplateInput;

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

    fn names(tenant: &str) -> SliceNames {
        SliceNames::new(&CheckedName::tenant(Some(tenant)).unwrap(), &tpl().name)
    }

    #[test]
    fn slice_ddl() {
        let t = tpl();
        let n = names("tenant_a");
        let d = Day::parse("2025-09-24").unwrap();
        assert_eq!(
            create_parent(&n, &t),
            "CREATE TABLE IF NOT EXISTS \"tenant_a\".\"foodlogstats\" (\"id\" bigint, \"logged_time\" timestamptz) PARTITION BY RANGE (\"logged_time\")"
        );
        assert_eq!(
            attach(&n, "foodlogstats_2025_09_24", TimeKind::Timestamptz, d, d.succ()),
            "ALTER TABLE \"tenant_a\".\"foodlogstats\" ATTACH PARTITION \"tenant_a\".\"foodlogstats_2025_09_24\" \
             FOR VALUES FROM ('2025-09-24 00:00:00+00') TO ('2025-09-25 00:00:00+00')"
        );
        let ix = create_indexes(&n, "foodlogstats_2025_09_24_new", &t);
        assert_eq!(ix[0], "CREATE UNIQUE INDEX \"foodlogstats_2025_09_24_new_ix1\" ON \"tenant_a\".\"foodlogstats_2025_09_24_new\" (\"id\")");
        assert_eq!(ix[1], "CREATE INDEX \"foodlogstats_2025_09_24_new_ix2\" ON \"tenant_a\".\"foodlogstats_2025_09_24_new\" (\"logged_time\")");
        let bounds = add_bounds(&n, "x", "x_bounds", &t, TimeKind::Timestamptz, d, d.succ());
        assert!(bounds.contains("CHECK (\"logged_time\" IS NOT NULL AND \"logged_time\" >= '2025-09-24 00:00:00+00'::timestamptz"));
        let ins = insert_from_dblink(&n, "x", &t, "public");
        assert_eq!(ins, "INSERT INTO \"tenant_a\".\"x\" SELECT * FROM \"public\".dblink($1, $2) AS wh_r(\"id\" bigint, \"logged_time\" timestamptz)");
    }

    #[test]
    fn fold_sql() {
        let t = tpl();
        let n = names("tenant_a");
        let (lo, hi) = (Day::parse("2024-01-01").unwrap(), Day::parse("2025-01-01").unwrap());
        let c = count_and_checksum(&n.parent(), &t, TimeKind::Timestamptz, lo, hi);
        assert!(c.contains("hash_record_extended(ROW(wh_x.\"id\"), 0)"), "{c}");
        assert!(c.contains("wh_x.\"logged_time\" >= '2024-01-01 00:00:00+00'::timestamptz"), "{c}");
        assert_eq!(
            create_like_parent_in(&n, "foodlogstats_2024_new", Some("cold")),
            "CREATE TABLE \"tenant_a\".\"foodlogstats_2024_new\" (LIKE \"tenant_a\".\"foodlogstats\") TABLESPACE \"cold\""
        );
        assert!(create_indexes_in(&n, "x", &t, Some("cold"))[0].ends_with("(\"id\") TABLESPACE \"cold\""));
        assert_eq!(set_tablespace(&n, "foodlogstats_2024", &t, "cold").len(), 3);
        let cm = copy_and_measure(&n, "foodlogstats_2024_new", &t, TimeKind::Timestamptz, lo, hi);
        assert!(cm.starts_with("WITH wh_ins AS (INSERT INTO \"tenant_a\".\"foodlogstats_2024_new\" SELECT * FROM \"tenant_a\".\"foodlogstats\" WHERE"), "{cm}");
        assert!(cm.contains("RETURNING \"id\")") && cm.contains("hash_record_extended(ROW(wh_x.\"id\"), 0)"), "{cm}");
    }

    #[test]
    fn public_view_has_one_branch_per_tenant() {
        let t = tpl();
        let v = public_view(&t, &[names("tenant_a"), names("tenant_b")]);
        assert_eq!(v.matches("UNION ALL").count(), 1);
        assert!(v.contains("'tenant_b'::text AS schema_name FROM \"tenant_b\".\"foodlogstats\"\n) AS wh_u\nWHERE (pg_catalog.pg_has_role('wh_reader'"));
        assert!(v.contains("wh_u.schema_name = ANY (ARRAY(SELECT wh_tr.tenant_name"));
        let empty = public_view(&t, &[]);
        assert!(empty.contains("NULL::bigint AS \"id\"") && empty.ends_with("WHERE false"));
    }
}
