//! Building one day of one tenant: fetch it aside from dblink, check every row is inside
//! the day, index it, add the CHECK constraint that matches the partition bounds, then
//! swap it in (detach + drop the old day, rename, attach) — all in the caller's
//! transaction, so readers see the old rows or the new ones, never an error or a gap,
//! and a failure leaves the old rows in place.

use pgrx::datum::DatumWithOid;
use serde_json::json;

use crate::catalog::{self, dblink_schema, log_run, LoadedTemplate, Tenant};
use crate::dates::Day;
use crate::db::{exec, exec_all, ms_since, one};
use crate::error::{raise, WhError};
use crate::names::{CheckedName, SliceNames};
use crate::remote;
use crate::report::OpResult;
use crate::sql;
use crate::views;

/// What to do when the day is already built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    Skip,
    Rebuild,
}

/// The advisory lock of one (template, tenant, day): transaction-scoped.
pub fn lock_day(names: &SliceNames, day: Day, wait: bool) -> bool {
    let key = format!("wh:{}:{}", names.template, names.schema);
    let args = [DatumWithOid::from(key.as_str()), DatumWithOid::from(day.pg_epoch_days())];
    if wait {
        exec("SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext($1), $2)", &args);
        true
    } else {
        one::<bool>("SELECT pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext($1), $2)", &args).unwrap_or(false)
    }
}

/// Is `<tenant>.<slice>` attached to the tenant's unified relation?
pub fn is_attached(names: &SliceNames, slice: &str) -> bool {
    one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i \
           WHERE i.inhrelid = pg_catalog.to_regclass($1) AND i.inhparent = pg_catalog.to_regclass($2))",
        &[DatumWithOid::from(names.qualified(slice).as_str()), DatumWithOid::from(names.parent().as_str())],
    )
    .unwrap_or(false)
}

/// Where the day's rows are now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    Missing,
    /// In its own day partition.
    Day,
    /// Inside this folded year partition (late data).
    InYear(String),
}

pub struct DayJob {
    pub lt: LoadedTemplate,
    pub tenant: Tenant,
    pub names: SliceNames,
    pub day: Day,
}

impl DayJob {
    pub fn load(template: &CheckedName, tenant: &CheckedName, day: Day) -> DayJob {
        let lt = catalog::load_template(template);
        let tenant = catalog::load_tenant(tenant);
        let names = SliceNames::new(&tenant.name, template);
        DayJob { lt, tenant, names, day }
    }

    pub fn slice(&self) -> String {
        self.names.day(self.day)
    }

    fn aside(&self) -> String {
        format!("{}_new", self.slice())
    }

    pub fn result(&self, operation: &str) -> OpResult {
        OpResult::new(operation, Some(self.names.template.as_str()), Some(self.names.schema.as_str()), Some(self.day.iso()))
    }

    /// The query this day sends to the tenant.
    pub fn remote_sql(&self) -> String {
        self.lt.t.remote_sql(self.day)
    }

    /// Lock and decide. `Err(result)` means stop here (busy, or already built).
    pub fn begin(&self, operation: &str, existing: Existing, wait: bool) -> Result<Held, OpResult> {
        let stop = |reason: &str| {
            let r = self.result(operation).skipped(reason);
            log_run(&r);
            Err(r)
        };
        if !lock_day(&self.names, self.day, wait) {
            return stop("busy");
        }
        let year_rel = self.names.year(self.day.year());
        if is_attached(&self.names, &year_rel) {
            return if existing == Existing::Skip { stop("exists (folded year)") } else { Ok(Held::InYear(year_rel)) };
        }
        if is_attached(&self.names, &self.slice()) {
            return if existing == Existing::Skip { stop("exists") } else { Ok(Held::Day) };
        }
        Ok(Held::Missing)
    }

    /// Build the day with rows from `fill` (which inserts into the aside table and returns
    /// the row count) and swap it in.
    pub fn build(&self, operation: &str, held: Held, start: std::time::Instant, fill: impl FnOnce(&str) -> i64) -> OpResult {
        let names = &self.names;
        let t = &self.lt.t;
        let kind = self.lt.time_kind;
        let (lo, hi) = (self.day, self.day.succ());
        let slice = self.slice();
        let aside = self.aside();

        views::ensure_parent(names, &self.lt);
        views::ensure_public_view(&names.template);
        exec(&sql::create_like_parent(names, &aside), &[]);
        exec(&sql::owner_to_admin("TABLE", &names.qualified(&aside)), &[]);
        let fetched_at = std::time::Instant::now();
        let n = fill(&aside);
        let fetch_ms = ms_since(fetched_at);

        let outside = one::<i64>(&sql::count_outside(names, &aside, t, kind, lo, hi), &[]).unwrap_or(0);
        if outside > 0 {
            raise(WhError::RowsOutsideDay {
                template: t.name.to_string(),
                day: self.day.iso(),
                time_column: t.time_column.to_string(),
                count: outside,
            });
        }
        if let Held::InYear(year_rel) = &held {
            return self.refresh_in_year(operation, year_rel, &aside, n, fetch_ms, start);
        }
        let existed = held == Held::Day;
        exec(&sql::add_bounds(names, &aside, &sql::bounds_constraint_name(&slice), t, kind, lo, hi), &[]);
        exec_all(&sql::create_indexes(names, &aside, t));
        exec(&sql::analyze(names, &aside), &[]);

        // The swap: a few catalog changes under a short lock, committed with the caller.
        if existed {
            exec(&sql::detach(names, &slice), &[]);
            exec(&sql::drop_table(names, &slice), &[]);
        }
        exec(&sql::rename_table(names, &aside, &slice), &[]);
        exec_all(&sql::rename_indexes(names, &aside, &slice, t));
        exec(&sql::attach(names, &slice, kind, lo, hi), &[]);

        let mut r = self.result(operation);
        r.rows = Some(n);
        r.ms = ms_since(start);
        catalog::register_slice(names, &slice, "day", lo, hi, n, r.ms);
        r.detail("slice", json!(format!("{}.{}", names.schema, slice)));
        r.detail("action", json!(if existed { "refreshed" } else { "created" }));
        r.detail("fetch_ms", json!(fetch_ms));
        log_run(&r);
        r
    }
}

impl DayJob {
    /// Late data for a folded year: replace the day's rows inside the year partition
    /// (delete + insert in the caller's transaction) and correct the registry.
    fn refresh_in_year(&self, operation: &str, year_rel: &str, aside: &str, n: i64, fetch_ms: f64, start: std::time::Instant) -> OpResult {
        let names = &self.names;
        let (lo, hi) = (self.day, self.day.succ());
        let deleted = exec(&sql::delete_range(names, year_rel, &self.lt.t, self.lt.time_kind, lo, hi), &[]);
        let inserted = exec(&sql::insert_all(names, year_rel, aside), &[]);
        exec(&sql::drop_table(names, aside), &[]);
        exec(
            "UPDATE _wh.slices SET row_count = row_count - $4 + $5, refreshed_at = pg_catalog.now() \
             WHERE template_name = $1 AND tenant_name = $2 AND kind = 'year' AND slice_name = $3",
            &[
                DatumWithOid::from(names.template.as_str()),
                DatumWithOid::from(names.schema.as_str()),
                DatumWithOid::from(year_rel),
                DatumWithOid::from(deleted),
                DatumWithOid::from(inserted),
            ],
        );
        let mut r = self.result(operation);
        r.rows = Some(n);
        r.ms = ms_since(start);
        r.detail("slice", json!(format!("{}.{}", names.schema, year_rel)));
        r.detail("action", json!("refreshed in folded year"));
        r.detail("rows_replaced", json!(deleted));
        r.detail("fetch_ms", json!(fetch_ms));
        log_run(&r);
        r
    }
}

/// Build (or rebuild) one day synchronously over dblink.
pub fn build_day(job: &DayJob, operation: &str, existing: Existing, wait: bool) -> OpResult {
    let start = std::time::Instant::now();
    let held = match job.begin(operation, existing, wait) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let dbl = dblink_schema();
    let remote_sql = job.remote_sql();
    let server = job.tenant.server.clone();
    let names = job.names.clone();
    let t = job.lt.t.clone();
    job.build(operation, held, start, |aside| {
        let stmt = sql::insert_from_dblink(&names, aside, &t, &dbl);
        remote::guard(&names.schema, || {
            exec(&stmt, &[DatumWithOid::from(server.as_str()), DatumWithOid::from(remote_sql.as_str())])
        })
    })
}
