//! Inbound webhook verification: proves a delivery came from the channel before anything is stored.
//!
//! Each channel signs its own way, always over the raw body bytes (never a re-serialised JSON), and every
//! comparison here is constant-time. The channels share five schemes, each channel's named in its connector module:
//!
//! | channel         | scheme                                                                   |
//! |-----------------|--------------------------------------------------------------------------|
//! | Shopify         | `X-Shopify-Hmac-Sha256` = base64(HMAC-SHA256(client secret, body))       |
//! | WooCommerce     | `X-WC-Webhook-Signature` = base64(HMAC-SHA256(secret, body)), or the     |
//! |                 | unsigned `webhook_id=N` creation ping ([`Verified::Ping`])               |
//! | TikTok Shop     | `Authorization` = hex(HMAC-SHA256(app secret, app key ++ body))          |
//! | BigCommerce     | a header set at subscription time equals the secret (no HMAC exists)     |
//! | Etsy            | Standard Webhooks, 5 minute timestamp tolerance both ways                |
//! | eBay            | ECDSA P-256 over the body, key fetched by `kid` and cached               |
//! | Kaufland        | `Shop-Signature` = hex(HMAC-SHA256(secret key, `POST\nURL\nbody\nts`)), the |
//! |                 | request signature over the registered callback URL (unverified)          |
//! | Amazon, Zalando | no HTTP webhooks (SQS / polling): [`VerifyError::NotSupported`]          |
//! | OTTO Market     | no HTTP webhooks (polling): [`VerifyError::NotSupported`]                |
//!
//! [`sign`] and [`sign_ebay`] produce genuinely signed deliveries from the same table, for the simulator,
//! the local demo and tests.

mod ebay;
mod headers;
#[cfg(test)]
mod no_panic;
pub(crate) mod scheme;
#[cfg(test)]
mod tests;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use http::HeaderMap;
use manifold_domain::Channel;

pub use ebay::{
    CachedKeySource, DEFAULT_KEY_TTL, EbayDigest, HttpPublicKeySource, KeyFetchError, PublicKeySource, sign_ebay,
};
pub use headers::Headers;
use scheme::{Scheme, StandardWebhooks, scheme};

use crate::Credentials;

/// A delivery that passed verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// Signed by the channel: process it.
    Authentic,
    /// The channel's unsigned subscription test (WooCommerce's `webhook_id=N`): answer 200, store nothing.
    Ping,
}

/// Why a delivery was refused.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("missing header `{0}`")]
    Missing(&'static str),
    #[error("malformed signature: {0}")]
    Malformed(String),
    #[error("signature does not match")]
    Mismatch,
    /// `skew_seconds` = now − signed timestamp: positive when too old (a replay), negative when from the future.
    #[error("signed timestamp is {skew_seconds} s off, outside the tolerance")]
    Expired { skew_seconds: i64 },
    #[error("{0} delivers no webhooks")]
    NotSupported(Channel),
    /// Our side is wrong: the account's credential or setting of that name is missing or unusable.
    #[error("credential or setting `{0}` is missing or invalid")]
    Unconfigured(&'static str),
    #[error("could not fetch the channel's public key")]
    KeyFetch(#[source] KeyFetchError),
}

impl VerifyError {
    /// Only a failed key fetch says nothing about the delivery itself; everything else will fail again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::KeyFetch(_))
    }
}

/// Verifies deliveries for every channel. Build one per cold start: it holds eBay's public-key cache.
#[derive(Debug)]
pub struct Verifier {
    keys: CachedKeySource,
}

impl Verifier {
    /// `keys` is usually an [`HttpPublicKeySource`]; it is wrapped in a cache with [`DEFAULT_KEY_TTL`].
    pub fn new(keys: Arc<dyn PublicKeySource>) -> Self {
        Self::with_key_ttl(keys, DEFAULT_KEY_TTL)
    }

    pub fn with_key_ttl(keys: Arc<dyn PublicKeySource>, ttl: Duration) -> Self {
        Self { keys: CachedKeySource::new(keys, ttl) }
    }

    /// Checks that `body` (the raw bytes as received) was sent by `channel` for the account whose
    /// credentials and settings are given. `now` bounds replay for timestamped schemes.
    ///
    /// Credentials: `webhook_secret` (eBay: none; it uses `access_token` to fetch keys). Settings: TikTok
    /// `app_key`; BigCommerce `webhook_header` (default `X-Manifold-Webhook-Token`).
    pub async fn verify(
        &self,
        channel: Channel,
        headers: &HeaderMap,
        body: &[u8],
        creds: &Credentials,
        settings: &BTreeMap<String, String>,
        now: DateTime<Utc>,
    ) -> Result<Verified, VerifyError> {
        let headers = Headers::new(headers);
        match scheme(channel) {
            Scheme::Hmac(s) => s.verify(headers, body, webhook_secret(creds)?, settings),
            Scheme::Token(s) => s.verify(headers, webhook_secret(creds)?, settings),
            Scheme::StandardWebhooks(s) => s.verify(headers, body, webhook_secret(creds)?, now),
            Scheme::Ecdsa => ebay::verify(&self.keys, headers, body, creds.get("access_token")).await,
            Scheme::Signed(s) => (s.verify)(headers, body, creds, settings, now),
            Scheme::NoWebhooks => Err(VerifyError::NotSupported(channel)),
        }
    }
}

fn webhook_secret(creds: &Credentials) -> Result<&str, VerifyError> {
    creds.get("webhook_secret").ok_or(VerifyError::Unconfigured("webhook_secret"))
}

/// The headers `channel` would send with `body`, signed with the account's `secret` (its `webhook_secret`)
/// and `settings`. `message_id` is used where the scheme signs one (Etsy's `webhook-id`).
///
/// eBay signs with a private key: use [`sign_ebay`]. Amazon, Zalando and OTTO give
/// [`VerifyError::NotSupported`]; a missing setting gives [`VerifyError::Unconfigured`].
pub fn sign(
    channel: Channel,
    secret: &str,
    settings: &BTreeMap<String, String>,
    message_id: &str,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<HeaderMap, VerifyError> {
    match scheme(channel) {
        Scheme::Hmac(s) => s.sign(secret, settings, body),
        Scheme::Token(s) => s.sign(secret, settings),
        Scheme::StandardWebhooks(_) => StandardWebhooks::sign(secret, message_id, body, now),
        Scheme::Signed(s) => (s.sign)(secret, settings, body, now),
        Scheme::Ecdsa | Scheme::NoWebhooks => Err(VerifyError::NotSupported(channel)),
    }
}
