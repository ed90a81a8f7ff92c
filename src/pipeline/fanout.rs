//! `update_all_tenants`: one day for every tenant of a template, with the remote queries
//! sent to up to `wh.max_source_connections` tenants at once, so slow sources overlap, and
//! to at most `wh.max_connections_per_host` of them on one source server.
//! Answers are read one at a time (one COPY FROM runs at a time in a backend), in the
//! order they begin to arrive; the others' sockets are left unread meanwhile (their
//! sources wait on a full socket), and each read frees a place for the next tenant's
//! query. Each tenant has its own deadline: a hung source delays no other tenant, and is
//! disconnected when its deadline passes. Each tenant's send and receive runs isolated:
//! one tenant's failure does not affect the others.

use serde_json::{json, Value};

use crate::catalog;
use crate::catalog::db::ms_since;
use crate::pipeline::isolate::{days_of, isolated_chunk, split_failure, ChunkFailure};
use crate::pipeline::send_receive::{due, CONN_PREFIX};
use crate::pipeline::unit::{Op, Output, Unit};
use crate::pure::dates::Day;
use crate::pure::names::CheckedName;
use crate::pure::report::{OpResult, Summary};
use crate::remote;

/// The operation the fan-out's results and run log name.
const LABEL: &str = "update_all_tenants";

/// Refresh `target` and the template's lookback days (rows logged late into yesterday)
/// for every registered tenant, like each tenant's own job: one fan-out per month the
/// days touch, in the caller's one transaction. Results list the target day first.
/// (`CALL _wh.refresh_all_tenants` commits each tenant as it answers instead.)
pub fn update_all_tenants(template: &CheckedName, target: Day) -> Summary {
    let mut f = FanOut::start(template, target);
    while f.step() {}
    f.finish()
}

/// One fan-out of a template over its days, resumable across transactions: `step`
/// receives and applies the tenants whose answers are in (sending a chunk's queries to all
/// tenants first), so a caller that commits between steps makes each tenant's rows visible
/// as soon as they are stored, whatever another tenant's source is doing.
pub struct FanOut {
    template: CheckedName,
    days: Vec<Day>,
    chunks: Vec<Vec<Day>>,
    next_chunk: usize,
    /// Tenants of the current chunk whose answers are still awaited.
    pending: Vec<Awaited>,
    /// Tenants of the current chunk whose queries are not sent yet (the connection caps),
    /// with their source servers; the next to send is the last one whose server has room.
    unsent: Vec<(CheckedName, String)>,
    /// Whole-chunk failures, fetched again day by day once every answer is in.
    retry: Vec<(CheckedName, i64, ChunkFailure)>,
    results: Vec<OpResult>,
    tenants: usize,
    tally: Tally,
    progress: crate::pipeline::progress::Progress,
    start: std::time::Instant,
    /// Whether the current chunk's queries went out.
    sent: bool,
    /// Why it stopped before every chunk was done, if it did.
    stopped: Option<String>,
}

impl FanOut {
    pub fn start(template: &CheckedName, target: Day) -> FanOut {
        let lt = catalog::load_template(template);
        lt.refuse_rollup("refresh");
        let mut days = crate::pure::dates::refresh_days(target, lt.t.lookback_days);
        days.sort();
        let chunks = crate::pure::dates::chunks(&days, crate::pure::dates::DEFAULT_CHUNK_DAYS);
        let total = (catalog::tenant_names().len() * chunks.len()) as i64;
        let progress = crate::pipeline::progress::begin(crate::pipeline::progress::Op {
            operation: LABEL,
            template: Some(template.as_str()),
            tenant: None,
            unit: "tenant",
            total,
        });
        FanOut {
            template: template.clone(),
            days,
            chunks,
            next_chunk: 0,
            pending: Vec::new(),
            unsent: Vec::new(),
            retry: Vec::new(),
            results: Vec::new(),
            tenants: 0,
            tally: Tally::default(),
            progress,
            start: std::time::Instant::now(),
            sent: false,
            stopped: None,
        }
    }

    /// Advance: send the next chunk's queries, or wait for answers and store every one
    /// that is in. Returns false when every chunk is done.
    pub fn step(&mut self) -> bool {
        if self.next_chunk >= self.chunks.len() {
            return false;
        }
        if !self.sent {
            self.send_chunk();
            self.sent = true;
            return true;
        }
        if !self.pending.is_empty() || !self.unsent.is_empty() {
            self.receive_ready();
            return true;
        }
        self.close_chunk();
        self.next_chunk += 1;
        self.sent = false;
        self.next_chunk < self.chunks.len()
    }

    /// The call's result (the target day first), with its tenants, days and wall time.
    pub fn finish(mut self) -> Summary {
        for left in remote::open_connections(CONN_PREFIX) {
            remote::disconnect(&left);
        }
        self.results.reverse();
        let mut out = Summary::new(LABEL, self.results);
        out.json["tenants"] = json!(self.tenants);
        out.json["days"] = json!(self.days.iter().map(|d| d.iso()).collect::<Vec<_>>());
        out.json["wall_ms"] = json!(ms_since(self.start));
        if let Some(why) = &self.stopped {
            out.json["stopped"] = json!(why);
        }
        out
    }

    fn chunk(&self) -> Vec<Day> {
        self.chunks[self.next_chunk].clone()
    }

    /// The chunk's tenants: the paused ones recorded as skipped, the others queued and the
    /// first `wh.max_source_connections` of them sent their query.
    fn send_chunk(&mut self) {
        for stale in remote::open_connections(CONN_PREFIX) {
            remote::disconnect(&stale);
        }
        let days = self.chunk();
        let tenants = catalog::tenant_servers();
        self.tenants = tenants.len();
        for (t, server) in &tenants {
            if catalog::is_paused(t) {
                let rs: Vec<OpResult> = days
                    .iter()
                    .map(|d| {
                        let r = OpResult::new(
                            LABEL,
                            Some(self.template.as_str()),
                            Some(t.as_str()),
                            Some(d.iso()),
                        )
                        .skipped("paused");
                        catalog::log_run(&r);
                        r
                    })
                    .collect();
                self.record(t, &days, rs);
                continue;
            }
            self.unsent.push((t.clone(), server.clone()));
        }
        self.unsent.reverse();
        self.top_up();
    }

    /// Send queries until `wh.max_source_connections` are awaited or none is left whose
    /// server has fewer than `wh.max_connections_per_host` awaited.
    fn top_up(&mut self) {
        let max = remote::MAX_SOURCE_CONNECTIONS.get().max(1) as usize;
        let per_server = remote::MAX_CONNECTIONS_PER_HOST.get().max(1) as usize;
        let days = self.chunk();
        while self.pending.len() < max {
            let busy: Vec<&str> = self.pending.iter().map(|p| p.server.as_str()).collect();
            let Some(i) = next_with_room(&self.unsent, &busy, per_server) else {
                return;
            };
            let (t, server) = self.unsent.remove(i);
            let send = Unit::new(Op::Send, &self.template, &t, &days, LABEL);
            match isolated_chunk(&send) {
                Ok(Output::Sent { deadline_ms }) => self.pending.push(Awaited {
                    tenant: t,
                    server,
                    deadline_ms,
                }),
                Ok(output) => self.record(&t, &days, days_of(&send, output)),
                Err(failed) => {
                    let rs = split_failure(&send, failed);
                    self.record(&t, &days, rs);
                }
            }
        }
    }

    /// Wait until some tenant's answer begins to arrive (or its time is up), then store
    /// every one that is due, each freeing a place for the next query.
    fn receive_ready(&mut self) {
        self.top_up();
        let days = self.chunk();
        let since = remote::now_ms();
        loop {
            let ready: Vec<usize> = (0..self.pending.len())
                .filter(|&i| due(&self.pending[i].tenant, self.pending[i].deadline_ms))
                .collect();
            if !ready.is_empty() {
                for i in ready.into_iter().rev() {
                    let Awaited {
                        tenant: t,
                        deadline_ms,
                        ..
                    } = self.pending.remove(i);
                    let receive = Unit::new(
                        Op::Receive { deadline_ms },
                        &self.template,
                        &t,
                        &days,
                        LABEL,
                    );
                    match isolated_chunk(&receive) {
                        Ok(output) => self.record(&t, &days, days_of(&receive, output)),
                        Err(failed) => self.retry.push((t, deadline_ms, failed)),
                    }
                }
                self.top_up();
                return;
            }
            if self.pending.is_empty() {
                return;
            }
            // A tenth of the time waited so far (1 to 50 ms): a quick answer is taken
            // within a few ms, a long wait costs a look every 50 ms.
            let now = remote::now_ms();
            let soonest = self
                .pending
                .iter()
                .map(|p| p.deadline_ms - now)
                .min()
                .unwrap_or(1);
            remote::nap(((now - since) / 10).clamp(1, 50).min(soonest.max(1)));
        }
    }

    /// Every answer of the chunk is in: the retries (a slow retry never eats another
    /// tenant's deadline), then the chunk's connections go.
    fn close_chunk(&mut self) {
        let days = self.chunk();
        for (t, deadline_ms, failed) in std::mem::take(&mut self.retry) {
            let receive = Unit::new(
                Op::Receive { deadline_ms },
                &self.template,
                &t,
                &days,
                LABEL,
            );
            let rs = split_failure(&receive, failed);
            self.record(&t, &days, rs);
        }
        for left in remote::open_connections(CONN_PREFIX) {
            remote::disconnect(&left);
        }
    }

    fn record(&mut self, tenant: &CheckedName, days: &[Day], rs: Vec<OpResult>) {
        self.tally.add(&self.progress, tenant, days, &rs);
        self.results.extend(rs);
    }
}

/// A tenant whose query went out: its source server and the deadline of its answer.
struct Awaited {
    tenant: CheckedName,
    server: String,
    deadline_ms: i64,
}

/// The index of the last of `unsent` (tenant, server) whose server has fewer than
/// `per_server` of `busy` (the servers of the queries awaited), if any.
fn next_with_room<T>(unsent: &[(T, String)], busy: &[&str], per_server: usize) -> Option<usize> {
    unsent
        .iter()
        .rposition(|(_, server)| busy.iter().filter(|b| **b == server).count() < per_server)
}

/// Tenants answered and rows stored so far, across a fan-out's chunks (for `_wh.progress`).
#[derive(Default)]
struct Tally {
    tenants: i64,
    rows: i64,
}

impl Tally {
    fn add(
        &mut self,
        progress: &crate::pipeline::progress::Progress,
        tenant: &CheckedName,
        days: &[Day],
        rs: &[OpResult],
    ) {
        self.tenants += 1;
        self.rows += rs.iter().filter_map(|r| r.rows).sum::<i64>();
        progress.step_tenant(
            self.tenants,
            tenant.as_str(),
            &crate::pure::dates::days_span(days),
            self.rows,
        );
    }
}

// A committing fan-out (`CALL _wh.refresh_all_tenants`, the wh:<template>:all job): its
// state lives in this backend between the procedure's transactions.
thread_local! {
    static RUNNING: std::cell::RefCell<Option<FanOut>> = const { std::cell::RefCell::new(None) };
}

/// Start a committing fan-out. One left by a call that failed part-way (an error or a
/// cancel between its transactions) is dropped first and its connections closed.
pub fn begin_committing(template: &CheckedName, target: Day) {
    RUNNING.with(|r| r.borrow_mut().take());
    for stale in remote::open_connections(CONN_PREFIX) {
        remote::disconnect(&stale);
    }
    let f = FanOut::start(template, target);
    RUNNING.with(|r| *r.borrow_mut() = Some(f));
}

/// One step of the committing fan-out of `template`; false when it is done (or none of
/// that template is running in this session).
pub fn step_committing(template: &CheckedName) -> bool {
    RUNNING.with(|r| {
        r.borrow_mut()
            .as_mut()
            .filter(|f| &f.template == template)
            .is_some_and(FanOut::step)
    })
}

/// Stop the committing fan-out early: its result says why; what it stored stays.
pub fn stop_committing(reason: &str) {
    RUNNING.with(|r| {
        if let Some(f) = r.borrow_mut().as_mut() {
            f.stopped = Some(reason.to_string());
        }
    });
}

/// The committing fan-out's result; None when none is running.
pub fn end_committing() -> Option<Value> {
    RUNNING
        .with(|r| r.borrow_mut().take())
        .map(|f| f.finish().json)
}

#[cfg(test)]
mod tests {
    use super::next_with_room;

    #[test]
    fn the_next_query_goes_to_a_server_with_room() {
        let unsent: Vec<(u32, String)> = [(1, "a:5432"), (2, "b:5432"), (3, "a:5432")]
            .into_iter()
            .map(|(t, s)| (t, s.to_string()))
            .collect();
        // The last one first, while its server has room.
        assert_eq!(next_with_room(&unsent, &[], 1), Some(2));
        // a is full: the last of b's.
        assert_eq!(next_with_room(&unsent, &["a:5432"], 1), Some(1));
        assert_eq!(next_with_room(&unsent, &["a:5432", "b:5432"], 1), None);
        // Two a server: a has room for one more.
        assert_eq!(next_with_room(&unsent, &["a:5432", "b:5432"], 2), Some(2));
        assert_eq!(next_with_room::<u32>(&[], &[], 4), None);
    }
}
