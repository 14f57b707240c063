//! Generation time for a 1,000-event catalog: `cargo bench -p eventbus-codegen --bench generate`.
//!
//! Writes 100 service schemas of 10 events each to a temporary directory, then times reading,
//! checking and generating the Rust of all of them (what `build.rs` does), best of 5 runs.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("eventbus-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    for s in 0..100 {
        let mut text = format!(
            "service: service{s}\naggregates:\n  order:\n    routing: per_aggregate\ntypes:\n  Line:\n    fields:\n      sku: string\n      qty: u32\nevents:\n"
        );
        for e in 0..10 {
            write!(
                text,
                "  Event{e}:\n    category: domain\n    aggregate: order\n    description: Event {e}.\n    fields:\n      order_id: uuid\n      total: decimal\n      lines: list<Line>\n      note: {{ type: string, optional: true }}\n"
            )?;
        }
        std::fs::write(dir.join(format!("service{s}.yaml")), text)?;
    }
    let mut best = Duration::MAX;
    let mut events = 0;
    for _ in 0..5 {
        let start = Instant::now();
        let mut config = eventbus_codegen::Config::new();
        config.schemas(&dir).no_lock();
        let catalog = config.load()?;
        let files = config.generate(&catalog);
        best = best.min(start.elapsed());
        events = catalog
            .services
            .iter()
            .map(|s| s.events.len())
            .sum::<usize>();
        assert_eq!(files.len(), 100);
    }
    std::fs::remove_dir_all(&dir)?;
    println!("generate: {events} events in 100 services: {best:?} (best of 5)");
    Ok(())
}
