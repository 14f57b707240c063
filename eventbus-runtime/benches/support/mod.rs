//! What the benches share: their settings and the services they run against.

/// The setting `name` from the environment, or `default`.
pub(crate) fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The PostgreSQL URL and the Kafka brokers `scripts/services start` prints; without them the
/// bench `name` says how to start them and exits.
pub(crate) fn services(name: &str) -> (String, String) {
    match (
        std::env::var("EVENTBUS_TEST_DATABASE_URL"),
        std::env::var("EVENTBUS_TEST_KAFKA_BROKERS"),
    ) {
        (Ok(url), Ok(brokers)) => (url, brokers),
        _ => {
            eprintln!(
                "{name} bench: set EVENTBUS_TEST_DATABASE_URL and EVENTBUS_TEST_KAFKA_BROKERS (eval \"$(scripts/services start)\")"
            );
            std::process::exit(2);
        }
    }
}

/// Deletes topic `name` if it exists and creates it anew with `partitions` partitions, so a run
/// reads only its own records.
#[allow(dead_code)] // not every bench uses it
pub(crate) async fn recreate_topic(kafka: &eventbus::KafkaConfig, name: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use std::time::{Duration, Instant};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers.join(","))
        .create()
        .unwrap();
    let _ = admin.delete_topics(&[name], &AdminOptions::new()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let created = admin
            .create_topics(
                &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            )
            .await
            .unwrap();
        if created.iter().all(Result::is_ok) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cannot recreate {name}: {created:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Deletes the topics a run made, as the bench drops its tables: a soak run leaves about 7 GB of
/// records on the broker's disk otherwise, and every run its own topic. A failure is printed, not
/// fatal (the figures are already out).
#[allow(dead_code)] // not every bench uses it
pub(crate) async fn delete_topics(kafka: &eventbus::KafkaConfig, names: &[&str]) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    let admin: Result<AdminClient<rdkafka::client::DefaultClientContext>, _> =
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", kafka.bootstrap_servers.join(","))
            .create();
    let deleted = match admin {
        Ok(admin) => admin
            .delete_topics(names, &AdminOptions::new())
            .await
            .map(|each| each.into_iter().filter_map(Result::err).collect::<Vec<_>>()),
        Err(e) => Err(e),
    };
    match deleted {
        Ok(failed) if failed.is_empty() => {}
        Ok(failed) => eprintln!("could not delete the bench's topics: {failed:?}"),
        Err(e) => eprintln!("could not delete the bench's topics {names:?}: {e}"),
    }
}

/// CPU time used so far, per process (Linux `/proc`; empty elsewhere), and the machine's idle and
/// stolen time. Two samples around a phase say where that phase's CPU went, by part: PostgreSQL's
/// processes, Kafka's JVM, this bench (the relay or consumer with its librdkafka threads), and
/// the rest of the machine. A process that exits between the samples is not counted.
#[allow(dead_code)] // not every bench uses it
#[derive(Clone, Debug, Default)]
pub(crate) struct Cpu {
    /// Seconds of CPU per process id, with the part it belongs to.
    processes: std::collections::HashMap<u32, (Part, f64)>,
    /// Seconds the machine's CPUs were idle, and stolen by the hypervisor.
    idle: f64,
    steal: f64,
    /// When the sample was taken.
    at: Option<std::time::Instant>,
}

/// The parts [`Cpu`] tells apart.
#[allow(dead_code)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Postgres,
    Kafka,
    Bench,
    Other,
}

#[allow(dead_code)]
impl Cpu {
    /// The CPU used so far (kernel ticks of 1/100 s, Linux's `USER_HZ`).
    pub(crate) fn sample() -> Cpu {
        const HZ: f64 = 100.0;
        let mut cpu = Cpu {
            at: Some(std::time::Instant::now()),
            ..Cpu::default()
        };
        let me = std::process::id();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return cpu;
        };
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // "pid (comm) state ...": comm may hold spaces, so the fields follow the last ')'.
            let Some((head, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let comm = head.split_once('(').map_or("", |(_, c)| c);
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // utime and stime are the line's fields 14 and 15: 11 and 12 after the comm.
            let ticks = |i: usize| {
                fields
                    .get(i)
                    .and_then(|f| f.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            let part = if pid == me {
                Part::Bench
            } else if comm == "postgres" {
                Part::Postgres
            } else if comm == "java" {
                Part::Kafka
            } else {
                Part::Other
            };
            cpu.processes
                .insert(pid, (part, (ticks(11) + ticks(12)) / HZ));
        }
        if let Ok(stat) = std::fs::read_to_string("/proc/stat")
            && let Some(line) = stat.lines().find(|l| l.starts_with("cpu "))
        {
            let f: Vec<f64> = line
                .split_whitespace()
                .skip(1)
                .map(|v| v.parse().unwrap_or(0.0))
                .collect();
            cpu.idle = f.get(3).copied().unwrap_or(0.0) / HZ;
            cpu.steal = f.get(7).copied().unwrap_or(0.0) / HZ;
        }
        cpu
    }

    /// What was used between `self` (earlier) and `later`, as one line: each part's use over
    /// the phase's wall time, in cores, e.g. `postgres 0.61, kafka 0.52, bench 0.70, other
    /// 0.03, idle 0.14, stolen 0.00 (cores)`.
    pub(crate) fn used_until(&self, later: &Cpu) -> String {
        let (Some(a), Some(b)) = (self.at, later.at) else {
            return String::from("(no /proc)");
        };
        let wall = b.duration_since(a).as_secs_f64().max(1e-9);
        let part = |p: Part| {
            later
                .processes
                .iter()
                .filter(|(_, (q, _))| *q == p)
                .map(|(pid, (_, s))| s - self.processes.get(pid).map_or(0.0, |(_, s)| *s))
                .sum::<f64>()
                / wall
        };
        format!(
            "postgres {:.2}, kafka {:.2}, bench {:.2}, other {:.2}, idle {:.2}, stolen {:.2} (cores)",
            part(Part::Postgres),
            part(Part::Kafka),
            part(Part::Bench),
            part(Part::Other),
            (later.idle - self.idle) / wall,
            (later.steal - self.steal) / wall,
        )
    }
}
