//! Prices: the ERP's base prices in, each account's price out through the rules, only when it changed.
//!
//! - **In**: `PUT /v1/prices/{sku}` and `POST /v1/prices/import` (a JSON array or a CSV file), on the
//!   IAM-authorized inventory API. Each base price is a canonical [`Price`] with its history in the
//!   price book ([`manifold_aws::prices`]); one effective earlier than the stored one is refused as
//!   stale (409) and changes nothing.
//! - **Out**: a `prices` sync run of an account ([`App::price_page`], per the account's `prices`
//!   cadence, hourly by default) walks the price book a page at a time. Each SKU the account sells
//!   (its listings, or every SKU before its first listing sync) is priced through the rules
//!   ([`manifold_domain::rules::RuleBook::price`]) and compared with the price the account's channel
//!   last took; only a difference becomes a price job on the channel's push queue, whose consumer
//!   batches it within the channel's limits and records what the channel took.
//! - A price refused by the rules (below a floor, above a ceiling, in a currency the account cannot
//!   convert, or in a currency other than the one the listing shows) is never pushed: it is
//!   quarantined (stage `price`) with its reason, once per base price and reason.
//! - Promotion windows: the scheduler tick starts a `prices` run of every account at each window's
//!   start and end ([`App::price_windows_due`]), so a promotion begins and ends on time, not at the
//!   next hourly run.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt, stream};
use manifold_aws::{
    prices::{DeliveredPrice, PriceWrite},
    quarantine::QuarantinedPayload,
};
use manifold_domain::{
    AccountId, Amount, Channel, Currency, Price, Sku,
    config::AccountConfig,
    rules::{AppliedRule, PriceRefused},
};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::{
    App,
    listings::{ListingKey, Lookup},
    outcome::Failure,
    push::{PriceJob, PushMessage},
};

/// The stage of a [`Failure`] for a stale base price (the API answers 409).
pub const STALE_PRICE: &str = "stale_price";

/// The status the inventory API answers a failure with: 409 for a stale count or price (it lost to a
/// newer one; nothing changed), 400 for other refused input, 503 (retry) for the rest.
pub fn api_status(failure: &Failure) -> u16 {
    match failure {
        Failure::Permanent { stage: STALE_PRICE, .. } => 409,
        other => crate::ledger::inventory_status(other),
    }
}

/// Base prices read per page of a prices run.
pub const PRICE_PAGE: usize = 200;

/// Concurrent queue sends of one page.
const SEND_CONCURRENCY: usize = 8;

/// A base price as the ERP sends it (`PUT /v1/prices/{sku}`, a row of an import).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PriceInput {
    /// A decimal string (`"19.99"`) or a JSON number.
    pub amount: serde_json::Value,
    pub currency: String,
    #[serde(default)]
    pub compare_at: Option<serde_json::Value>,
    /// When the price takes effect (RFC 3339); now when absent. An older one than the SKU's current
    /// price is stale.
    #[serde(default)]
    pub effective_at: Option<DateTime<Utc>>,
    /// The ERP's reference of this change (kept in the history); the request's trace id by default.
    #[serde(default)]
    pub source_ref: Option<String>,
}

/// A CSV import row (flat: `sku,amount,currency[,compare_at][,effective_at][,source_ref]`).
#[derive(Debug, Deserialize)]
struct CsvRow {
    sku: String,
    amount: String,
    currency: String,
    #[serde(default)]
    compare_at: Option<String>,
    #[serde(default)]
    effective_at: Option<DateTime<Utc>>,
    #[serde(default)]
    source_ref: Option<String>,
}

fn amount_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl PriceInput {
    /// The canonical price of `sku`; the error says what is wrong.
    pub fn to_price(&self, sku: &str, now: DateTime<Utc>) -> Result<Price, String> {
        let sku = Sku::new(sku).map_err(|e| e.to_string())?;
        let currency = Currency::new(&self.currency).map_err(|e| e.to_string())?;
        let parse = |v: &serde_json::Value, what: &str| {
            let text = amount_text(v).ok_or_else(|| format!("{what} must be a decimal string or a number"))?;
            let amount = Amount::parse(&text, currency).map_err(|e| format!("{what}: {e}"))?;
            if amount.value().is_sign_negative() || amount.is_zero() {
                return Err(format!("{what} must be positive, not {text}"));
            }
            Ok(amount)
        };
        Ok(Price {
            sku,
            channel: None,
            currency,
            amount: parse(&self.amount, "amount")?,
            compare_at: self.compare_at.as_ref().map(|v| parse(v, "compare_at")).transpose()?,
            effective_at: self.effective_at.unwrap_or(now),
        })
    }
}

/// What a price run did for one page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PricePage {
    /// Base prices read.
    pub examined: u64,
    /// Price jobs queued (prices that differ from what the channel took).
    pub pushed: u64,
    /// Prices refused by the rules and quarantined.
    pub refused: u64,
    pub next: Option<String>,
}

/// The accounts to re-price, each with the promotion window edges (rule id, instant) that ask for it.
pub type WindowsDue = BTreeMap<(Channel, AccountId), Vec<(String, DateTime<Utc>)>>;

/// A SKU's price for one account, as `manifold rules test --sku` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PricePreview {
    pub channel: Channel,
    pub account: String,
    pub sku: String,
    pub base: Option<Price>,
    pub price: Option<Amount>,
    pub currency: Option<Currency>,
    pub rules: Vec<AppliedRule>,
    pub refused: Option<String>,
    pub last_delivered: Option<DeliveredPrice>,
}

impl App {
    /// `PUT /v1/prices/{sku}`: sets a SKU's base price.
    pub async fn set_price(
        &self,
        sku: &str,
        input: &PriceInput,
        trace_id: &str,
        now: DateTime<Utc>,
    ) -> Result<PriceWrite, Failure> {
        let price = input.to_price(sku, now).map_err(|reason| Failure::permanent("price", reason))?;
        let source_ref = input.source_ref.as_deref().unwrap_or(trace_id);
        let write = self.prices.set(&price, source_ref, trace_id, now).await?;
        match &write {
            PriceWrite::Stale { current_effective_at } => {
                return Err(Failure::permanent(
                    STALE_PRICE,
                    format!(
                        "{sku}: a price effective at {current_effective_at} is already set; this one is effective at {}",
                        price.effective_at
                    ),
                ));
            }
            PriceWrite::Applied => info!(sku, amount = %price.amount, currency = %price.currency, "base price set"),
            PriceWrite::Unchanged => {}
        }
        Ok(write)
    }

    /// `POST /v1/prices/import`: a JSON array of `{sku, amount, currency, ...}` or a CSV file with a
    /// header (`sku,amount,currency[,compare_at][,effective_at][,source_ref]`); bad and stale rows are
    /// reported with their row number, good rows applied.
    pub async fn import_prices(
        &self,
        body: &str,
        csv: bool,
        import_ref: &str,
        trace_id: &str,
        now: DateTime<Utc>,
    ) -> Result<serde_json::Value, Failure> {
        let rows: Vec<Result<(String, PriceInput), String>> = if csv {
            csv::Reader::from_reader(body.as_bytes())
                .deserialize::<CsvRow>()
                .map(|r| {
                    r.map(|r| {
                        let input = PriceInput {
                            amount: serde_json::Value::String(r.amount),
                            currency: r.currency,
                            compare_at: r.compare_at.filter(|c| !c.is_empty()).map(serde_json::Value::String),
                            effective_at: r.effective_at,
                            source_ref: r.source_ref.filter(|s| !s.is_empty()),
                        };
                        (r.sku, input)
                    })
                    .map_err(|e| e.to_string())
                })
                .collect()
        } else {
            let values: Vec<serde_json::Value> = serde_json::from_str(body).map_err(|e| {
                Failure::permanent("price", format!("body must be a JSON array of prices or a CSV file: {e}"))
            })?;
            values.into_iter().map(crate::content::import_row::<PriceInput>).collect()
        };
        let (mut applied, mut unchanged, mut errors) = (0_u64, 0_u64, Vec::new());
        for (i, row) in rows.into_iter().enumerate() {
            let row_number = i + 1;
            let result = match row {
                Ok((sku, mut input)) => {
                    input.source_ref.get_or_insert_with(|| format!("{import_ref}#{row_number}"));
                    self.set_price(&sku, &input, trace_id, now).await
                }
                Err(reason) => Err(Failure::permanent("price", reason)),
            };
            match result {
                Ok(PriceWrite::Applied) => applied += 1,
                Ok(_) => unchanged += 1,
                Err(Failure::Permanent { reason, .. }) => {
                    errors.push(serde_json::json!({ "row": row_number, "reason": reason }));
                }
                // A store failure stops the import: the caller retries it, and rows applied before
                // are recognised by their reference.
                Err(e) => return Err(e),
            }
        }
        Ok(serde_json::json!({ "applied": applied, "unchanged": unchanged, "errors": errors }))
    }

    /// One page of an account's prices run: the base prices after `cursor`, priced for the account,
    /// and a price job for each that differs from what the channel took.
    pub async fn price_page(
        &self,
        account: &AccountConfig,
        cursor: Option<&str>,
        trace_id: &str,
        now: DateTime<Utc>,
    ) -> Result<PricePage, Failure> {
        let (base, next) = self.prices.page(cursor, PRICE_PAGE).await?;
        let mut page = PricePage { examined: base.len() as u64, next, ..PricePage::default() };
        if base.is_empty() {
            return Ok(page);
        }
        let book = self.rule_book().await?;
        let keyed: Vec<(ListingKey, Price)> = base
            .into_iter()
            .map(|p| {
                let key = ListingKey {
                    channel: account.channel,
                    account: account.account.clone(),
                    channel_sku: account.channel_sku_for(&p.sku),
                };
                (key, p)
            })
            .collect();
        let keys: Vec<ListingKey> = keyed.iter().map(|(k, _)| k.clone()).collect();
        let lookups = self.listings.lookup(&keys).await?;
        let channel_skus: Vec<String> = keys.iter().map(|k| k.channel_sku.clone()).collect();
        let delivered = self.prices.delivered_of(account.channel, &account.account, &channel_skus).await?;
        let facts = if book.needs_product_facts() {
            let skus: Vec<Sku> = keyed.iter().map(|(_, p)| p.sku.clone()).collect();
            self.content.facts_of(&skus).await?
        } else {
            manifold_domain::rules::SkuFacts::new()
        };
        let mut jobs = Vec::new();
        for ((key, base), lookup) in keyed.into_iter().zip(lookups) {
            let listing = match lookup {
                Lookup::NotListed => continue,
                Lookup::Listed(l) => Some(l),
                Lookup::Unsynced => None,
            };
            let priced = book
                .price(account, &base, facts.get(&base.sku).map_or(&[], |f| f.tags.as_slice()), now)
                .and_then(|p| match listing.as_ref().and_then(|l| l.listing.currency) {
                    Some(shown) if shown != p.currency => {
                        Err(PriceRefused::CurrencyMismatch { base: p.currency, account: shown })
                    }
                    _ => Ok(p),
                });
            let priced = match priced {
                Ok(p) => p,
                Err(refused) => {
                    self.quarantine_price(account, &key.channel_sku, &base, &refused, trace_id, now).await?;
                    page.refused += 1;
                    continue;
                }
            };
            let same = delivered
                .get(&key.channel_sku)
                .is_some_and(|d| d.amount == priced.amount && d.currency == priced.currency);
            if same {
                continue;
            }
            let rules: Vec<String> = priced.rules.iter().map(|r| r.rule.clone()).collect();
            for applied in &priced.rules {
                info!(sku = %base.sku, rule = %applied.rule, effect = %applied.effect, "price rule applied");
            }
            let channel_item_id = listing
                .and_then(|l| l.listing.ids.item_id(account.channel))
                .or_else(|| account.item_ids.get(&key.channel_sku).cloned());
            jobs.push(PushMessage::Price(PriceJob {
                channel: account.channel,
                account: account.account.clone(),
                sku: base.sku.clone(),
                channel_sku: key.channel_sku,
                amount: priced.amount,
                currency: priced.currency,
                channel_item_id,
                effective_at: now,
                rules,
            }));
        }
        let url = self.env.push_queues.get(&account.channel).ok_or_else(|| {
            Failure::permanent("prices", format!("no push queue is configured for {}", account.channel))
        })?;
        page.pushed = jobs.len() as u64;
        stream::iter(jobs)
            .map(|job| async move {
                let body = job.to_body().map_err(|e| Failure::permanent("prices", format!("cannot encode: {e}")))?;
                self.queue.send(url, &body, trace_id, None).await.map_err(Failure::from)
            })
            .buffer_unordered(SEND_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(page)
    }

    async fn quarantine_price(
        &self,
        account: &AccountConfig,
        channel_sku: &str,
        base: &Price,
        refused: &PriceRefused,
        trace_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), Failure> {
        let reason = format!("price of {} not pushed: {refused}", base.sku);
        warn!(sku = %base.sku, reason = %reason, "price refused");
        let payload = serde_json::json!({
            "channel": account.channel, "account": account.account, "sku": base.sku,
            "channel_sku": channel_sku, "base": base, "refused": refused.to_string(),
            "fix": "correct the base price or the rule; the next prices run prices it again",
        });
        // The same base price refused for the same reason is kept once, however many runs meet it.
        let key = format!("price#{}#{}#{channel_sku}#{reason}", account.channel, account.account);
        let item = QuarantinedPayload {
            id: QuarantinedPayload::id_for(&key, base.effective_at),
            channel: account.channel.to_string(),
            account: account.account.to_string(),
            stage: "price".into(),
            reason,
            trace_id: trace_id.to_owned(),
            received_at: now,
            payload: payload.to_string(),
            replayed_at: None,
        };
        self.quarantine.put(&item).await?;
        Ok(())
    }

    /// Records the prices a channel took (the push consumer, after a delivered price job).
    pub(crate) async fn record_delivered_prices(&self, delivered: &[(PriceJob, String)], now: DateTime<Utc>) {
        for (job, trace_id) in delivered {
            let d = DeliveredPrice {
                channel: job.channel,
                account: job.account.clone(),
                channel_sku: job.channel_sku.clone(),
                sku: job.sku.clone(),
                amount: job.amount,
                currency: job.currency,
                rules: job.rules.clone(),
                trace_id: trace_id.clone(),
                delivered_at: now,
            };
            if let Err(e) = self.prices.record_delivery(&d).await {
                // The next run compares against the older delivery and sends the price again.
                warn!(sku = %job.sku, error = %e, "price delivered but not recorded");
            }
        }
    }

    /// A SKU's price for one account now under `config` (the running one, or a file about to be
    /// pushed), and why. Nothing is written.
    pub async fn price_preview(
        &self,
        config: &manifold_domain::config::ChannelConfig,
        channel: Channel,
        account: &str,
        sku: &str,
        now: DateTime<Utc>,
    ) -> Result<PricePreview, Failure> {
        let account = config
            .account(channel, account)
            .cloned()
            .ok_or_else(|| Failure::permanent("config", format!("unknown {channel} account {account:?}")))?;
        let sku = Sku::new(sku).map_err(|e| Failure::permanent("price", e.to_string()))?;
        let base = self.prices.get().get(&sku).await?;
        let channel_sku = account.channel_sku_for(&sku);
        let last_delivered = self
            .prices
            .delivered_of(channel, &account.account, std::slice::from_ref(&channel_sku))
            .await?
            .remove(&channel_sku);
        let mut preview = PricePreview {
            channel,
            account: account.account.to_string(),
            sku: sku.to_string(),
            base: base.clone(),
            price: None,
            currency: None,
            rules: Vec::new(),
            refused: None,
            last_delivered,
        };
        let Some(base) = base else {
            preview.refused = Some("no base price is set for this SKU".into());
            return Ok(preview);
        };
        let book = manifold_domain::rules::RuleBook::new(&config.rules)
            .map_err(|(path, reason)| Failure::permanent("rules", format!("{path}: {reason}")))?;
        let tags = self.content.get().get(&sku).await?.map(|c| c.tags).unwrap_or_default();
        match book.price(&account, &base, &tags, now) {
            Ok(p) => {
                preview.price = Some(p.amount);
                preview.currency = Some(p.currency);
                preview.rules = p.rules;
            }
            Err(e) => preview.refused = Some(e.to_string()),
        }
        Ok(preview)
    }

    /// The accounts to re-price because a promotion window of a price rule opened or closed in
    /// `(since, now]`: every enabled account the rule's scope covers, with the rules and edges.
    pub async fn price_windows_due(&self, since: DateTime<Utc>, now: DateTime<Utc>) -> Result<WindowsDue, Failure> {
        let book = self.rule_book().await?;
        let config = self.config().await;
        let mut due = WindowsDue::new();
        for (rule, edge) in book.price_window_edges() {
            if !(since < edge && edge <= now) {
                continue;
            }
            let Some(r) = book.rules().price.iter().find(|r| r.id == rule) else { continue };
            for a in config.enabled_accounts().filter(|a| r.scope.covers_account(a.channel, a.account.as_str())) {
                due.entry((a.channel, a.account.clone())).or_default().push((rule.clone(), edge));
            }
        }
        Ok(due)
    }
}
