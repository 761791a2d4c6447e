//! The closed set of sales channels Manifold integrates.
//!
//! Adding a channel means adding a variant here; every `match` on [`Channel`] in the workspace then
//! fails to compile until the new channel's normalizer, verifier and connector are wired.

use std::{fmt, str::FromStr};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::DomainError;

/// A sales channel (a platform or marketplace), not a merchant's account on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Shopify,
    Woocommerce,
    Bigcommerce,
    Amazon,
    Etsy,
    Tiktok,
    Zalando,
    Ebay,
}

impl Channel {
    /// Every channel, in a stable order.
    pub const ALL: [Channel; 8] = [
        Channel::Shopify,
        Channel::Woocommerce,
        Channel::Bigcommerce,
        Channel::Amazon,
        Channel::Etsy,
        Channel::Tiktok,
        Channel::Zalando,
        Channel::Ebay,
    ];

    /// The wire names of [`Channel::ALL`], as used in URLs, ids and configuration.
    pub const NAMES: [&'static str; 8] =
        ["shopify", "woocommerce", "bigcommerce", "amazon", "etsy", "tiktok", "zalando", "ebay"];

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::NAMES
            .iter()
            .position(|n| *n == s)
            .map(|i| Self::ALL[i])
            .ok_or_else(|| DomainError::UnknownChannel(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_from_str_and_serde() {
        for c in Channel::ALL {
            assert_eq!(c.as_str().parse::<Channel>().unwrap(), c);
            assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{c}\""));
        }
    }

    #[test]
    fn unknown_channel_is_a_clear_error() {
        let err = "myspace".parse::<Channel>().unwrap_err();
        assert!(err.to_string().contains("myspace"));
        assert!(err.to_string().contains("shopify"));
    }
}
