//! One module per command group. Each exposes its clap arguments, a core function returning a typed,
//! serializable report (what the tests call), and the report's text rendering.

pub mod channels;
pub mod config;
pub mod customers;
pub mod dlq;
pub mod health;
pub mod listings;
pub mod normalize;
pub mod orders;
pub mod products;
pub mod quarantine;
pub mod rules;
pub mod sign;
pub mod stock;
pub mod sync;
pub mod template;
pub mod trace;
pub mod usage;
pub mod webhooks;

use manifold_domain::Channel;

/// Parses a channel name for clap, listing the valid ones on error.
pub fn parse_channel(s: &str) -> Result<Channel, String> {
    s.parse().map_err(|_| format!("unknown channel {s:?}; one of: {}", Channel::NAMES.join(", ")))
}
