//! The fault suite's shared parts: the event its writers enqueue, the names of a run's tables and
//! keys, and the [`Tally`] that turns what arrived into the verdict line.
//!
//! `scripts/faults` drives the `eventbus-faults` binary (writers, the verifier, the consumer) and
//! the real `eventbus-relay` on the PostgreSQL and Kafka of `scripts/services`; `docs/faults.md`
//! says what each scenario proves.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use eventbus::{Service, SystemEvent};
use serde::{Deserialize, Serialize};

/// The service the suite's writers publish as.
#[derive(Service, Debug)]
#[service(name = "faults", default)]
pub struct Faults;

/// A tick of a per-key counter, enqueued in the transaction that increments the counter's row:
/// `seq` is the counter after this tick, so a key's ticks are numbered 1, 2, 3, ... in commit
/// order and a reader can tell a loss (a number never seen), a duplicate (a number seen twice)
/// and an order violation (a number after a higher one) apart.
#[derive(SystemEvent, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(topic = "eventbus.faults.ticks")]
pub struct Tick {
    /// The run (one scenario of one suite run) that wrote it.
    pub run: String,
    /// The counter, `{run}-k{index}`: the partition key.
    #[event(key)]
    pub key: String,
    /// The counter's value after this tick.
    pub seq: u64,
    /// The suite's consumer refuses a poison tick until told to accept it.
    pub poison: bool,
}

/// Where the suite's consumer dead-letters (the consumer's default, `{topic}.dlq`).
pub const DEAD_LETTER_TOPIC: &str = "eventbus.faults.ticks.dlq";

/// The partitions the suite creates its topic with.
pub const PARTITIONS: i32 = 8;

/// The tick of each poisoned key that is poison.
pub const POISON_SEQ: u64 = 3;

/// The tables of one run, all named after it.
#[derive(Debug, Clone)]
pub struct Tables {
    /// The outbox (the relay adds `{outbox}_dead`).
    pub outbox: String,
    /// The writers' counters: `(key, n)`, the ground truth of what committed.
    pub counters: String,
    /// The consumer's effects: one row per handled tick, in handling order.
    pub effects: String,
    /// The consumer's inbox.
    pub inbox: String,
}

impl Tables {
    /// The tables of run `run` (a lower-case identifier).
    pub fn of(run: &str) -> Tables {
        Tables {
            outbox: format!("faults_{run}_outbox"),
            counters: format!("faults_{run}_counters"),
            effects: format!("faults_{run}_effects"),
            inbox: format!("faults_{run}_inbox"),
        }
    }

    /// Every table, for the cleanup.
    pub fn all(&self) -> [String; 5] {
        [
            self.outbox.clone(),
            format!("{}_dead", self.outbox),
            self.counters.clone(),
            self.effects.clone(),
            self.inbox.clone(),
        ]
    }
}

/// The key of counter `index` in run `run`.
pub fn key(run: &str, index: u32) -> String {
    format!("{run}-k{index}")
}

/// The consumer group of run `run`'s consumer.
pub fn group(run: &str) -> String {
    format!("eventbus-faults-{run}")
}

/// Whether tick `seq` of counter `index` is poison when the first `poison` keys are poisoned.
pub fn is_poison(index: u32, seq: u64, poison: u32) -> bool {
    index < poison && seq == POISON_SEQ
}

/// The poison ticks of run `run` as `(key, seq)` (the ticks a replay brings back late).
pub fn poison_ticks(run: &str, poison: u32) -> HashSet<(String, u64)> {
    (0..poison).map(|i| (key(run, i), POISON_SEQ)).collect()
}

/// Writes `contents` to `path` through a rename, so a reader never sees half a file.
pub fn write_atomic(path: &Path, contents: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)
}

/// The expected ticks, `key n` per line (`n`: the key's last tick).
pub fn format_expected(expected: &BTreeMap<String, u64>) -> String {
    expected.iter().map(|(k, n)| format!("{k} {n}\n")).collect()
}

/// Reads what [`format_expected`] wrote.
pub fn parse_expected(text: &str) -> Result<BTreeMap<String, u64>, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let (k, n) = line
                .split_once(' ')
                .ok_or_else(|| format!("not `key n`: {line:?}"))?;
            let n = n
                .trim()
                .parse()
                .map_err(|_| format!("not a count: {line:?}"))?;
            Ok((k.to_owned(), n))
        })
        .collect()
}

/// What arrived, against what committed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Ticks that committed (the counters' sum).
    pub expected: u64,
    /// Distinct committed ticks that arrived.
    pub delivered: u64,
    /// Committed ticks that never arrived.
    pub lost: u64,
    /// Arrivals of a tick already seen.
    pub duplicates: u64,
    /// First arrivals of a tick after a higher tick of its key (exempt ticks aside).
    pub order_violations: u64,
    /// Arrivals of ticks that never committed (a number above the key's counter, or a key with
    /// no counter): should never happen.
    pub unexpected: u64,
    /// Exempt ticks that arrived (replayed dead letters: late by design).
    pub exempt: u64,
}

impl Tally {
    /// The tally of `arrivals` (`(key, seq)`, per key in the order they arrived) against
    /// `expected` (each key's last tick); `exempt` ticks are counted but not order-checked.
    pub fn of(
        expected: &BTreeMap<String, u64>,
        arrivals: impl IntoIterator<Item = (String, u64)>,
        exempt: &HashSet<(String, u64)>,
    ) -> Tally {
        let mut tally = Tally {
            expected: expected.values().sum(),
            ..Tally::default()
        };
        let mut seen: HashSet<(String, u64)> = HashSet::new();
        let mut highest: HashMap<String, u64> = HashMap::new();
        for (key, seq) in arrivals {
            let committed = expected.get(&key).is_some_and(|&n| (1..=n).contains(&seq));
            if !committed {
                tally.unexpected += 1;
                continue;
            }
            if !seen.insert((key.clone(), seq)) {
                tally.duplicates += 1;
                continue;
            }
            tally.delivered += 1;
            if exempt.contains(&(key.clone(), seq)) {
                tally.exempt += 1;
                continue;
            }
            let high = highest.entry(key).or_default();
            if seq < *high {
                tally.order_violations += 1;
            } else {
                *high = seq;
            }
        }
        tally.lost = tally.expected - tally.delivered;
        tally
    }

    /// `expected N / delivered N / lost N / duplicates N / order violations N`, then
    /// `/ replayed N` when given, and `/ unexpected N` when there were any.
    pub fn line(&self, replayed: Option<u64>) -> String {
        let mut line = format!(
            "expected {} / delivered {} / lost {} / duplicates {} / order violations {}",
            self.expected, self.delivered, self.lost, self.duplicates, self.order_violations
        );
        if let Some(r) = replayed {
            line.push_str(&format!(" / replayed {r}"));
        }
        if self.unexpected > 0 {
            line.push_str(&format!(" / unexpected {}", self.unexpected));
        }
        line
    }

    /// What fails the scenario: any loss, order violation or unexpected tick, and duplicates
    /// unless `duplicates_allowed` (at least once).
    pub fn failures(&self, duplicates_allowed: bool) -> Vec<String> {
        let mut out = Vec::new();
        if self.expected == 0 {
            out.push("nothing committed: the scenario tested nothing".to_owned());
        }
        if self.lost > 0 {
            out.push(format!("{} committed tick(s) lost", self.lost));
        }
        if self.order_violations > 0 {
            out.push(format!(
                "{} tick(s) after a later tick of their key",
                self.order_violations
            ));
        }
        if self.unexpected > 0 {
            out.push(format!("{} tick(s) that never committed", self.unexpected));
        }
        if self.duplicates > 0 && !duplicates_allowed {
            out.push(format!(
                "{} duplicate(s) where exactly once is promised",
                self.duplicates
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
    }

    fn arrivals(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
        pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
    }

    #[test]
    fn a_clean_run() {
        let t = Tally::of(
            &expected(&[("a", 2), ("b", 1)]),
            arrivals(&[("a", 1), ("b", 1), ("a", 2)]),
            &HashSet::new(),
        );
        assert_eq!(
            t.line(None),
            "expected 3 / delivered 3 / lost 0 / duplicates 0 / order violations 0"
        );
        assert!(t.failures(false).is_empty());
    }

    #[test]
    fn a_redelivery_after_a_crash_is_a_duplicate_not_an_order_violation() {
        let t = Tally::of(
            &expected(&[("a", 4)]),
            arrivals(&[("a", 1), ("a", 2), ("a", 3), ("a", 2), ("a", 3), ("a", 4)]),
            &HashSet::new(),
        );
        assert_eq!((t.delivered, t.duplicates, t.order_violations), (4, 2, 0));
        assert!(t.failures(true).is_empty());
        assert_eq!(t.failures(false).len(), 1, "{:?}", t.failures(false));
    }

    #[test]
    fn a_gap_filled_late_is_an_order_violation_and_a_gap_never_filled_a_loss() {
        let late = Tally::of(
            &expected(&[("a", 3)]),
            arrivals(&[("a", 1), ("a", 3), ("a", 2)]),
            &HashSet::new(),
        );
        assert_eq!((late.lost, late.order_violations), (0, 1));
        let lost = Tally::of(
            &expected(&[("a", 3)]),
            arrivals(&[("a", 1), ("a", 3)]),
            &HashSet::new(),
        );
        assert_eq!((lost.lost, lost.order_violations), (1, 0));
        assert_eq!(lost.failures(true).len(), 1);
    }

    #[test]
    fn an_exempt_tick_may_come_last() {
        let exempt: HashSet<(String, u64)> = [("a".to_owned(), 2)].into();
        let t = Tally::of(
            &expected(&[("a", 3)]),
            arrivals(&[("a", 1), ("a", 3), ("a", 2)]),
            &exempt,
        );
        assert_eq!((t.delivered, t.order_violations, t.exempt), (3, 0, 1));
        assert_eq!(
            t.line(Some(1)),
            "expected 3 / delivered 3 / lost 0 / duplicates 0 / order violations 0 / replayed 1"
        );
    }

    #[test]
    fn ticks_that_never_committed_fail() {
        let t = Tally::of(
            &expected(&[("a", 1)]),
            arrivals(&[("a", 1), ("a", 2), ("b", 1)]),
            &HashSet::new(),
        );
        assert_eq!(t.unexpected, 2);
        assert!(t.line(None).ends_with("/ unexpected 2"));
        assert_eq!(t.failures(true).len(), 1);
    }

    #[test]
    fn expected_files_round_trip() {
        let e = expected(&[("r-k0", 7), ("r-k1", 12)]);
        assert_eq!(parse_expected(&format_expected(&e)), Ok(e));
        assert!(parse_expected("r-k0 seven\n").is_err());
    }

    #[test]
    fn poison_is_one_tick_of_each_poisoned_key() {
        assert!(is_poison(0, POISON_SEQ, 3));
        assert!(!is_poison(3, POISON_SEQ, 3));
        assert!(!is_poison(0, POISON_SEQ + 1, 3));
        assert_eq!(poison_ticks("r", 2).len(), 2);
    }
}
