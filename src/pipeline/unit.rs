//! One unit of per-day work: an `Op` on a run of days of one template (and tenant). The
//! unit is what `isolate` runs in its own subtransaction; it crosses no boundary as text.

use crate::pipeline::slice::{Batch, Existing, Source};
use crate::pipeline::{compare, days, fold, send_receive};
use crate::pure::dates::Day;
use crate::pure::error::{raise, WhError};
use crate::pure::names::CheckedName;
use crate::pure::report::OpResult;

/// What a unit does to its days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Build the days the registry lacks; the others are `skipped: exists`.
    Create,
    /// Fetch every day again and write those whose rows changed.
    Refresh,
    /// Send the days' query on the fan-out's connection (read later by `Receive`).
    Send,
    /// Read the answer `Send` asked for (due by `deadline_ms`), check and apply it.
    Receive { deadline_ms: i64 },
    /// Compare the source's figures of each day with the stored ones.
    Verify,
    /// Fold the year of the first day, every tenant (`tenant` is none).
    Fold,
}

impl Op {
    /// Its name in a failure's `phase` detail.
    pub fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Refresh => "refresh",
            Op::Send => "send",
            Op::Receive { .. } => "receive",
            Op::Verify => "verify",
            Op::Fold => "fold",
        }
    }

    /// What a chunk that failed as a whole retries one day at a time: a fan-out's answer
    /// was consumed, so its days are fetched again directly.
    pub fn retried_alone(self) -> Op {
        match self {
            Op::Send | Op::Receive { .. } => Op::Refresh,
            other => other,
        }
    }
}

/// An `Op` on `days` of `template` (and `tenant`), reported as `label` (the operation
/// the caller asked for: `update_mv_window`, `backfill`, …).
#[derive(Debug, Clone, Copy)]
pub struct Unit<'a> {
    pub op: Op,
    pub template: &'a CheckedName,
    pub tenant: Option<&'a CheckedName>,
    pub days: &'a [Day],
    pub label: &'a str,
    /// Wait for days another session holds (bounded), instead of `skipped: busy`.
    pub wait: bool,
}

impl<'a> Unit<'a> {
    /// `op` on one tenant's `days`, reported as `label`.
    pub fn new(
        op: Op,
        template: &'a CheckedName,
        tenant: &'a CheckedName,
        days: &'a [Day],
        label: &'a str,
    ) -> Self {
        Unit {
            op,
            template,
            tenant: Some(tenant),
            days,
            label,
            wait: false,
        }
    }

    /// The same unit on other days (or as another op).
    pub fn with(self, op: Op, days: &'a [Day]) -> Self {
        Unit { op, days, ..self }
    }
}

/// What a unit gives back when it does not fail.
pub enum Output {
    /// One result per day (logged).
    Days(Vec<OpResult>),
    /// The query went out; its answer is due by this deadline.
    Sent { deadline_ms: i64 },
    /// A fold's result.
    Folded(OpResult),
}

/// Do the unit's work; any failure raises (`isolate` rolls it back and records it).
pub fn run(u: &Unit) -> Output {
    let Some(&first) = u.days.first() else {
        raise(WhError::invalid("days", "no day to work on"))
    };
    let tenant = || {
        u.tenant.unwrap_or_else(|| {
            raise(WhError::NullArgument {
                what: "tenant_name",
            })
        })
    };
    let apply = |existing: Existing| {
        let batch = Batch::load(u.template, tenant());
        // A rollup's days are computed here from its base, never fetched.
        let source = match batch.lt.base {
            Some(_) => Source::Local { check_base: true },
            None => Source::Remote,
        };
        Output::Days(days::run(&batch, u.days, existing, u.wait, u.label, source))
    };
    match u.op {
        Op::Create => apply(Existing::Skip),
        Op::Refresh => apply(Existing::Refresh),
        Op::Send => Output::Sent {
            deadline_ms: send_receive::send(u.template, tenant(), u.days),
        },
        Op::Receive { deadline_ms } => Output::Days(send_receive::receive(
            u.template,
            tenant(),
            u.days,
            u.label,
            deadline_ms,
        )),
        Op::Verify => Output::Days(compare::compare(u.template, tenant(), u.days)),
        Op::Fold => Output::Folded(fold::fold_year(
            u.template,
            u.tenant,
            first.year(),
            crate::catalog::today(),
        )),
    }
}
