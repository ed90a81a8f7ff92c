//! Entry points of routines that earlier releases made and 0.9.0 removed. `ALTER
//! EXTENSION wh UPDATE` from an old release runs every release's script in turn, and
//! PostgreSQL checks that each C function a script creates exists in this library; the
//! next script drops it again. None has SQL of its own in this release. Called (in a
//! database whose update stopped half-way), each fails and names the update to run; none
//! reads its arguments.

use pgrx::prelude::*;

use crate::pure::error::{raise, WhError};

fn retired(name: &str) -> ! {
    raise(WhError::State(format!(
        "_wh.{name} was removed in wh 0.9.0: run ALTER EXTENSION wh UPDATE"
    )))
}

/// 0.1.0–0.8.0: one operation on a run of days, inside `_wh.run_isolated`.
#[pg_extern(sql = false)]
fn _run_op() {
    retired("_run_op")
}

/// 0.1.0–0.8.0: a failed run of days logged, from `_wh.run_isolated`'s handler.
#[pg_extern(sql = false)]
fn _record_failure() {
    retired("_record_failure")
}

/// 0.5.0–0.8.0: a connection probe, inside `_wh._try_probe`.
#[pg_extern(sql = false)]
fn _probe_tenant() {
    retired("_probe_tenant")
}

/// 0.3.0–0.8.0: a scheduled job's body by its kind's name.
#[pg_extern(sql = false)]
fn _scheduled() {
    retired("_scheduled")
}
