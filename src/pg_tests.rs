//! In-database tests: each runs inside one rolled-back transaction of a scratch cluster
//! that `cargo pgrx test` starts with the extension installed.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn one<T: pgrx::IntoDatum + pgrx::FromDatum>(sql: &str) -> T {
        Spi::get_one::<T>(sql)
            .expect("query failed")
            .expect("NULL result")
    }

    #[pg_test]
    fn creates_schema_tables_and_roles() {
        for t in [
            "tenant_connections",
            "connection_audit",
            "mv_templates",
            "slices",
            "run_log",
        ] {
            let q = format!("SELECT to_regclass('_wh.{t}') IS NOT NULL");
            assert!(one::<bool>(&q), "missing _wh.{t}");
        }
        assert!(one::<bool>("SELECT count(*) = 2 FROM pg_roles WHERE rolname IN ('wh_admin','wh_reader') AND NOT rolcanlogin"));
    }

    /// The fold's check (`sql::fold_check`): days whose rows or checksum differ, registered
    /// days missing from the copy, and rows of a tenant in scope on a day the registry does
    /// not hold are wrong, named; a day registered without a checksum is compared by count,
    /// an empty registered day matches no rows; another tenant's rows are out of scope.
    #[pg_test]
    fn the_fold_check_names_each_wrong_tenant_day() {
        use crate::pure::sql::{fold_check, fold_check_examples};
        Spi::run(
            "INSERT INTO _wh.slices (template_name, tenant_name, schema_name, slice_name, kind, range_start, range_end, row_count, checksum) VALUES \
             ('fx', 'tenant_a', 'tenant_a', 'fx_2024_03_01', 'day', '2024-03-01', '2024-03-02', 3, '42'), \
             ('fx', 'tenant_a', 'tenant_a', 'fx_2024_03_02', 'day', '2024-03-02', '2024-03-03', 0, '0'), \
             ('fx', 'tenant_a', 'tenant_a', 'fx_2024_03_03', 'day', '2024-03-03', '2024-03-04', 2, NULL)",
        )
        .expect("registry rows");
        let got = |values: &str| {
            format!("SELECT * FROM (VALUES {values}) AS g(tenant, wh_day, n, checksum)")
        };
        let check = |values: &str, tenant: Option<&str>| -> (i64, i64, i64, String, Vec<String>) {
            // The scope's parameters, written in: the template, the tenant, the year.
            let args = |q: &str| {
                q.replace("$1", "'fx'")
                    .replace("$2", &tenant.map_or("NULL".into(), |t| format!("'{t}'")))
                    .replace("$3", "'2024-01-01'::date")
                    .replace("$4", "'2025-01-01'::date")
            };
            let q = args(&fold_check(&got(values)));
            let bad = one::<i64>(&format!("SELECT bad FROM ({q}) x"));
            let n_days = one::<i64>(&format!("SELECT rows_in_days FROM ({q}) x"));
            let n_year = one::<i64>(&format!("SELECT rows_in_year FROM ({q}) x"));
            let ck_year = one::<String>(&format!("SELECT checksum_year FROM ({q}) x"));
            let examples = one::<Vec<String>>(&format!(
                "SELECT coalesce(array_agg(what), '{{}}') FROM ({}) x",
                args(&fold_check_examples(&got(values)))
            ));
            (bad, n_days, n_year, ck_year, examples)
        };
        let a1 = "('tenant_a', date '2024-03-01', 3::int8, '42'::text)";
        let a3 = "('tenant_a', date '2024-03-03', 2::int8, '99'::text)";
        assert_eq!(
            check(&format!("{a1}, {a3}"), None),
            (0, 5, 5, "141".into(), vec![])
        );
        let changed = "('tenant_a', date '2024-03-01', 3::int8, '41'::text)";
        assert_eq!(
            check(&format!("{changed}, {a3}"), None).4,
            vec!["tenant_a 2024-03-01: 3 rows in the registry, 3 in the copy".to_string()]
        );
        assert_eq!(
            check(a1, None).4,
            vec!["tenant_a 2024-03-03: 2 rows in the registry, 0 in the copy".to_string()]
        );
        let other = "('tenant_b', date '2024-03-01', 2::int8, '7'::text)";
        assert_eq!(
            check(&format!("{a1}, {a3}, {other}"), None).4,
            vec!["tenant_b 2024-03-01: 2 rows in the copy, no registry row".to_string()]
        );
        assert_eq!(
            check(&format!("{a1}, {a3}, {other}"), Some("tenant_a")).0,
            0
        );
    }

    fn used_bytes() -> i64 {
        one::<i64>("SELECT sum(used_bytes)::int8 FROM pg_backend_memory_contexts")
    }

    /// wh's internal subtransaction (`catalog::db::in_subtransaction`, which isolates each
    /// run of days): a thousand failures (a PostgreSQL error and a wh error) and a thousand
    /// successes leave the caller's memory context and resource owner as they were, give
    /// back the failures' memory, keep exactly the successes' work, and leave the
    /// transaction usable.
    #[pg_test]
    fn a_thousand_subtransactions_keep_what_succeeded_and_leak_nothing() {
        use crate::catalog::db::in_subtransaction;
        Spi::run("CREATE TEMP TABLE wh_kept (n int)").expect("temp table");
        let (context, owner) =
            unsafe { (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner) };
        // Warm up (plans, caches), then measure.
        for _ in 0..10 {
            let _ = in_subtransaction(|| Spi::run("SELECT 1/0"));
        }
        let before = used_bytes();
        for i in 0..1000 {
            let failed = in_subtransaction(|| {
                Spi::run("INSERT INTO wh_kept VALUES (-1)").expect("insert");
                Spi::run("SELECT 1/0")
            })
            .expect_err("division by zero fails");
            assert_eq!(failed.sqlstate, "22012");
            let raised = in_subtransaction(|| {
                crate::pure::error::raise(crate::pure::error::WhError::Busy(format!("busy {i}")))
            })
            .expect_err("a wh error fails");
            assert_eq!(raised.sqlstate, "55P03");
            assert_eq!(raised.message, format!("wh: busy {i}"));
            let kept = in_subtransaction(|| {
                Spi::run_with_args("INSERT INTO wh_kept VALUES ($1)", &[i.into()]).expect("insert");
                i
            });
            assert_eq!(kept.expect("an insert succeeds"), i);
            assert_eq!(unsafe { pg_sys::CurrentMemoryContext }, context);
            assert_eq!(unsafe { pg_sys::CurrentResourceOwner }, owner);
        }
        let grown = used_bytes() - before;
        assert_eq!(
            one::<i64>("SELECT count(*) FROM wh_kept WHERE n >= 0"),
            1000
        );
        assert_eq!(one::<i64>("SELECT count(*) FROM wh_kept WHERE n < 0"), 0);
        // The thousand committed subtransactions' bookkeeping may stay until the top
        // transaction ends; the two thousand rolled back ones keep nothing.
        assert!(grown < 1024 * 1024, "memory grew by {grown} bytes");
    }

    /// How a 57014 is classed: one wh raises itself (a tenant's source out of time) is the
    /// unit's failure, rolled back and returned; one PostgreSQL raises (this backend's
    /// cancel: `pg_cancel_backend`, `statement_timeout`) is raised again after the
    /// rollback and ends the whole call. No message text is read.
    #[pg_test]
    fn a_tenants_timeout_fails_the_unit_a_local_cancel_ends_the_call() {
        use crate::catalog::db::in_subtransaction;
        use pgrx::pg_sys::panic::ErrorReport;
        Spi::run("CREATE TEMP TABLE wh_cancel (n int)").expect("temp table");
        let tenant = in_subtransaction(|| {
            Spi::run("INSERT INTO wh_cancel VALUES (1)").expect("insert");
            ErrorReport::new(
                PgSqlErrorCode::ERRCODE_QUERY_CANCELED,
                "wh: tenant a: no answer within 1.0 s",
                "wh::remote",
            )
            .report(PgLogLevel::ERROR);
        })
        .expect_err("the tenant's timeout fails the unit");
        assert_eq!(tenant.sqlstate, "57014");
        let raised_again = PgTryBuilder::new(|| {
            let _ = in_subtransaction(|| {
                Spi::run("INSERT INTO wh_cancel VALUES (2)").expect("insert");
                Spi::run("SELECT pg_cancel_backend(pg_backend_pid())").expect("cancel");
                Spi::run("SELECT pg_sleep(5)").expect("sleep");
            });
            false
        })
        .catch_when(PgSqlErrorCode::ERRCODE_QUERY_CANCELED, |_| true)
        .execute();
        assert!(raised_again, "a local cancel must end the call");
        // Both units were rolled back; the transaction goes on.
        assert_eq!(one::<i64>("SELECT count(*) FROM wh_cancel"), 0);
    }

    /// `_wh._is_wh_job_command` (sql/privileges.sql) recognises every command
    /// `cronspec` builds, whole, and nothing that only starts like one.
    #[pg_test]
    fn the_job_command_check_matches_cronspec_and_nothing_more() {
        use crate::pure::cronspec::*;
        use crate::pure::names::CheckedName;
        let t = CheckedName::template(Some("foodlogstats")).unwrap();
        let a = CheckedName::tenant(Some("tenant_a")).unwrap();
        let is_wh = |cmd: &str| -> bool {
            Spi::get_one_with_args::<bool>("SELECT _wh._is_wh_job_command($1)", &[cmd.into()])
                .expect("query failed")
                .expect("NULL result")
        };
        for cmd in [
            tenant_command(&t, &a),
            template_command(&t),
            fold_command(&t),
            verify_command(&t, "35 days", false),
            verify_command(&t, "1 mon 5 days 02:00:00", true),
            MAINTENANCE_COMMAND.to_string(),
            pool_command(1),
            pool_command(64),
        ] {
            assert!(is_wh(&cmd), "{cmd}");
        }
        for cmd in [
            "SELECT _wh.health(); SELECT 1",
            "CALL _wh.run_scheduled('foodlogstats', 'tenant_a'); ALTER ROLE x SUPERUSER",
            "SELECT _wh.run_maintenance() -- ",
            "CALL _wh.run_scheduled('x''; DROP TABLE y; --', 'a')",
            "ALTER ROLE mallory SUPERUSER",
            "CALL _wh.run_pool(1); ALTER ROLE x SUPERUSER",
            "CALL _wh.run_pool(0)",
            "CALL _wh.run_pool(100)",
        ] {
            assert!(!is_wh(cmd), "{cmd}");
        }
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
        assert_eq!(n, 14, "tenant_connections, connection_audit, mv_templates, slices, run_log, tenant_readers, tenant_queries, settings, cron_jobs, refresh_schedules, pool_items, pair_stats, pair_changes, folded_years");
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
             WHERE n.nspname = '_wh' AND p.proname <> 'reader_freshness' AND (has_function_privilege('wh_reader', p.oid, 'EXECUTE') \
               OR EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a WHERE a.grantee = 0))",
        );
        // Every login's but one: the readers' "data as of", which shows each login only its own.
        assert_eq!(funcs, 0, "PUBLIC or wh_reader may execute a _wh function");
        let definer: bool =
            one("SELECT prosecdef FROM pg_proc WHERE oid = '_wh.reader_freshness()'::regprocedure");
        assert!(definer);
    }

    #[pg_test]
    fn admin_has_what_it_needs() {
        assert!(one::<bool>(
            "SELECT has_schema_privilege('wh_admin', '_wh', 'USAGE')"
        ));
        assert!(one::<bool>("SELECT has_table_privilege('wh_admin', '_wh.mv_templates', 'SELECT,INSERT,UPDATE,DELETE')"));
        assert!(one::<bool>(
            "SELECT has_function_privilege('wh_admin', '_wh.current_date_utc()', 'EXECUTE')"
        ));
        assert!(
            !one::<bool>("SELECT has_database_privilege('wh_admin', current_database(), 'CREATE')"),
            "wh_admin makes no schemas of its own"
        );
        assert!(one::<bool>(
            "SELECT has_foreign_data_wrapper_privilege('wh_admin', 'dblink_fdw', 'USAGE')"
        ));
        assert!(!one::<bool>(
            "SELECT has_table_privilege('wh_admin', '_wh.connection_audit', 'UPDATE')"
        ));
    }

    #[pg_test]
    fn current_date_utc_ignores_session_time_zone() {
        // The UTC day from the epoch count, not from the function's own expression; in
        // UTC+14 and UTC-11 (local dates 25 hours apart, so at least one differs from UTC's).
        let utc_day = "SELECT _wh.current_date_utc() = DATE '1970-01-01' + floor(extract(epoch FROM now()) / 86400)::int";
        Spi::run("SET LOCAL TimeZone = 'Pacific/Kiritimati'").unwrap();
        assert!(one::<bool>(utc_day));
        Spi::run("SET LOCAL TimeZone = 'Pacific/Pago_Pago'").unwrap();
        assert!(one::<bool>(utc_day));
    }

    const TEMPLATE: &str = "SELECT _wh.set_template('t1', \
        'SELECT id, ts FROM src WHERE ts >= ''{TARGET_DATE}''::date AND ts < ''{TARGET_DATE}''::date + 1', \
        'id bigint, ts timestamptz', 'ts', 'id', ARRAY['UNIQUE(id)', 'ts'])";

    #[pg_test]
    fn set_template_stores_canonical_indexes() {
        Spi::run(TEMPLATE).unwrap();
        let ix: Vec<String> =
            one("SELECT indexes FROM _wh.mv_templates WHERE template_name = 't1'");
        assert_eq!(ix, vec!["unique (id)".to_string(), "(ts)".to_string()]);
        let logged: i64 = one("SELECT count(*) FROM _wh.run_log WHERE operation = 'set_template' AND status = 'succeeded'");
        assert_eq!(logged, 1);
    }

    #[pg_test(
        error = "wh: template \"t2\" is invalid: column ts: type \"no_such_type\" does not exist"
    )]
    fn set_template_checks_types_here() {
        Spi::run(
            "SELECT _wh.set_template('t2', 'SELECT 1 WHERE ''{TARGET_DATE}'' IS NOT NULL', 'id bigint, ts no_such_type', 'ts')",
        )
        .unwrap();
    }

    #[pg_test]
    fn set_tenant_connection_keeps_the_secret_in_the_user_mapping_only() {
        Spi::run("SELECT _wh.set_tenant_connection('acme', '127.0.0.1', 6543, 'prod', 'ro', 's3cret-pw', test_first => false)").unwrap();
        let in_tables: i64 = one(
            "SELECT count(*) FROM (SELECT t::text FROM _wh.tenant_connections t UNION ALL SELECT a::text FROM _wh.connection_audit a \
             UNION ALL SELECT r::text FROM _wh.run_log r) x(v) WHERE v LIKE '%s3cret%'",
        );
        assert_eq!(in_tables, 0);
        let options: String = one("SELECT array_to_string(srvoptions, ' ') FROM pg_foreign_server WHERE srvname = 'wh_acme'");
        assert!(
            options.contains("statement_timeout=1800000") && options.contains("sslmode=require"),
            "{options}"
        );
        let owner: String =
            one("SELECT srvowner::regrole::text FROM pg_foreign_server WHERE srvname = 'wh_acme'");
        assert_eq!(owner, "wh_admin");
        let mapped: bool = one("SELECT 'password=s3cret-pw' = ANY(umoptions) FROM pg_user_mappings WHERE srvname = 'wh_acme'");
        assert!(mapped);
        let audit: Vec<String> =
            one("SELECT changed_fields FROM _wh.connection_audit WHERE tenant_name = 'acme'");
        assert!(audit.contains(&"password".to_string()));
    }

    #[pg_test]
    fn names_and_existence() {
        Spi::run(TEMPLATE).unwrap();
        Spi::run("SELECT _wh.set_tenant_connection('acme', '127.0.0.1', 6543, 'prod', 'ro', 'pw', test_first => false)")
            .unwrap();
        let name: String = one("SELECT _wh.create_mv_name('t1', '2025-09-24')");
        assert_eq!(name, "t1_2025_09_24");
        assert!(!one::<bool>(
            "SELECT _wh.does_mv_exist('t1', 'acme', '2025-09-24')"
        ));
        let server: String = one("SELECT _wh.get_tenant_connection_string('acme')");
        assert_eq!(server, "wh_acme");
    }

    #[pg_test]
    fn public_view_and_tenant_relation_without_any_day() {
        Spi::run(TEMPLATE).unwrap();
        Spi::run("SELECT _wh.set_tenant_connection('acme', '127.0.0.1', 6543, 'prod', 'ro', 'pw', test_first => false)")
            .unwrap();
        Spi::run("SELECT _wh.update_tenant_union_view('t1', 'acme')").unwrap();
        let kind: String =
            one("SELECT relkind::text FROM pg_class WHERE oid = 'acme.t1'::regclass");
        assert_eq!(kind, "v");
        let table: String =
            one("SELECT relkind::text FROM pg_class WHERE oid = '_wh_data.t1'::regclass");
        assert_eq!(table, "p");
        // The all-tenant readers' view: every column of the table, its owner's rights.
        let view: String =
            one("SELECT relkind::text FROM pg_class WHERE oid = 'public.t1'::regclass");
        assert_eq!(view, "v");
        assert!(one::<bool>(
            "SELECT pg_get_viewdef('public.t1'::regclass) LIKE '%FROM _wh_data.t1%' \
             AND NOT coalesce('security_invoker=true' = ANY (reloptions), false) FROM pg_class WHERE oid = 'public.t1'::regclass"
        ));
        assert!(one::<bool>(
            "SELECT pg_get_viewdef('acme.t1'::regclass) LIKE '%schema_name = ''acme''::text%'"
        ));
        let cols: Vec<String> = one(
            "SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'public.t1'::regclass AND attnum > 0",
        );
        assert_eq!(
            cols,
            vec![
                "id".to_string(),
                "ts".to_string(),
                "schema_name".to_string()
            ]
        );
        assert!(one::<bool>(
            "SELECT has_table_privilege('wh_reader', 'public.t1', 'SELECT')"
        ));
        assert!(!one::<bool>(
            "SELECT has_table_privilege('public', 'public.t1', 'SELECT')"
        ));
        assert!(!one::<bool>(
            "SELECT has_table_privilege('public', '_wh_data.t1', 'SELECT')"
        ));
        let n: i64 = one("SELECT count(*) FROM public.t1");
        assert_eq!(n, 0);
    }

    #[pg_test]
    fn monitoring_reads_the_pairs_and_the_data_not_the_registry_alone() {
        Spi::run(TEMPLATE).unwrap();
        Spi::run("SELECT _wh.set_tenant_connection('acme', '127.0.0.1', 6543, 'prod', 'ro', 'pw', test_first => false)")
            .unwrap();
        // A registered pair never built shows, and makes health degraded with a reason.
        let never: bool = one("SELECT never_built FROM _wh.freshness WHERE tenant_name = 'acme' AND template_name = 't1'");
        assert!(never);
        let problems: String = one("SELECT (_wh.health() -> 'problems')::text");
        assert!(problems.contains("never built"), "{problems}");
        // A day the registry lists but the table does not hold.
        Spi::run(
            "INSERT INTO _wh.slices (template_name, tenant_name, schema_name, slice_name, kind, range_start, range_end, row_count, checksum) \
             VALUES ('t1', 'acme', 'acme', 't1_20250101', 'day', '2025-01-01', '2025-01-02', 5, '1')",
        )
        .unwrap();
        let present: bool = one("SELECT data_present IS FALSE FROM _wh.freshness WHERE tenant_name = 'acme' AND template_name = 't1'");
        assert!(present);
        let missing: i64 = one("SELECT (_wh.health() ->> 'data_missing')::int8");
        assert_eq!(missing, 1);
        let unknown: bool =
            one("SELECT _wh._holds_rows('no_such_template', 'acme', '2025-01-01') IS NULL");
        assert!(unknown);
    }

    #[pg_test]
    fn window_dry_run_lists_days_and_sql() {
        Spi::run(TEMPLATE).unwrap();
        Spi::run("SELECT _wh.set_tenant_connection('acme', '127.0.0.1', 6543, 'prod', 'ro', 'pw', test_first => false)")
            .unwrap();
        let plan: pgrx::JsonB = one("SELECT _wh.update_mv_window('t1', 'acme', '2025-01-30', '2025-02-02', dry_run => true)");
        assert_eq!(plan.0["days"], 4);
        assert_eq!(plan.0["plan"][0]["action"], "create");
        let sql = plan.0["plan"][3]["remote_sql"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            sql.contains("ts >= '2025-02-02'::date")
                && sql.contains("SELECT '2025-02-02'::date AS wh_day, wh_q.* FROM (")
                && sql.starts_with("COPY (SELECT wh_g.wh_day, ")
                && sql.ends_with(") AS wh_g) TO STDOUT"),
            "{sql}"
        );
        assert_eq!(
            plan.0["chunks"].as_array().unwrap().len(),
            2,
            "January and February are fetched apart"
        );
    }

    #[pg_test]
    fn set_template_makes_one_partitioned_table_with_wh_indexes_and_rls() {
        Spi::run(TEMPLATE).unwrap();
        let ix: Vec<String> = one(
            "SELECT array_agg(pg_get_indexdef(indexrelid) ORDER BY indexrelid::regclass::text) FROM pg_index WHERE indrelid = '_wh_data.t1'::regclass",
        );
        assert_eq!(ix.len(), 3, "{ix:?}");
        assert!(
            ix.iter()
                .any(|d| d.contains("UNIQUE") && d.contains("(schema_name, id, ts)")),
            "{ix:?}"
        );
        assert!(ix.iter().any(|d| d.contains("(schema_name, ts)")), "{ix:?}");
        assert!(one::<bool>(
            "SELECT relrowsecurity FROM pg_class WHERE oid = '_wh_data.t1'::regclass"
        ));
        let pols: Vec<String> = one(
            "SELECT array_agg(polname::text ORDER BY polname) FROM pg_policy WHERE polrelid = '_wh_data.t1'::regclass",
        );
        assert_eq!(pols, vec!["wh:all".to_string(), "wh:scoped".to_string()]);
        let owner: String =
            one("SELECT relowner::regrole::text FROM pg_class WHERE oid = '_wh_data.t1'::regclass");
        assert_eq!(owner, "wh_admin");
    }

    #[pg_test]
    fn partitions_are_made_ahead_in_wh_data_and_not_twice() {
        Spi::run(TEMPLATE).unwrap();
        let r: pgrx::JsonB = one("SELECT _wh.update_public_view('t1')");
        assert_eq!(r.0["partitions"], 3, "{}", r.0);
        let again: pgrx::JsonB = one("SELECT _wh.update_public_view('t1')");
        assert_eq!(again.0["partitions_created"].as_array().unwrap().len(), 0);
        let schemas: Vec<String> = one(
            "SELECT array_agg(DISTINCT c.relnamespace::regnamespace::text) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid              WHERE i.inhparent = '_wh_data.t1'::regclass",
        );
        assert_eq!(schemas, vec!["_wh_data".to_string()]);
        assert!(!one::<bool>(
            "SELECT has_schema_privilege('wh_reader', '_wh_data', 'USAGE')"
        ));
        let p: pgrx::JsonB = one("SELECT _wh._prepare_days('t1', '2024-02-28', '2024-03-01')");
        assert_eq!(
            p.0["partitions_created"],
            serde_json::json!(["t1_2024_02", "t1_2024_03"])
        );
    }

    #[pg_test]
    fn year_grain_and_grain_checks() {
        Spi::run(
            "SELECT _wh.set_template('t3', 'SELECT d FROM x WHERE d = ''{TARGET_DATE}''::date', 'd date', 'd', partition_grain => 'year')",
        )
        .unwrap();
        let p: pgrx::JsonB = one("SELECT _wh._prepare_days('t3', '2024-12-31', '2025-01-01')");
        assert_eq!(
            p.0["partitions_created"],
            serde_json::json!(["t3_2024", "t3_2025"])
        );
    }

    #[pg_test(error = "wh: invalid partition_grain: \"week\" is not 'month' or 'year'")]
    fn bad_grain_is_refused() {
        Spi::run("SELECT _wh.set_template('t4', 'SELECT d FROM x WHERE d = ''{TARGET_DATE}''::date', 'd date', 'd', partition_grain => 'week')")
            .unwrap();
    }

    #[pg_test]
    fn backfill_chunks_stay_inside_a_month() {
        let n: i64 = one("SELECT count(*) FROM _wh._backfill_chunks('2024-01-15', '2024-03-31')");
        assert_eq!(n, 3);
        let first: i32 = one("SELECT first_index FROM _wh._backfill_chunks('2024-01-15', '2024-03-31') ORDER BY 1 DESC LIMIT 1");
        assert_eq!(first, 17 + 29 + 1);
    }

    const ROLLUP: &str = "SELECT _wh.set_rollup('t1_hourly', 't1', \
        'date_trunc(''hour'', ts) AS hour, count(*) AS n, max(id) AS last_id', 'date_trunc(''hour'', ts)')";

    #[pg_test]
    fn set_rollup_types_its_columns_from_the_base_and_registers_it() {
        Spi::run(TEMPLATE).unwrap();
        let r: pgrx::JsonB = one(ROLLUP);
        assert_eq!(
            r.0["details"]["columns"],
            serde_json::json!([
                "hour timestamp with time zone",
                "n bigint",
                "last_id bigint"
            ])
        );
        assert_eq!(r.0["details"]["unique_key"], serde_json::json!(["hour"]));
        let row: String = one("SELECT base_template || ' ' || time_column || ' ' || unique_key FROM _wh.mv_templates WHERE template_name = 't1_hourly'");
        assert_eq!(row, "t1 hour hour");
        // Its per-day query reads the base's rows of one tenant and one day.
        let q: String =
            one("SELECT query_template FROM _wh.mv_templates WHERE template_name = 't1_hourly'");
        assert!(
            q.contains("FROM \"_wh_data\".\"t1\" AS wh_b WHERE wh_b.\"schema_name\" = $1::text"),
            "{q}"
        );
        assert!(one::<bool>(
            "SELECT to_regclass('public.t1_hourly') IS NOT NULL"
        ));
        let todo: i64 = one("SELECT count(*) FROM _wh._rollup_todo('t1_hourly')");
        assert_eq!(todo, 0);
        let listed: i64 = one("SELECT count(*) FROM _wh.rollups WHERE rollup_name = 't1_hourly' AND base_template = 't1' AND days_to_build = 0");
        assert_eq!(listed, 1);
    }

    #[pg_test(
        error = "wh: template \"t1_weekly\" is invalid: date_trunc('week', ts) spans several days; a rollup is kept one tenant-day at a time: bucket by 'day' or finer (e.g. date_trunc('hour', ts))"
    )]
    fn a_rollup_bucket_spanning_days_is_refused() {
        Spi::run(TEMPLATE).unwrap();
        Spi::run("SELECT _wh.set_rollup('t1_weekly', 't1', 'date_trunc(''week'', ts) AS w, count(*) AS n', 'w')").unwrap();
    }

    #[pg_test(error = "wh: template \"t1\" is invalid: it is not a rollup")]
    fn build_rollup_of_a_fetched_template_is_refused() {
        Spi::run(TEMPLATE).unwrap();
        Spi::run("SELECT * FROM _wh._rollup_todo('t1')").unwrap();
    }
}
