//! CRM sync: the customers kept in step with each CRM account of the configuration (`[[crms]]`).
//!
//! - **Runs** ([`App::run_crm_syncs`]): on the scheduler's tick, each CRM account whose cadence is due
//!   pages through every customer (100 a page, HubSpot's batch limit), maps each to the CRM's
//!   properties ([`CrmAccount::properties`]), hashes them, and compares with what the account last
//!   took (`CRM_SENT#{crm}`). A page's changed customers become one job on the `CrmQueue`; an
//!   unchanged customer costs no call. `manifold customers sync` forces a run.
//! - **The consumer** ([`App::crm_batch`]): reads the job's customers again (a job carries ids only,
//!   so no queue holds personal data), maps them, skips any whose hash the CRM already took (a
//!   redelivery), and sends them through the account's connector in its batch size, behind a breaker
//!   per CRM account (`BREAKER#crm#{id}`) and the account's rate limit. A retryable failure is
//!   retried with the push consumers' backoff until the queue's `maxReceiveCount` parks it in the
//!   `CrmDLQ`; a refused job is quarantined with its reason. What the CRM took, and the record id
//!   it gave, is recorded.
//! - **Forget**: a job per CRM account that holds a copy, by its record id.

use std::collections::HashMap;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use manifold_aws::{
    breaker::DynamoBreakerStore,
    customers::{CrmSent, CustomerStore},
};
use manifold_connectors::{
    CallContext, FailureClass,
    breaker::CircuitBreaker,
    crm::{CrmConnector, CrmContact, CrmCredentials, Forgotten as CrmForgotten},
};
use manifold_domain::customers::{CrmAccount, CrmKind, Customer};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use tracing::{info, warn};

use crate::{App, outcome::Failure};

/// Customers examined per page, and the most one job carries.
pub const CRM_PAGE: usize = 100;

/// Work for one CRM account: ids only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CrmJob {
    Upsert { crm: String, customer_ids: Vec<String>, trace_id: String },
    Forget { crm: String, customer_id: String, record_id: Option<String>, trace_id: String },
}

impl CrmJob {
    fn crm(&self) -> &str {
        match self {
            CrmJob::Upsert { crm, .. } | CrmJob::Forget { crm, .. } => crm,
        }
    }
}

/// What one CRM account's run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CrmRun {
    pub crm: String,
    pub examined: usize,
    pub queued: usize,
    pub jobs: usize,
    /// Customers HubSpot cannot take (no email to upsert by).
    pub without_email: usize,
    pub skipped: Option<&'static str>,
}

/// The hash of what a CRM would be given.
fn content_hash(properties: &std::collections::BTreeMap<String, String>) -> String {
    let text = serde_json::to_string(properties).unwrap_or_default();
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

fn crm_marker(id: &str) -> String {
    format!("crm#{id}")
}

impl App {
    fn crm_queue(&self) -> Result<&str, Failure> {
        self.settings
            .crm_queue_url
            .as_deref()
            .ok_or_else(|| Failure::permanent("crm", "CRM accounts are configured but CRM_QUEUE_URL is not set"))
    }

    async fn send_crm_job(&self, job: &CrmJob) -> Result<(), Failure> {
        let body = serde_json::to_string(job).map_err(|e| Failure::permanent("crm", e.to_string()))?;
        self.sqs
            .get()
            .send_message()
            .queue_url(self.crm_queue()?)
            .message_body(body)
            .send()
            .await
            .map_err(|e| Failure::Transient(Box::new(e)))?;
        Ok(())
    }

    /// The CRM accounts whose cadence is due (all of them when `force`), each run in full.
    pub async fn run_crm_syncs(&self, now: DateTime<Utc>, force: bool) -> Result<Vec<CrmRun>, Failure> {
        let config = self.config().await;
        let mut runs = Vec::new();
        for crm in config.crms.iter().filter(|c| c.enabled) {
            let marker = crm_marker(&crm.id);
            let state = self.state.get();
            let last = state.get_marker(&marker).await?.and_then(|t| DateTime::parse_from_rfc3339(&t).ok());
            let period = match crm.cadence {
                manifold_domain::config::Cadence::Every(d) => chrono::Duration::from_std(d).unwrap_or_default(),
                _ => chrono::Duration::zero(),
            };
            if !force && last.is_some_and(|l| now - l.with_timezone(&Utc) < period) {
                runs.push(CrmRun { crm: crm.id.clone(), skipped: Some("not due"), ..CrmRun::default() });
                continue;
            }
            let run = self.crm_run(crm).await?;
            state.set_marker(&marker, &now.to_rfc3339()).await?;
            info!(crm = %crm.id, examined = run.examined, queued = run.queued, "CRM run queued its changes");
            runs.push(run);
        }
        Ok(runs)
    }

    /// One CRM account's run: every customer, page by page; the changed ones queued.
    pub async fn crm_run(&self, crm: &CrmAccount) -> Result<CrmRun, Failure> {
        let store = self.customers.get().clone();
        let trace_id = crate::trace::mint();
        let mut run = CrmRun { crm: crm.id.clone(), ..CrmRun::default() };
        let mut cursor: Option<String> = None;
        loop {
            let (page, next) = store.page(cursor.as_deref(), CRM_PAGE).await?;
            run.examined += page.len();
            let changed = self.changed_for(crm, &*store, &page, &mut run.without_email).await?;
            if !changed.is_empty() {
                run.queued += changed.len();
                run.jobs += 1;
                let ids = changed.into_iter().map(|(c, _)| c.id).collect();
                self.send_crm_job(&CrmJob::Upsert {
                    crm: crm.id.clone(),
                    customer_ids: ids,
                    trace_id: trace_id.clone(),
                })
                .await?;
            }
            cursor = next;
            if cursor.is_none() {
                return Ok(run);
            }
        }
    }

    /// The customers of `page` whose mapped properties differ from what the CRM last took, with
    /// their properties.
    async fn changed_for(
        &self,
        crm: &CrmAccount,
        store: &dyn CustomerStore,
        page: &[Customer],
        without_email: &mut usize,
    ) -> Result<Vec<(Customer, CrmContact)>, Failure> {
        let live: Vec<&Customer> =
            page.iter().filter(|c| c.merged_into.is_none() && c.forgotten_at.is_none()).collect();
        let ids: Vec<String> = live.iter().map(|c| c.id.clone()).collect();
        let sent = store.sent(&crm.id, &ids).await?;
        let mut out = Vec::new();
        for customer in live {
            let properties = crm.properties(customer);
            if crm.kind == CrmKind::Hubspot && !properties.contains_key("email") {
                *without_email += 1;
                continue;
            }
            let previous = sent.get(&customer.id);
            if previous.is_some_and(|s| s.hash == content_hash(&properties)) {
                continue;
            }
            let contact = CrmContact {
                customer_id: customer.id.clone(),
                crm_record_id: customer.crm_ids.get(&crm.id).cloned(),
                properties,
            };
            out.push((customer.clone(), contact));
        }
        Ok(out)
    }

    /// Queues the erasure of `customer` in every CRM account that holds a copy (forget). Webhook
    /// CRMs are told about every customer they were sent.
    pub(crate) async fn queue_crm_forgets(&self, customer: &Customer, _now: DateTime<Utc>) -> Result<u64, Failure> {
        let config = self.config().await;
        let store = self.customers.get().clone();
        let trace_id = crate::trace::mint();
        let mut queued = 0;
        for crm in config.crms.iter().filter(|c| c.enabled) {
            let sent = store.sent(&crm.id, std::slice::from_ref(&customer.id)).await?;
            let record_id = customer.crm_ids.get(&crm.id).cloned();
            if record_id.is_none() && sent.is_empty() {
                continue;
            }
            self.send_crm_job(&CrmJob::Forget {
                crm: crm.id.clone(),
                customer_id: customer.id.clone(),
                record_id,
                trace_id: trace_id.clone(),
            })
            .await?;
            queued += 1;
        }
        Ok(queued)
    }

    /// The connector of a CRM account, built once per warm environment with its credentials; with
    /// `reload`, built again from a fresh read of the secret (bypassing the secrets cache).
    async fn crm_connector(&self, crm: &CrmAccount, reload: bool) -> Result<std::sync::Arc<dyn CrmConnector>, Failure> {
        if !reload && let Some(c) = self.crm_connectors.read().await.get(&crm.id) {
            return Ok(c.clone());
        }
        let read = if reload { self.secrets.reload(&crm.secret).await } else { self.secrets.secret(&crm.secret).await };
        let secret = read.map_err(|e| Failure::Transient(format!("CRM {} credentials: {e}", crm.id).into()))?;
        let creds = CrmCredentials::from_secret_string(&secret)
            .map_err(|e| Failure::permanent("crm", format!("CRM {} secret {}: {e}", crm.id, crm.secret)))?;
        let connector = manifold_connectors::crm::build(crm, creds, self.http.get().clone());
        self.crm_connectors.write().await.insert(crm.id.clone(), connector.clone());
        Ok(connector)
    }

    /// Runs `call` with the CRM account's connector. A refusal of its credentials (401/403) is often a
    /// stale token, not a wrong one: the token was rotated and the secret updated while this warm
    /// environment kept the connector built with the old one. So the connector is rebuilt once from a
    /// fresh read of the secret and the call sent again before the refusal stands, as the channel
    /// connectors do (`manifold_connectors::reauth`).
    async fn with_crm<T, F, Fut>(&self, crm: &CrmAccount, call: F) -> Result<T, Failure>
    where
        F: Fn(std::sync::Arc<dyn CrmConnector>) -> Fut,
        Fut: Future<Output = Result<T, manifold_connectors::ConnectorError>>,
    {
        match call(self.crm_connector(crm, false).await?).await {
            Err(e) if e.class == FailureClass::Auth => {
                warn!(crm = %crm.id, error = %e, "CRM refused the credentials: re-reading the secret");
                call(self.crm_connector(crm, true).await?).await.map_err(connector_failure)
            }
            other => other.map_err(connector_failure),
        }
    }

    /// The `CrmQueue` consumer.
    pub async fn crm_batch(&self, event: SqsEvent) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        let mut delays = Vec::new();
        for m in &event.records {
            let body = m.body.as_deref().unwrap_or_default();
            let attempt: u32 = m.attributes.get("ApproximateReceiveCount").and_then(|c| c.parse().ok()).unwrap_or(1);
            let outcome = match serde_json::from_str::<CrmJob>(body) {
                Ok(job) => self.crm_job(&job, Utc::now()).await,
                Err(e) => Err(Failure::permanent("crm", format!("not a CRM job: {e}"))),
            };
            let failed = match outcome {
                Ok(()) => false,
                Err(Failure::Permanent { stage, reason }) => {
                    // Never processable as is: kept whole with its reason, replayable after a fix.
                    let kept = self.quarantine_crm_job(body, stage, &reason).await;
                    warn!(stage, %reason, kept, "CRM job refused");
                    !kept
                }
                Err(e) => {
                    warn!(error = %e, attempt, "CRM job will be retried");
                    true
                }
            };
            if failed {
                let id = m.message_id.clone().unwrap_or_default();
                let mut f = BatchItemFailure::default();
                f.item_identifier = id;
                response.batch_item_failures.push(f);
                if let Some(receipt) = &m.receipt_handle {
                    let key = m.message_id.as_deref().unwrap_or_default();
                    let delay = self.settings.push.backoff(attempt, crate::webhooks_out::rand_jitter(key, attempt));
                    delays.push((receipt.clone(), i32::try_from(delay.as_secs()).unwrap_or(900).min(900)));
                }
            }
        }
        if !delays.is_empty()
            && let Ok(queue) = self.crm_queue()
            && let Err(e) = self.queue.get().change_visibility(queue, &delays).await
        {
            warn!(error = %e, "retry delays not set: the queue's visibility timeout applies");
        }
        response
    }

    async fn quarantine_crm_job(&self, body: &str, stage: &'static str, reason: &str) -> bool {
        let crm = serde_json::from_str::<CrmJob>(body).map(|j| j.crm().to_owned()).unwrap_or_default();
        self.quarantine_crm_payload(&crm, body, stage, reason).await
    }

    /// Keeps a CRM payload that can never be processed as is, with its reason (`manifold quarantine`).
    pub(crate) async fn quarantine_crm_payload(
        &self,
        crm: &str,
        body: &str,
        stage: &'static str,
        reason: &str,
    ) -> bool {
        let now = Utc::now();
        let item = manifold_aws::quarantine::QuarantinedPayload {
            id: manifold_aws::quarantine::QuarantinedPayload::id_for(&format!("crm:{stage}:{body}"), now),
            channel: "crm".into(),
            account: crm.to_owned(),
            stage: stage.into(),
            reason: reason.to_owned(),
            trace_id: crate::trace::mint(),
            received_at: now,
            payload: body.to_owned(),
            replayed_at: None,
        };
        self.quarantine.get().put(&item).await.is_ok()
    }

    /// One job, behind the CRM account's breaker.
    pub async fn crm_job(&self, job: &CrmJob, now: DateTime<Utc>) -> Result<(), Failure> {
        let config = self.config().await;
        let Some(crm) = config.crms.iter().find(|c| c.id == job.crm()).cloned() else {
            return Err(Failure::permanent("crm", format!("no CRM account {:?} in the configuration", job.crm())));
        };
        if !crm.enabled {
            info!(crm = %crm.id, "CRM account disabled: job dropped");
            return Ok(());
        }
        let breaker = CircuitBreaker::new(
            DynamoBreakerStore::new(self.ddb.get().clone(), &self.env.state_table),
            format!("crm#{}", crm.id),
            self.settings.push.breaker,
        );
        let admission = breaker.admit(now).await.map_err(|e| Failure::Transient(e.to_string().into()))?;
        let result = match job {
            CrmJob::Upsert { customer_ids, trace_id, .. } => self.crm_upsert(&crm, customer_ids, trace_id, now).await,
            CrmJob::Forget { customer_id, record_id, trace_id, .. } => {
                self.crm_forget(&crm, customer_id, record_id.as_deref(), trace_id).await
            }
        };
        let failed = matches!(result, Err(Failure::Transient(_)));
        if let Err(e) = breaker.record(admission, failed, Utc::now()).await {
            warn!(error = %e, "breaker not updated");
        }
        result
    }

    async fn crm_upsert(
        &self,
        crm: &CrmAccount,
        ids: &[String],
        trace_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), Failure> {
        let store = self.customers.get().clone();
        let customers = store.many(ids).await?;
        let mut ignored = 0;
        let changed = self.changed_for(crm, &*store, &customers, &mut ignored).await?;
        if changed.is_empty() {
            return Ok(());
        }
        let ctx = CallContext::new(trace_id);
        let hashes: HashMap<String, String> =
            changed.iter().map(|(c, contact)| (c.id.clone(), content_hash(&contact.properties))).collect();
        for chunk in changed.chunks(crm.batch_limit()) {
            let contacts: Vec<CrmContact> = chunk.iter().map(|(_, c)| c.clone()).collect();
            let (contacts, ctx) = (&contacts, &ctx);
            let upserted = self.with_crm(crm, |c| async move { c.upsert(contacts, ctx).await }).await?;
            for u in upserted {
                let Some(hash) = hashes.get(&u.customer_id) else { continue };
                let sent = CrmSent {
                    customer_id: u.customer_id.clone(),
                    hash: hash.clone(),
                    crm_record_id: u.crm_record_id.clone(),
                    trace_id: trace_id.to_owned(),
                    at: now,
                };
                self.record_crm_delivery(&crm.id, &sent).await?;
            }
        }
        info!(crm = %crm.id, customers = changed.len(), "customers sent to the CRM");
        Ok(())
    }

    async fn crm_forget(
        &self,
        crm: &CrmAccount,
        customer_id: &str,
        record_id: Option<&str>,
        trace_id: &str,
    ) -> Result<(), Failure> {
        let ctx = &CallContext::new(trace_id);
        let outcome = self.with_crm(crm, |c| async move { c.forget(customer_id, record_id, ctx).await }).await?;
        let store = self.customers.get().clone();
        store.forget_sent(&crm.id, customer_id).await?;
        if let Some(record) = record_id {
            store.release(&crate::customers::crm_claim(&crm.id, record)).await?;
        }
        match outcome {
            CrmForgotten::Unsupported(why) => warn!(crm = %crm.id, customer_id, why, "CRM cannot erase: do it by hand"),
            other => info!(crm = %crm.id, customer_id, outcome = ?other, "CRM erased its copy"),
        }
        Ok(())
    }
}

fn connector_failure(e: manifold_connectors::ConnectorError) -> Failure {
    if e.is_retryable() { Failure::Transient(Box::new(e)) } else { Failure::permanent("crm", e.to_string()) }
}

impl App {
    /// `POST /v1/crm/{crm}`: a CRM's signed webhook (HubSpot v3). Verified against the account's
    /// client secret; each change of a property the account owns (`owns`) is handed to the
    /// customers function. Changes of other properties are acknowledged and ignored: a CRM never
    /// rewrites order history. A verified body that cannot be read is quarantined.
    pub async fn crm_webhook(
        &self,
        crm_id: &str,
        uri: &str,
        headers: &http::HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> crate::webhook::WebhookResponse {
        use crate::webhook::WebhookResponse as Answer;
        use manifold_connectors::crm::hubspot;
        let trace_id =
            crate::trace::from_header(headers.get(manifold_telemetry::TRACE_HEADER).and_then(|v| v.to_str().ok()));
        let config = self.config().await;
        let Some(crm) = config.crms.iter().find(|c| c.id == crm_id && c.enabled && c.kind == CrmKind::Hubspot) else {
            return Answer::new(404, format!("no HubSpot CRM account {crm_id:?} takes webhooks here"), &trace_id);
        };
        let creds = match self.secrets.secret(&crm.secret).await {
            Ok(secret) => CrmCredentials::from_secret_string(&secret).ok(),
            Err(e) => return Answer::new(503, format!("CRM credentials unavailable: {e}"), &trace_id),
        };
        let Some(client_secret) = creds.and_then(|c| c.client_secret) else {
            return Answer::new(
                500,
                format!("CRM {crm_id}: its secret holds no client_secret to verify with"),
                &trace_id,
            );
        };
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let verified = hubspot::verify_hubspot_v3(
            &client_secret,
            "POST",
            uri,
            body,
            header(hubspot::TIMESTAMP_HEADER),
            header(hubspot::SIGNATURE_V3_HEADER),
            now,
        );
        if let Err(e) = verified {
            manifold_telemetry::MetricSet::new()
                .dim("Channel", "crm")
                .dim("Operation", "webhook")
                .count("SignatureRejected", 1)
                .emit();
            warn!(crm = crm_id, error = %e, "CRM webhook refused");
            return Answer::new(401, format!("signature refused: {e}"), &trace_id);
        }
        let events = match hubspot::parse_hubspot_events(body) {
            Ok(events) => events,
            Err(e) => {
                let reason = format!("HubSpot webhook body unreadable: {e}");
                let item = manifold_aws::quarantine::QuarantinedPayload {
                    id: manifold_aws::quarantine::QuarantinedPayload::new_id(),
                    channel: "crm".into(),
                    account: crm_id.to_owned(),
                    stage: "crm_webhook".into(),
                    reason: reason.clone(),
                    trace_id: trace_id.clone(),
                    received_at: now,
                    payload: String::from_utf8_lossy(body).into_owned(),
                    replayed_at: None,
                };
                return match self.quarantine.get().put(&item).await {
                    Ok(()) => Answer::new(200, format!("quarantined: {reason}"), &trace_id),
                    Err(e) => Answer::new(503, format!("cannot keep the payload: {e}"), &trace_id),
                };
            }
        };
        let owned: Vec<CrmUpdateMessage> = events
            .into_iter()
            .filter_map(|e| match e {
                hubspot::HubspotEvent::PropertyChange(c) if crm.owns.values().any(|p| *p == c.property_name) => {
                    Some(CrmUpdateMessage {
                        crm: crm.id.clone(),
                        record_id: c.object_id,
                        property: c.property_name,
                        value: c.property_value,
                    })
                }
                _ => None,
            })
            .collect();
        let Some(queue) = self.settings.customers_queue_url.as_deref() else {
            return Answer::new(500, "CUSTOMERS_QUEUE_URL is not set", &trace_id);
        };
        for update in &owned {
            let body = serde_json::to_string(update).unwrap_or_default();
            if let Err(e) = self.sqs.get().send_message().queue_url(queue).message_body(body).send().await {
                // HubSpot retries a delivery that is not answered 2xx: nothing is lost.
                return Answer::new(503, format!("cannot queue the update: {e}"), &trace_id);
            }
        }
        Answer::new(200, format!("{} owned change(s) queued", owned.len()), &trace_id)
    }
}

/// The update the webhook function queues for the customers function.
type CrmUpdateMessage = crate::customers::CrmUpdate;
