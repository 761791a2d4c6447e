//! Each channel's order document as ingest receives it, from the crate's real (or documented-shape)
//! fixtures (each channel module's `sample`): what the normalization benchmarks measure (the criterion
//! bench and `manifold bench`). Amazon and BigCommerce: the order with the parts their connectors fetch
//! beside it.

use manifold_domain::Channel;

/// (channel, the order document's bytes), one per channel.
pub fn orders() -> Vec<(Channel, Vec<u8>)> {
    Channel::ALL
        .into_iter()
        .map(|c| (c, serde_json::to_vec(&(crate::channels::module(c).sample)()).unwrap_or_default()))
        .collect()
}
