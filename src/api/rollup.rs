//! The SQL API for rollups: declaring one and what its build has left. Thin wrappers
//! (see `rollup.rs`; `_wh.build_rollup` is the PL/pgSQL procedure in sql/wrappers.sql).

use pgrx::datum::Date;
use pgrx::prelude::*;
use pgrx::JsonB;

use crate::api::args::{template, Out};
use crate::ops::templates::{self, RollupArgs};
use crate::pure::dates::{Grain, DEFAULT_CHUNK_DAYS};
use crate::pure::error::WhError;

/// Declare (or, while it holds no days, change) a rollup: `rollup_name` is computed from
/// `base_template`'s stored rows, one tenant-day at a time, as
/// `SELECT <select_list> FROM public.<base_template> GROUP BY <group_by>`; `group_by` must
/// hold a bucket of the base's time column a day or finer. Kept in the same transaction
/// as every refresh of the base; `CALL _wh.build_rollup(rollup_name)` builds the days the
/// base already holds.
#[pg_extern]
fn set_rollup(
    rollup_name: Option<&str>,
    base_template: Option<&str>,
    select_list: Option<&str>,
    group_by: Option<&str>,
    indexes: default!(Option<Vec<String>>, "'{}'"),
    description: default!(Option<&str>, "NULL"),
    partition_grain: default!(Option<&str>, "NULL"),
) -> Out {
    let a = RollupArgs {
        rollup: template(rollup_name)?,
        base: template(base_template)?,
        select_list: select_list.ok_or(WhError::NullArgument {
            what: "select_list",
        })?,
        group_by: group_by.ok_or(WhError::NullArgument { what: "group_by" })?,
        indexes: indexes.unwrap_or_default(),
        description,
        grain: partition_grain.map(Grain::parse).transpose()?,
    };
    Ok(JsonB(templates::set_rollup(&a)))
}

/// What `_wh.build_rollup` has left: per tenant, chunks of the days the base holds and
/// the rollup does not.
#[pg_extern]
fn _rollup_todo(
    rollup_name: Option<&str>,
    chunk_days: default!(Option<i32>, "31"),
) -> Result<
    TableIterator<'static, (name!(tenant_name, String), name!(days, Vec<Date>))>,
    pgrx::pg_sys::panic::ErrorReport,
> {
    let r = template(rollup_name)?;
    let size = chunk_days
        .unwrap_or(DEFAULT_CHUNK_DAYS as i32)
        .clamp(1, 366) as usize;
    Ok(TableIterator::new(templates::todo_rows(&r, size)))
}
