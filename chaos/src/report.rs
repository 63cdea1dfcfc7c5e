//! The report of a run: what was done, what the nemesis did, and each
//! invariant's verdict with its counterexamples.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::checker::Verdict;
use crate::history::{Op, Outcome};
use crate::nemesis::NemesisCounts;

/// Requests of one kind, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Took effect.
    pub ok: u64,
    /// Definitely did not.
    pub fail: u64,
    /// Unknown.
    pub info: u64,
}

impl Tally {
    /// All requests.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.ok + self.fail + self.info
    }
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The seed that reproduces the schedule.
    pub seed: u64,
    /// Nodes the run drove.
    pub nodes: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// How long the workload ran.
    pub workload: Duration,
    /// How long the shop took to settle once the nemesis stopped.
    pub quiescence: Duration,
    /// Requests by operation, by outcome.
    pub requests: BTreeMap<&'static str, Tally>,
    /// What the nemesis did.
    pub nemesis: NemesisCounts,
    /// Restarts of actors the nodes' listings show at the end (a killed
    /// node's count starts again from zero).
    pub actor_restarts: u64,
    /// Each invariant's verdict.
    pub verdicts: Vec<Verdict>,
}

impl Report {
    pub(crate) fn tally(ops: &[Op]) -> BTreeMap<&'static str, Tally> {
        let mut requests: BTreeMap<&'static str, Tally> = BTreeMap::new();
        for op in ops {
            let tally = requests.entry(op.kind.name()).or_default();
            match op.outcome {
                Outcome::Ok => tally.ok += 1,
                Outcome::Fail => tally.fail += 1,
                Outcome::Info => tally.info += 1,
            }
        }
        requests
    }

    /// Whether every invariant held.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.verdicts.iter().all(Verdict::passed)
    }

    /// The verdict of invariant `number` (1..=7).
    #[must_use]
    pub fn verdict(&self, number: u8) -> Option<&Verdict> {
        self.verdicts.iter().find(|v| v.number == number)
    }

    /// All requests.
    #[must_use]
    pub fn total_requests(&self) -> u64 {
        self.requests.values().map(Tally::total).sum()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "chaos run: seed {}, {} node(s), {} clients, workload {:.1}s, quiescence {:.1}s",
            self.seed,
            self.nodes,
            self.clients,
            self.workload.as_secs_f64(),
            self.quiescence.as_secs_f64()
        )?;
        writeln!(f, "requests: {}", self.total_requests())?;
        for (name, tally) in &self.requests {
            writeln!(
                f,
                "  {name:<15} {:>6} ok {:>6} fail {:>6} info",
                tally.ok, tally.fail, tally.info
            )?;
        }
        writeln!(
            f,
            "nemesis: {} actor kills ({} missed), {} node kills, {} node restarts; \
             actor restarts in the final listings: {}",
            self.nemesis.actor_kills,
            self.nemesis.actor_kills_missed,
            self.nemesis.node_kills,
            self.nemesis.node_restarts,
            self.actor_restarts
        )?;
        writeln!(f, "invariants:")?;
        for verdict in &self.verdicts {
            writeln!(
                f,
                "  {} {}. {} ({} checked, {} violated)",
                if verdict.passed() { "PASS" } else { "FAIL" },
                verdict.number,
                verdict.name,
                verdict.checked,
                verdict.violations
            )?;
            for example in &verdict.counterexamples {
                writeln!(f, "       counterexample: {example}")?;
            }
        }
        write!(f, "result: {}", if self.passed() { "PASS" } else { "FAIL" })
    }
}
