//! `manifold demo`: placeholder until the local end-to-end demo is wired.

use crate::CliError;

/// Options of `manifold demo` (none yet).
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {}

#[allow(clippy::unused_async)] // the real demo awaits; callers already await it
pub async fn run(_args: DemoArgs) -> Result<(), CliError> {
    Err(CliError::Usage("manifold demo is not yet wired".to_owned()))
}
