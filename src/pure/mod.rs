//! The pure core: no SPI, no PostgreSQL calls beyond pgrx's types, plain `#[test]`s.
//! Names and quoting, days and grains, templates and rollup definitions, the SQL text
//! every other layer runs, connection options, cron specs, results, errors and the
//! seeds' argument orders.

pub mod caps;
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
