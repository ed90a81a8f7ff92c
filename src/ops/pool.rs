//! The refresh pool: one schedule per template (`every => '1 hour'`), a queue of the
//! tenants due (`_wh.pool_items`), and a fixed number of workers (`wh.workers` pg_cron jobs
//! `wh:pool:<n>`, each running `CALL _wh.run_pool(n)` every minute) that take the most
//! overdue tenant FOR UPDATE SKIP LOCKED, refresh it (today and the template's lookback
//! days, as a tenant job does), commit, and take the next until none is due.
//!
//! Bounds: a worker refreshes one tenant at a time over one source connection, and takes a
//! tenant only with a place among `wh.max_source_connections` (for the whole pool) and
//! among `wh.max_connections_per_host` on the tenant's source server (host and port):
//! places are rows of `_wh.run_locks` held for the item's transaction, so a killed worker
//! gives its places (and its tenant, still due) back at once.

use pgrx::datum::{DatumWithOid, Interval, TimestampWithTimeZone};
use serde_json::{json, Value};

use crate::catalog::db::{ms_since, one};
use crate::catalog::pool as queue;
use crate::catalog::{self, log_run};
use crate::ops::schedule;
use crate::pipeline::progress;
use crate::pipeline::window;
use crate::pure::cronspec::Period;
use crate::pure::dates::Day;
use crate::pure::error::{raise, WhError};
use crate::pure::names::CheckedName;
use crate::pure::report::OpResult;

/// `wh.workers`: how many pool workers (pg_cron jobs) `schedule_refresh` keeps.
pub static WORKERS: pgrx::GucSetting<i32> = pgrx::GucSetting::<i32>::new(4);

pub fn define_settings() {
    pgrx::GucRegistry::define_int_guc(
        c"wh.workers",
        c"Workers of wh's refresh pool (pg_cron jobs wh:pool:<n>).",
        c"schedule_refresh keeps this many pool workers; each refreshes one tenant at a time over one source connection.",
        &WORKERS,
        1,
        64,
        pgrx::GucContext::Userset,
        pgrx::GucFlags::default(),
    );
}

fn text(s: &str) -> DatumWithOid<'_> {
    DatumWithOid::from(s)
}

/// Run at the start of each worker's run: the queue matches the schedules and tenants.
pub fn sync() {
    queue::sync();
}

/// `every` checked: at least a minute.
fn checked_every(every: Interval) -> Interval {
    let short = one::<bool>(
        "SELECT $1::interval < interval '1 minute'",
        &[DatumWithOid::from(every)],
    )
    .unwrap_or(true);
    if short {
        raise(WhError::invalid(
            "every",
            format!(
                "{} is shorter than a minute (the pool's workers look for due tenants once a minute)",
                interval_text(every)
            ),
        ));
    }
    every
}

fn interval_text(every: Interval) -> String {
    one::<String>("SELECT $1::interval::text", &[DatumWithOid::from(every)]).unwrap_or_default()
}

/// `schedule_refresh`: every tenant of `template` refreshed by the pool each `every`
/// (`tenant` given: that tenant's own period, whatever the template's; its pg_cron job for
/// the template, if it had one, goes), the workers made.
pub fn schedule_refresh(
    template: &CheckedName,
    tenant: Option<&CheckedName>,
    every: Interval,
) -> Value {
    schedule::require_cron();
    catalog::load_template(template).refuse_rollup("schedule");
    let every = checked_every(every);
    let mut jobs_replaced = Vec::new();
    match tenant {
        None => queue::set_schedule(template, every),
        Some(t) => {
            catalog::load_tenant(t);
            jobs_replaced = schedule::unschedule_tenant_jobs(t, Some(template));
            queue::queue_own_period(template, t, every, None);
        }
    }
    queue::sync();
    let workers = schedule::ensure_pool_workers(WORKERS.get().max(1) as usize);
    let mut r = OpResult::new(
        "schedule_refresh",
        Some(template.as_str()),
        tenant.map(|t| t.as_str()),
        None,
    );
    r.detail("every", json!(interval_text(every)));
    r.detail("workers", json!(workers));
    r.detail("jobs_replaced", json!(jobs_replaced));
    log_run(&r);
    r.to_json()
}

/// `unschedule_refresh`: the template's schedule (its tenants leave the queue, but those
/// with a period of their own), or one tenant's own period (it keeps the template's).
pub fn unschedule_refresh(template: &CheckedName, tenant: Option<&CheckedName>) -> Value {
    catalog::load_template(template);
    let removed = match tenant {
        None => queue::drop_schedule(template),
        Some(t) => queue::drop_own_period(template, t),
    };
    if removed == 0 {
        raise(WhError::UnknownJob(format!(
            "the refresh pool's schedule of {template}{}",
            tenant.map(|t| format!(" for {t}")).unwrap_or_default()
        )));
    }
    queue::sync();
    let mut r = OpResult::new(
        "unschedule_refresh",
        Some(template.as_str()),
        tenant.map(|t| t.as_str()),
        None,
    );
    r.rows = Some(removed);
    if let Some(t) = tenant {
        // Without a schedule of its template, the tenant leaves the pool: say so.
        let queued = queue::queued(template, t);
        r.detail("still_in_pool", json!(queued));
    }
    log_run(&r);
    r.to_json()
}

/// The most overdue tenant this worker can take, refreshed (one transaction: the item and
/// the worker's places stay locked through it). None when nothing due has room.
pub fn take_next(worker: i32, today: Day) -> Option<Value> {
    let source_places = crate::remote::MAX_SOURCE_CONNECTIONS.get().max(1);
    if !(1..=source_places).any(|k| try_place(&format!("wh:pool:source:{k}"))) {
        return None;
    }
    let per_host = crate::remote::MAX_CONNECTIONS_PER_HOST.get().max(1);
    let mut full: Vec<String> = Vec::new();
    for d in queue::due() {
        if full.contains(&d.server) || !queue::take(&d) {
            continue;
        }
        // Held now (other workers skip it); refreshed only with a place on its server.
        if !(1..=per_host).any(|k| try_place(&format!("wh:pool:host:{}:{k}", d.server))) {
            full.push(d.server);
            continue;
        }
        let (Ok(template), Ok(tenant)) = (
            CheckedName::template(Some(&d.template)),
            CheckedName::tenant(Some(&d.tenant)),
        ) else {
            continue;
        };
        return Some(refresh(worker, &template, &tenant, today));
    }
    None
}

/// A place (a row of `_wh.run_locks`) held for this transaction, if free.
fn try_place(key: &str) -> bool {
    one::<bool>("SELECT _wh._try_run_lock($1)", &[text(key)]).unwrap_or(false)
}

/// One tenant refreshed as its tenant job would, reported in `_wh.progress` as the
/// worker's, and its item moved to its next due time. An error outside the refresh's own
/// per-day isolation (its template or tenant gone meanwhile) is rolled back and recorded
/// as the item's failure, so one bad item never comes first in every run.
fn refresh(worker: i32, template: &CheckedName, tenant: &CheckedName, today: Day) -> Value {
    let start = std::time::Instant::now();
    let label = format!("pool worker {worker}");
    let _progress = progress::begin(progress::Op {
        operation: &label,
        template: Some(template.as_str()),
        tenant: Some(tenant.as_str()),
        unit: "tenant",
        total: 1,
    });
    let ran = crate::catalog::db::in_subtransaction(|| {
        window::update_by_template(template, tenant, today, true, false).json
    });
    let mut v = ran.unwrap_or_else(|f| {
        let r = OpResult::new(
            "update_mv_by_template",
            Some(template.as_str()),
            Some(tenant.as_str()),
            Some(today.iso()),
        )
        .failed(&f.sqlstate, &f.message);
        log_run(&r);
        r.to_json()
    });
    let status = outcome(&v);
    queue::done(template, tenant, ms_since(start), status, worker);
    v["worker"] = json!(worker);
    v
}

/// How a tenant's run went, for its item: `succeeded` only when every day was built or
/// found unchanged; a day skipped as busy (a fold or another session held it) makes the
/// run `skipped`, so the tenant is tried again soon rather than a period later.
fn outcome(v: &Value) -> &'static str {
    let count = |k: &str| v[k].as_i64().unwrap_or(0);
    match v["status"].as_str() {
        Some("succeeded") if count("skipped") > 0 => "skipped",
        Some("succeeded") => "succeeded",
        Some("partial") => "partial",
        Some("skipped") => "skipped",
        _ => "failed",
    }
}

/// The upgrade to 0.12.0 (and a DBA, once): every tenant job (`schedule_tenant`) whose
/// schedule fires at a fixed period becomes the tenant's own period in the pool, due next
/// when the job would have fired, and the job goes; a job of uneven times
/// (`'0 9 * * 1-5'`) stays. Returns what moved, what stayed, and the login that owned the
/// jobs moved (the upgrade makes the pool's workers as that login: pg_cron runs a job as
/// its owner, and wh's jobs never run as a superuser).
pub fn adopt_tenant_jobs() -> Value {
    let (mut moved, mut kept) = (Vec::new(), Vec::new());
    let mut owner: Option<String> = None;
    for job in schedule::tenant_jobs() {
        let period = crate::pure::cronspec::period(&job.schedule).ok().flatten();
        let Some(p) = period.filter(|_| job.active) else {
            let why = if job.active {
                "uneven times"
            } else {
                "stopped"
            };
            kept.push(json!({"job": job.name, "schedule": job.schedule, "why": why}));
            continue;
        };
        let (every, first_due) = grid(p);
        schedule::unschedule_tenant_jobs(&job.tenant, Some(&job.template));
        queue::queue_own_period(&job.template, &job.tenant, every, Some(first_due));
        owner.get_or_insert(job.owner.clone());
        moved.push(
            json!({"job": job.name, "schedule": job.schedule, "every": interval_text(every)}),
        );
    }
    json!({"moved": moved, "kept": kept, "owner": owner, "workers": WORKERS.get().max(1)})
}

/// A period's interval and the first time at or after now that its schedule fires.
fn grid(p: Period) -> (Interval, TimestampWithTimeZone) {
    let made = || -> ! {
        raise(WhError::State(format!(
            "no interval for a period of {} minutes",
            p.minutes
        )))
    };
    let every = one::<Interval>(
        "SELECT pg_catalog.make_interval(mins => $1)",
        &[DatumWithOid::from(p.minutes as i32)],
    )
    .unwrap_or_else(|| made());
    let anchor = one::<TimestampWithTimeZone>(
        "SELECT timestamptz '2024-01-01 00:00:00+00' + pg_catalog.make_interval(mins => $1)",
        &[DatumWithOid::from(p.first_minute as i32)],
    )
    .unwrap_or_else(|| made());
    (
        every,
        queue::on_grid(anchor, every).unwrap_or_else(|| made()),
    )
}
