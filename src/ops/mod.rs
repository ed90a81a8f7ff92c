//! What a DBA asks wh to do beyond one run of days: tenants' lifecycle, schedules,
//! readers' grants, rebuilds, migrations, adoption and template evolution.

pub mod adopt;
pub mod distribute;
pub mod evolve;
pub mod lifecycle;
pub mod migrate;
pub mod pool;
pub mod readers;
pub mod rebuild;
pub mod schedule;
pub mod templates;
