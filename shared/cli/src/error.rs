//! The CLI's errors: each says what went wrong in words an operator can act on, keeps its cause, and
//! maps to an exit code (2 for a wrong invocation, 1 for everything else). Nothing panics.

use std::fmt;

use manifold_normalize::NormalizeError;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The invocation itself is wrong (unknown queue, missing argument combination...).
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Env(#[from] manifold_aws::env::MissingVar),
    #[error(transparent)]
    Config(#[from] manifold_domain::config::ConfigError),
    #[error(transparent)]
    Startup(#[from] manifold_app::app::StartupError),
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    /// The document cannot become a canonical record; `error.path` names the offending field.
    #[error("cannot normalize the {channel} {kind}: {}", describe(.error))]
    Normalize { channel: String, kind: &'static str, error: NormalizeError },
    #[error(transparent)]
    Store(#[from] manifold_aws::StoreError),
    /// A service of the application refused or failed (`manifold sync`).
    #[error(transparent)]
    Failure(#[from] manifold_app::outcome::Failure),
    #[error(transparent)]
    Ledger(#[from] manifold_ledger::LedgerError),
    #[error("{service} {operation} failed")]
    Aws {
        service: &'static str,
        operation: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Some items of a batch command failed; the report above says which.
    #[error("{failed} of {total} item(s) failed (see above)")]
    Partial { failed: usize, total: usize },
}

fn describe(e: &NormalizeError) -> String {
    if e.path.is_empty() {
        format!("the document: {}", e.message)
    } else {
        format!("field `{}`: {}", e.path, e.message)
    }
}

impl CliError {
    pub fn sqs<E: std::error::Error + Send + Sync + 'static>(operation: &'static str, e: E) -> Self {
        Self::Aws { service: "sqs", operation, source: Box::new(e) }
    }

    pub fn dynamodb<E: std::error::Error + Send + Sync + 'static>(operation: &'static str, e: E) -> Self {
        Self::Aws { service: "dynamodb", operation, source: Box::new(e) }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            _ => 1,
        }
    }

    /// The error and its causes on one line (`a: b: c`), for stderr.
    pub fn chain(&self) -> impl fmt::Display + '_ {
        Chain(self)
    }
}

struct Chain<'a>(&'a CliError);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = std::error::Error::source(self.0);
        let mut last = self.0.to_string();
        while let Some(s) = source {
            let text = s.to_string();
            // Transparent wrappers repeat their inner message: print each distinct message once.
            if !last.contains(&text) {
                write!(f, ": {text}")?;
            }
            last = text;
            source = s.source();
        }
        Ok(())
    }
}
