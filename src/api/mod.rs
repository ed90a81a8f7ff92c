//! The SQL API: thin `#[pg_extern]` wrappers that check their arguments and call the
//! layers below.

pub mod args;
pub mod ops;
pub mod retired;
pub mod rollup;
pub mod windows;
