//! The independent verifier: plain rdkafka and serde, no eventbus code on the reading path.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use eventbus_faults::{Tally, Tick, parse_expected, write_atomic};
use rdkafka::consumer::Consumer as _;
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};

use crate::{Opts, Result, partitions, plain_consumer};

/// The independent verifier: plain rdkafka, no eventbus code on the reading path. Reads the
/// topic from its end as it was at start, keeps the ticks of the run, and once the expected
/// ticks are known (`DIR/expected`, written once the outbox is drained, so Kafka has them all)
/// and all arrived, or `--timeout` seconds (30) after that, prints the tally.
/// With `--kill-file FILE`: whenever FILE holds `PID N`, it sends SIGKILL to PID the moment N
/// distinct ticks have arrived, then deletes FILE. The kill lands while records are arriving, so
/// while the relay is between sending a batch and deleting its rows.
pub(crate) async fn verify(opts: &Opts) -> Result<bool> {
    let run = opts.run()?;
    let dir = opts.path("dir").ok_or("--dir is required")?;
    let duplicates_allowed = opts.flag("duplicates-allowed");
    let kill_file = opts.path("kill-file");
    let timeout = Duration::from_secs(opts.num("timeout", Some(30))?);
    tokio::task::spawn_blocking(move || {
        let consumer = plain_consumer(&format!("eventbus-faults-verify-{run}"))?;
        let topic = Tick::TOPIC;
        let mut list = TopicPartitionList::new();
        for p in 0..partitions(&consumer, topic)? {
            let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
            list.add_partition_offset(topic, p, Offset::Offset(high))?;
        }
        consumer.assign(&list)?;
        write_atomic(&dir.join("verify.ready"), "")?;

        let progress = dir.join("verify.progress");
        let mut arrivals: Vec<(String, u64)> = Vec::new();
        let mut distinct: HashSet<(String, u64)> = HashSet::new();
        let mut expected: Option<(BTreeMap<String, u64>, Instant)> = None;
        let mut complete_at: Option<Instant> = None;
        let (mut reported, mut last_report) = (u64::MAX, Instant::now());
        let mut last_error: Option<Instant> = None;
        loop {
            match consumer.poll(Duration::from_millis(10)) {
                Some(Ok(m)) => {
                    if let Ok(tick) =
                        serde_json::from_slice::<Tick>(m.payload().unwrap_or_default())
                        && tick.run == run
                    {
                        distinct.insert((tick.key.clone(), tick.seq));
                        arrivals.push((tick.key, tick.seq));
                    }
                }
                Some(Err(e)) if last_error.is_none_or(|t| t.elapsed() > Duration::from_secs(2)) => {
                    eprintln!("verifier: {e} (still reading)");
                    last_error = Some(Instant::now());
                }
                Some(Err(_)) | None => {}
            }
            let seen = distinct.len() as u64;
            if let Some(file) = &kill_file
                && let Some((pid, at)) = kill_order(file)
                && seen >= at
            {
                let killed = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status()
                    .is_ok_and(|s| s.success());
                let _ = std::fs::remove_file(file);
                eprintln!(
                    "verifier: {} pid {pid} at {seen} ticks delivered",
                    if killed { "killed" } else { "could not kill" }
                );
            }
            if seen != reported && last_report.elapsed() >= Duration::from_millis(10) {
                write_atomic(&progress, &format!("{seen}\n"))?;
                (reported, last_report) = (seen, Instant::now());
            }
            if expected.is_none()
                && let Ok(text) = std::fs::read_to_string(dir.join("expected"))
            {
                expected = Some((parse_expected(&text)?, Instant::now() + timeout));
            }
            let Some((exp, deadline)) = &expected else {
                continue;
            };
            if complete_at.is_none() {
                let total: u64 = exp.values().sum();
                if seen >= total
                    && distinct
                        .iter()
                        .filter(|(k, s)| exp.get(k).is_some_and(|n| (1..=*n).contains(s)))
                        .count() as u64
                        >= total
                {
                    complete_at = Some(Instant::now());
                }
            }
            // Once complete, read on for a second: a late duplicate still counts.
            if complete_at.is_some_and(|t| t.elapsed() > Duration::from_secs(1))
                || Instant::now() > *deadline
            {
                break;
            }
        }
        write_atomic(&progress, &format!("{}\n", distinct.len()))?;
        let Some((exp, _)) = expected else {
            unreachable!("the loop ends only once the expected ticks are known")
        };
        let tally = Tally::of(&exp, arrivals, &HashSet::new());
        println!("{}", tally.line(None));
        let failures = tally.failures(duplicates_allowed);
        for f in &failures {
            eprintln!("verifier: FAILED: {f}");
        }
        Ok(failures.is_empty())
    })
    .await?
}

/// The kill order in `file`, `PID N`, if there is one.
fn kill_order(file: &Path) -> Option<(u32, u64)> {
    let text = std::fs::read_to_string(file).ok()?;
    let mut words = text.split_whitespace();
    Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
}
