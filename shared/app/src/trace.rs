//! Trace ids: minted at the edge or taken from the caller, then carried on every hop.

use manifold_domain::TraceId;

/// A new trace id for a transaction starting now.
pub fn mint() -> String {
    let entropy = u64::from_le_bytes(uuid::Uuid::new_v4().as_bytes()[..8].try_into().unwrap_or([0; 8]));
    TraceId::generate(chrono::Utc::now(), entropy).to_string()
}

/// The caller's trace id if it is a sane one, or a new one.
pub fn from_header(value: Option<&str>) -> String {
    match value {
        Some(v)
            if !v.is_empty()
                && v.len() <= 128
                && v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)) =>
        {
            v.to_owned()
        }
        _ => mint(),
    }
}
