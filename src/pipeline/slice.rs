//! One pipeline for tenant-days: **stage → check → apply**.
//!
//! A run of days of one tenant (one day, a lookback window, a month of a backfill) is
//! fetched with one remote COPY streamed into this session's temporary staging table,
//! checked per day (every row inside its day, no duplicate unique key; every value read
//! by its declared type), compared per day with what is stored (row count and a checksum
//! over every column), and only the days that differ are written: DELETE that tenant's
//! rows of the day, INSERT the staged rows. All in the caller's transaction, by DML (the
//! one DDL: a month with no partition yet is built aside with the rows and attached, see
//! `storage::load_period_aside`): readers see the old rows or the new ones and never
//! wait; a day that fails its checks changes nothing; a day whose rows are unchanged
//! writes nothing but its registry row.
//!
//! Locks: the template's row of `_wh.mv_templates` FOR KEY SHARE (shared by every
//! refresh; a fold takes it FOR UPDATE), then one row of `_wh.slices` per day FOR UPDATE
//! (a second run of the same day skips as `busy`). Different days and tenants touch
//! different rows and never block or deadlock each other.

use std::collections::{BTreeMap, BTreeSet};

use pgrx::datum::DatumWithOid;
use serde_json::json;

use crate::catalog::db::pg_date;
use crate::catalog::db::{col, exec, ms_since, one, rows};
use crate::catalog::registry;
use crate::catalog::storage;
use crate::catalog::{self, log_run, LoadedTemplate, Tenant};
use crate::pure::dates::Day;
use crate::pure::error::{raise, WhError};
use crate::pure::names::{CheckedName, SliceNames, TableNames};
use crate::pure::report::{OpResult, Status};
use crate::pure::sql;
use crate::remote;

/// What to do with a day the registry already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Leave it (`skipped: exists`): building, backfilling.
    Skip,
    /// Fetch it again and write it if it changed: refreshing, rebuilding.
    Refresh,
}

/// Where the staged rows come from.
pub enum Source<'a> {
    /// Send the days' query to the tenant's foreign server now and wait for the answer
    /// (at most the tenant's remote_timeout plus a grace, enforced here).
    Remote,
    /// The answer to a query already sent on this named connection, due by `deadline_ms`.
    Async { conn: &'a str, deadline_ms: i64 },
    /// A rollup's days, computed here from its base's stored rows (no source is asked).
    /// With `check_base`, only base days that are registered and hold the rows their
    /// registry counts are used (a base that lost rows never empties its rollup); the
    /// base's own refresh, which has just written and registered them, skips the check.
    Local { check_base: bool },
}

/// A run of days of one tenant and template.
pub struct Batch {
    pub lt: LoadedTemplate,
    pub tenant: Tenant,
    pub names: SliceNames,
    pub table: TableNames,
    /// May a refresh take away more of a stored day than the template's
    /// `max_shrink_percent`? (the caller's `allow_shrink`, or `SET wh.allow_shrink = on`)
    pub allow_shrink: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Figures {
    n: i64,
    checksum: String,
}

impl Figures {
    /// A day without rows.
    fn empty() -> Figures {
        Figures {
            n: 0,
            checksum: sql::EMPTY_DAY_CHECKSUM.into(),
        }
    }

    /// These figures, or an empty day's when they count no rows.
    fn or_empty(&self) -> Figures {
        if self.n == 0 {
            Figures::empty()
        } else {
            self.clone()
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Staged {
    figures: Figures,
    outside: i64,
    duplicates: i64,
}

impl Batch {
    pub fn load(template: &CheckedName, tenant: &CheckedName) -> Batch {
        let mut lt = catalog::load_template(template);
        let tenant = catalog::load_tenant(tenant);
        // A tenant whose source differs fetches with its own query (checked again here).
        // A rollup is computed here, never with a tenant's query.
        let own_query = match lt.base {
            None => catalog::tenant_query(template, &tenant.name),
            Some(_) => None,
        };
        if let Some(q) = own_query {
            lt.t = lt.t.with_query(&q).unwrap_or_else(|reason| {
                raise(WhError::InvalidTemplate {
                    template: template.to_string(),
                    reason: format!("query for tenant {}: {reason}", tenant.name),
                })
            });
        }
        let names = SliceNames::new(&tenant.name, template);
        let table = TableNames::with_columns(template, &lt.t.column_definitions_text());
        let allow_shrink = crate::catalog::db::shrink_allowed();
        Batch {
            lt,
            tenant,
            names,
            table,
            allow_shrink,
        }
    }

    fn result(&self, operation: &str, day: Day) -> OpResult {
        OpResult::new(
            operation,
            Some(self.names.template.as_str()),
            Some(self.names.tenant.as_str()),
            Some(day.iso()),
        )
    }

    fn args(&self) -> (DatumWithOid<'_>, DatumWithOid<'_>) {
        (
            DatumWithOid::from(self.names.template.as_str()),
            DatumWithOid::from(self.names.tenant.as_str()),
        )
    }

    /// The query these days send to the tenant (as text COPY; binary when the source's
    /// types allow).
    pub fn remote_sql(&self, days: &[Day]) -> String {
        sql::copy_out(
            &self.lt.t.copy_select(days),
            crate::pure::caps::CopyFormat::Text,
        )
    }

    /// Open the connection `name` to the tenant and send the days' COPY.
    pub fn send_days(&self, name: &str, days: &[Day]) {
        let request = remote::pq::CopyRequest {
            select: self.lt.t.copy_select(days),
            stage_types: catalog::stage_types(&self.lt.t),
            days: days.to_vec(),
        };
        remote::send_copy(&self.tenant, name, request);
    }

    /// Days of `days` the registry holds as built: rows with a checksum (a claim's
    /// placeholder has none until its day is written).
    pub fn registered(&self, days: &[Day]) -> BTreeSet<Day> {
        let (template, tenant) = self.args();
        let ds: Vec<pgrx::datum::Date> = days.iter().map(|d| pg_date(*d)).collect();
        rows(
            "SELECT range_start FROM _wh.slices WHERE template_name = $1 AND tenant_name = $2 AND kind = 'day' \
             AND range_start = ANY ($3::date[]) AND checksum IS NOT NULL",
            &[template, tenant, DatumWithOid::from(ds)],
            |r| col::<pgrx::datum::Date>(r, "range_start"),
        )
        .into_iter()
        .flatten()
        .filter_map(|d| catalog::db::day_of(d).ok())
        .collect()
    }

    /// Lock the days (rows of `_wh.slices`, placeholders for new days); returns the days
    /// this call holds. Without `wait`, a day another session holds is left out.
    fn claim(&self, days: &[Day], wait: bool) -> BTreeSet<Day> {
        let (template, tenant) = self.args();
        let ds: Vec<pgrx::datum::Date> = days.iter().map(|d| pg_date(*d)).collect();
        one::<Vec<pgrx::datum::Date>>(
            "SELECT _wh._claim_days($1, $2, $3::date[], $4)",
            &[
                template,
                tenant,
                DatumWithOid::from(ds),
                DatumWithOid::from(wait),
            ],
        )
        .unwrap_or_default()
        .into_iter()
        .filter_map(|d| catalog::db::day_of(d).ok())
        .collect()
    }

    /// Fill the staging table with the days' rows and summarize them per day in the same
    /// pass (rows, rows outside the day, checksum), then count repeated unique keys.
    fn stage(&self, days: &[Day], source: &Source) -> BTreeMap<Day, Staged> {
        if storage::relation_exists(&self.table.stage()) {
            exec(&sql::truncate_stage(&self.table), &[]);
        } else {
            exec(&sql::create_stage(&self.table, &self.lt.t), &[]);
        }
        let (t, kind) = (&self.lt.t, self.lt.time_kind);
        let summarize = |r: &pgrx::spi::SpiHeapTupleData| {
            let day =
                col::<pgrx::datum::Date>(r, "wh_day").and_then(|d| catalog::db::day_of(d).ok());
            let s = Staged {
                figures: Figures {
                    n: col::<i64>(r, "n").unwrap_or(0),
                    checksum: col::<String>(r, "checksum")
                        .unwrap_or_else(|| sql::EMPTY_DAY_CHECKSUM.into()),
                },
                outside: col::<i64>(r, "outside").unwrap_or(0),
                duplicates: 0,
            };
            (day, s)
        };
        let from_answer = |conn: &str, deadline_ms: i64| {
            let stage = storage::relation_oid(&self.table.stage());
            remote::receive_copy(&self.tenant, conn, deadline_ms, stage, self.lt.limits);
            rows(&sql::staged_summary(&self.table, t, kind), &[], summarize)
        };
        let summary = match source {
            Source::Remote => {
                let own = remote::conn_name("wh_q_", &self.names.tenant);
                let deadline = remote::deadline_for(&self.tenant);
                self.send_days(&own, days);
                from_answer(&own, deadline)
            }
            Source::Async { conn, deadline_ms } => from_answer(conn, *deadline_ms),
            Source::Local { .. } => rows(
                &sql::stage_from_local(&self.table, t, kind, days),
                &[DatumWithOid::from(self.names.tenant.as_str())],
                summarize,
            ),
        };
        summary
            .into_iter()
            .filter_map(|(d, s)| d.map(|d| (d, s)))
            .collect()
    }

    /// Count the repeated unique keys of the staged `days` (a hash aggregate over their
    /// rows). Only days whose figures differ from what is stored need it: a day equal to
    /// its stored rows repeats no key, as they passed this check when written.
    fn count_duplicates(&self, staged: &mut BTreeMap<Day, Staged>, days: &[Day]) {
        let Some(q) = sql::stage_duplicates(&self.table, &self.lt.t) else {
            return;
        };
        if days.is_empty() {
            return;
        }
        let ds: Vec<pgrx::datum::Date> = days.iter().map(|d| pg_date(*d)).collect();
        for (d, n) in rows(&q, &[DatumWithOid::from(ds)], |r| {
            (
                col::<pgrx::datum::Date>(r, "wh_day").and_then(|d| catalog::db::day_of(d).ok()),
                col::<i64>(r, "duplicates"),
            )
        }) {
            if let (Some(d), Some(n)) = (d, n) {
                if let Some(s) = staged.get_mut(&d) {
                    s.duplicates = n;
                }
            }
        }
    }

    fn stored(&self, lo: Day, hi: Day) -> BTreeMap<Day, Figures> {
        catalog::day_figures(
            &sql::stored_summary(&self.table, &self.lt.t, self.lt.time_kind, lo, hi),
            &[DatumWithOid::from(self.names.tenant.as_str())],
        )
        .into_iter()
        .map(|(d, (n, checksum))| (d, Figures { n, checksum }))
        .collect()
    }

    fn register(&self, day: Day, f: &Figures, ms: f64, changed: bool) {
        let figures = registry::DayFigures {
            rows: f.n,
            checksum: &f.checksum,
        };
        let columns = self.lt.t.columns.len();
        registry::record_built(&self.names, day, &figures, ms, changed, columns);
    }

    /// Of a rollup's `days`, those whose base day is registered and holds the rows its
    /// registry counts; the others are skipped (not held by the base: the rollup keeps what
    /// it has, e.g. after the base's retention) or failed (rows missing: rebuild the base).
    fn base_days_intact(
        &self,
        base: &CheckedName,
        days: &[Day],
        operation: &str,
    ) -> (Vec<Day>, Vec<OpResult>) {
        let (Some(&lo), Some(&hi)) = (days.first(), days.last()) else {
            return (Vec::new(), Vec::new());
        };
        let blt = catalog::load_template(base);
        let btn = TableNames::new(base);
        let tenant = DatumWithOid::from(self.names.tenant.as_str());
        let registry: BTreeMap<Day, i64> = rows(
            "SELECT range_start, row_count FROM _wh.slices WHERE template_name = $1 AND tenant_name = $2 AND kind = 'day' \
             AND range_start >= $3 AND range_start <= $4 AND checksum IS NOT NULL",
            &[DatumWithOid::from(base.as_str()), tenant, DatumWithOid::from(pg_date(lo)), DatumWithOid::from(pg_date(hi))],
            |r| (col::<pgrx::datum::Date>(r, "range_start").and_then(|d| catalog::db::day_of(d).ok()), col::<i64>(r, "row_count").unwrap_or(0)),
        )
        .into_iter()
        .filter_map(|(d, n)| d.map(|d| (d, n)))
        .collect();
        // The base's days are locked against its refreshes until this transaction ends (a
        // refresh writing one now would otherwise commit rows this rollup never saw): a day
        // being written is skipped as busy.
        let held: Vec<pgrx::datum::Date> = registry.keys().map(|d| pg_date(*d)).collect();
        let locked: BTreeSet<Day> = rows(
            "SELECT range_start FROM _wh.slices WHERE template_name = $1 AND tenant_name = $2 AND kind = 'day' \
             AND range_start = ANY ($3::date[]) FOR KEY SHARE SKIP LOCKED",
            &[DatumWithOid::from(base.as_str()), DatumWithOid::from(self.names.tenant.as_str()), DatumWithOid::from(held)],
            |r| col::<pgrx::datum::Date>(r, "range_start").and_then(|d| catalog::db::day_of(d).ok()),
        )
        .into_iter()
        .flatten()
        .collect();
        let stored: BTreeMap<Day, i64> = rows(
            &sql::stored_day_counts(&btn, &blt.t, blt.time_kind, lo, hi.succ()),
            &[DatumWithOid::from(self.names.tenant.as_str())],
            |r| {
                (
                    col::<pgrx::datum::Date>(r, "wh_day").and_then(|d| catalog::db::day_of(d).ok()),
                    col::<i64>(r, "n").unwrap_or(0),
                )
            },
        )
        .into_iter()
        .filter_map(|(d, n)| d.map(|d| (d, n)))
        .collect();
        let mut ok = Vec::new();
        let mut refused = Vec::new();
        for &d in days {
            let held = stored.get(&d).copied().unwrap_or(0);
            match registry.get(&d) {
                None => refused.push(
                    self.result(operation, d)
                        .skipped("the base does not hold this day"),
                ),
                Some(_) if !locked.contains(&d) => {
                    refused.push(self.result(operation, d).skipped("busy"))
                }
                Some(&n) if n != held => {
                    let e = WhError::State(format!(
                        "rollup {}, tenant {}, day {}: base {base} holds {held} row(s) of the day but its registry counts {n}; the rollup's day was left as it was: rebuild {base} first",
                        self.names.template, self.names.tenant, d.iso()
                    ));
                    refused.push(self.result(operation, d).failed(
                        &crate::pure::error::sqlstate_text(e.sqlstate()),
                        &e.to_string(),
                    ));
                }
                Some(_) => ok.push(d),
            }
        }
        for r in refused.iter().filter(|r| r.status == Status::Failed) {
            log_run(r);
        }
        (ok, refused)
    }

    /// A day kept as it was because the source's answer would take away more of it than
    /// the template allows (a source that purged its history): failed, so it shows in the
    /// run log, `_wh.failures` and `health()` until a refresh that may shrink it.
    fn shrink_kept(&self, operation: &str, day: Day, stored: i64, fetched: i64) -> OpResult {
        let e = WhError::State(format!(
            "template {}, tenant {}, day {}: the source now sends {fetched} row(s) where the warehouse holds {stored}; \
             the stored day was kept (more than the template's max_shrink_percent {}% would go, as when a source purges \
             its history): if the source is right, refresh with allow_shrink => true (or SET wh.allow_shrink = on)",
            self.names.template,
            self.names.tenant,
            day.iso(),
            self.lt.limits.max_shrink_percent
        ));
        let mut r = self.result(operation, day).failed(
            &crate::pure::error::sqlstate_text(e.sqlstate()),
            &e.to_string(),
        );
        r.detail("phase", json!("check"));
        r.detail(
            "kept",
            json!({"stored_rows": stored, "source_rows": fetched}),
        );
        r
    }

    /// Which partition holds `day` (for the result's details).
    fn partition_of(&self, parts: &[storage::Partition], day: Day) -> Option<String> {
        parts
            .iter()
            .find(|p| p.lo <= day && day < p.hi)
            .map(|p| p.name.clone())
    }

    /// Stage, check and apply `days` (sorted): one result per day, returned unlogged in
    /// `Ran` (but a rollup's days refused for their base, logged at once), for the caller
    /// to keep the template's rollups first and log them (`pipeline::days`).
    pub fn run(
        &self,
        days: &[Day],
        existing: Existing,
        wait: bool,
        operation: &str,
        source: Source,
    ) -> Ran {
        let start = std::time::Instant::now();
        let mut ran = Ran::default();
        let Some((&first, &last)) = days.first().zip(days.last()) else {
            return ran;
        };
        // A period without a partition yet is built aside when its rows are written; any
        // other gets its partitions now (a no-op once maintenance made them ahead).
        let period = storage::unpartitioned_period(&self.lt, first, last);
        if period.is_none() {
            storage::ensure_partitions(&self.lt, first, last.succ());
        }
        storage::ensure_tenant_view(&self.names, &self.lt);
        let (work, before) = self.claim_work(days, existing, wait, operation, &source, &mut ran);
        if !work.is_empty() {
            let plan = RunPlan { start, period };
            self.apply(&work, &before, operation, source, plan, &mut ran);
        }
        ran.done.sort_by(|a, b| a.day.cmp(&b.day));
        ran
    }

    /// The days of `days` this call works on, claimed, and those of them the registry
    /// held before; every other day goes into `ran` as skipped (exists, busy, a rollup's
    /// base not holding it) or failed.
    fn claim_work(
        &self,
        days: &[Day],
        existing: Existing,
        wait: bool,
        operation: &str,
        source: &Source,
        ran: &mut Ran,
    ) -> (Vec<Day>, BTreeSet<Day>) {
        let mut out = Vec::new();
        let seen = self.registered(days);
        let mut todo = Vec::new();
        for &d in days {
            if existing == Existing::Skip && seen.contains(&d) {
                out.push(self.result(operation, d).skipped("exists"));
            } else {
                todo.push(d);
            }
        }
        if let (Source::Local { check_base: true }, Some(base)) = (source, &self.lt.base) {
            let (ok, refused) = self.base_days_intact(base, &todo, operation);
            out.extend(refused);
            todo = ok;
        }
        let claimed = if todo.is_empty() {
            BTreeSet::new()
        } else {
            self.claim(&todo, wait)
        };
        for &d in todo.iter().filter(|d| !claimed.contains(d)) {
            out.push(self.result(operation, d).skipped("busy"));
        }
        // What the registry held before this call, read again now that the days are ours
        // (another session may have built or dropped one meanwhile). The claim inserted
        // placeholders for new days: those carry no checksum yet.
        let mut work: Vec<Day> = todo.into_iter().filter(|d| claimed.contains(d)).collect();
        let before = self.registered(&work);
        if existing == Existing::Skip {
            for &d in work.iter().filter(|d| before.contains(d)) {
                out.push(self.result(operation, d).skipped("exists"));
            }
            work.retain(|d| !before.contains(d));
        }
        ran.done.extend(out);
        (work, before)
    }

    /// Stage the claimed days, check each, write the changed ones, register them.
    fn apply(
        &self,
        work: &[Day],
        before: &BTreeSet<Day>,
        operation: &str,
        source: Source,
        plan: RunPlan,
        ran: &mut Ran,
    ) {
        let mut timing = Timing::default();
        let at = std::time::Instant::now();
        let mut staged = self.stage(work, &source);
        timing.fetch_ms = ms_since(at);
        let (lo, hi) = (work[0], work[work.len() - 1].succ());
        let at = std::time::Instant::now();
        // Always read what is stored, registered or not: rows without a registry row (a
        // registry edited by hand) are replaced, never doubled.
        let stored = self.stored(lo, hi);
        let differing: Vec<Day> = work
            .iter()
            .copied()
            .filter(|d| {
                let fetched = staged.get(d).map(|s| s.figures.or_empty());
                let kept = stored.get(d).map(Figures::or_empty);
                !before.contains(d)
                    || fetched.unwrap_or_else(Figures::empty) != kept.unwrap_or_else(Figures::empty)
            })
            .collect();
        self.count_duplicates(&mut staged, &differing);
        timing.compare_ms = ms_since(at);
        let fetched = !matches!(source, Source::Local { .. });
        for &d in work {
            let staged_day = staged.get(&d).cloned().unwrap_or_default();
            match self.check(d, &staged_day, stored.get(&d), before, fetched, operation) {
                Verdict::Refused(r) => ran.failed.push(*r),
                Verdict::Unchanged => ran.unchanged.push(d),
                Verdict::Changed => ran.changed.push(d),
            }
        }
        let at = std::time::Instant::now();
        ran.period_load = self.write(&ran.changed, &stored, plan.period);
        timing.write_ms = ms_since(at);
        timing.total_ms = ms_since(plan.start);
        ran.applied = self.register_all(work, ran, &staged, &stored, before, operation, &timing);
        exec(&sql::truncate_stage(&self.table), &[]);
    }

    /// One staged day against what is stored: refused (rows outside the day, a repeated
    /// unique key, a shrink past the template's limit), unchanged or changed.
    fn check(
        &self,
        day: Day,
        staged: &Staged,
        stored: Option<&Figures>,
        before: &BTreeSet<Day>,
        fetched: bool,
        operation: &str,
    ) -> Verdict {
        let t = &self.lt.t;
        let failure = if staged.outside > 0 {
            Some(WhError::RowsOutsideDay {
                template: t.name.to_string(),
                day: day.iso(),
                time_column: t.time_column.to_string(),
                count: staged.outside,
            })
        } else if staged.duplicates > 0 {
            Some(WhError::DuplicateKey {
                template: t.name.to_string(),
                tenant: self.names.tenant.to_string(),
                day: day.iso(),
                key: t.unique_key_text().unwrap_or_default(),
                count: staged.duplicates,
            })
        } else {
            None
        };
        if let Some(e) = failure {
            let mut r = self.result(operation, day).failed(
                &crate::pure::error::sqlstate_text(e.sqlstate()),
                &e.to_string(),
            );
            r.detail("phase", json!("check"));
            if !before.contains(&day) {
                registry::forget_day(&self.names, day);
            }
            return Verdict::Refused(Box::new(r));
        }
        let held = stored.cloned().unwrap_or_else(Figures::empty);
        let fetched_figures = staged.figures.or_empty();
        if fetched && !self.allow_shrink && self.lt.limits.shrink_refused(held.n, fetched_figures.n)
        {
            return Verdict::Refused(Box::new(self.shrink_kept(
                operation,
                day,
                held.n,
                fetched_figures.n,
            )));
        }
        if before.contains(&day) && held == fetched_figures {
            Verdict::Unchanged
        } else {
            Verdict::Changed
        }
    }

    /// Replace the tenant's rows of the changed days with the staged ones. Days of a period
    /// that has no partition yet (`period`) are loaded aside and attached when no other
    /// session is doing so; otherwise the period gets its partition as any other.
    fn write(
        &self,
        changed: &[Day],
        stored: &BTreeMap<Day, Figures>,
        period: Option<(Day, Day)>,
    ) -> Option<storage::PeriodLoad> {
        if changed.is_empty() {
            return None;
        }
        let insert = |target: &str| {
            let ds: Vec<pgrx::datum::Date> = changed.iter().map(|d| pg_date(*d)).collect();
            exec(
                &sql::insert_staged(&self.table, &self.lt.t, target),
                &[
                    DatumWithOid::from(self.names.tenant.as_str()),
                    DatumWithOid::from(ds),
                ],
            );
        };
        // Rows stored for these days (another session partitioned and filled the month
        // before they were claimed) are replaced row by row, never doubled.
        let replaced: Vec<Day> = changed
            .iter()
            .copied()
            .filter(|d| stored.get(d).is_some_and(|f| f.n > 0))
            .collect();
        if let Some((lo, hi)) = period.filter(|_| replaced.is_empty()) {
            let loaded = storage::load_period_aside(&self.lt, (lo, hi), insert);
            if loaded.is_some() {
                return loaded;
            }
            storage::ensure_partitions(&self.lt, lo, hi);
        }
        let t = &self.lt.t;
        if !replaced.is_empty() {
            // Rows of a columnar year cannot be deleted: such a year becomes heap first.
            for p in storage::partitions(&self.table) {
                if !p.access.allows_delete() && replaced.iter().any(|d| p.lo <= *d && *d < p.hi) {
                    crate::pipeline::fold::make_rewritable(&self.lt, &p);
                }
            }
        }
        for d in &replaced {
            exec(
                &sql::delete_day(&self.table, t, self.lt.time_kind, *d),
                &[DatumWithOid::from(self.names.tenant.as_str())],
            );
        }
        insert(&self.table.table());
        None
    }

    /// Register every written or unchanged day and say what was done to it.
    #[allow(clippy::too_many_arguments)]
    fn register_all(
        &self,
        work: &[Day],
        ran: &Ran,
        staged: &BTreeMap<Day, Staged>,
        stored: &BTreeMap<Day, Figures>,
        before: &BTreeSet<Day>,
        operation: &str,
        timing: &Timing,
    ) -> Vec<OpResult> {
        let parts = storage::partitions(&self.table);
        let staged_rows: i64 = staged.values().map(|s| s.figures.n).sum();
        let share = timing.total_ms / work.len() as f64;
        let mut out = Vec::new();
        for &d in work {
            let is_changed = ran.changed.contains(&d);
            if !is_changed && !ran.unchanged.contains(&d) {
                continue;
            }
            let figures = staged
                .get(&d)
                .map(|s| s.figures.or_empty())
                .unwrap_or_else(Figures::empty);
            self.register(d, &figures, share, is_changed);
            let mut r = self.result(operation, d);
            r.rows = Some(figures.n);
            r.ms = if work.len() == 1 {
                timing.total_ms
            } else {
                share
            };
            let action = match (before.contains(&d), is_changed) {
                (false, _) => "created",
                (true, true) => "refreshed",
                (true, false) => "unchanged",
            };
            r.detail("action", json!(action));
            r.detail(
                "slice",
                json!(format!("{}.{}", self.names.tenant, self.names.day(d))),
            );
            r.detail("partition", json!(self.partition_of(&parts, d)));
            r.detail(
                "rows_replaced",
                json!(stored.get(&d).map(|f| f.n).unwrap_or(0)),
            );
            r.detail("fetch_ms", json!(timing.fetch_ms));
            r.detail("compare_ms", json!(timing.compare_ms));
            r.detail("write_ms", json!(timing.write_ms));
            if is_changed {
                if let Some(load) = ran.period_load {
                    r.detail("partition_load", json!(load.name()));
                }
            }
            if work.len() > 1 {
                r.detail("chunk_days", json!(work.len()));
                r.detail("chunk_rows", json!(staged_rows));
            }
            out.push(r);
        }
        out
    }
}

/// What `Batch::run` did. `done`: days skipped (not logged yet) or whose base a rollup
/// could not use (logged); `failed`: days refused by their checks; `applied`: days
/// written or unchanged; `changed` and `unchanged`: their days, for the rollups.
#[derive(Default)]
pub struct Ran {
    pub done: Vec<OpResult>,
    pub failed: Vec<OpResult>,
    pub applied: Vec<OpResult>,
    pub changed: Vec<Day>,
    pub unchanged: Vec<Day>,
    /// How the changed days' period was written when it had no partition.
    pub period_load: Option<storage::PeriodLoad>,
}

impl Ran {
    /// Every result, by day.
    pub fn results(self) -> Vec<OpResult> {
        let mut all = self.done;
        all.extend(self.failed);
        all.extend(self.applied);
        all.sort_by(|a, b| a.day.cmp(&b.day));
        all
    }
}

/// A staged day's verdict.
enum Verdict {
    Refused(Box<OpResult>),
    Unchanged,
    Changed,
}

/// How a run goes on once its days are claimed: when it started (for its timing) and the
/// period it builds aside when that has no partition yet.
struct RunPlan {
    start: std::time::Instant,
    period: Option<(Day, Day)>,
}

/// Where a run's time went, for the results' details.
#[derive(Default)]
struct Timing {
    fetch_ms: f64,
    compare_ms: f64,
    write_ms: f64,
    total_ms: f64,
}
