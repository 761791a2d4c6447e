//! Outbound CRM connectors: keep each configured CRM account (`[[crms]]`, see
//! `manifold_domain::customers`) in step with the canonical customers, and erase a person there when
//! they ask to be forgotten.
//!
//! CRMs are not sales channels: they take people, not stock or orders, so they get their own small
//! [`CrmConnector`] trait instead of a corner of `ChannelConnector`. Everything else is the channels'
//! machinery: failures are [`ConnectorError`]s classified by [`crate::error::classify`], requests wait
//! for the account's [`RateLimiter`] (built from `CrmAccount::effective_rate_limit`) and a refusal
//! (429) pauses it for the CRM's wait. Unlike a channel call, a refused CRM call is not retried here:
//! the sync that called it retries the batch after [`ConnectorError::retry_after`], so a Lambda never
//! sleeps through HubSpot's ten-second window.
//!
//! | kind      | upsert                                         | forget                                 |
//! |-----------|------------------------------------------------|----------------------------------------|
//! | `hubspot` | CRM v3 batch upsert by email, ≤ 100 a request  | GDPR delete by contact id              |
//! | `webhook` | one Standard Webhooks POST per customer        | a `customer.forgotten` POST, no PII    |
//!
//! Inbound HubSpot webhooks (a user changed a property the CRM owns) are checked and parsed by
//! [`hubspot::verify_hubspot_v3`] and [`hubspot::parse_hubspot_events`].

pub mod hubspot;
pub mod webhook;

use std::{collections::BTreeMap, fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use http::HeaderMap;
use manifold_domain::customers::{CrmAccount, CrmKind};
use serde::Deserialize;

use crate::{
    client::CallContext,
    error::{self, ConnectorError},
    ratelimit::{RateLimiter, Signals},
};

pub use hubspot::{HubspotEvent, PropertyChange, parse_hubspot_events, verify_hubspot_v3};

/// One person as a CRM is given them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrmContact {
    pub customer_id: String,
    /// The CRM's own id of the person, once known (HubSpot's contact id).
    pub crm_record_id: Option<String>,
    /// CRM property -> value (`CrmAccount::properties`).
    pub properties: BTreeMap<String, String>,
}

/// A contact the CRM took, with the id it keeps the person under (`None` where it has none to say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upserted {
    pub customer_id: String,
    pub crm_record_id: Option<String>,
}

/// What [`CrmConnector::forget`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forgotten {
    /// The CRM erased the person (or told us they were already gone).
    Deleted,
    /// The person was never sent to this CRM (no record id): nothing to erase, nothing was asked.
    NothingToDelete,
    /// The CRM has no API to erase a person: a human must do it there.
    Unsupported(&'static str),
}

/// A CRM account's credential, as stored in its secret: HubSpot's private app `token` and the app's
/// `client_secret` (which signs inbound v3 webhooks); a webhook's `whsec_` signing key as `token`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrmCredentials {
    pub token: String,
    #[serde(default)]
    pub client_secret: Option<String>,
}

impl CrmCredentials {
    /// Parses the secret string: a JSON object `{"token", "client_secret"}`, or the token alone.
    pub fn from_secret_string(s: &str) -> Result<Self, serde_json::Error> {
        let s = s.trim();
        let creds = if s.starts_with('{') {
            serde_json::from_str(s)?
        } else {
            Self { token: s.to_owned(), client_secret: None }
        };
        if creds.token.is_empty() {
            return Err(serde::de::Error::custom("the CRM secret holds an empty token"));
        }
        Ok(creds)
    }
}

/// Says which parts are set, never their values.
impl fmt::Debug for CrmCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrmCredentials")
            .field("token", &"<redacted>")
            .field("client_secret", &self.client_secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A CRM's outbound API.
#[async_trait]
pub trait CrmConnector: Send + Sync {
    fn kind(&self) -> CrmKind;
    /// Sends up to `batch_limit` contacts in one request.
    async fn upsert(&self, contacts: &[CrmContact], ctx: &CallContext) -> Result<Vec<Upserted>, ConnectorError>;
    /// Erases the person in the CRM.
    async fn forget(
        &self,
        customer_id: &str,
        crm_record_id: Option<&str>,
        ctx: &CallContext,
    ) -> Result<Forgotten, ConnectorError>;
}

/// The connector for `account`, its requests within the account's rate limit.
#[allow(clippy::needless_pass_by_value)] // the connector owns what it is given, as `crate::build`'s do
pub fn build(account: &CrmAccount, creds: CrmCredentials, http: reqwest::Client) -> Arc<dyn CrmConnector> {
    match account.kind {
        CrmKind::Hubspot => Arc::new(hubspot::Hubspot::new(account, creds, Http::new(account, http))),
        CrmKind::Webhook => Arc::new(webhook::Webhook::new(account, creds, Http::new(account, http))),
    }
}

/// One CRM account's HTTP: the client, and the limiter every request waits for.
#[derive(Debug)]
pub(crate) struct Http {
    client: reqwest::Client,
    limiter: RateLimiter,
    /// The account id, for logs.
    crm: String,
    /// How long a 429 without `Retry-After` pauses the account.
    throttle_wait: Duration,
}

/// A response, whatever its status.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: bytes::Bytes,
    /// On a 429: how long the CRM asked us to wait (its `Retry-After`, else the CRM's known window).
    pub(crate) retry_after: Option<Duration>,
}

impl Http {
    fn new(account: &CrmAccount, client: reqwest::Client) -> Self {
        let throttle_wait = match account.kind {
            // HubSpot's burst limit is a rolling ten seconds, and its 429 says nothing of when it ends.
            CrmKind::Hubspot => Duration::from_secs(10),
            CrmKind::Webhook => Duration::from_secs(1),
        };
        Self {
            client,
            limiter: RateLimiter::new(&account.effective_rate_limit()),
            crm: account.id.clone(),
            throttle_wait,
        }
    }

    /// POSTs `body` (JSON) to `url` with `headers`, once the allowance has room; a refusal pauses the
    /// limiter for the wait it asks for. Only a transport failure is an `Err` here.
    pub(crate) async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
        ctx: &CallContext,
    ) -> Result<Reply, ConnectorError> {
        let mut req = self
            .client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("x-request-id", &ctx.trace_id)
            .body(body);
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let permit = self.limiter.acquire(1.0).await;
        let received = async {
            let response = req.send().await?;
            let (status, headers) = (response.status().as_u16(), response.headers().clone());
            Ok::<_, reqwest::Error>((status, headers, response.bytes().await?))
        }
        .await;
        let (status, headers, body) = match received {
            Ok(r) => r,
            Err(e) => {
                self.limiter.release(permit).await;
                return Err(error::classify_transport(e));
            }
        };
        let retry_after = (status == 429).then(|| error::retry_after_header(&headers).unwrap_or(self.throttle_wait));
        self.limiter.observe(permit, &Signals { retry_after, ..Signals::default() }).await;
        tracing::debug!(crm = %self.crm, status, "CRM call");
        Ok(Reply { status, headers, body, retry_after })
    }
}

impl Reply {
    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The classified failure of a non-2xx reply; `message` is the CRM's own account of it.
    pub(crate) fn failure(&self, message: &str) -> ConnectorError {
        error::classify(self.status, &self.headers, message).with_retry_after(self.retry_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_json_or_a_bare_token_and_never_show() {
        let both = CrmCredentials::from_secret_string(r#"{"token":"pat-eu1-abc","client_secret":"cs-xyz"}"#).unwrap();
        assert_eq!(both.token, "pat-eu1-abc");
        assert_eq!(both.client_secret.as_deref(), Some("cs-xyz"));
        let bare = CrmCredentials::from_secret_string(" whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw \n").unwrap();
        assert_eq!(
            bare,
            CrmCredentials { token: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(), client_secret: None }
        );
        assert!(CrmCredentials::from_secret_string(r#"{"client_secret":"x"}"#).is_err());
        assert!(CrmCredentials::from_secret_string("  ").is_err());
        let shown = format!("{both:?}");
        assert!(!shown.contains("pat-eu1-abc") && !shown.contains("cs-xyz"), "{shown}");
    }
}
