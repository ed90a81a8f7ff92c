//! In-database tests: each runs inside one rolled-back transaction of a scratch cluster
//! that `cargo pgrx test` starts with the extension installed.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn one<T: pgrx::IntoDatum + pgrx::FromDatum>(sql: &str) -> T {
        Spi::get_one::<T>(sql).expect("query failed").expect("NULL result")
    }

    #[pg_test]
    fn creates_schema_tables_and_roles() {
        for t in ["tenant_connections", "connection_audit", "mv_templates", "slices", "run_log"] {
            let q = format!("SELECT to_regclass('_wh.{t}') IS NOT NULL");
            assert!(one::<bool>(&q), "missing _wh.{t}");
        }
        assert!(one::<bool>("SELECT count(*) = 2 FROM pg_roles WHERE rolname IN ('wh_admin','wh_reader') AND NOT rolcanlogin"));
    }

    #[pg_test]
    fn no_password_column_anywhere() {
        let n: i64 = one("SELECT count(*) FROM information_schema.columns WHERE table_schema = '_wh' AND column_name ~* 'pass|secret'");
        assert_eq!(n, 0);
    }

    #[pg_test]
    fn config_tables_are_dumped() {
        let n: i64 = one(
            "SELECT count(*) FROM pg_extension e, unnest(e.extconfig) c(oid) \
             JOIN pg_class k ON k.oid = c.oid WHERE e.extname = 'wh' AND k.relkind = 'r'",
        );
        assert_eq!(n, 7);
    }

    #[pg_test]
    fn public_and_reader_have_nothing_in_wh() {
        for role in ["public", "wh_reader"] {
            let q = format!("SELECT has_schema_privilege('{role}', '_wh', 'USAGE')");
            if role == "wh_reader" {
                assert!(!one::<bool>(&q), "{role} has USAGE on _wh");
            }
            let tables: i64 = one(&format!(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = '_wh' AND c.relkind IN ('r','v','S') \
                   AND (has_table_privilege('{role}', c.oid, 'SELECT') OR has_table_privilege('{role}', c.oid, 'INSERT'))"
            ));
            assert_eq!(tables, 0, "{role} can read or write a _wh relation");
        }
        let funcs: i64 = one(
            "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE n.nspname = '_wh' AND (has_function_privilege('wh_reader', p.oid, 'EXECUTE') \
               OR EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a WHERE a.grantee = 0))",
        );
        assert_eq!(funcs, 0, "PUBLIC or wh_reader may execute a _wh function");
    }

    #[pg_test]
    fn admin_has_what_it_needs() {
        assert!(one::<bool>("SELECT has_schema_privilege('wh_admin', '_wh', 'USAGE')"));
        assert!(one::<bool>("SELECT has_table_privilege('wh_admin', '_wh.mv_templates', 'SELECT,INSERT,UPDATE,DELETE')"));
        assert!(one::<bool>("SELECT has_function_privilege('wh_admin', '_wh.current_date_utc()', 'EXECUTE')"));
        assert!(one::<bool>("SELECT has_database_privilege('wh_admin', current_database(), 'CREATE')"));
        assert!(one::<bool>("SELECT has_foreign_data_wrapper_privilege('wh_admin', 'dblink_fdw', 'USAGE')"));
        assert!(!one::<bool>("SELECT has_table_privilege('wh_admin', '_wh.connection_audit', 'UPDATE')"));
    }

    #[pg_test]
    fn current_date_utc_ignores_session_time_zone() {
        Spi::run("SET LOCAL TimeZone = 'Pacific/Kiritimati'").unwrap();
        assert!(one::<bool>("SELECT _wh.current_date_utc() = (now() AT TIME ZONE 'UTC')::date"));
        Spi::run("SET LOCAL TimeZone = 'Pacific/Pago_Pago'").unwrap();
        assert!(one::<bool>("SELECT _wh.current_date_utc() = (now() AT TIME ZONE 'UTC')::date"));
    }
}
