//! One pipeline for tenant-days: **stage → check → apply**.
//!
//! A run of days of one tenant (one day, a lookback window, a month of a backfill) is
//! fetched with one remote query into this session's temporary staging table, checked
//! per day (every row inside its day, no duplicate unique key; types are checked by the
//! dblink column list), compared per day with what is stored (row count and a checksum
//! over every column), and only the days that differ are written: DELETE that tenant's
//! rows of the day, INSERT the staged rows. All in the caller's transaction, by DML only:
//! readers see the old rows or the new ones and never wait; a day that fails its checks
//! changes nothing; a day whose rows are unchanged writes nothing but its registry row.
//!
//! Locks: the template's row of `_wh.mv_templates` FOR KEY SHARE (shared by every
//! refresh; a fold takes it FOR UPDATE), then one row of `_wh.slices` per day FOR UPDATE
//! (a second run of the same day skips as `busy`). Different days and tenants touch
//! different rows and never block or deadlock each other.

use std::collections::{BTreeMap, BTreeSet};

use pgrx::datum::DatumWithOid;
use serde_json::json;

use crate::catalog::{self, dblink_schema, log_run, pg_date, LoadedTemplate, Tenant};
use crate::dates::Day;
use crate::db::{col, exec, ms_since, one, rows};
use crate::error::{raise, WhError};
use crate::names::{CheckedName, SliceNames, TableNames};
use crate::remote;
use crate::report::OpResult;
use crate::sql;
use crate::storage;

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
    /// The answer to a query already sent on this dblink connection, due by `deadline_ms`.
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
    pub tn: TableNames,
    /// May a refresh take away more of a stored day than the template's
    /// `max_shrink_percent`? (the caller's `allow_shrink`, or `SET wh.allow_shrink = on`)
    pub allow_shrink: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Figures {
    n: i64,
    checksum: String,
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
        let tn = TableNames::with_columns(template, &lt.t.column_definitions_text());
        let allow_shrink = crate::db::shrink_allowed();
        Batch {
            lt,
            tenant,
            names,
            tn,
            allow_shrink,
        }
    }

    fn result(&self, operation: &str, day: Day) -> OpResult {
        OpResult::new(
            operation,
            Some(self.names.template.as_str()),
            Some(self.names.schema.as_str()),
            Some(day.iso()),
        )
    }

    fn args(&self) -> (DatumWithOid<'_>, DatumWithOid<'_>) {
        (
            DatumWithOid::from(self.names.template.as_str()),
            DatumWithOid::from(self.names.schema.as_str()),
        )
    }

    /// The query these days send to the tenant.
    pub fn remote_sql(&self, days: &[Day]) -> String {
        self.lt.t.remote_sql(days, &self.lt.limits)
    }

    /// Days of `days` the registry holds as built: rows with a checksum (a claim's
    /// placeholder has none until its day is written).
    pub fn registered(&self, days: &[Day]) -> BTreeSet<Day> {
        let (tp, tn) = self.args();
        let ds: Vec<pgrx::datum::Date> = days.iter().map(|d| pg_date(*d)).collect();
        rows(
            "SELECT range_start FROM _wh.slices WHERE template_name = $1 AND tenant_name = $2 AND kind = 'day' \
             AND range_start = ANY ($3::date[]) AND checksum IS NOT NULL",
            &[tp, tn, DatumWithOid::from(ds)],
            |r| col::<pgrx::datum::Date>(r, "range_start"),
        )
        .into_iter()
        .flatten()
        .filter_map(|d| catalog::day_of(d).ok())
        .collect()
    }

    /// Lock the days (rows of `_wh.slices`, placeholders for new days); returns the days
    /// this call holds. Without `wait`, a day another session holds is left out.
    fn claim(&self, days: &[Day], wait: bool) -> BTreeSet<Day> {
        let (tp, tn) = self.args();
        let ds: Vec<pgrx::datum::Date> = days.iter().map(|d| pg_date(*d)).collect();
        one::<Vec<pgrx::datum::Date>>(
            "SELECT _wh._claim_days($1, $2, $3::date[], $4)",
            &[tp, tn, DatumWithOid::from(ds), DatumWithOid::from(wait)],
        )
        .unwrap_or_default()
        .into_iter()
        .filter_map(|d| catalog::day_of(d).ok())
        .collect()
    }

    /// Fill the staging table with the days' rows and summarize them per day in the same
    /// pass (rows, rows outside the day, checksum), then count repeated unique keys.
    fn stage(&self, days: &[Day], source: &Source) -> BTreeMap<Day, Staged> {
        if storage::relation_exists(&self.tn.stage()) {
            exec(&sql::truncate_stage(&self.tn), &[]);
        } else {
            exec(&sql::create_stage(&self.tn, &self.lt.t), &[]);
        }
        let (t, kind) = (&self.lt.t, self.lt.time_kind);
        let summarize = |r: &pgrx::spi::SpiHeapTupleData| {
            let day = col::<pgrx::datum::Date>(r, "wh_day").and_then(|d| catalog::day_of(d).ok());
            let s = Staged {
                figures: Figures {
                    n: col::<i64>(r, "n").unwrap_or(0),
                    checksum: col::<String>(r, "checksum").unwrap_or_else(|| "0".into()),
                },
                outside: col::<i64>(r, "outside").unwrap_or(0),
                duplicates: 0,
            };
            (day, s)
        };
        let from_answer = |conn: &str, deadline_ms: i64| {
            let stmt = sql::stage_from_async(&self.tn, t, kind, &dblink_schema());
            remote::receive(&self.tenant, conn, deadline_ms, || {
                rows(&stmt, &[DatumWithOid::from(conn)], summarize)
            })
        };
        let summary = match source {
            Source::Remote => {
                let own = remote::conn_name("wh_q_", &self.names.schema);
                let deadline = remote::deadline_for(&self.tenant);
                remote::send(&self.tenant, &own, &self.remote_sql(days));
                from_answer(&own, deadline)
            }
            Source::Async { conn, deadline_ms } => from_answer(conn, *deadline_ms),
            Source::Local { .. } => rows(
                &sql::stage_from_local(&self.tn, t, kind, days),
                &[DatumWithOid::from(self.names.schema.as_str())],
                summarize,
            ),
        };
        let mut staged: BTreeMap<Day, Staged> = summary
            .into_iter()
            .filter_map(|(d, s)| d.map(|d| (d, s)))
            .collect();
        if let Some(q) = sql::stage_duplicates(&self.tn, t) {
            for (d, n) in rows(&q, &[], |r| {
                (
                    col::<pgrx::datum::Date>(r, "wh_day").and_then(|d| catalog::day_of(d).ok()),
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
        staged
    }

    fn stored(&self, lo: Day, hi: Day) -> BTreeMap<Day, Figures> {
        catalog::day_figures(
            &sql::stored_summary(&self.tn, &self.lt.t, self.lt.time_kind, lo, hi),
            &[DatumWithOid::from(self.names.schema.as_str())],
        )
        .into_iter()
        .map(|(d, (n, checksum))| (d, Figures { n, checksum }))
        .collect()
    }

    fn register(&self, day: Day, f: &Figures, ms: f64, changed: bool) {
        let (tp, tn) = self.args();
        exec(
            "UPDATE _wh.slices SET row_count = $4, checksum = $5, refreshed_at = pg_catalog.now(), build_ms = $6, \
                    built_at = CASE WHEN $7 THEN pg_catalog.now() ELSE built_at END, columns = $8 \
             WHERE template_name = $1 AND tenant_name = $2 AND kind = 'day' AND range_start = $3",
            &[
                tp,
                tn,
                DatumWithOid::from(pg_date(day)),
                DatumWithOid::from(f.n),
                DatumWithOid::from(f.checksum.as_str()),
                DatumWithOid::from(ms),
                DatumWithOid::from(changed),
                DatumWithOid::from(self.lt.t.columns.len() as i16),
            ],
        );
    }

    fn unregister(&self, day: Day) {
        let (tp, tn) = self.args();
        exec(
            "DELETE FROM _wh.slices WHERE template_name = $1 AND tenant_name = $2 AND kind = 'day' AND range_start = $3",
            &[tp, tn, DatumWithOid::from(pg_date(day))],
        );
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
        let tenant = DatumWithOid::from(self.names.schema.as_str());
        let registry: BTreeMap<Day, i64> = rows(
            "SELECT range_start, row_count FROM _wh.slices WHERE template_name = $1 AND tenant_name = $2 AND kind = 'day' \
             AND range_start >= $3 AND range_start <= $4 AND checksum IS NOT NULL",
            &[DatumWithOid::from(base.as_str()), tenant, DatumWithOid::from(pg_date(lo)), DatumWithOid::from(pg_date(hi))],
            |r| (col::<pgrx::datum::Date>(r, "range_start").and_then(|d| catalog::day_of(d).ok()), col::<i64>(r, "row_count").unwrap_or(0)),
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
            &[DatumWithOid::from(base.as_str()), DatumWithOid::from(self.names.schema.as_str()), DatumWithOid::from(held)],
            |r| col::<pgrx::datum::Date>(r, "range_start").and_then(|d| catalog::day_of(d).ok()),
        )
        .into_iter()
        .flatten()
        .collect();
        let stored: BTreeMap<Day, i64> = rows(
            &sql::stored_day_counts(&btn, &blt.t, blt.time_kind, lo, hi.succ()),
            &[DatumWithOid::from(self.names.schema.as_str())],
            |r| {
                (
                    col::<pgrx::datum::Date>(r, "wh_day").and_then(|d| catalog::day_of(d).ok()),
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
                        self.names.template, self.names.schema, d.iso()
                    ));
                    refused.push(
                        self.result(operation, d)
                            .failed(&crate::error::sqlstate_text(e.sqlstate()), &e.to_string()),
                    );
                }
                Some(_) => ok.push(d),
            }
        }
        for r in refused
            .iter()
            .filter(|r| r.status == crate::report::Status::Failed)
        {
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
            self.names.schema,
            day.iso(),
            self.lt.limits.max_shrink_percent
        ));
        let mut r = self
            .result(operation, day)
            .failed(&crate::error::sqlstate_text(e.sqlstate()), &e.to_string());
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

    /// Stage, check and apply `days` (sorted); one result per day, each logged.
    pub fn run(
        &self,
        days: &[Day],
        existing: Existing,
        wait: bool,
        operation: &str,
        source: Source,
    ) -> Vec<OpResult> {
        let start = std::time::Instant::now();
        let mut out: Vec<OpResult> = Vec::new();
        let Some((&first, &last)) = days.first().zip(days.last()) else {
            return out;
        };
        storage::ensure_partitions(&self.lt, first, last.succ());
        storage::ensure_tenant_view(&self.names, &self.lt);

        let seen = self.registered(days);
        let mut todo = Vec::new();
        for &d in days {
            if existing == Existing::Skip && seen.contains(&d) {
                out.push(self.result(operation, d).skipped("exists"));
            } else {
                todo.push(d);
            }
        }
        if let (Source::Local { check_base: true }, Some(base)) = (&source, &self.lt.base) {
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
        if !work.is_empty() {
            out.extend(self.apply(&work, &before, operation, source, start));
        }
        out.sort_by(|a, b| a.day.cmp(&b.day));
        for r in out
            .iter()
            .filter(|r| r.status == crate::report::Status::Skipped)
        {
            log_run(r);
        }
        out
    }

    fn apply(
        &self,
        work: &[Day],
        before: &BTreeSet<Day>,
        operation: &str,
        source: Source,
        start: std::time::Instant,
    ) -> Vec<OpResult> {
        let t = &self.lt.t;
        let fetched_at = std::time::Instant::now();
        let staged = self.stage(work, &source);
        let staged_rows: i64 = staged.values().map(|s| s.figures.n).sum();
        let fetch_ms = ms_since(fetched_at);
        let (lo, hi) = (work[0], work[work.len() - 1].succ());
        let compared_at = std::time::Instant::now();
        // Always read what is stored, registered or not: rows without a registry row (a
        // registry edited by hand) are replaced, never doubled.
        let stored = self.stored(lo, hi);
        let compare_ms = ms_since(compared_at);
        let parts = storage::partitions(&self.tn);

        let mut results = Vec::new();
        let mut changed: Vec<Day> = Vec::new();
        let mut unchanged: Vec<Day> = Vec::new();
        for &d in work {
            let s = staged.get(&d).cloned().unwrap_or_default();
            let s_fig = if s.figures.n == 0 {
                Figures {
                    n: 0,
                    checksum: "0".into(),
                }
            } else {
                s.figures.clone()
            };
            let failure = if s.outside > 0 {
                Some(WhError::RowsOutsideDay {
                    template: t.name.to_string(),
                    day: d.iso(),
                    time_column: t.time_column.to_string(),
                    count: s.outside,
                })
            } else if s.duplicates > 0 {
                Some(WhError::DuplicateKey {
                    template: t.name.to_string(),
                    tenant: self.names.schema.to_string(),
                    day: d.iso(),
                    key: t.unique_key_text().unwrap_or_default(),
                    count: s.duplicates,
                })
            } else {
                None
            };
            if let Some(e) = failure {
                let code = e.sqlstate();
                let mut r = self
                    .result(operation, d)
                    .failed(&crate::error::sqlstate_text(code), &e.to_string());
                r.detail("phase", json!("check"));
                results.push(r);
                if !before.contains(&d) {
                    self.unregister(d);
                }
                continue;
            }
            let held = stored.get(&d).cloned().unwrap_or(Figures {
                n: 0,
                checksum: "0".into(),
            });
            let fetched = !matches!(source, Source::Local { .. });
            if fetched && !self.allow_shrink && self.lt.limits.shrink_refused(held.n, s_fig.n) {
                results.push(self.shrink_kept(operation, d, held.n, s_fig.n));
                continue;
            }
            if before.contains(&d) && held == s_fig {
                unchanged.push(d);
            } else {
                changed.push(d);
            }
        }
        let write_at = std::time::Instant::now();
        let tenant = DatumWithOid::from(self.names.schema.as_str());
        for d in &changed {
            if stored.get(d).map(|f| f.n).unwrap_or(0) > 0 {
                exec(
                    &sql::delete_day(&self.tn, t, self.lt.time_kind, *d),
                    &[DatumWithOid::from(self.names.schema.as_str())],
                );
            }
        }
        if !changed.is_empty() {
            let ds: Vec<pgrx::datum::Date> = changed.iter().map(|d| pg_date(*d)).collect();
            exec(
                &sql::insert_staged(&self.tn, t),
                &[tenant, DatumWithOid::from(ds)],
            );
        }
        let write_ms = ms_since(write_at);
        let total_ms = ms_since(start);
        let share = total_ms / work.len() as f64;
        for &d in work {
            let is_changed = changed.contains(&d);
            if !is_changed && !unchanged.contains(&d) {
                continue;
            }
            let s = staged
                .get(&d)
                .map(|s| s.figures.clone())
                .unwrap_or(Figures {
                    n: 0,
                    checksum: "0".into(),
                });
            self.register(d, &s, share, is_changed);
            let mut r = self.result(operation, d);
            r.rows = Some(s.n);
            r.ms = if work.len() == 1 { total_ms } else { share };
            let action = match (before.contains(&d), is_changed) {
                (false, _) => "created",
                (true, true) => "refreshed",
                (true, false) => "unchanged",
            };
            r.detail("action", json!(action));
            r.detail(
                "slice",
                json!(format!("{}.{}", self.names.schema, self.names.day(d))),
            );
            r.detail("partition", json!(self.partition_of(&parts, d)));
            r.detail(
                "rows_replaced",
                json!(stored.get(&d).map(|f| f.n).unwrap_or(0)),
            );
            r.detail("fetch_ms", json!(fetch_ms));
            r.detail("compare_ms", json!(compare_ms));
            r.detail("write_ms", json!(write_ms));
            if work.len() > 1 {
                r.detail("chunk_days", json!(work.len()));
                r.detail("chunk_rows", json!(staged_rows));
            }
            results.push(r);
        }
        exec(&sql::truncate_stage(&self.tn), &[]);
        // The template's rollups, for the days that changed (and the days a rollup lacks),
        // in this same transaction: no reader ever sees a rollup that disagrees with it.
        let kept = crate::rollup::maintain(self, &changed, &unchanged, operation);
        for r in &mut results {
            if !kept.is_empty() {
                r.detail("rollups", json!(kept));
            }
            log_run(r);
        }
        results
    }
}
