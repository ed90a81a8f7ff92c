//! wh: a multi-tenant data warehouse inside PostgreSQL.
//!
//! This file is wiring only: the module list, the SQL files and the test hooks.

// Every #[pg_extern] returns pgrx's `ErrorReport` (SQLSTATE, message, hint) as its error:
// it is large, but it is built only on the error path, once per failed call.
#![allow(clippy::result_large_err)]

::pgrx::pg_module_magic!();

// Pure modules: no SPI, plain #[test]s.
pub mod args;
pub mod connopts;
pub mod cronspec;
pub mod dates;
pub mod error;
pub mod names;
pub mod report;
pub mod rollup_def;
pub mod seeds;
pub mod sql;
pub mod template;

// SPI modules, one per stage of the data flow.
mod adopt;
mod api;
mod api_ops;
mod api_rollup;
mod catalog;
mod connect;
mod db;
mod evolve;
mod fanout;
mod fold;
mod lifecycle;
mod migrate;
mod progress;
mod readers;
mod rebuild;
mod remote;
mod rollup;
mod schedule;
mod slice;
mod storage;
mod verify;
mod window;

pgrx::extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);
pgrx::extension_sql_file!(
    "../sql/wrappers.sql",
    name = "wrappers",
    requires = [
        api::_run_op,
        api::_record_failure,
        api::_probe_tenant,
        api::_plan_window,
        api::_progress,
        api::_progress_step,
        api::_progress_end,
        api::_chunk,
        api::_prepare_days,
        api::_backfill_chunks,
        api_ops::_rebuild_begin,
        api_ops::_rebuild_todo,
        api_ops::_rebuild_finish,
        api_ops::_migrate_plan,
        api_ops::_migrate_prepare,
        api_ops::_migrate_tenant,
        api_ops::_scheduled,
        api_ops::_fanout_begin,
        api_ops::_fanout_step,
        api_ops::_fanout_end,
        api_ops::_raise_if_failed,
        api_rollup::_rollup_todo
    ]
);
pgrx::extension_sql_file!(
    "../sql/privileges.sql",
    name = "privileges",
    requires = ["bootstrap", api::_login_role]
);
pgrx::extension_sql_file!(
    "../sql/monitoring.sql",
    name = "monitoring",
    requires = ["bootstrap", "privileges", api::_progress_row]
);
pgrx::extension_sql_file!(
    "../sql/seeds.sql",
    name = "seeds",
    requires = [
        "privileges",
        api::update_mv_window,
        api::update_tenant_union_view,
        api::update_public_view,
        api::does_mv_exist,
        api::refresh_mv,
        api_ops::create_combined_table_by_year
    ]
);
pgrx::extension_sql_file!(
    "../sql/adopt.sql",
    name = "adopt",
    requires = [api_ops::_adopt_template, api_ops::_adopt_days]
);
pgrx::extension_sql_file!("../sql/grants.sql", name = "grants", finalize);

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

/// Hooks required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        // The #[pg_test]s run in the test framework's superuser session (no planted code
        // in a rolled-back transaction); the end-to-end tests use operator logins.
        vec!["wh.unsafe_allow_superuser = 'on'"]
    }
}
