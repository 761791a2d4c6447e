//! Identifier newtypes, so an order id can never be passed where a SKU is expected.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Channel, DomainError};

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident, $kind:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Builds the id, refusing empty values and control characters.
            pub fn new(value: impl Into<String>) -> Result<Self, DomainError> {
                let value = value.into();
                if value.trim().is_empty() {
                    return Err(DomainError::InvalidId { kind: $kind, value, reason: "must not be empty" });
                }
                if value.chars().any(char::is_control) {
                    return Err(DomainError::InvalidId { kind: $kind, value, reason: "contains control characters" });
                }
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = DomainError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// A merchant's account on one channel (a Shopify shop, an Amazon seller id, a Zalando merchant id).
    AccountId,
    "account id"
);
string_id!(
    /// The merchant's master SKU: the one key the ledger and every channel mapping agree on.
    Sku,
    "sku"
);
string_id!(
    /// A SKU as one channel knows it, before mapping to the master [`Sku`].
    ChannelSku,
    "channel sku"
);
string_id!(
    /// Correlates every log line, message and event of one transaction.
    TraceId,
    "trace id"
);
string_id!(
    /// The deterministic id of a canonical order: `{channel}:{account}:{channel_order_id}`.
    OrderId,
    "order id"
);

impl OrderId {
    /// The same order always gets the same id, whichever webhook or poll delivered it.
    pub fn for_channel(channel: Channel, account: &AccountId, channel_order_id: &str) -> Result<Self, DomainError> {
        if channel_order_id.trim().is_empty() {
            return Err(DomainError::InvalidId {
                kind: "channel order id",
                value: channel_order_id.to_owned(),
                reason: "must not be empty",
            });
        }
        Self::new(format!("{channel}:{account}:{channel_order_id}"))
    }
}

impl TraceId {
    /// A fresh trace id for a transaction that starts here.
    pub fn generate(now: chrono::DateTime<chrono::Utc>, entropy: u64) -> Self {
        Self(format!("mf-{}-{entropy:016x}", now.format("%Y%m%dT%H%M%S")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_id_is_deterministic() {
        let account = AccountId::new("shop-eu").unwrap();
        let id = OrderId::for_channel(Channel::Shopify, &account, "450789469").unwrap();
        assert_eq!(id.as_str(), "shopify:shop-eu:450789469");
    }

    #[test]
    fn empty_ids_are_refused() {
        assert!(Sku::new("  ").is_err());
        assert!(serde_json::from_str::<Sku>("\"\"").is_err());
        assert!(OrderId::for_channel(Channel::Etsy, &AccountId::new("a").unwrap(), "").is_err());
    }
}
