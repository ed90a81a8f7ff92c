//! Scheduling with pg_cron: one job per (template, tenant) named `wh:<template>:<tenant>`,
//! staggered across the hour, created as the calling wh_admin member in this database.
//! Jobs run procedures that commit their run log and then fail the job if a day failed;
//! a job that fires while its previous run is still going skips at once (`busy`).

use pgrx::datum::DatumWithOid;
use serde_json::{json, Value};

use crate::catalog::db::{col, exec, one, rows};
use crate::catalog::storage;
use crate::catalog::{self, log_run};
use crate::pipeline::fanout;
use crate::pipeline::window;
use crate::pure::cronspec::{self, JobKind};
use crate::pure::dates::Day;
use crate::pure::error::{raise, WhError};
use crate::pure::names::CheckedName;
use crate::pure::report::OpResult;

pub fn cron_available() -> bool {
    one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron')",
        &[],
    )
    .unwrap_or(false)
}

pub fn require_cron() {
    if !cron_available() {
        raise(WhError::State(
            "scheduling needs pg_cron: add it to shared_preload_libraries and CREATE EXTENSION pg_cron \
             in the database named by cron.database_name (wh itself works without it)"
                .into(),
        ));
    }
}

/// wh's jobs (every operator's: `_wh.job_rows()` reads pg_cron's table for wh_admin).
struct Job {
    jobid: i64,
    name: String,
    owner: String,
}

fn jobs_like(like: &str) -> Vec<Job> {
    rows(
        "SELECT jobid, jobname, username FROM _wh.job_rows() WHERE jobname LIKE $1 ORDER BY jobname, jobid",
        &[DatumWithOid::from(like)],
        |r| Job {
            jobid: col::<i64>(r, "jobid").unwrap_or_default(),
            name: col::<String>(r, "jobname").unwrap_or_default(),
            owner: col::<String>(r, "username").unwrap_or_default(),
        },
    )
}

fn job_names(like: &str) -> Vec<String> {
    jobs_like(like).into_iter().map(|j| j.name).collect()
}

/// Schedule (or reschedule) the job `name`. wh's functions run as wh_admin, which cannot
/// log in; the job belongs to the login that calls (session_user), so pg_cron can run it.
/// A job of that name another operator created is replaced (one job per name, never two).
fn schedule_job(name: &str, schedule: &str, command: &str) -> i64 {
    let me = one::<String>("SELECT session_user::text", &[]).unwrap_or_default();
    for j in jobs_like(&like_escape(name)) {
        if j.owner != me {
            cron_unschedule(j.jobid);
        }
    }
    // pg_cron can only be created in cron.database_name, so with pg_cron here, this is
    // that database and cron.schedule schedules in it, as the login that calls. wh never
    // uses cron.schedule_in_database: pg_cron 1.4 does not check its user name argument,
    // so EXECUTE on it would let any operator schedule a job as a superuser (README,
    // "Scheduling"; the install revokes it from wh_admin).
    exec("SELECT pg_catalog.set_config('role', 'none', true)", &[]);
    let id = one::<i64>(
        "SELECT cron.schedule($1::text, $2::text, $3::text)",
        &[
            DatumWithOid::from(name),
            DatumWithOid::from(schedule),
            DatumWithOid::from(command),
        ],
    );
    exec(
        "SELECT pg_catalog.set_config('role', 'wh_admin', true)",
        &[],
    );
    let id =
        id.unwrap_or_else(|| raise(WhError::State(format!("pg_cron did not schedule {name}"))));
    exec("SELECT _wh._cron_register($1)", &[DatumWithOid::from(id)]);
    id
}

fn ensure_maintenance() {
    if job_names(cronspec::MAINTENANCE_JOB).is_empty() {
        schedule_job(
            cronspec::MAINTENANCE_JOB,
            "17 3 * * *",
            cronspec::MAINTENANCE_COMMAND,
        );
    }
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('_', "\\_")
        .replace('%', "\\%")
}

pub fn schedule_tenant(
    template: &CheckedName,
    tenant: &CheckedName,
    schedule: &str,
    stagger: bool,
) -> Value {
    require_cron();
    catalog::load_template(template).refuse_rollup("schedule");
    catalog::load_tenant(tenant);
    cronspec::check_schedule(schedule).unwrap_or_else(|e| raise(e));
    // Only this tenant's job changes. Staggered, its minute is its place among the
    // registered tenants spread over the hour, so each tenant keeps a minute of its own
    // without any other job being moved.
    let spec = if stagger {
        let tenants = catalog::tenant_names();
        let place = tenants.iter().position(|x| x == tenant).unwrap_or(0);
        cronspec::staggered(schedule, place, tenants.len()).unwrap_or_else(|e| raise(e))
    } else {
        schedule.trim().to_string()
    };
    let name = cronspec::job_name(template, tenant);
    let id = schedule_job(&name, &spec, &cronspec::tenant_command(template, tenant));
    // The job refreshes the tenant from now on, not the pool (a worker holding its item
    // now finishes this run; the queue's next sync drops what is left).
    crate::catalog::pool::forget(tenant, Some(template), false);
    let scheduled = vec![json!({"job": name, "jobid": id, "schedule": spec})];
    ensure_maintenance();
    let mut r = OpResult::new(
        "schedule_tenant",
        Some(template.as_str()),
        Some(tenant.as_str()),
        None,
    );
    r.detail("jobs", json!(scheduled));
    log_run(&r);
    r.to_json()
}

/// One job of a template (`wh:<template>:<what>`), not tied to a tenant.
fn schedule_template_job(
    operation: &str,
    template: &CheckedName,
    kind: JobKind,
    schedule: &str,
    command: &str,
) -> Value {
    require_cron();
    let lt = catalog::load_template(template);
    if kind != JobKind::Fold {
        lt.refuse_rollup("schedule");
    }
    cronspec::check_schedule(schedule).unwrap_or_else(|e| raise(e));
    let name = cronspec::template_job_name(template, kind);
    let id = schedule_job(&name, schedule, command);
    ensure_maintenance();
    let mut r = OpResult::new(operation, Some(template.as_str()), None, None);
    r.detail(
        "jobs",
        json!([{"job": name, "jobid": id, "schedule": schedule}]),
    );
    log_run(&r);
    r.to_json()
}

pub fn schedule_template(template: &CheckedName, schedule: &str) -> Value {
    schedule_template_job(
        "schedule_template",
        template,
        JobKind::All,
        schedule,
        &cronspec::template_command(template),
    )
}

pub fn schedule_yearly_fold(template: &CheckedName, schedule: &str) -> Value {
    schedule_template_job(
        "schedule_yearly_fold",
        template,
        JobKind::Fold,
        schedule,
        &cronspec::fold_command(template),
    )
}

/// `wh:<template>:verify`: every tenant's last `lookback` (up to yesterday) verified.
pub fn schedule_verify(
    template: &CheckedName,
    schedule: &str,
    lookback: pgrx::datum::Interval,
    repair: bool,
) -> Value {
    let text = one::<String>("SELECT $1::interval::text", &[DatumWithOid::from(lookback)])
        .unwrap_or_else(|| "35 days".into());
    if one::<bool>(
        "SELECT $1::interval <= '0'::interval",
        &[DatumWithOid::from(lookback)],
    )
    .unwrap_or(true)
    {
        raise(WhError::invalid(
            "lookback",
            format!("{text} is not a positive interval"),
        ));
    }
    schedule_template_job(
        "schedule_verify",
        template,
        JobKind::Verify,
        schedule,
        &cronspec::verify_command(template, &text, repair),
    )
}

/// The pool's workers `wh:pool:1..=n`, each a job every minute running `CALL
/// _wh.run_pool(k)`, made as the calling login where missing; workers above `n` go.
/// Returns the workers' names.
pub fn ensure_pool_workers(n: usize) -> Vec<String> {
    // Workers are `wh:pool:<number>` (a tenant's name never is a number: a template named
    // `pool` has jobs `wh:pool:<tenant>`, never touched here).
    let existing: Vec<(usize, Job)> = jobs_like("wh:pool:%")
        .into_iter()
        .filter_map(|j| {
            let k = j.name.strip_prefix("wh:pool:")?.parse::<usize>().ok()?;
            Some((k, j))
        })
        .collect();
    for (k, j) in &existing {
        if !(1..=n).contains(k) {
            cron_unschedule(j.jobid);
        }
    }
    let existing: Vec<Job> = existing.into_iter().map(|(_, j)| j).collect();
    (1..=n)
        .map(|k| {
            let name = cronspec::pool_job_name(k);
            if !existing.iter().any(|j| j.name == name) {
                schedule_job(&name, cronspec::POOL_SCHEDULE, &cronspec::pool_command(k));
            }
            name
        })
        .collect()
}

/// A tenant's job (`schedule_tenant`): `wh:<template>:<tenant>` running `run_scheduled`.
pub struct TenantJob {
    pub name: String,
    pub template: CheckedName,
    pub tenant: CheckedName,
    pub schedule: String,
    pub owner: String,
    pub active: bool,
}

/// Every tenant job wh made here.
pub fn tenant_jobs() -> Vec<TenantJob> {
    if !cron_available() {
        return vec![];
    }
    rows(
        "SELECT j.jobname, j.schedule, j.username, j.active, \
                (pg_catalog.regexp_match(j.command, '^CALL _wh\\.run_scheduled\\(''([a-z0-9_]+)'', ''([a-z0-9_]+)''\\)$')) AS names \
         FROM _wh.job_rows() j ORDER BY j.jobname",
        &[],
        |r| {
            let names = col::<Vec<Option<String>>>(r, "names").unwrap_or_default();
            let name = |i: usize| names.get(i).cloned().flatten();
            Some(TenantJob {
                name: col::<String>(r, "jobname")?,
                template: CheckedName::template(name(0).as_deref()).ok()?,
                tenant: CheckedName::tenant(name(1).as_deref()).ok()?,
                schedule: col::<String>(r, "schedule")?,
                owner: col::<String>(r, "username")?,
                active: col::<bool>(r, "active").unwrap_or(true),
            })
        },
    )
    .into_iter()
    .flatten()
    .collect()
}

/// Unschedule one pg_cron job (through wh's SECURITY DEFINER helper).
fn cron_unschedule(jobid: i64) {
    exec(
        "SELECT _wh._cron_unschedule($1)",
        &[DatumWithOid::from(jobid)],
    );
}

/// Unschedule a tenant's jobs (of one template, or all); returns the job names removed.
/// Without pg_cron there is nothing to unschedule.
pub fn unschedule_tenant_jobs(tenant: &CheckedName, template: Option<&CheckedName>) -> Vec<String> {
    if !cron_available() {
        return vec![];
    }
    let pattern = match template {
        Some(t) => like_escape(&cronspec::job_name(t, tenant)),
        None => format!("wh:%:{}", like_escape(tenant.as_str())),
    };
    unschedule_like(&pattern)
}

/// Every job of a template (its tenants', `all`, `fold`, `verify`), unscheduled; returns
/// their names. Without pg_cron there is nothing to unschedule.
pub fn unschedule_template_jobs(template: &CheckedName) -> Vec<String> {
    if !cron_available() {
        return vec![];
    }
    let jobs: Vec<Job> = jobs_like(&format!("{}%", like_escape(&format!("wh:{template}:"))))
        .into_iter()
        .filter(|j| !cronspec::is_pool_job_name(&j.name))
        .collect();
    for j in &jobs {
        cron_unschedule(j.jobid);
    }
    jobs.into_iter().map(|j| j.name).collect()
}

fn unschedule_like(pattern: &str) -> Vec<String> {
    let jobs = jobs_like(pattern);
    for j in &jobs {
        cron_unschedule(j.jobid);
    }
    jobs.into_iter().map(|j| j.name).collect()
}

/// Move a tenant's jobs (`wh:<template>:<old>`) to its new name, schedules and active
/// flags kept: each is unscheduled and scheduled again as the caller's job. Returns the
/// new jobs.
pub fn rename_tenant_jobs(old: &CheckedName, new: &CheckedName) -> Vec<Value> {
    if !cron_available() {
        return vec![];
    }
    // A tenant's jobs: named wh:<template>:<tenant> and running run_scheduled (never a
    // template's own all/fold jobs).
    let jobs: Vec<(i64, String, String, bool)> = rows(
        "SELECT jobid, jobname, schedule, active FROM _wh.job_rows() \
         WHERE jobname LIKE $1 AND command LIKE 'CALL _wh.run_scheduled(%' ORDER BY jobname",
        &[DatumWithOid::from(
            format!("wh:%:{}", like_escape(old.as_str())).as_str(),
        )],
        |r| {
            (
                col::<i64>(r, "jobid").unwrap_or_default(),
                col::<String>(r, "jobname").unwrap_or_default(),
                col::<String>(r, "schedule").unwrap_or_default(),
                col::<bool>(r, "active").unwrap_or(true),
            )
        },
    );
    let mut moved = Vec::new();
    for (jobid, name, schedule, active) in jobs {
        let Some(template) = name
            .strip_prefix("wh:")
            .and_then(|rest| rest.strip_suffix(&format!(":{old}")))
            .and_then(|t| CheckedName::template(Some(t)).ok())
        else {
            continue;
        };
        cron_unschedule(jobid);
        let new_name = cronspec::job_name(&template, new);
        let id = schedule_job(
            &new_name,
            &schedule,
            &cronspec::tenant_command(&template, new),
        );
        if !active {
            deactivate_job(id);
        }
        moved.push(json!({"from": name, "job": new_name, "jobid": id, "schedule": schedule, "active": active}));
    }
    moved
}

/// Keep a job but stop it firing (`_wh._cron_set_active`: pg_cron 1.4 leaves that to
/// superusers).
fn deactivate_job(id: i64) {
    exec(
        "SELECT _wh._cron_set_active($1, false)",
        &[DatumWithOid::from(id)],
    );
}

/// A job recorded in another warehouse (a restored dump), which this pg_cron never had.
pub struct LostJob {
    made_in: String,
    jobid: i64,
    name: String,
    schedule: String,
    command: String,
    active: bool,
    /// Named `wh:…` and running one of wh's commands (else never scheduled again).
    is_whs: bool,
}

/// The jobs `_wh.cron_jobs` records as made in another warehouse.
pub fn lost_jobs() -> Vec<LostJob> {
    if !cron_available() {
        return vec![];
    }
    rows(
        "SELECT w.made_in, w.jobid, w.jobname, w.schedule, w.command, w.active, \
                _wh._is_wh_job_command(w.command) AND w.jobname LIKE 'wh:%' AS is_whs \
         FROM _wh.cron_jobs w WHERE w.made_in <> _wh._here() ORDER BY w.jobname, w.jobid",
        &[],
        |r| LostJob {
            made_in: col::<String>(r, "made_in").unwrap_or_default(),
            jobid: col::<i64>(r, "jobid").unwrap_or_default(),
            name: col::<String>(r, "jobname").unwrap_or_default(),
            schedule: col::<String>(r, "schedule").unwrap_or_default(),
            command: col::<String>(r, "command").unwrap_or_default(),
            active: col::<bool>(r, "active").unwrap_or(true),
            is_whs: col::<bool>(r, "is_whs").unwrap_or(false),
        },
    )
}

/// Schedule again, as the calling login, every job recorded in another warehouse (each
/// command checked again as wh's own by `_cron_register`), active or stopped as it was.
/// Every restored row is forgotten first, so a new job that takes an old job's id is never
/// mistaken for it; a row that is not a wh job is forgotten and reported, not scheduled.
pub fn restore_jobs() -> (Vec<Value>, Vec<String>) {
    let lost = lost_jobs();
    for j in &lost {
        exec(
            "SELECT _wh._cron_forget($1, $2)",
            &[
                DatumWithOid::from(j.made_in.as_str()),
                DatumWithOid::from(j.jobid),
            ],
        );
    }
    let (mut made, mut refused) = (Vec::new(), Vec::new());
    for j in lost {
        if !j.is_whs {
            refused.push(j.name);
            continue;
        }
        let id = schedule_job(&j.name, &j.schedule, &j.command);
        if !j.active {
            deactivate_job(id);
        }
        made.push(json!({"job": j.name, "jobid": id, "schedule": j.schedule, "active": j.active}));
    }
    (made, refused)
}

pub fn unschedule_tenant(template: Option<&CheckedName>, tenant: &CheckedName) -> Value {
    require_cron();
    let mut removed = unschedule_tenant_jobs(tenant, template);
    // Its own periods in the refresh pool too (a tenant job the upgrade to 0.12.0 moved
    // there, or schedule_refresh(…, tenant_name => …)).
    removed.extend(
        crate::catalog::pool::forget(tenant, template, true)
            .into_iter()
            .map(|t| format!("pool:{t}:{tenant}")),
    );
    if crate::catalog::pool::held_own_period(tenant, template) {
        raise(WhError::Busy(format!(
            "a pool worker is refreshing {tenant} right now; its own period stays until then: try again"
        )));
    }
    if removed.is_empty() {
        let pattern = match template {
            Some(t) => cronspec::job_name(t, tenant),
            None => format!("wh:*:{tenant}"),
        };
        raise(WhError::UnknownJob(pattern));
    }
    let mut r = OpResult::new(
        "unschedule_tenant",
        template.map(|t| t.as_str()),
        Some(tenant.as_str()),
        None,
    );
    r.rows = Some(removed.len() as i64);
    r.detail("jobs", json!(removed));
    log_run(&r);
    r.to_json()
}

/// Try-lock one job for this transaction (a scheduled run is one transaction), so a run
/// that fires while the previous one is still going (pg_cron queues it) skips at once.
/// The lock is a row of `_wh.run_locks` (only wh_admin can lock it, not an advisory key
/// any login could hold) and ends with the transaction, however the call ends.
fn try_job_lock(key: &str) -> bool {
    one::<bool>("SELECT _wh._try_run_lock($1)", &[DatumWithOid::from(key)]).unwrap_or(false)
}

pub fn job_lock_key(kind: JobKind, template: &CheckedName, tenant: Option<&CheckedName>) -> String {
    format!(
        "wh:job:{}:{template}:{}",
        kind.as_str(),
        tenant.map(|t| t.as_str()).unwrap_or("*")
    )
}

/// The tenant job (`CALL _wh.run_scheduled`): today and the lookback days of one tenant,
/// unless another run holds the job's lock (`skipped: busy`) or the tenant is paused.
pub fn run_scheduled_tenant(template: &CheckedName, tenant: &CheckedName, today: Day) -> Value {
    let label = "scheduled_tenant";
    if !try_job_lock(&job_lock_key(JobKind::Tenant, template, Some(tenant))) {
        return skipped_busy(label, template, Some(tenant), today);
    }
    if catalog::is_paused(tenant) {
        let r = OpResult::new(
            label,
            Some(template.as_str()),
            Some(tenant.as_str()),
            Some(today.iso()),
        )
        .skipped("paused");
        log_run(&r);
        return r.to_json();
    }
    window::update_by_template(template, tenant, today, true, false).json
}

/// The yearly fold job (`CALL _wh.run_scheduled_fold`): last year for every tenant, unless
/// another run holds the job's lock. (The `all` job is a committing fan-out:
/// `fanout_begin`.)
pub fn run_scheduled_fold(template: &CheckedName, today: Day) -> Value {
    if !try_job_lock(&job_lock_key(JobKind::Fold, template, None)) {
        return skipped_busy("scheduled_fold", template, None, today);
    }
    fold_last_year(template, today)
}

/// A run that found its job's lock held: logged and returned as `skipped: busy`.
fn skipped_busy(
    label: &str,
    template: &CheckedName,
    tenant: Option<&CheckedName>,
    today: Day,
) -> Value {
    let r = OpResult::new(
        label,
        Some(template.as_str()),
        tenant.map(|t| t.as_str()),
        Some(today.iso()),
    )
    .skipped("busy");
    log_run(&r);
    r.to_json()
}

/// Begin a committing fan-out (`_wh._fanout_committing`: `refresh_all_tenants`, and the
/// `wh:<template>:all` job with `job`, which first takes its job's lock for this
/// transaction: a run that finds it held skips as busy). The skipped result, or None when
/// the fan-out started.
pub fn fanout_begin(template: &CheckedName, target: Day, job: bool) -> Option<Value> {
    if job && !try_job_lock(&job_lock_key(JobKind::All, template, None)) {
        return Some(skipped_busy("scheduled_all", template, None, target));
    }
    fanout::begin_committing(template, target);
    None
}

/// One step of it, in a transaction of its own. The job's lock is taken again in each:
/// should another run have taken it between two of this run's transactions, that run
/// goes on and this one stops (the tenants it had not stored yet are that run's).
pub fn fanout_step(template: &CheckedName, job: bool) -> bool {
    if job && !try_job_lock(&job_lock_key(JobKind::All, template, None)) {
        skipped_busy("scheduled_all", template, None, crate::catalog::today());
        fanout::stop_committing(
            "busy: another run of the job took its lock between two transactions",
        );
        return false;
    }
    fanout::step_committing(template)
}

/// Fold last year once (the year partition is shared by every tenant), if it has
/// month partitions left. Isolated, so a failure is logged before the job fails.
fn fold_last_year(template: &CheckedName, today: Day) -> Value {
    let year = today.year() - 1;
    let (lo, hi) = crate::pure::dates::year_span(year);
    let tn = crate::pure::names::TableNames::new(template);
    let months = storage::relation_exists(&tn.table())
        && storage::partitions(&tn)
            .iter()
            .any(|p| p.lo >= lo && p.hi <= hi && !(p.lo == lo && p.hi == hi));
    if !months {
        let r = OpResult::new(
            "scheduled_fold",
            Some(template.as_str()),
            None,
            Some(lo.iso()),
        )
        .skipped("nothing to fold");
        log_run(&r);
        return r.to_json();
    }
    let v = crate::pipeline::isolate::isolated_fold(template, lo, "scheduled_fold");
    crate::pure::report::summarize("scheduled_fold", &[v])
}

/// The `wh:maintenance` job: partitions for this period and the next two of every
/// template (and the registry's record of its Citus distribution), then the run log
/// pruned and every pair's figures settled.
pub fn run_maintenance(today: Day) -> Value {
    let templates = crate::catalog::templates();
    let mut made = serde_json::Map::new();
    for t in &templates {
        let lt = catalog::load_template(t);
        made.insert(t.to_string(), json!(storage::make_ahead(&lt, today)));
        // The seeds' per-template calls, again after a restore (no-op when they exist).
        catalog::make_seed_functions(t);
        // Citus: the registry's record of its distribution (undistributed by hand, say), and
        // its policies (a table distributed by 0.14.0 has no scoped readers' one yet).
        let tn = crate::pure::names::TableNames::new(t);
        catalog::citus::record_distribution(t, &tn);
        storage::ensure_policies(&tn);
    }
    // Every worker's copy of the scoped readers' tenants, made again (after a failed sync).
    storage::sync_reader_scopes();
    let pruned = one::<i64>("SELECT _wh.prune_run_log()", &[]).unwrap_or(0);
    // Every pair's figures again, from the registry (whatever wrote it, however).
    let pairs = crate::catalog::registry::settle_pairs(true);
    // Columnar years a late change rewrote as heap, compressed again.
    let compressed = crate::pipeline::fold::compress_rewritten_years();
    let mut r = OpResult::new("run_maintenance", None, None, Some(today.iso()));
    r.rows = Some(pruned);
    r.detail("partitions_created", Value::Object(made));
    r.detail("run_log_pruned", json!(pruned));
    r.detail("pairs_settled", json!(pairs));
    r.detail("years_compressed", json!(compressed));
    log_run(&r);
    r.to_json()
}

/// Fail the job (after its run log was committed) when any part failed.
pub fn raise_if_failed(r: &Value) {
    let returned = crate::pure::report::Returned::of(r);
    let failures = returned.failures();
    let Some(first) = failures.first() else {
        return;
    };
    let msgs: Vec<String> = failures
        .iter()
        .map(|f| {
            format!(
                "{} {}: {}",
                f.tenant.as_deref().unwrap_or(""),
                f.day.as_deref().unwrap_or(""),
                f.error.as_deref().unwrap_or("")
            )
        })
        .collect();
    let code = first.sqlstate.as_deref().unwrap_or("XX000");
    let e = pgrx::pg_sys::panic::ErrorReport::new(
        crate::pure::error::sqlstate_code(code),
        format!(
            "wh: scheduled run failed ({} failure(s), recorded in _wh.run_log): {}",
            failures.len(),
            msgs.join("; ")
        ),
        "wh::schedule",
    );
    e.report(pgrx::PgLogLevel::ERROR);
}
