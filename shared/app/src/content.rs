//! Product content: the ERP's or PIM's titles, descriptions, attributes and images in, and every
//! channel listing kept showing them, sending only what changed.
//!
//! - **In**: `PUT /v1/products/{sku}` and `POST /v1/products/import` (a JSON array), on the
//!   IAM-authorized inventory API. Each SKU's content is a canonical [`ProductContent`] in the content
//!   book ([`manifold_aws::content`]); content older than the stored one is refused as stale (409).
//! - **Out**: the `images` sync tier (daily by default; it carries all product content) runs
//!   [`App::content_page`] per account: each SKU the account lists gets the content its channel takes
//!   ([`manifold_connectors::content::support`]), hashed per part (the text, and each image at its
//!   position) and compared with what the listing was last given; only a differing part becomes a
//!   content job on the channel's push queue, so one changed image is that image's call alone.
//! - A channel that takes no content (or not some field) says so once in the run's note, not as a
//!   failure per SKU; SKUs of an account whose listings were never synced wait for that sync, since
//!   content is written to listings by the ids their listing read gives.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt, stream};
use manifold_aws::content::{ContentWrite, DeliveredContent};
use manifold_connectors::content::{self, ContentImages, ContentSupport, ContentText, ContentUpdate, ImageFlow};
use manifold_domain::{Image, ProductContent, Sku, config::AccountConfig};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use tracing::info;

use crate::{
    App,
    listings::{ListingKey, Lookup},
    outcome::Failure,
    push::{ContentJob, PushMessage},
};

/// The stage of a [`Failure`] for stale content (the API answers 409).
pub const STALE_CONTENT: &str = "stale_content";

/// The status the inventory API answers a failure with: 409 for stale content, else as for prices
/// and counts ([`crate::prices::api_status`]).
pub fn api_status(failure: &Failure) -> u16 {
    match failure {
        Failure::Permanent { stage: STALE_CONTENT, .. } => 409,
        other => crate::prices::api_status(other),
    }
}

/// Content records read per page of a content run.
pub const CONTENT_PAGE: usize = 100;

/// Concurrent queue sends of one page.
const SEND_CONCURRENCY: usize = 8;

/// At most this many images per product (Amazon takes 9, Etsy 10, Shopify and eBay 24).
const MAX_IMAGES: usize = 24;

/// A SKU's content as the ERP or PIM sends it (`PUT /v1/products/{sku}`, a row of an import).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContentInput {
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub images: Vec<Image>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Shipping weight of one unit, in grams.
    #[serde(default)]
    pub weight_grams: Option<u32>,
    /// When the source changed it (RFC 3339); now when absent. Older than the stored content is stale.
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
}

/// An import row's SKU and the rest of it as `T`, whose unknown fields are refused (serde's
/// `flatten` would let them through).
pub(crate) fn import_row<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<(String, T), String> {
    let serde_json::Value::Object(mut row) = value else { return Err("a row must be a JSON object".into()) };
    let Some(serde_json::Value::String(sku)) = row.remove("sku") else {
        return Err("missing field `sku` (a string)".into());
    };
    let rest = serde_json::from_value(serde_json::Value::Object(row)).map_err(|e| e.to_string())?;
    Ok((sku, rest))
}

impl ContentInput {
    /// The canonical content of `sku`; the error says what is wrong.
    pub fn to_content(&self, sku: &str, now: DateTime<Utc>) -> Result<ProductContent, String> {
        let sku = Sku::new(sku).map_err(|e| e.to_string())?;
        let title = self.title.trim();
        if title.is_empty() || title.chars().count() > 500 {
            return Err("title must be 1 to 500 characters".into());
        }
        if self.images.len() > MAX_IMAGES {
            return Err(format!("{} images; at most {MAX_IMAGES} are kept per product", self.images.len()));
        }
        for (i, image) in self.images.iter().enumerate() {
            let parsed = url::Url::parse(&image.url).map_err(|e| format!("images[{i}].url {:?}: {e}", image.url))?;
            if !matches!(parsed.scheme(), "https" | "http") {
                return Err(format!("images[{i}].url must be an http(s) URL, not {:?}", image.url));
            }
            if let Some(c) = &image.checksum
                && !(c.len() == 64 && c.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(format!("images[{i}].checksum must be a SHA-256 in hex (64 characters)"));
            }
        }
        if self.weight_grams == Some(0) {
            return Err("weight_grams must be positive (grams of one unit)".into());
        }
        if let Some(name) = self.attributes.keys().find(|k| k.trim().is_empty()) {
            return Err(format!("attribute name {name:?} is blank"));
        }
        Ok(ProductContent {
            sku,
            title: title.to_owned(),
            description: self.description.clone().filter(|d| !d.trim().is_empty()),
            attributes: self.attributes.clone(),
            images: self.images.clone(),
            tags: self.tags.clone(),
            weight_grams: self.weight_grams,
            updated_at: self.updated_at.unwrap_or(now),
        })
    }
}

/// What a content run did for one page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContentPage {
    /// Content records read.
    pub examined: u64,
    /// Content jobs queued (listings whose content differs from what they were given).
    pub pushed: u64,
    /// SKUs waiting for the account's first listing sync.
    pub waiting: u64,
    pub next: Option<String>,
    /// What the channel does not take, said once per run (on its first page).
    pub note: Option<String>,
}

fn digest(value: &impl Serialize) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    hex::encode(&sha2::Sha256::digest(&bytes)[..16])
}

/// The text a channel takes of `content` (`None` when it takes no text).
fn text_for(support: &ContentSupport, content: &ProductContent) -> Option<ContentText> {
    let text = ContentText {
        title: support.title.then(|| content.title.clone()),
        description: if support.description { content.description.clone() } else { None },
        attributes: if support.attributes { content.attributes.clone() } else { BTreeMap::new() },
    };
    (support.title || support.description || support.attributes).then_some(text)
}

/// The job that brings a listing from what it was given (`delivered`) to `content`, or `None` when
/// it shows it already.
pub(crate) fn content_job(
    account: &AccountConfig,
    listing: &manifold_connectors::Listing,
    content: &ProductContent,
    delivered: Option<&DeliveredContent>,
) -> Option<ContentJob> {
    let support = content::support(account.channel);
    let text = text_for(support, content);
    let text_hash = text.as_ref().map(digest);
    let image_hashes: Vec<String> =
        if support.images == ImageFlow::Unsupported { Vec::new() } else { content.images.iter().map(digest).collect() };
    let (sent_text, sent_images) =
        delivered.map_or((None, &[][..]), |d| (d.text_hash.as_ref(), d.image_hashes.as_slice()));
    let text = text.filter(|_| text_hash.as_ref() != sent_text);
    // Positions whose image differs, and those past the new list that the listing was given (the
    // source removed them).
    let changed: Vec<usize> = (0..image_hashes.len().max(sent_images.len()))
        .filter(|i| image_hashes.get(*i) != sent_images.get(*i))
        .collect();
    let images = (!changed.is_empty()).then(|| ContentImages { images: content.images.clone(), changed });
    if text.is_none() && images.is_none() {
        return None;
    }
    Some(ContentJob {
        channel: account.channel,
        account: account.account.clone(),
        update: ContentUpdate {
            sku: content.sku.clone(),
            channel_sku: listing.sku.clone(),
            ids: listing.ids.clone(),
            text,
            images,
        },
        text_hash,
        image_hashes,
        updated_at: content.updated_at,
    })
}

/// Whether two SKUs' content is the same as far as the channel takes it.
fn same_for(support: &ContentSupport, a: &ProductContent, b: &ProductContent) -> bool {
    text_for(support, a) == text_for(support, b) && (support.images == ImageFlow::Unsupported || a.images == b.images)
}

/// One account's view of a SKU's content, as `manifold products show` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountContent {
    pub channel: manifold_domain::Channel,
    pub account: String,
    pub channel_sku: String,
    /// What the channel takes (title, description, attributes, images).
    pub takes: Vec<&'static str>,
    /// What the next content run sends this listing (`text`, `image 2`, ...): empty when it shows
    /// the content already, or when the channel takes none.
    pub pending: Vec<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub trace_id: Option<String>,
}

/// A SKU's content and where each account stands with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContentStatus {
    pub sku: String,
    pub content: Option<ProductContent>,
    pub accounts: Vec<AccountContent>,
}

/// The run's word on what `support` leaves out (`None` when the channel takes everything).
fn support_note(account: &AccountConfig, support: &ContentSupport) -> Option<String> {
    let left = support.unsupported();
    if left.is_empty() {
        return None;
    }
    let why = support.note.map(|n| format!(": {n}")).unwrap_or_default();
    Some(if support.any() {
        format!("{} does not take {} through its API{why}", account.channel, left.join(", "))
    } else {
        format!("{} takes no product content through its API{why}", account.channel)
    })
}

impl App {
    /// `PUT /v1/products/{sku}`: sets a SKU's content.
    pub async fn set_content(
        &self,
        sku: &str,
        input: &ContentInput,
        trace_id: &str,
        now: DateTime<Utc>,
    ) -> Result<ContentWrite, Failure> {
        let content = input.to_content(sku, now).map_err(|reason| Failure::permanent("content", reason))?;
        let write = self.content.set(&content, trace_id, now).await?;
        match &write {
            ContentWrite::Stale { current_updated_at } => {
                return Err(Failure::permanent(
                    STALE_CONTENT,
                    format!(
                        "{sku}: content updated at {current_updated_at} is already set; this one is from {}",
                        content.updated_at
                    ),
                ));
            }
            ContentWrite::Applied => info!(sku, images = content.images.len(), "product content set"),
            ContentWrite::Unchanged => {}
        }
        Ok(write)
    }

    /// `POST /v1/products/import`: a JSON array of `{sku, title, ...}`; bad and stale rows are
    /// reported with their row number, good rows applied.
    pub async fn import_content(
        &self,
        body: &str,
        trace_id: &str,
        now: DateTime<Utc>,
    ) -> Result<serde_json::Value, Failure> {
        let values: Vec<serde_json::Value> = serde_json::from_str(body)
            .map_err(|e| Failure::permanent("content", format!("body must be a JSON array of products: {e}")))?;
        let (mut applied, mut unchanged, mut errors) = (0_u64, 0_u64, Vec::new());
        for (i, value) in values.into_iter().enumerate() {
            let row = i + 1;
            let result = match import_row::<ContentInput>(value) {
                Ok((sku, input)) => self.set_content(&sku, &input, trace_id, now).await,
                Err(reason) => Err(Failure::permanent("content", reason)),
            };
            match result {
                Ok(ContentWrite::Applied) => applied += 1,
                Ok(_) => unchanged += 1,
                Err(Failure::Permanent { reason, .. }) => {
                    errors.push(serde_json::json!({ "row": row, "reason": reason }));
                }
                // A store failure stops the import; rows applied before are unchanged when retried.
                Err(e) => return Err(e),
            }
        }
        Ok(serde_json::json!({ "applied": applied, "unchanged": unchanged, "errors": errors }))
    }

    /// One page of an account's content run: the content after `cursor`, and a content job for each
    /// listing that shows something else.
    pub async fn content_page(
        &self,
        account: &AccountConfig,
        cursor: Option<&str>,
        trace_id: &str,
    ) -> Result<ContentPage, Failure> {
        let support = content::support(account.channel);
        let note = if cursor.is_none() { support_note(account, support) } else { None };
        if !support.any() {
            // Nothing to read: the run ends on its first page with the channel's reason.
            return Ok(ContentPage { note, ..ContentPage::default() });
        }
        let (records, next) = self.content.page(cursor, CONTENT_PAGE).await?;
        let mut page = ContentPage { examined: records.len() as u64, next, note, ..ContentPage::default() };
        if records.is_empty() {
            return Ok(page);
        }
        let keys: Vec<ListingKey> = records
            .iter()
            .map(|c| ListingKey {
                channel: account.channel,
                account: account.account.clone(),
                channel_sku: account.channel_sku_for(&c.sku),
            })
            .collect();
        let lookups = self.listings.lookup(&keys).await?;
        let channel_skus: Vec<String> = keys.iter().map(|k| k.channel_sku.clone()).collect();
        let delivered = self.content.delivered_of(account.channel, &account.account, &channel_skus).await?;
        let mut jobs = Vec::new();
        // Where content is the product's, its first SKU (in SKU order) speaks for its variants.
        let mut owners: BTreeMap<String, &ProductContent> = BTreeMap::new();
        let mut shared = 0_u64;
        for (content, lookup) in records.iter().zip(lookups) {
            match lookup {
                Lookup::NotListed => {}
                Lookup::Unsynced => page.waiting += 1,
                Lookup::Listed(l) => {
                    let key = support.key_of(&l.listing.ids, &l.listing.sku);
                    if let Some(owner) = owners.get(&key) {
                        shared += u64::from(!same_for(support, owner, content));
                        continue;
                    }
                    owners.insert(key, content);
                    if let Some(job) = content_job(account, &l.listing, content, delivered.get(&l.listing.sku)) {
                        jobs.push(PushMessage::Content(Box::new(job)));
                    }
                }
            }
        }
        let mut notes: Vec<String> = page.note.take().into_iter().collect();
        if shared > 0 {
            notes.push(format!(
                "{shared} SKU(s) share a {} product with an earlier SKU whose content differs: the product shows the earlier SKU's",
                account.channel
            ));
        }
        if page.waiting > 0 {
            notes.push(format!(
                "{} SKU(s) wait for the account's first listing sync: content is written to listings the channel shows",
                page.waiting
            ));
        }
        page.note = (!notes.is_empty()).then(|| notes.join("; "));
        let url = self.env.push_queues.get(&account.channel).ok_or_else(|| {
            Failure::permanent("content", format!("no push queue is configured for {}", account.channel))
        })?;
        page.pushed = jobs.len() as u64;
        stream::iter(jobs)
            .map(|job| async move {
                let body = job.to_body().map_err(|e| Failure::permanent("content", format!("cannot encode: {e}")))?;
                self.queue.send(url, &body, trace_id, None).await.map_err(Failure::from)
            })
            .buffer_unordered(SEND_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(page)
    }

    /// A SKU's content and, per enabled account, what its channel takes, what it was last given
    /// (when, under which trace id) and what the next run would send. Nothing is written.
    pub async fn content_status(&self, sku: &str) -> Result<ContentStatus, Failure> {
        let sku = Sku::new(sku).map_err(|e| Failure::permanent("content", e.to_string()))?;
        let content = self.content.get().get(&sku).await?;
        let config = self.config().await;
        let mut accounts = Vec::new();
        for account in config.enabled_accounts() {
            let support = content::support(account.channel);
            let channel_sku = account.channel_sku_for(&sku);
            let delivered = self
                .content
                .delivered_of(account.channel, &account.account, std::slice::from_ref(&channel_sku))
                .await?
                .remove(&channel_sku);
            let listing = manifold_connectors::Listing {
                sku: channel_sku.clone(),
                ids: manifold_connectors::ListingIds::default(),
                quantity: None,
                price: None,
                currency: None,
                seen_at: Utc::now(),
            };
            let job = content.as_ref().and_then(|c| content_job(account, &listing, c, delivered.as_ref()));
            let mut pending = Vec::new();
            if let Some(job) = job.filter(|_| support.any()) {
                if job.update.text.is_some() {
                    pending.push("text".to_owned());
                }
                let changed = job.update.images.map(|i| i.changed).unwrap_or_default();
                pending.extend(changed.into_iter().map(|p| format!("image {}", p + 1)));
            }
            let takes = [
                support.title.then_some("title"),
                support.description.then_some("description"),
                support.attributes.then_some("attributes"),
                (support.images != ImageFlow::Unsupported).then_some("images"),
            ]
            .into_iter()
            .flatten()
            .collect();
            accounts.push(AccountContent {
                channel: account.channel,
                account: account.account.to_string(),
                channel_sku,
                takes,
                pending,
                delivered_at: delivered.as_ref().map(|d| d.delivered_at),
                trace_id: delivered.map(|d| d.trace_id),
            });
        }
        Ok(ContentStatus { sku: sku.to_string(), content, accounts })
    }

    /// Records what listings took (the push consumer, after delivered content jobs).
    pub(crate) async fn record_delivered_content(&self, delivered: &[(ContentJob, String)], now: DateTime<Utc>) {
        for (job, trace_id) in delivered {
            let d = DeliveredContent {
                channel: job.channel,
                account: job.account.clone(),
                channel_sku: job.update.channel_sku.clone(),
                sku: job.update.sku.clone(),
                text_hash: job.text_hash.clone(),
                image_hashes: job.image_hashes.clone(),
                trace_id: trace_id.clone(),
                delivered_at: now,
            };
            if let Err(e) = self.content.record_delivery(&d).await {
                // The next run compares against the older delivery and sends the content again.
                tracing::warn!(sku = %job.update.sku, error = %e, "content delivered but not recorded");
            }
        }
    }
}

#[cfg(test)]
mod tests;
