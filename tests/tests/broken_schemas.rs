//! Every file in `tests/schemas/broken/` is a schema with mistakes; its expected diagnostics are
//! listed in `tests/schemas/broken/expected.txt` as `file:line:column: part of the message`.
//! Each must be reported, at that place, in one run (not only the first). A line starting with
//! `=` makes its file's list exact: exactly these diagnostics and no other (no follow-on errors).

use std::collections::{BTreeMap, BTreeSet};

#[test]
fn broken_schemas_report_each_error_at_its_place() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/broken");
    let expected_text =
        std::fs::read_to_string(format!("{dir}/expected.txt")).expect("expected.txt");
    let mut expected: BTreeMap<String, Vec<(u32, u32, String)>> = BTreeMap::new();
    let mut exact: BTreeSet<String> = BTreeSet::new();
    for line in expected_text.lines().filter(|l| !l.trim().is_empty()) {
        let line = match line.strip_prefix('=') {
            Some(rest) => {
                exact.insert(rest.split(':').next().unwrap_or_default().to_owned());
                rest
            }
            None => line,
        };
        let mut parts = line.splitn(4, ':');
        let (file, l, c, msg) = (
            parts.next().unwrap_or_default(),
            parts.next().and_then(|s| s.parse().ok()).unwrap_or(0),
            parts.next().and_then(|s| s.parse().ok()).unwrap_or(0),
            parts.next().unwrap_or_default().trim().to_owned(),
        );
        expected
            .entry(file.to_owned())
            .or_default()
            .push((l, c, msg));
    }
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("broken dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 15, "at least 15 broken schemas");
    for name in expected.keys() {
        assert!(
            files.iter().any(|f| f.ends_with(name)),
            "expected.txt names `{name}`, which is not in {dir}"
        );
    }
    let mut failures = Vec::new();
    for path in files {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let mut config = eventbus_codegen::Config::new();
        config.schemas(&path).no_lock();
        let err = match config.load() {
            Ok(_) => {
                failures.push(format!("{name}: no error"));
                continue;
            }
            Err(e) => e,
        };
        let report = err.to_string();
        let got: Vec<_> = err
            .diagnostics()
            .iter()
            .map(|d| (d.at.line, d.at.column, d.message.clone()))
            .collect();
        let Some(want) = expected.get(&name) else {
            failures.push(format!("{name}: no expectation; got {got:#?}"));
            continue;
        };
        for (l, c, msg) in want {
            if !got
                .iter()
                .any(|(gl, gc, gm)| gl == l && gc == c && gm.contains(msg.as_str()))
            {
                failures.push(format!("{name}: expected {l}:{c} `{msg}`; got {got:#?}"));
            }
        }
        if exact.contains(&name) && got.len() != want.len() {
            failures.push(format!(
                "{name}: expected exactly {} diagnostic(s); got {got:#?}",
                want.len()
            ));
        }
        // The report shows the place and the line.
        assert!(report.contains(&format!("{name}:")), "{report}");
        assert!(report.contains(" | "), "{report}");
        // As cargo errors (`Config::compile_or_report`): one instruction per line of the report,
        // without the report's own `error: ` (cargo writes its own).
        let cargo = err.cargo_errors();
        assert_eq!(cargo.lines().count(), report.lines().count(), "{cargo}");
        assert!(
            cargo
                .lines()
                .all(|l| l.starts_with("cargo::error=") && !l.starts_with("cargo::error=error:")),
            "{cargo}"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
