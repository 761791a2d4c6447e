//! The signing schemes channels share; which channel signs how is its connector module's `webhooks`.
//!
//! Signing and verifying live side by side on the same scheme values, so the simulator's deliveries and
//! the webhook handler's checks cannot drift apart. eBay's public-key scheme lives in `ebay.rs`.

use std::collections::BTreeMap;

use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use manifold_domain::Channel;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use super::{Headers, Verified, VerifyError};

type HmacSha256 = Hmac<Sha256>;

/// How a channel proves a delivery came from it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scheme {
    Hmac(HmacHeader),
    Token(HeaderToken),
    StandardWebhooks(StandardWebhooks),
    /// eBay: ECDSA over the body with a key fetched by id.
    Ecdsa,
    /// A scheme of the channel's own, implemented in its connector module (Kaufland: the request
    /// signature over method, URL, body and timestamp).
    Signed(SignedDelivery),
    /// The channel pushes nothing over HTTP (Amazon: SQS / EventBridge; Zalando: polling).
    NoWebhooks,
}

/// A channel's scheme, from its connector module (the registry in `crate::channels`).
pub(super) const fn scheme(channel: Channel) -> Scheme {
    crate::channels::module(channel).webhooks
}

/// Checks a delivery: headers, raw body, the account's credentials and settings, now.
pub(crate) type VerifyFn = fn(
    Headers<'_>,
    &[u8],
    &crate::Credentials,
    &BTreeMap<String, String>,
    DateTime<Utc>,
) -> Result<Verified, VerifyError>;
/// Signs a body as the channel would: secret, settings, body, now.
pub(crate) type SignFn = fn(&str, &BTreeMap<String, String>, &[u8], DateTime<Utc>) -> Result<HeaderMap, VerifyError>;

/// A channel's own delivery signature: how a delivery is checked and how one is signed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SignedDelivery {
    pub(crate) verify: VerifyFn,
    pub(crate) sign: SignFn,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Encoding {
    Base64,
    Hex,
}

impl Encoding {
    fn encode(self, bytes: &[u8]) -> String {
        match self {
            Self::Base64 => BASE64.encode(bytes),
            Self::Hex => hex::encode(bytes),
        }
    }

    fn decode(self, text: &str) -> Option<Vec<u8>> {
        match self {
            Self::Base64 => BASE64.decode(text).ok(),
            Self::Hex => hex::decode(text).ok(),
        }
    }
}

/// An unsigned body that the channel sends to test a new subscription: `{field}=<digits>` as a form body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ping {
    pub(crate) field: &'static str,
}

impl Ping {
    fn matches(self, body: &[u8]) -> bool {
        body.strip_prefix(self.field.as_bytes())
            .and_then(|rest| rest.strip_prefix(b"="))
            .is_some_and(|id| (1..=20).contains(&id.len()) && id.iter().all(u8::is_ascii_digit))
    }
}

/// `header` = encoding(HMAC-SHA256(key = secret, message = settings[prefix_setting] ++ body)).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HmacHeader {
    pub(crate) header: &'static str,
    pub(crate) encoding: Encoding,
    pub(crate) prefix_setting: Option<&'static str>,
    pub(crate) ping: Option<Ping>,
}

impl HmacHeader {
    fn mac(self, secret: &str, settings: &BTreeMap<String, String>, body: &[u8]) -> Result<HmacSha256, VerifyError> {
        let mut mac =
            HmacSha256::new_from_slice(secret.as_bytes()).map_err(|_| VerifyError::Unconfigured("webhook_secret"))?;
        if let Some(key) = self.prefix_setting {
            mac.update(settings.get(key).ok_or(VerifyError::Unconfigured(key))?.as_bytes());
        }
        mac.update(body);
        Ok(mac)
    }

    pub(super) fn verify(
        self,
        headers: Headers<'_>,
        body: &[u8],
        secret: &str,
        settings: &BTreeMap<String, String>,
    ) -> Result<Verified, VerifyError> {
        let Some(sent) = headers.get(self.header)? else {
            return match self.ping {
                Some(ping) if ping.matches(body) => Ok(Verified::Ping),
                _ => Err(VerifyError::Missing(self.header)),
            };
        };
        let sent = self
            .encoding
            .decode(sent)
            .ok_or_else(|| VerifyError::Malformed(format!("`{}` is not {:?}", self.header, self.encoding)))?;
        self.mac(secret, settings, body)?.verify_slice(&sent).map_err(|_| VerifyError::Mismatch)?;
        Ok(Verified::Authentic)
    }

    pub(super) fn sign(
        self,
        secret: &str,
        settings: &BTreeMap<String, String>,
        body: &[u8],
    ) -> Result<HeaderMap, VerifyError> {
        let tag = self.mac(secret, settings, body)?.finalize().into_bytes();
        header_map([(self.header, self.encoding.encode(&tag))])
    }
}

/// A header set at subscription time whose value is the shared secret (BigCommerce has no HMAC).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeaderToken {
    pub(crate) name_setting: &'static str,
    pub(crate) default_header: &'static str,
}

impl HeaderToken {
    fn header_name(self, settings: &BTreeMap<String, String>) -> Result<&str, VerifyError> {
        let name = settings.get(self.name_setting).map_or(self.default_header, String::as_str);
        HeaderName::from_bytes(name.as_bytes()).map_err(|_| VerifyError::Unconfigured(self.name_setting))?;
        Ok(name)
    }

    pub(super) fn verify(
        self,
        headers: Headers<'_>,
        secret: &str,
        settings: &BTreeMap<String, String>,
    ) -> Result<Verified, VerifyError> {
        // An empty secret would let an empty header through.
        if secret.is_empty() {
            return Err(VerifyError::Unconfigured("webhook_secret"));
        }
        let name = self.header_name(settings)?;
        let sent = headers.get(name)?.ok_or(VerifyError::Missing(if name == self.default_header {
            self.default_header
        } else {
            "the header named by settings.webhook_header"
        }))?;
        // Comparing digests keeps the comparison constant-time in the secret's length too.
        let matches: bool = Sha256::digest(sent.as_bytes()).ct_eq(&Sha256::digest(secret.as_bytes())).into();
        if matches { Ok(Verified::Authentic) } else { Err(VerifyError::Mismatch) }
    }

    pub(super) fn sign(self, secret: &str, settings: &BTreeMap<String, String>) -> Result<HeaderMap, VerifyError> {
        header_map([(self.header_name(settings)?, secret.to_owned())])
    }
}

/// Standard Webhooks (<https://www.standardwebhooks.com>): `webhook-signature` holds space-separated
/// `v1,<base64>` entries, each HMAC-SHA256(key = base64-decoded `whsec_` secret, `id.timestamp.body`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct StandardWebhooks {
    pub(crate) tolerance_seconds: i64,
}

const WEBHOOK_ID: &str = "webhook-id";
const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
const WEBHOOK_SIGNATURE: &str = "webhook-signature";

impl StandardWebhooks {
    fn key(secret: &str) -> Result<Vec<u8>, VerifyError> {
        BASE64
            .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
            .map_err(|_| VerifyError::Unconfigured("webhook_secret"))
    }

    fn mac(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> Result<HmacSha256, VerifyError> {
        let mut mac = HmacSha256::new_from_slice(key).map_err(|_| VerifyError::Unconfigured("webhook_secret"))?;
        for part in [id.as_bytes(), b".", timestamp.as_bytes(), b".", body] {
            mac.update(part);
        }
        Ok(mac)
    }

    pub(super) fn verify(
        self,
        headers: Headers<'_>,
        body: &[u8],
        secret: &str,
        now: DateTime<Utc>,
    ) -> Result<Verified, VerifyError> {
        let key = Self::key(secret)?;
        let id = headers.require(WEBHOOK_ID)?;
        let timestamp = headers.require(WEBHOOK_TIMESTAMP)?;
        let signatures = headers.require(WEBHOOK_SIGNATURE)?;

        let sent_at: i64 = timestamp
            .parse()
            .map_err(|_| VerifyError::Malformed(format!("`{WEBHOOK_TIMESTAMP}` is not unix seconds")))?;
        let skew_seconds = now.timestamp().saturating_sub(sent_at);
        if skew_seconds.unsigned_abs() > self.tolerance_seconds.unsigned_abs() {
            return Err(VerifyError::Expired { skew_seconds });
        }

        let candidates: Vec<Vec<u8>> = signatures
            .split(' ')
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .filter_map(|sig| BASE64.decode(sig).ok())
            .collect();
        if candidates.is_empty() {
            return Err(VerifyError::Malformed(format!("`{WEBHOOK_SIGNATURE}` has no decodable v1 entry")));
        }
        let expected = Self::mac(&key, id, timestamp, body)?.finalize().into_bytes();
        // Check every entry (no early exit), each comparison constant-time.
        let any = candidates.iter().fold(subtle::Choice::from(0), |acc, sig| acc | expected[..].ct_eq(sig));
        if any.into() { Ok(Verified::Authentic) } else { Err(VerifyError::Mismatch) }
    }

    pub(super) fn sign(secret: &str, id: &str, body: &[u8], now: DateTime<Utc>) -> Result<HeaderMap, VerifyError> {
        let timestamp = now.timestamp().to_string();
        let tag = Self::mac(&Self::key(secret)?, id, &timestamp, body)?.finalize().into_bytes();
        header_map([
            (WEBHOOK_ID, id.to_owned()),
            (WEBHOOK_TIMESTAMP, timestamp),
            (WEBHOOK_SIGNATURE, format!("v1,{}", BASE64.encode(tag))),
        ])
    }
}

pub(crate) fn header_map<const N: usize>(pairs: [(&str, String); N]) -> Result<HeaderMap, VerifyError> {
    pairs
        .into_iter()
        .map(|(name, value)| {
            let name =
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| VerifyError::Unconfigured("webhook_header"))?;
            let value = HeaderValue::try_from(value).map_err(|_| VerifyError::Unconfigured("webhook_secret"))?;
            Ok((name, value))
        })
        .collect()
}
