//! wh: a multi-tenant data warehouse inside PostgreSQL.
//!
//! This file is wiring only: the module list, the SQL files and the test hooks.

// Every #[pg_extern] returns pgrx's `ErrorReport` (SQLSTATE, message, hint) as its error:
// it is large, but it is built only on the error path, once per failed call.
#![allow(clippy::result_large_err)]

::pgrx::pg_module_magic!();

/// When a backend loads wh. pgrx captures a Rust backtrace for every PostgreSQL error that
/// crosses wh's Rust code and prints it in the error's DETAIL when the server runs with
/// `RUST_BACKTRACE` set: 48 frames of internals in front of a DBA. `RUST_LIB_BACKTRACE=0`
/// turns that capture off in this backend whatever `RUST_BACKTRACE` says.
#[pgrx::pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // SAFETY: a backend runs one thread; nothing else reads the environment meanwhile.
    unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    remote::define_settings();
    ops::pool::define_settings();
}

// The layers, lowest first: pure, catalog, remote, pipeline, ops, api. A folder imports
// only the folders before it in that order (src/layers.rs checks it at `cargo test`);
// each folder's module doc says what it holds.
mod api;
mod catalog;
mod layers;
mod ops;
mod pipeline;
pub mod pure;
mod remote;

pgrx::extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);
pgrx::extension_sql_file!(
    "../sql/wrappers.sql",
    name = "wrappers",
    requires = [
        api::windows::_plan_window,
        api::windows::_progress,
        api::windows::_progress_step,
        api::windows::_progress_end,
        api::windows::_chunk,
        api::windows::_prepare_days,
        api::windows::_backfill_chunks,
        api::ops::_rebuild_begin,
        api::ops::_rebuild_todo,
        api::ops::_rebuild_finish,
        api::ops::_migrate_plan,
        api::ops::_migrate_prepare,
        api::ops::_migrate_tenant,
        api::ops::_scheduled_tenant,
        api::ops::_scheduled_fold,
        api::ops::_fanout_begin,
        api::ops::_fanout_step,
        api::ops::_fanout_end,
        api::ops::_raise_if_failed,
        api::ops::_pool_sync,
        api::ops::_pool_next,
        api::rollup::_rollup_todo
    ]
);
pgrx::extension_sql_file!(
    "../sql/privileges.sql",
    name = "privileges",
    requires = ["bootstrap", api::windows::_login_role]
);
pgrx::extension_sql_file!(
    "../sql/monitoring.sql",
    name = "monitoring",
    requires = ["bootstrap", "privileges", api::windows::_progress_row]
);
pgrx::extension_sql_file!(
    "../sql/seeds.sql",
    name = "seeds",
    requires = [
        "privileges",
        api::windows::update_mv_window,
        api::windows::update_tenant_union_view,
        api::windows::update_public_view,
        api::windows::does_mv_exist,
        api::windows::refresh_mv,
        api::ops::create_combined_table_by_year
    ]
);
pgrx::extension_sql_file!(
    "../sql/adopt.sql",
    name = "adopt",
    requires = [api::ops::_adopt_template, api::ops::_adopt_days]
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
