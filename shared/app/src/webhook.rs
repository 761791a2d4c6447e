//! Webhook intake: `POST /v1/webhooks/{channel}/{account}`.
//!
//! Answers within the channel's deadline (Shopify 5 s, TikTok 3 s) by doing only the durable minimum:
//! verify the signature over the raw bytes, claim the delivery's idempotency key, put the raw event on
//! the ingest queue, answer 200. Normalization happens behind the queue.
//!
//! | outcome | status |
//! |---|---|
//! | accepted, or a duplicate of an accepted delivery, or a WooCommerce creation ping | 200 |
//! | body not what the channel sends (kept in quarantine) | 400 |
//! | bad or missing signature (body neither stored nor logged, counted) | 401 |
//! | unknown channel or account | 404 |
//! | the same delivery is being processed right now | 409 (the channel retries) |
//! | body above the configured size | 413 |
//! | a dependency failed (the channel retries) | 503 |

use std::sync::Arc;

use chrono::{DateTime, Utc};
use http::HeaderMap;
use manifold_aws::{idempotency::Claim, quarantine::QuarantinedPayload};
use manifold_connectors::{
    Credentials,
    verify::{Verified, VerifyError},
};
use manifold_domain::{Channel, config::AccountConfig};
use manifold_telemetry::MetricSet;
use tracing::{Instrument, info, warn};

use crate::{
    App,
    envelope::{IngestEnvelope, Source, body_hash},
};

/// What the HTTP layer sends back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookResponse {
    pub status: u16,
    pub message: String,
    pub trace_id: String,
}

impl WebhookResponse {
    pub(crate) fn new(status: u16, message: impl Into<String>, trace_id: &str) -> Self {
        Self { status, message: message.into(), trace_id: trace_id.to_owned() }
    }
}

/// eBay's endpoint validation: before it registers a notification destination (and periodically after),
/// eBay sends `GET <endpoint>?challenge_code=...` and expects `{"challengeResponse": hex(SHA-256(
/// challengeCode + verificationToken + endpoint))}`, where the verification token is the one entered
/// with the destination and the endpoint is the URL exactly as registered.
pub fn ebay_challenge_response(challenge_code: &str, verification_token: &str, endpoint: &str) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    hash.update(challenge_code.as_bytes());
    hash.update(verification_token.as_bytes());
    hash.update(endpoint.as_bytes());
    hex::encode(hash.finalize())
}

impl App {
    /// Handles one webhook delivery. `now` is injected so replay windows are testable.
    pub async fn handle_webhook(
        &self,
        channel: &str,
        account: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> WebhookResponse {
        let trace_id =
            crate::trace::from_header(headers.get(manifold_telemetry::TRACE_HEADER).and_then(|v| v.to_str().ok()));
        let span = manifold_telemetry::business_span!("webhook");
        span.record("trace_id", trace_id.as_str());
        span.record("channel", channel);
        span.record("account", account);
        let response =
            self.webhook_inner(channel, account, headers, body, now, &trace_id).instrument(span.clone()).await;
        span.in_scope(|| info!(status = response.status, outcome = %response.message, "webhook answered"));
        response
    }

    async fn webhook_inner(
        &self,
        channel: &str,
        account: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
        trace_id: &str,
    ) -> WebhookResponse {
        let Ok(channel) = channel.parse::<Channel>() else {
            return WebhookResponse::new(404, format!("unknown channel {channel:?}"), trace_id);
        };
        let config = self.config().await;
        let Some(acct) = config.account(channel, account) else {
            return WebhookResponse::new(404, format!("unknown {channel} account {account:?}"), trace_id);
        };
        let metrics = || MetricSet::new().dim("Channel", channel.as_str()).dim("Operation", "webhook");
        if body.len() > self.settings.max_body_bytes {
            metrics().count("WebhookRejected", 1).emit();
            return WebhookResponse::new(
                413,
                format!("body of {} bytes exceeds {}", body.len(), self.settings.max_body_bytes),
                trace_id,
            );
        }
        let creds = match self.credentials(&acct.secret).await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "credentials unavailable");
                return WebhookResponse::new(503, "credentials unavailable, retry later", trace_id);
            }
        };
        let creds = if channel == Channel::Ebay { self.with_ebay_key_token(acct, creds).await } else { creds };
        match self.verifier.verify(channel, headers, body, &creds, &acct.settings, now).await {
            Ok(Verified::Ping) => return WebhookResponse::new(200, "ping acknowledged", trace_id),
            Ok(Verified::Authentic) => {}
            Err(e) if e.is_retryable() => {
                warn!(error = %e, "signature could not be checked now");
                return WebhookResponse::new(503, "signature check unavailable, retry later", trace_id);
            }
            Err(e @ VerifyError::Unconfigured(_)) => {
                // Our configuration is wrong, not the sender: alarm-worthy, and the channel retries.
                warn!(error_class = "config", reason = %e, "webhook secret misconfigured");
                metrics().count("SignatureRejected", 1).aggregate().emit();
                return WebhookResponse::new(500, "webhook verification is misconfigured for this account", trace_id);
            }
            Err(e) => {
                // Neither the body nor the presented signature is logged: only the reason.
                warn!(error_class = "signature", reason = %e, "signature rejected");
                metrics().count("SignatureRejected", 1).aggregate().emit();
                return WebhookResponse::new(401, "invalid signature", trace_id);
            }
        }
        // Parsed once: for the body's own event id, then for the shape check.
        let parsed = serde_json::from_slice::<serde_json::Value>(body);
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let topic = channel.spec().topic_header.and_then(header).map(str::to_owned);
        let event_id = channel
            .spec()
            .header_event_id(header)
            .or_else(|| parsed.as_ref().ok().and_then(|v| manifold_normalize::body_event_id(channel, v)))
            .unwrap_or_else(|| body_hash(body));
        let envelope = IngestEnvelope {
            v: 1,
            channel,
            account: acct.account.to_string(),
            source: Source::Webhook,
            topic,
            event_id,
            trace_id: trace_id.to_owned(),
            received_at: now,
            body: String::from_utf8_lossy(body).into_owned(),
            document: None,
        };
        if let Err(reason) = check_shape(channel, envelope.topic.as_deref(), &parsed) {
            if self.quarantine_envelope(&envelope, "webhook", &reason, now).await.is_none() {
                // Not kept: the sender's retry is the only copy left.
                return WebhookResponse::new(503, "quarantine unavailable, retry later", trace_id);
            }
            metrics().count("Quarantined", 1).emit();
            return WebhookResponse::new(400, format!("not a {channel} notification: {reason}"), trace_id);
        }
        let key = format!("DELIVERY#{}", envelope.ingest_key());
        match self.idempotency.claim(&key, now, self.settings.claim_lease).await {
            Ok(Claim::Claimed) => {}
            Ok(Claim::Completed) => {
                metrics().count("WebhookDuplicate", 1).emit();
                return WebhookResponse::new(200, "duplicate delivery ignored", trace_id);
            }
            Ok(Claim::InProgress) => return WebhookResponse::new(409, "delivery in progress, retry later", trace_id),
            Err(e) => {
                warn!(error = %e, "idempotency claim failed");
                return WebhookResponse::new(503, "storage unavailable, retry later", trace_id);
            }
        }
        let sent = match serde_json::to_string(&envelope) {
            Ok(json) => {
                self.queue.send(&self.env.ingest_queue_url, &json, trace_id, None).await.map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = sent {
            warn!(error = %e, "ingest queue unavailable");
            let _ = self.idempotency.release(&key).await;
            return WebhookResponse::new(503, "queue unavailable, retry later", trace_id);
        }
        if let Err(e) = self.idempotency.complete(&key, now, self.settings.claim_retention).await {
            // The event is safely queued; a redelivery will be deduplicated by the ingest key.
            warn!(error = %e, "could not mark delivery completed");
        }
        metrics().count("WebhookAccepted", 1).emit();
        WebhookResponse::new(200, "accepted", trace_id)
    }

    /// Keeps a payload that cannot be processed, with its reason, under an id of the delivery and the
    /// stage (so a redelivery of the same failure is kept once). Returns `None` when even the
    /// quarantine is down: the error is logged with the trace id and the caller has the sender retry.
    pub async fn quarantine_envelope(
        &self,
        envelope: &IngestEnvelope,
        stage: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Option<String> {
        let item = QuarantinedPayload {
            id: QuarantinedPayload::id_for(&format!("{stage}:{}", envelope.ingest_key()), envelope.received_at),
            channel: envelope.channel.to_string(),
            account: envelope.account.clone(),
            stage: stage.to_owned(),
            reason: reason.to_owned(),
            trace_id: envelope.trace_id.clone(),
            received_at: now,
            payload: serde_json::to_string(envelope).unwrap_or_default(),
            replayed_at: None,
        };
        match self.quarantine.put(&item).await {
            Ok(()) => {
                warn!(quarantine_id = %item.id, stage, reason, "payload quarantined");
                Some(item.id)
            }
            Err(e) => {
                warn!(error = %e, stage, reason, "quarantine unavailable");
                None
            }
        }
    }

    /// Parses an account's secret into credentials (cached by the secret source).
    /// Answers eBay's endpoint validation for `account` (`GET /v1/webhooks/ebay/{account}?challenge_code=`).
    /// The verification token is the account secret's `verification_token`; the endpoint is the account
    /// setting `notification_endpoint` when set (a custom domain), else `request_url` without its query.
    pub async fn ebay_challenge(
        &self,
        account: &str,
        challenge_code: &str,
        request_url: &str,
    ) -> Result<serde_json::Value, WebhookResponse> {
        let trace_id = crate::trace::mint();
        let Some(acct) = self.config().await.account(Channel::Ebay, account).cloned() else {
            return Err(WebhookResponse::new(404, format!("unknown ebay account {account:?}"), &trace_id));
        };
        if challenge_code.is_empty() {
            return Err(WebhookResponse::new(400, "challenge_code is empty", &trace_id));
        }
        let creds = self.credentials(&acct.secret).await.map_err(|e| {
            warn!(error = %e, "eBay challenge: cannot read the account secret");
            WebhookResponse::new(if e.is_retryable() { 503 } else { 500 }, "account secret unavailable", &trace_id)
        })?;
        let Some(token) = creds.get("verification_token") else {
            warn!(account, "eBay challenge: the account secret has no verification_token");
            return Err(WebhookResponse::new(500, "the account secret has no verification_token", &trace_id));
        };
        let endpoint = acct
            .settings
            .get("notification_endpoint")
            .cloned()
            .unwrap_or_else(|| request_url.split('?').next().unwrap_or_default().to_owned());
        info!(account, endpoint, "eBay endpoint validation answered");
        Ok(serde_json::json!({ "challengeResponse": ebay_challenge_response(challenge_code, token, &endpoint) }))
    }

    /// eBay's `getPublicKey` takes an application token (client credentials grant, public scope), not the
    /// seller's user token: minted from the account's `client_id`/`client_secret`, cached per account until
    /// shortly before it expires. A secret without them keeps its stored `access_token`.
    async fn with_ebay_key_token(&self, acct: &AccountConfig, creds: Credentials) -> Credentials {
        let cached = self.ebay_key_tokens.read().await.get(acct.account.as_str()).cloned();
        let provider = if let Some(p) = cached {
            p
        } else {
            let p = manifold_connectors::token::flow_provider(
                acct,
                &creds,
                &self.http,
                manifold_connectors::token::EBAY_APPLICATION,
                None,
            );
            self.ebay_key_tokens.write().await.entry(acct.account.to_string()).or_insert(p).clone()
        };
        match provider.token().await {
            Ok(token) => creds.with("access_token", token.expose()),
            Err(e) => {
                warn!(error = %e, "eBay application token unavailable; looking the key up with the stored token");
                creds
            }
        }
    }

    pub async fn credentials(&self, secret: &str) -> Result<Credentials, crate::outcome::Failure> {
        let raw = self.secrets.secret(secret).await?;
        Credentials::from_secret_string(&raw).map_err(|e| {
            crate::outcome::Failure::permanent(
                "credentials",
                format!("secret {secret} is not a JSON object of strings: {e}"),
            )
        })
    }
}

/// A verified body must at least be the kind of document the channel sends: JSON, and classifiable.
fn check_shape(
    channel: Channel,
    topic: Option<&str>,
    parsed: &Result<serde_json::Value, serde_json::Error>,
) -> Result<(), String> {
    let value = parsed.as_ref().map_err(|e| format!("body is not JSON: {e}"))?;
    manifold_normalize::classify(channel, topic, value).map(|_| ()).map_err(|e| e.to_string())
}

/// Shared ownership helper for the HTTP function.
pub type SharedApp = Arc<App>;

#[cfg(test)]
mod challenge_tests {
    use super::ebay_challenge_response;

    #[test]
    fn challenge_hashes_code_token_and_endpoint_in_that_order() {
        // sha256("abc" + "token_0123456789abcdef0123456789abcdef" + "https://example.com/v1/webhooks/ebay/main"),
        // computed independently with `printf %s ... | sha256sum`.
        let expected = "0d74f2e7216d3f74e95dfb31211fecfbd5bc95f1ef44b18b80855856bb5bfc90";
        assert_eq!(
            ebay_challenge_response(
                "abc",
                "token_0123456789abcdef0123456789abcdef",
                "https://example.com/v1/webhooks/ebay/main"
            ),
            expected
        );
        assert_ne!(
            ebay_challenge_response(
                "token_0123456789abcdef0123456789abcdef",
                "abc",
                "https://example.com/v1/webhooks/ebay/main"
            ),
            expected
        );
    }
}
