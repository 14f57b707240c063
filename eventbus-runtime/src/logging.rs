//! Log output for programs (feature `cli`): the `eventbus-relay` binary and the petstore install
//! it; a service with a `tracing` subscriber of its own needs none of this.
//!
//! [`init`] writes `tracing` events to stderr, filtered by `RUST_LOG` (default: `info`), as text
//! lines or, with `EVENTBUS_LOG_FORMAT=json` (or [`LogFormat::Json`]), one JSON object a line for
//! log collectors. No colours.
//!
//! ```no_run
//! use eventbus::logging::{LogFormat, init};
//! let format = LogFormat::from_env().unwrap_or_else(|e| { eprintln!("{e}"); LogFormat::Text });
//! init(format, "info");
//! tracing::info!("ready");
//! ```

use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `2025-01-01T00:00:00.000000Z  WARN eventbus::relay::watch: eventbus relay: ...`
    #[default]
    Text,
    /// `{"timestamp":"...","level":"WARN","fields":{"message":"...",...},"target":"..."}`
    Json,
}

impl LogFormat {
    /// `text` or `json`.
    pub fn parse(value: &str) -> Result<Self, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "text" | "" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "the log format {other:?} is not known: use `text` or `json`"
            )),
        }
    }

    /// From `EVENTBUS_LOG_FORMAT` (`text`, the default, or `json`).
    pub fn from_env() -> Result<Self, String> {
        match std::env::var("EVENTBUS_LOG_FORMAT") {
            Ok(value) => Self::parse(&value).map_err(|e| format!("EVENTBUS_LOG_FORMAT: {e}")),
            Err(_) => Ok(LogFormat::Text),
        }
    }
}

/// Installs the process's `tracing` subscriber: events at the levels `RUST_LOG` enables (its
/// directives, `info` by default, `default` when unset), to stderr, in `format`. Does nothing if
/// a subscriber is already installed; returns whether this one was.
pub fn init(format: LogFormat, default: &str) -> bool {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => {
            EnvFilter::builder().parse(&directives).unwrap_or_else(|e| {
                eprintln!("RUST_LOG={directives:?} is not a filter ({e}); logging at {default:?}");
                EnvFilter::new(default)
            })
        }
        _ => EnvFilter::new(default),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    match format {
        LogFormat::Text => builder.try_init().is_ok(),
        LogFormat::Json => builder.json().flatten_event(false).try_init().is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse() {
        assert_eq!(LogFormat::parse("JSON"), Ok(LogFormat::Json));
        assert_eq!(LogFormat::parse("text"), Ok(LogFormat::Text));
        assert!(
            LogFormat::parse("xml")
                .unwrap_err()
                .contains("text` or `json")
        );
    }
}
