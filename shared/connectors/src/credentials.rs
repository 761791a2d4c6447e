//! A channel account's credentials, as stored in its Secrets Manager secret (a JSON object of strings).
//!
//! `Debug` never prints values, so a credential can't leak through a log line or a panic message.

use std::{collections::BTreeMap, fmt};

use serde::Deserialize;

/// Well-known keys: `webhook_secret` (Shopify client secret, WooCommerce webhook secret, BigCommerce
/// custom header value, Etsy `whsec_...`, TikTok app secret), `access_token`, `client_id`,
/// `client_secret`, `refresh_token`, `api_key`. Connectors document which they need.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Credentials(BTreeMap<String, String>);

impl Credentials {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// These credentials with `key` set to `value` (a token minted for one call, say).
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.0.insert(key.to_owned(), value.into());
        self
    }

    /// Parses the secret string as stored in Secrets Manager.
    pub fn from_secret_string(s: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(s)
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Credentials {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.keys().map(|k| (k, "<redacted>"))).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_values() {
        let c: Credentials = [("webhook_secret", "hush")].into_iter().collect();
        let shown = format!("{c:?}");
        assert!(shown.contains("webhook_secret") && !shown.contains("hush"), "{shown}");
    }
}
