//! The closed set of sales channels Manifold integrates, and each one's static facts.
//!
//! A channel is one module per crate that has something to say about it: its facts here (one file per
//! channel, [`ChannelSpec`]), its normalizer in `manifold-normalize`, its connector and signature
//! scheme in `manifold-connectors`, its simulator in `manifold-simulator`. Each crate has one
//! exhaustive registry `match` over [`Channel`] with no wildcard arm, so adding a variant here fails to
//! compile until every part of the new channel exists.

mod amazon;
mod bigcommerce;
pub mod capability;
mod ebay;
mod etsy;
pub mod kaufland;
pub mod otto;
mod shopify;
mod spec;
mod tiktok;
mod woocommerce;
mod zalando;

use std::{fmt, str::FromStr};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use capability::{Capabilities, Cell, Operation};
pub use spec::{ChannelSpec, Inbound};

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
    Kaufland,
    Otto,
}

impl Channel {
    /// Every channel, in a stable order.
    pub const ALL: [Channel; 10] = [
        Channel::Shopify,
        Channel::Woocommerce,
        Channel::Bigcommerce,
        Channel::Amazon,
        Channel::Etsy,
        Channel::Tiktok,
        Channel::Zalando,
        Channel::Ebay,
        Channel::Kaufland,
        Channel::Otto,
    ];

    /// The wire names of [`Channel::ALL`], as used in URLs, ids and configuration.
    pub const NAMES: [&'static str; 10] =
        ["shopify", "woocommerce", "bigcommerce", "amazon", "etsy", "tiktok", "zalando", "ebay", "kaufland", "otto"];

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// The channel's static facts: the registry of channels.
    pub const fn spec(self) -> &'static ChannelSpec {
        match self {
            Channel::Shopify => &shopify::SPEC,
            Channel::Woocommerce => &woocommerce::SPEC,
            Channel::Bigcommerce => &bigcommerce::SPEC,
            Channel::Amazon => &amazon::SPEC,
            Channel::Etsy => &etsy::SPEC,
            Channel::Tiktok => &tiktok::SPEC,
            Channel::Zalando => &zalando::SPEC,
            Channel::Ebay => &ebay::SPEC,
            Channel::Kaufland => &kaufland::SPEC,
            Channel::Otto => &otto::SPEC,
        }
    }

    /// The channel's name as people write it ("WooCommerce").
    pub fn title(self) -> &'static str {
        self.spec().title
    }

    /// The name's first letter in capitals, the rest as is (`Woocommerce`): how template resources
    /// are named (`PushWoocommerceQueue`).
    pub fn pascal(self) -> String {
        let name = self.as_str();
        name[..1].to_ascii_uppercase() + &name[1..]
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
    fn every_spec_describes_its_own_channel() {
        for c in Channel::ALL {
            assert_eq!(c.spec().channel, c, "{c}'s registry arm points at another channel's facts");
            assert!(!c.title().is_empty());
        }
    }

    #[test]
    fn unknown_channel_is_a_clear_error() {
        let err = "myspace".parse::<Channel>().unwrap_err();
        assert!(err.to_string().contains("myspace"));
        assert!(err.to_string().contains("shopify"));
    }
}
