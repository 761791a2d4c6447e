//! eBay's notification signature: ECDSA P-256 over the raw body, with a public key that eBay publishes by
//! key id and asks subscribers to cache ("one hour is recommended"; fetching per notification exhausts the
//! call limit).
//!
//! `X-EBAY-SIGNATURE` = base64 of `{"alg":"ecdsa","kid":..,"signature":<base64 DER>,"digest":"SHA1"}`.
//! The key comes from `GET {endpoint}/commerce/notification/v1/public_key/{kid}`, which answers
//! `{"algorithm":"ECDSA","digest":"SHA1","key":"-----BEGIN PUBLIC KEY-----..."}` (the PEM often on one line).

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use futures::future::BoxFuture;
use p256::{
    ecdsa::{
        DerSignature, Signature, SigningKey, VerifyingKey,
        signature::hazmat::{PrehashSigner as _, PrehashVerifier as _},
    },
    pkcs8::DecodePublicKey as _,
};
use serde::Deserialize;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::{Headers, Verified, VerifyError};

const SIGNATURE_HEADER: &str = "X-EBAY-SIGNATURE";

/// How long a fetched key is trusted before it is fetched again (eBay's recommendation).
pub const DEFAULT_KEY_TTL: Duration = Duration::from_hours(1);
/// How long "eBay has no key with this id" is remembered, so a bogus kid cannot make us call eBay per request.
const UNKNOWN_KID_TTL: Duration = Duration::from_mins(1);
/// Bound on cached key ids; past it the cache starts over (eBay rotates keys rarely, so this is never hit
/// by genuine traffic).
const MAX_CACHED_KIDS: usize = 256;

/// The digest eBay names in the signature header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EbayDigest {
    Sha1,
    Sha256,
}

impl EbayDigest {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
        }
    }

    fn prehash(self, body: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha1 => Sha1::digest(body).to_vec(),
            Self::Sha256 => Sha256::digest(body).to_vec(),
        }
    }
}

/// Why eBay's public key could not be had. Always worth retrying: the notification is fine, the lookup is not.
#[derive(Debug, thiserror::Error)]
pub enum KeyFetchError {
    #[error("request to eBay's public key endpoint failed")]
    Http(#[source] reqwest::Error),
    #[error("eBay's public key endpoint answered HTTP {status}")]
    Status { status: u16 },
    #[error("eBay's public key response is unusable: {0}")]
    Unusable(String),
}

/// Where eBay's notification public keys come from. Two implementations: [`HttpPublicKeySource`] (eBay's
/// API) and [`CachedKeySource`] (a TTL cache in front of another source).
pub trait PublicKeySource: Send + Sync + fmt::Debug {
    /// The key eBay publishes under `kid`, `Ok(None)` when eBay has none. `access_token` is the OAuth
    /// bearer token eBay requires on this call (an application token, client-credentials grant).
    fn public_key<'a>(
        &'a self,
        kid: &'a str,
        access_token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<VerifyingKey>, KeyFetchError>>;
}

/// eBay's Notification API `getPublicKey`.
#[derive(Debug, Clone)]
pub struct HttpPublicKeySource {
    client: reqwest::Client,
    endpoint: String,
    timeout: Duration,
}

impl HttpPublicKeySource {
    /// `endpoint` is the API root, e.g. `https://api.ebay.com` or `https://api.sandbox.ebay.com`.
    pub fn new(client: reqwest::Client, endpoint: impl Into<String>) -> Self {
        let endpoint = endpoint.into().trim_end_matches('/').to_owned();
        // The fetch happens inside a webhook request that eBay times out, so it must be short.
        Self { client, endpoint, timeout: Duration::from_secs(3) }
    }

    #[must_use]
    pub fn with_timeout(self, timeout: Duration) -> Self {
        Self { timeout, ..self }
    }

    async fn fetch(&self, kid: &str, access_token: Option<&str>) -> Result<Option<VerifyingKey>, KeyFetchError> {
        #[derive(Deserialize)]
        struct PublicKeyResponse {
            algorithm: String,
            key: String,
        }

        let url = format!("{}/commerce/notification/v1/public_key/{kid}", self.endpoint);
        let mut request = self.client.get(url).timeout(self.timeout);
        if let Some(token) = access_token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(KeyFetchError::Http)?;
        match response.status() {
            reqwest::StatusCode::NOT_FOUND => return Ok(None),
            status if !status.is_success() => return Err(KeyFetchError::Status { status: status.as_u16() }),
            _ => {}
        }
        let body: PublicKeyResponse = response.json().await.map_err(KeyFetchError::Http)?;
        if !body.algorithm.eq_ignore_ascii_case("ecdsa") {
            return Err(KeyFetchError::Unusable(format!("algorithm {:?}", body.algorithm)));
        }
        parse_public_key(&body.key).map(Some)
    }
}

impl PublicKeySource for HttpPublicKeySource {
    fn public_key<'a>(
        &'a self,
        kid: &'a str,
        access_token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<VerifyingKey>, KeyFetchError>> {
        Box::pin(self.fetch(kid, access_token))
    }
}

/// Reads an SPKI public key in PEM, tolerating eBay's habit of putting the whole PEM on one line.
pub(super) fn parse_public_key(pem: &str) -> Result<VerifyingKey, KeyFetchError> {
    let b64: String = pem
        .replace("-----BEGIN PUBLIC KEY-----", "")
        .replace("-----END PUBLIC KEY-----", "")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = BASE64.decode(b64).map_err(|_| KeyFetchError::Unusable("key is not base64 PEM".into()))?;
    VerifyingKey::from_public_key_der(&der).map_err(|_| KeyFetchError::Unusable("key is not a P-256 SPKI key".into()))
}

/// Remembers keys per kid for a TTL, with one fetch in flight per kid (concurrent notifications signed with
/// a new key wait for the same fetch instead of each calling eBay).
pub struct CachedKeySource {
    inner: Arc<dyn PublicKeySource>,
    ttl: Duration,
    entries: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<CachedKey>>>>>,
}

#[derive(Clone)]
struct CachedKey {
    key: Option<VerifyingKey>,
    fetched_at: Instant,
}

impl CachedKeySource {
    pub fn new(inner: Arc<dyn PublicKeySource>, ttl: Duration) -> Self {
        Self { inner, ttl, entries: Mutex::new(HashMap::new()) }
    }

    fn slot(&self, kid: &str) -> Arc<tokio::sync::Mutex<Option<CachedKey>>> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if !entries.contains_key(kid) && entries.len() >= MAX_CACHED_KIDS {
            entries.clear();
        }
        Arc::clone(entries.entry(kid.to_owned()).or_default())
    }

    async fn get(&self, kid: &str, access_token: Option<&str>) -> Result<Option<VerifyingKey>, KeyFetchError> {
        let slot = self.slot(kid);
        let mut cached = slot.lock().await;
        if let Some(entry) = cached.as_ref() {
            let ttl = if entry.key.is_some() { self.ttl } else { self.ttl.min(UNKNOWN_KID_TTL) };
            if entry.fetched_at.elapsed() < ttl {
                return Ok(entry.key);
            }
        }
        let key = self.inner.public_key(kid, access_token).await?;
        tracing::info!(kid, found = key.is_some(), "fetched eBay notification public key");
        *cached = Some(CachedKey { key, fetched_at: Instant::now() });
        Ok(key)
    }
}

impl PublicKeySource for CachedKeySource {
    fn public_key<'a>(
        &'a self,
        kid: &'a str,
        access_token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<VerifyingKey>, KeyFetchError>> {
        Box::pin(self.get(kid, access_token))
    }
}

impl fmt::Debug for CachedKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cached = self.entries.lock().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("CachedKeySource")
            .field("inner", &self.inner)
            .field("ttl", &self.ttl)
            .field("cached", &cached)
            .finish()
    }
}

/// The decoded `X-EBAY-SIGNATURE` header.
#[derive(Debug, Deserialize)]
struct SignatureHeader {
    alg: String,
    kid: String,
    signature: String,
    digest: EbayDigest,
}

/// A kid goes into a URL path: accept only what a key id can look like, so it cannot steer the request.
fn valid_kid(kid: &str) -> bool {
    (1..=128).contains(&kid.len()) && kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub(super) async fn verify(
    keys: &dyn PublicKeySource,
    headers: Headers<'_>,
    body: &[u8],
    access_token: Option<&str>,
) -> Result<Verified, VerifyError> {
    let header = headers.require(SIGNATURE_HEADER)?;
    let json =
        BASE64.decode(header).map_err(|_| VerifyError::Malformed(format!("`{SIGNATURE_HEADER}` is not base64")))?;
    let header: SignatureHeader = serde_json::from_slice(&json)
        .map_err(|e| VerifyError::Malformed(format!("`{SIGNATURE_HEADER}` is not the expected JSON: {e}")))?;
    if !header.alg.eq_ignore_ascii_case("ecdsa") {
        return Err(VerifyError::Malformed(format!("unsupported alg {:?}", header.alg)));
    }
    if !valid_kid(&header.kid) {
        return Err(VerifyError::Malformed("kid has characters a key id cannot have".into()));
    }
    let der = BASE64.decode(&header.signature).map_err(|_| VerifyError::Malformed("signature is not base64".into()))?;
    let signature =
        Signature::from_der(&der).map_err(|_| VerifyError::Malformed("signature is not DER ECDSA".into()))?;

    let key = keys
        .public_key(&header.kid, access_token)
        .await
        .map_err(VerifyError::KeyFetch)?
        .ok_or_else(|| VerifyError::Malformed("eBay has no public key with this kid".into()))?;
    key.verify_prehash(&header.digest.prehash(body), &signature).map_err(|_| VerifyError::Mismatch)?;
    Ok(Verified::Authentic)
}

/// The `X-EBAY-SIGNATURE` value eBay would send for `body` signed with `key` (for simulators and tests:
/// serve the matching public key under `kid` from a loopback [`HttpPublicKeySource`] endpoint).
pub fn sign_ebay(key: &SigningKey, kid: &str, digest: EbayDigest, body: &[u8]) -> Result<String, p256::ecdsa::Error> {
    let signature: Signature = key.sign_prehash(&digest.prehash(body))?;
    let der: DerSignature = signature.to_der();
    let header = serde_json::json!({
        "alg": "ecdsa",
        "kid": kid,
        "signature": BASE64.encode(der.as_bytes()),
        "digest": digest.as_str(),
    });
    Ok(BASE64.encode(header.to_string()))
}
