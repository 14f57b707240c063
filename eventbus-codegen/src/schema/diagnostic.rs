//! Schema errors: `file:line:column`, the line, and what to do.

use std::fmt;

use crate::model::FileLocation;

/// One problem in a schema, where it is, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where.
    pub at: FileLocation,
    /// What is wrong and what to do.
    pub message: String,
    /// The line of the file it is on (shown under the message).
    pub line_text: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = self.at.line.to_string();
        let pad = " ".repeat(line.len());
        let caret = " ".repeat(usize::try_from(self.at.column.saturating_sub(1)).unwrap_or(0));
        writeln!(f, "error: {}", self.message)?;
        writeln!(f, "{pad}--> {}", self.at)?;
        writeln!(f, "{pad} |")?;
        writeln!(f, "{line} | {}", self.line_text)?;
        write!(f, "{pad} | {caret}^")
    }
}

/// Every problem found in one run, in file and line order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}\n")?;
        }
        let n = self.0.len();
        write!(
            f,
            "{n} error{} in event schemas",
            if n == 1 { "" } else { "s" }
        )
    }
}

/// The error of reading, checking or generating from schemas.
///
/// Its `Debug` is its `Display` (the full report), so `fn main() -> Result<(), Box<dyn Error>>` in
/// `build.rs` prints the report, not a struct dump.
#[derive(thiserror::Error)]
pub enum Error {
    /// The schemas have problems; the report lists each.
    #[error("{0}")]
    Schema(Diagnostics),
    /// A file or directory could not be read or written.
    #[error("{action} `{path}`: {source}")]
    Io {
        /// What was being done (`cannot read`, ...).
        action: &'static str,
        /// The path.
        path: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A configuration mistake (no schema paths, no `OUT_DIR`, ...).
    #[error("{0}")]
    Config(String),
}

impl Error {
    /// The diagnostics, when this is a schema error.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            Error::Schema(d) => &d.0,
            _ => &[],
        }
    }

    /// The report as `cargo::error=` lines for `build.rs`, one per line of the report (cargo
    /// takes one line each, and writes `error:` before it, so the report's own is left out).
    /// [`crate::Config::compile_or_report`] prints them.
    pub fn cargo_errors(&self) -> String {
        self.to_string()
            .lines()
            .map(|line| {
                let line = line.strip_prefix("error: ").unwrap_or(line);
                format!("cargo::error={line}\n")
            })
            .collect()
    }

    pub(crate) fn io(action: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.display().to_string(),
            source,
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
