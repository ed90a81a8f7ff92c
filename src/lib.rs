//! wh: a multi-tenant data warehouse inside PostgreSQL.
//!
//! This file is wiring only: the module list, the SQL files and the test hooks.
//! Pure modules (no SPI): `names`, `dates`. Errors: `error`.

::pgrx::pg_module_magic!();

pub mod dates;
pub mod error;
pub mod names;

pgrx::extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);
pgrx::extension_sql_file!("../sql/grants.sql", name = "grants", finalize);

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

/// Hooks required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
