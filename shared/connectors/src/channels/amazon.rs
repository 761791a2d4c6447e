//! Amazon Selling Partner API: Listings Items 2021-08-01 and Feeds 2021-06-30 for stock and prices,
//! Orders v0 for orders and shipment confirmation, Feeds for order acknowledgement and cancellation.
//!
//! - Credentials: `refresh_token`, `client_id`, `client_secret` (the LWA app): Login with Amazon access
//!   tokens (1 h) are refreshed by [`crate::token`] and sent as `x-amz-access-token`; a secret holding
//!   only `access_token` has it used as stored.
//! - Settings: `seller_id`, `marketplace_id`; optional `feed_threshold` (default 50): pushes larger than
//!   this go as one `JSON_LISTINGS_FEED` instead of one `patchListingsItem` per SKU; optional
//!   `cancel_reason` (default `NoInventory`), one of Amazon's [`CANCEL_REASONS`].
//! - Feeds: every feed is `createFeedDocument`, a PUT of the document to its pre-signed url, then
//!   `createFeed`. Amazon processes it minutes later, so a feed is answered as a [`Submission`] (feed id,
//!   operation, items in message order) and its verdict read later by `submission_result`: `getFeed`
//!   until `processingStatus` leaves `IN_QUEUE`/`IN_PROGRESS`, then the processing report
//!   (`getFeedDocument` of `resultFeedDocumentId`, its url downloaded, gunzipped when
//!   `compressionAlgorithm` is `GZIP`). The listings feed's report is JSON (`issues` with `messageId`
//!   and `severity`), the order feed's an XML `ProcessingReport` (`Result` with `MessageID` and
//!   `ResultCode`); an error names its message, so its item is rejected and the others delivered.
//!   Issues without a message (`MessageID` 0) reject every item.
//! - Failure classes of a processed feed: report errors are about the message's data (an unknown or
//!   already shipped order, an unknown SKU, an invalid value): permanent; errors whose text says
//!   Amazon failed internally ("internal error", "try again") are transient, as is a `CANCELLED` feed
//!   (nothing was applied: the same items can be sent again). A `FATAL` feed applied nothing and will
//!   fail again as sent: every item permanent, with the report's reason where it gives one.
//! - Orders: Orders v0 has no cancel or acknowledge operation. Both are a
//!   `POST_ORDER_ACKNOWLEDGEMENT_DATA` feed (XML `AmazonEnvelope`, `MessageType`
//!   `OrderAcknowledgement`, one `Message` per order): `StatusCode` `Success` acknowledges,
//!   `Failure` with every `Item/AmazonOrderItemCode` and its `CancelReason` cancels. `createFeed` is
//!   allowed about once per 2 minutes (burst 15), so acknowledgements are sent many orders per feed
//!   (`acknowledge_orders`).
//! - Listings: Listings Items `searchListingsItems` (`GET /listings/2021-08-01/items/{sellerId}`, 20 per
//!   page, `pagination.nextToken`) with `includedData=summaries,offers,fulfillmentAvailability`: the
//!   SKU, ASIN, offer price and quantity in one call per page, instead of a merchant listings report
//!   (asynchronous: request, poll, download) or a `getListingsItem` per SKU.
//! - Content: one `patchListingsItem` per listing (Amazon fetches each image URL itself): `replace` of
//!   `item_name` and `product_description` (`[{value, language_tag, marketplace_id}]`) for the text
//!   given, and of the image locators of the changed positions only (`main_product_image_locator`,
//!   then `other_product_image_locator_1` to `_8`: `[{media_location, marketplace_id}]`); a changed
//!   position past the end of the list is a `delete`. Amazon shows 9 images: more are left out, with a
//!   warning. `language_tag` is the setting of that name, else the marketplace's main language (none
//!   sent for marketplaces not in [`language_tag`]). `productType` is the setting `product_type`, else
//!   `PRODUCT`, which Amazon takes for patches of an existing listing; a merchant whose listings need
//!   their real type for these attributes pins it with the setting. `INVALID`, or an issue of severity
//!   `ERROR`, rejects that listing permanently with the issues' messages.
//! - Limits: token bucket per operation; `x-amzn-RateLimit-Limit` updates the rate, 429 `QuotaExceeded`.
//! - `fetch_order`: `{"order": getOrder .payload, "order_items": getOrderItems .payload.OrderItems}`
//!   with `NextToken` followed.
//! - Returns: Amazon notifies none for seller-fulfilled orders; the returns report
//!   (`GET_FLAT_FILE_RETURNS_DATA_BY_RETURN_DATE`, Reports 2021-06-30, tab-separated with a header row)
//!   is asked for by one sweep and read by the next (`sweep_returns`). Each report covers the last
//!   `returns_lookback_days` (setting, default 30) by return request date, so a return's later state
//!   (delivered back, refunded) is read again until it is old. Its rows are grouped by order:
//!   `{"order", "order_items", "returns": [row objects keyed by column name]}`. The resume is
//!   `{"report": id, "seen": {order id: digest of its rows}}`: an order whose rows are as the last
//!   report had them is neither fetched (getOrder allows one call a minute) nor handed on again.

use std::{fmt::Write as _, io::Read as _};

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use http::HeaderMap;
use manifold_domain::{Channel, Shipment, config::AccountConfig};
use serde_json::{Value, json};

use super::{encode, id_text, number, price_of, settle};
use crate::client::{ReturnsSweep, StockRead};
use crate::content::ContentUpdate;
use crate::{
    Credentials,
    client::{
        Accepted, CallContext, ChannelConnector, Listing, ListingIds, ListingPage, PriceUpdate, PushOutcome,
        StockUpdate, Submission, SubmissionState,
    },
    error::{ConnectorError, FailureClass},
    ratelimit::Signals,
    token::Token,
    transport::{Api, ApiParts, Dialect, Req, field, header, required},
};
use crate::{
    token::{CLIENT_ID, ClientAuth, Flow, Grant, Lifecycle},
    verify::scheme::Scheme,
};

/// This channel in the connector registry ([`super::module`]).
pub(crate) const MODULE: super::ConnectorModule = super::ConnectorModule {
    build: |account, creds, api| std::sync::Arc::new(Amazon::new(account, creds, api)),
    // Login with Amazon: access tokens live 1 h; the refresh token does not rotate.
    tokens: Lifecycle::Flow(Flow {
        grant: Grant::RefreshToken,
        endpoint: "https://api.amazon.com/auth/o2/token",
        auth: ClientAuth::SecretInBody,
        client_id: CLIENT_ID,
        client_secret: "client_secret",
        scope: None,
    }),
    // Notifications arrive on SQS / EventBridge, not over HTTP.
    webhooks: Scheme::NoWebhooks,
    // Keyed by SKU.
    item_id: |_| None,
    content: crate::content::ContentSupport {
        title: true,
        description: true,
        attributes: false,
        images: crate::content::ImageFlow::UrlImport,
        key: crate::content::ContentKey::Sku,
        note: Some("Amazon attributes are typed per product type; free attributes are not mapped onto them"),
    },
};

const DEFAULT_FEED_THRESHOLD: usize = 50;
/// The `productType` of content patches when the account pins none (setting `product_type`).
const DEFAULT_PRODUCT_TYPE: &str = "PRODUCT";
/// Image locator attributes of a listing: the main image and `other_product_image_locator_1..8`.
const MAX_IMAGES: usize = 9;

/// The `CancelReason` values the order-acknowledgement feed's schema allows.
pub const CANCEL_REASONS: [&str; 10] = [
    "NoInventory",
    "ShippingAddressUndeliverable",
    "CustomerExchange",
    "BuyerCanceled",
    "GeneralAdjustment",
    "CarrierCreditDecision",
    "RiskAssessmentInformationNotValid",
    "CarrierCoverageFailure",
    "CustomerReturn",
    "MerchandiseNotReceived",
];
const DEFAULT_CANCEL_REASON: &str = "NoInventory";

const FEEDS: &str = "/feeds/2021-06-30";
const REPORTS: &str = "/reports/2021-06-30";
const RETURNS_REPORT: &str = "GET_FLAT_FILE_RETURNS_DATA_BY_RETURN_DATE";
const LISTINGS_FEED: &str = "JSON_LISTINGS_FEED";
const ORDER_FEED: &str = "POST_ORDER_ACKNOWLEDGEMENT_DATA";
const JSON_CONTENT: &str = "application/json; charset=UTF-8";
const XML_CONTENT: &str = "text/xml; charset=UTF-8";

#[derive(Debug)]
struct AmazonDialect;

impl Dialect for AmazonDialect {
    fn authorize(&self, req: &mut Req, token: Option<&Token>) -> Result<(), ConnectorError> {
        // Pre-signed feed upload URLs carry their own authorization.
        if !req.path.starts_with("http") {
            req.headers.push(("x-amz-access-token", required(token)?.expose().to_owned()));
        }
        Ok(())
    }

    fn signals(&self, headers: &HeaderMap, _body: &Value) -> Signals {
        Signals {
            retry_after: crate::error::retry_after_header(headers),
            rate_per_second: header(headers, "x-amzn-ratelimit-limit").and_then(|v| v.parse().ok()),
            ..Signals::default()
        }
    }
}

/// An Amazon seller account in one marketplace.
#[derive(Debug)]
pub struct Amazon {
    api: Api,
    feed_threshold: usize,
}

/// A listing attribute patch for one SKU.
struct Patch<'a> {
    channel_sku: &'a str,
    path: &'static str,
    value: Value,
}

impl Amazon {
    pub fn new(_account: &AccountConfig, _creds: &Credentials, parts: ApiParts) -> Self {
        let feed_threshold =
            parts.settings.get("feed_threshold").and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_FEED_THRESHOLD);
        Self { api: Api::new(parts, AmazonDialect), feed_threshold }
    }

    fn ids(&self) -> Result<(String, String), ConnectorError> {
        Ok((self.api.parts.setting("seller_id")?.to_owned(), self.api.parts.setting("marketplace_id")?.to_owned()))
    }

    fn orders(&self, rest: &str) -> String {
        format!("/orders/{}/{rest}", self.api.parts.api_version)
    }

    async fn apply(
        &self,
        operation: &str,
        patches: Vec<Patch<'_>>,
        ctx: &CallContext,
    ) -> Result<PushOutcome, ConnectorError> {
        if patches.len() > self.feed_threshold {
            self.feed(operation, &patches, ctx).await
        } else {
            let mut outcome = PushOutcome::default();
            for p in patches {
                let result = self.patch_one(&p, ctx).await;
                settle(&mut outcome, &[p.channel_sku], result)?;
            }
            Ok(outcome)
        }
    }

    async fn patch_one(&self, p: &Patch<'_>, ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        let (seller, marketplace) = self.ids()?;
        let body = json!({
            "productType": "PRODUCT",
            "patches": [{ "op": "replace", "path": p.path, "value": p.value }],
        });
        let path = format!("/listings/2021-08-01/items/{seller}/{}", encode(p.channel_sku));
        let reply = self.api.send(Req::patch(path, body).query("marketplaceIds", marketplace), ctx).await?;
        let mut outcome = PushOutcome::default();
        if reply.body.get("status").and_then(Value::as_str) == Some("ACCEPTED") {
            outcome.delivered.push(p.channel_sku.to_owned());
        } else {
            let issues = reply.body.get("issues").map(Value::to_string).unwrap_or_default();
            outcome.rejected.push((
                p.channel_sku.to_owned(),
                ConnectorError::permanent(format!("listing patch not accepted: {issues}")),
            ));
        }
        Ok(outcome)
    }

    /// One listing's content as one `patchListingsItem` (see the module docs); `Err` when Amazon
    /// refused it, permanently for an `INVALID` submission, so the caller rejects only this listing.
    async fn patch_content(&self, item: &ContentUpdate, ctx: &CallContext) -> Result<(), ConnectorError> {
        let (seller, marketplace) = self.ids()?;
        let settings = &self.api.parts.settings;
        let language =
            settings.get("language_tag").map(String::as_str).filter(|t| !t.is_empty()).or(language_tag(&marketplace));
        let patches = content_patches(item, &marketplace, language);
        if let Some(images) = &item.images
            && images.images.len() > MAX_IMAGES
        {
            tracing::warn!(
                sku = %item.channel_sku,
                images = images.images.len(),
                "Amazon shows {MAX_IMAGES} images per listing; the rest are not sent"
            );
        }
        if patches.is_empty() {
            return Ok(());
        }
        let product_type =
            settings.get("product_type").map(String::as_str).filter(|t| !t.is_empty()).unwrap_or(DEFAULT_PRODUCT_TYPE);
        let body = json!({ "productType": product_type, "patches": patches });
        let path = format!("/listings/2021-08-01/items/{}/{}", encode(&seller), encode(&item.channel_sku));
        let reply = self.api.send(Req::patch(path, body).query("marketplaceIds", marketplace), ctx).await?;
        submission_verdict(&item.channel_sku, &reply.body)
    }

    /// One `JSON_LISTINGS_FEED` of `patches`: its items count as delivered once Amazon took the feed;
    /// the feed's report (read through `submission_result`) may reject some later.
    async fn feed(
        &self,
        operation: &str,
        patches: &[Patch<'_>],
        ctx: &CallContext,
    ) -> Result<PushOutcome, ConnectorError> {
        let (seller, _) = self.ids()?;
        let messages: Vec<Value> = patches
            .iter()
            .enumerate()
            .map(|(ix, p)| {
                json!({
                    "messageId": ix + 1,
                    "sku": p.channel_sku,
                    "operationType": "PATCH",
                    "productType": "PRODUCT",
                    "patches": [{ "op": "replace", "path": p.path, "value": p.value }],
                })
            })
            .collect();
        let content =
            json!({ "header": { "sellerId": seller, "version": "2.0", "issueLocale": "en_US" }, "messages": messages });
        let skus: Vec<String> = patches.iter().map(|p| p.channel_sku.to_owned()).collect();
        let submission = self
            .submit_feed(LISTINGS_FEED, JSON_CONTENT, content.to_string().into_bytes(), operation, skus.clone(), ctx)
            .await?;
        Ok(PushOutcome { delivered: skus, rejected: Vec::new(), submitted: vec![submission] })
    }

    /// `createFeedDocument`, the upload of `content` to its pre-signed url, `createFeed`.
    async fn submit_feed(
        &self,
        feed_type: &'static str,
        content_type: &'static str,
        content: Vec<u8>,
        operation: &str,
        items: Vec<String>,
        ctx: &CallContext,
    ) -> Result<Submission, ConnectorError> {
        let (_, marketplace) = self.ids()?;
        let doc =
            self.api.send(Req::post(format!("{FEEDS}/documents"), json!({ "contentType": content_type })), ctx).await?;
        let document_id = field(&doc.body, "/feedDocumentId")?.clone();
        let url = text(&doc.body, "/url")?;
        self.api.send(Req::new(http::Method::PUT, url).raw(content_type, content), ctx).await?;
        let create =
            json!({ "feedType": feed_type, "marketplaceIds": [marketplace], "inputFeedDocumentId": document_id });
        let created = self.api.send(Req::post(format!("{FEEDS}/feeds"), create), ctx).await?;
        let id = text(&created.body, "/feedId")?;
        tracing::info!(feed_id = %id, feed_type, operation, items = items.len(), "feed submitted");
        Ok(Submission { id, operation: operation.to_owned(), items })
    }

    /// One order-acknowledgement feed for `orders`, as one submission of `operation`.
    async fn order_feed(
        &self,
        operation: &str,
        orders: &[(&str, Verdict<'_>)],
        ctx: &CallContext,
    ) -> Result<Submission, ConnectorError> {
        let (seller, _) = self.ids()?;
        let xml = acknowledgement_feed(&seller, orders);
        let ids = orders.iter().map(|(id, _)| (*id).to_owned()).collect();
        self.submit_feed(ORDER_FEED, XML_CONTENT, xml.into_bytes(), operation, ids, ctx).await
    }

    /// The processing report of a feed: its document's url downloaded, gunzipped when compressed.
    async fn report(&self, document_id: &str, ctx: &CallContext) -> Result<Vec<u8>, ConnectorError> {
        self.document(FEEDS, document_id, ctx).await
    }

    /// A document of the Feeds or Reports API (`base`): its url downloaded, gunzipped when compressed.
    async fn document(&self, base: &str, document_id: &str, ctx: &CallContext) -> Result<Vec<u8>, ConnectorError> {
        let doc = self.api.send(Req::get(format!("{base}/documents/{}", encode(document_id))), ctx).await?.body;
        let url = text(&doc, "/url")?;
        let raw = self.api.send(Req::get(url).raw_reply(), ctx).await?.raw;
        match doc.get("compressionAlgorithm").and_then(Value::as_str) {
            None => Ok(raw.to_vec()),
            Some("GZIP") => {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(raw.as_ref())
                    .read_to_end(&mut out)
                    .map_err(|e| ConnectorError::transient("unreadable gzip processing report").with_source(e))?;
                Ok(out)
            }
            Some(other) => Err(ConnectorError::permanent(format!("unknown report compressionAlgorithm {other:?}"))),
        }
    }

    /// Asks for the returns report of the lookback window ending now; answers its id.
    async fn request_returns_report(&self, ctx: &CallContext) -> Result<String, ConnectorError> {
        let (_, marketplace) = self.ids()?;
        let lookback = super::returns_lookback(&self.api.parts.settings, 60)?;
        let end = Utc::now();
        let body = json!({
            "reportType": RETURNS_REPORT,
            "marketplaceIds": [marketplace],
            "dataStartTime": (end - lookback).to_rfc3339_opts(SecondsFormat::Secs, true),
            "dataEndTime": end.to_rfc3339_opts(SecondsFormat::Secs, true),
        });
        let created = self.api.send(Req::post(format!("{REPORTS}/reports"), body), ctx).await?.body;
        text(&created, "/reportId")
    }

    /// A finished returns report, as one `Return` document per order whose rows differ from `seen`
    /// (see the module docs), and the digests of every order's rows in it. An order Amazon no longer
    /// serves still gets its document (without the order), so ingest quarantines the rows with the
    /// reason instead of dropping them.
    async fn returns_documents(
        &self,
        document_id: &str,
        seen: &serde_json::Map<String, Value>,
        ctx: &CallContext,
    ) -> Result<(Vec<Value>, serde_json::Map<String, Value>), ConnectorError> {
        let bytes = self.document(REPORTS, document_id, ctx).await?;
        let text = String::from_utf8_lossy(&bytes);
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header: Vec<&str> = lines.next().map(|h| h.split('\t').map(str::trim).collect()).unwrap_or_default();
        let mut by_order: std::collections::BTreeMap<String, Vec<Value>> = std::collections::BTreeMap::new();
        for line in lines {
            let row: serde_json::Map<String, Value> =
                header.iter().zip(line.split('\t')).map(|(k, v)| ((*k).to_owned(), json!(v.trim()))).collect();
            let order = row.get("Order ID").and_then(Value::as_str).unwrap_or_default().to_owned();
            by_order.entry(order).or_default().push(Value::Object(row));
        }
        let (changed, digests) = super::changed_returns(by_order, seen);
        let mut docs = Vec::new();
        for (order_id, rows) in changed {
            let doc = match self.fetch_order(&order_id, ctx).await {
                Ok(order) => json!({ "order": order["order"], "order_items": order["order_items"], "returns": rows }),
                Err(e) if !e.is_retryable() => json!({ "order": null, "order_id": order_id, "returns": rows }),
                Err(e) => return Err(e),
            };
            docs.push(doc);
        }
        Ok((docs, digests))
    }

    async fn items(&self, order_id: &str, ctx: &CallContext) -> Result<Vec<Value>, ConnectorError> {
        let mut items = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut req = Req::get(self.orders(&format!("orders/{order_id}/orderItems")));
            if let Some(token) = next.take() {
                req = req.query("NextToken", token);
            }
            let body = self.api.send(req, ctx).await?.body;
            items.extend(field(&body, "/payload/OrderItems")?.as_array().cloned().unwrap_or_default());
            match body.pointer("/payload/NextToken").and_then(Value::as_str) {
                Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                _ => return Ok(items),
            }
        }
    }
}

/// Listings per `searchListingsItems` page (the documented maximum).
const LISTING_PAGE: &str = "20";

/// One `searchListingsItems` item as a listing: its summary for `marketplace` (ASIN), its offer's price
/// and its `DEFAULT` (merchant-fulfilled) quantity.
fn listing(item: &Value, marketplace: &str, now: DateTime<Utc>) -> Option<Listing> {
    let sku = item.get("sku").and_then(Value::as_str).filter(|s| !s.is_empty())?.to_owned();
    let in_marketplace = |list: &str| {
        item.get(list).and_then(Value::as_array).and_then(|l| {
            l.iter().find(|x| x.get("marketplaceId").and_then(Value::as_str).is_none_or(|m| m == marketplace))
        })
    };
    let offer = in_marketplace("offers");
    let quantity = item
        .get("fulfillmentAvailability")
        .and_then(Value::as_array)
        .and_then(|l| l.iter().find(|f| f.get("fulfillmentChannelCode").and_then(Value::as_str) == Some("DEFAULT")))
        .and_then(|f| f.get("quantity"))
        .and_then(Value::as_i64);
    Some(Listing {
        sku,
        ids: ListingIds {
            product: id_text(in_marketplace("summaries").and_then(|s| s.get("asin"))),
            ..ListingIds::default()
        },
        quantity,
        price: price_of(offer.and_then(|o| o.pointer("/price/amount"))),
        currency: offer
            .and_then(|o| o.pointer("/price/currencyCode"))
            .and_then(Value::as_str)
            .and_then(|c| c.parse().ok()),
        seen_at: now,
    })
}

/// The `language_tag` of a marketplace's main language, for the text attributes of content patches
/// (`None`: not known here, sent without one unless the account sets `language_tag`).
fn language_tag(marketplace: &str) -> Option<&'static str> {
    Some(match marketplace {
        "ATVPDKIKX0DER" => "en_US",
        "A2EUQ1WTGCTBG2" => "en_CA",
        "A1AM78C64UM0Y8" => "es_MX",
        "A2Q3Y263D00KWC" => "pt_BR",
        "A1F83G8C2ARO7P" => "en_GB",
        "A1PA6795UKMFR9" => "de_DE",
        "A13V1IB3VIYZZH" => "fr_FR",
        "APJ6JRA9NG5V4" => "it_IT",
        "A1RKKUPIHCS9HS" => "es_ES",
        "A1805IZSGTT6HS" => "nl_NL",
        "A2NODRKZP88ZB9" => "sv_SE",
        "A1C3SOZRARQ6R3" => "pl_PL",
        "A33AVAJ2PDY3EV" => "tr_TR",
        "A21TJRUUN4KGV" => "en_IN",
        "A1VC38T7YXB528" => "ja_JP",
        "A39IBJ37TRP1C6" => "en_AU",
        _ => return None,
    })
}

/// The attribute of the image at `position` (0: the main image).
fn image_locator(position: usize) -> String {
    if position == 0 {
        "/attributes/main_product_image_locator".to_owned()
    } else {
        format!("/attributes/other_product_image_locator_{position}")
    }
}

/// The patches of one listing's content: its text as given, and the image locators of the changed
/// positions only, so one changed image costs one patch of one attribute (Amazon fetches the URL).
fn content_patches(item: &ContentUpdate, marketplace: &str, language: Option<&str>) -> Vec<Value> {
    let text = |value: &str| {
        let mut entry = json!({ "value": value, "marketplace_id": marketplace });
        if let Some(tag) = language {
            entry["language_tag"] = json!(tag);
        }
        json!([entry])
    };
    let mut patches = Vec::new();
    if let Some(t) = &item.text {
        if let Some(title) = &t.title {
            patches.push(json!({ "op": "replace", "path": "/attributes/item_name", "value": text(title) }));
        }
        if let Some(description) = &t.description {
            patches.push(
                json!({ "op": "replace", "path": "/attributes/product_description", "value": text(description) }),
            );
        }
    }
    if let Some(images) = &item.images {
        let mut positions: Vec<usize> = images.changed.iter().copied().filter(|p| *p < MAX_IMAGES).collect();
        positions.sort_unstable();
        positions.dedup();
        for position in positions {
            let path = image_locator(position);
            patches.push(match images.images.get(position) {
                Some(image) => json!({ "op": "replace", "path": path,
                                       "value": [{ "media_location": image.url, "marketplace_id": marketplace }] }),
                // The list got shorter: the position has no image any more.
                None => json!({ "op": "delete", "path": path, "value": [{ "marketplace_id": marketplace }] }),
            });
        }
    }
    patches
}

/// A `ListingsItemSubmissionResponse` of a content patch: `ACCEPTED` without an `ERROR` issue is
/// taken; `INVALID` or an error issue is a permanent refusal with the issues' messages (Amazon found
/// the data wrong; sending it again changes nothing). Warnings are only logged.
fn submission_verdict(sku: &str, body: &Value) -> Result<(), ConnectorError> {
    let issues = body.get("issues").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let severity = |i: &Value| i.get("severity").and_then(Value::as_str).unwrap_or_default().to_owned();
    let describe = |i: &Value| {
        let code = id_text(i.get("code")).unwrap_or_default();
        let message = i.get("message").and_then(Value::as_str).unwrap_or_default();
        format!("{code} {message}").trim().to_owned()
    };
    for warning in issues.iter().filter(|i| severity(i) == "WARNING") {
        tracing::warn!(sku, issue = %describe(warning), "content patch accepted with a warning");
    }
    let errors: Vec<String> = issues.iter().filter(|i| severity(i) == "ERROR").map(describe).collect();
    let status = body.get("status").and_then(Value::as_str).unwrap_or("no status");
    if status == "ACCEPTED" && errors.is_empty() {
        return Ok(());
    }
    let why = if errors.is_empty() { "no issue given".to_owned() } else { errors.join("; ") };
    Err(ConnectorError::permanent(format!("{sku}: content patch {status}: {why}")))
}

/// A string field that must be present in a channel response.
fn text(body: &Value, pointer: &str) -> Result<String, ConnectorError> {
    field(body, pointer)?
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ConnectorError::transient(format!("malformed response: `{pointer}` is not a string")))
}

/// The account's `cancel_reason`, checked against Amazon's list before anything is sent.
fn cancel_reason(configured: Option<&str>) -> Result<&'static str, ConnectorError> {
    let wanted = configured.unwrap_or(DEFAULT_CANCEL_REASON);
    CANCEL_REASONS.iter().copied().find(|r| *r == wanted).ok_or_else(|| {
        ConnectorError::permanent(format!(
            "cancel_reason {wanted:?} is not one of Amazon's: {}",
            CANCEL_REASONS.join(", ")
        ))
    })
}

/// What an order-acknowledgement message says of its order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict<'a> {
    /// `Success`: the seller took the order.
    Take,
    /// `Failure`: every listed order item is cancelled, for `reason` (one of [`CANCEL_REASONS`]).
    Cancel { items: Vec<String>, reason: &'a str },
}

/// Text as XML character data or attribute value: the five predefined entities escaped.
fn xml_text(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains(['&', '<', '>', '"', '\'']) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out.into()
}

/// The `POST_ORDER_ACKNOWLEDGEMENT_DATA` document: one `Message` per order, numbered from 1 in order.
fn acknowledgement_feed(seller: &str, orders: &[(&str, Verdict<'_>)]) -> String {
    let mut xml = String::from(concat!(
        r#"<?xml version="1.0" encoding="UTF-8"?>"#,
        "\n",
        r#"<AmazonEnvelope xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation="amzn-envelope.xsd">"#,
    ));
    let _ = write!(
        xml,
        "<Header><DocumentVersion>1.01</DocumentVersion><MerchantIdentifier>{}</MerchantIdentifier></Header>",
        xml_text(seller)
    );
    xml.push_str("<MessageType>OrderAcknowledgement</MessageType>");
    for (ix, (order, verdict)) in orders.iter().enumerate() {
        let status = match verdict {
            Verdict::Take => "Success",
            Verdict::Cancel { .. } => "Failure",
        };
        let _ = write!(
            xml,
            "<Message><MessageID>{}</MessageID><OrderAcknowledgement><AmazonOrderID>{}</AmazonOrderID><StatusCode>{status}</StatusCode>",
            ix + 1,
            xml_text(order)
        );
        if let Verdict::Cancel { items, reason } = verdict {
            for item in items {
                let _ = write!(
                    xml,
                    "<Item><AmazonOrderItemCode>{}</AmazonOrderItemCode><CancelReason>{}</CancelReason></Item>",
                    xml_text(item),
                    xml_text(reason)
                );
            }
        }
        xml.push_str("</OrderAcknowledgement></Message>");
    }
    xml.push_str("</AmazonEnvelope>");
    xml
}

/// One error of a processing report.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ReportError {
    /// The message it is about (1-based); `None`: the feed as a whole (`MessageID` 0, no `messageId`).
    message: Option<usize>,
    code: String,
    text: String,
}

impl ReportError {
    /// Amazon's own trouble is worth another try; anything else is about the message's data.
    fn class(&self) -> FailureClass {
        let text = self.text.to_ascii_lowercase();
        if text.contains("internal error") || text.contains("try again") {
            FailureClass::Transient
        } else {
            FailureClass::Permanent
        }
    }
}

/// The errors of a processing report: the listings feed's JSON (`issues` of severity `ERROR`) for
/// stock and price submissions, the XML `ProcessingReport` (`Result` with `ResultCode` `Error`) for
/// order feeds. Warnings are not errors. An unreadable report is transient (read it again).
fn report_errors(operation: &str, report: &[u8]) -> Result<Vec<ReportError>, ConnectorError> {
    let unreadable = |what: String| ConnectorError::transient(format!("unreadable processing report: {what}"));
    let message = |n: usize| (n > 0).then_some(n);
    if matches!(operation, Submission::STOCK | Submission::PRICE) {
        let body: Value = serde_json::from_slice(report).map_err(|e| unreadable(e.to_string()))?;
        let issues = body.get("issues").and_then(Value::as_array).ok_or_else(|| unreadable("no `issues`".into()))?;
        return Ok(issues
            .iter()
            .filter(|i| i.get("severity").and_then(Value::as_str) == Some("ERROR"))
            .map(|i| ReportError {
                message: i
                    .get("messageId")
                    .and_then(Value::as_u64)
                    .and_then(|n| usize::try_from(n).ok())
                    .and_then(message),
                code: id_text(i.get("code")).unwrap_or_default(),
                text: i.get("message").and_then(Value::as_str).unwrap_or_default().to_owned(),
            })
            .collect());
    }
    let text = std::str::from_utf8(report).map_err(|e| unreadable(e.to_string()))?;
    let doc = roxmltree::Document::parse(text).map_err(|e| unreadable(e.to_string()))?;
    if !doc.descendants().any(|n| n.has_tag_name("ProcessingReport")) {
        return Err(unreadable("no ProcessingReport".into()));
    }
    let child = |n: roxmltree::Node<'_, '_>, name: &str| {
        n.children().find(|c| c.has_tag_name(name)).and_then(|c| c.text()).map(str::trim).unwrap_or_default().to_owned()
    };
    Ok(doc
        .descendants()
        .filter(|n| n.has_tag_name("Result") && child(*n, "ResultCode") == "Error")
        .map(|n| ReportError {
            message: child(n, "MessageID").parse().ok().and_then(message),
            code: child(n, "ResultMessageCode"),
            text: child(n, "ResultDescription"),
        })
        .collect())
}

/// Each item of a processed feed (`items[i]` is message `i + 1`): rejected with its errors, or with
/// `fatal` when the feed was refused as a whole, else delivered.
fn verdicts(items: &[String], errors: &[ReportError], fatal: Option<&str>) -> PushOutcome {
    let mut outcome = PushOutcome::default();
    for (ix, item) in items.iter().enumerate() {
        let mine: Vec<&ReportError> = errors.iter().filter(|e| e.message.is_none_or(|m| m == ix + 1)).collect();
        if mine.is_empty() {
            match fatal {
                Some(reason) => outcome.rejected.push((item.clone(), ConnectorError::permanent(reason))),
                None => outcome.delivered.push(item.clone()),
            }
            continue;
        }
        // Retryable only when every error of the item is.
        let class = if mine.iter().all(|e| e.class() == FailureClass::Transient) && fatal.is_none() {
            FailureClass::Transient
        } else {
            FailureClass::Permanent
        };
        let text = mine.iter().map(|e| format!("{} {}", e.code, e.text)).collect::<Vec<_>>().join("; ");
        outcome.rejected.push((item.clone(), ConnectorError::new(class, format!("{item}: {text}"))));
    }
    outcome
}

#[async_trait]
impl ChannelConnector for Amazon {
    fn channel(&self) -> Channel {
        Channel::Amazon
    }

    /// `patchListingsItem` takes one SKU by design; bulk goes through a feed above `feed_threshold`.
    fn max_batch(&self) -> usize {
        1
    }

    async fn push_stock(&self, items: &[StockUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        let patches = items
            .iter()
            .map(|i| Patch {
                channel_sku: &i.channel_sku,
                path: "/attributes/fulfillment_availability",
                value: json!([{ "fulfillment_channel_code": "DEFAULT", "quantity": i.quantity }]),
            })
            .collect();
        self.apply(Submission::STOCK, patches, ctx).await
    }

    async fn push_prices(&self, items: &[PriceUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        let (_, marketplace) = self.ids()?;
        let patches = items
            .iter()
            .map(|i| Patch {
                channel_sku: &i.channel_sku,
                path: "/attributes/purchasable_offer",
                value: json!([{
                    "marketplace_id": marketplace,
                    "currency": i.currency.as_str(),
                    "our_price": [{ "schedule": [{ "value_with_tax": number(&i.amount) }] }],
                }]),
            })
            .collect();
        self.apply(Submission::PRICE, patches, ctx).await
    }

    /// One `patchListingsItem` per listing (see the module docs): a listing Amazon refuses is rejected
    /// alone; a retryable failure ends the push so it is sent again.
    async fn push_content(&self, items: &[ContentUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        super::each_listing(items, |item| self.patch_content(item, ctx)).await
    }

    async fn push_tracking(&self, shipment: &Shipment, ctx: &CallContext) -> Result<(), ConnectorError> {
        let (_, marketplace) = self.ids()?;
        let id = &shipment.channel_order_id;
        let lines: Vec<Value> = if shipment.lines.is_empty() || shipment.lines.iter().any(|l| l.line_id.is_none()) {
            self.items(id, ctx)
                .await?
                .iter()
                .map(|i| json!({ "orderItemId": i.get("OrderItemId"), "quantity": i.get("QuantityOrdered") }))
                .collect()
        } else {
            shipment.lines.iter().map(|l| json!({ "orderItemId": l.line_id, "quantity": l.quantity })).collect()
        };
        let body = json!({
            "marketplaceId": marketplace,
            "packageDetail": {
                "packageReferenceId": shipment.id,
                "carrierCode": shipment.carrier.as_deref().unwrap_or("Other"),
                "trackingNumber": shipment.tracking_number,
                "shipDate": shipment.shipped_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                "orderItems": lines,
            },
        });
        self.api.send(Req::post(self.orders(&format!("orders/{id}/shipmentConfirmation")), body), ctx).await.map(drop)
    }

    async fn fetch_order(&self, channel_order_id: &str, ctx: &CallContext) -> Result<Value, ConnectorError> {
        let body = self.api.send(Req::get(self.orders(&format!("orders/{channel_order_id}"))), ctx).await?.body;
        let order = field(&body, "/payload")?.clone();
        let order_items = self.items(channel_order_id, ctx).await?;
        Ok(json!({ "order": order, "order_items": order_items }))
    }

    /// getOrders, then getOrderItems per order (paced by the limiter: the classic throttling trap).
    async fn list_orders_since(&self, since: DateTime<Utc>, ctx: &CallContext) -> Result<Vec<Value>, ConnectorError> {
        self.list_orders_since_unheld(since, &crate::NoneHeld, ctx).await
    }

    /// `getOrders` gives summaries; the items of an order held at its `LastUpdateDate` are not read.
    async fn list_orders_since_unheld(
        &self,
        since: DateTime<Utc>,
        held: &dyn crate::HeldOrders,
        ctx: &CallContext,
    ) -> Result<Vec<Value>, ConnectorError> {
        let (_, marketplace) = self.ids()?;
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut req = Req::get(self.orders("orders")).query("MarketplaceIds", marketplace.clone());
            req = match next.take() {
                Some(token) => req.query("NextToken", token),
                None => req.query("LastUpdatedAfter", since.to_rfc3339_opts(SecondsFormat::Secs, true)),
            };
            let body = self.api.send(req, ctx).await?.body;
            for order in field(&body, "/payload/Orders")?.as_array().cloned().unwrap_or_default() {
                let Some(id) = order.get("AmazonOrderId").and_then(Value::as_str).map(str::to_owned) else { continue };
                let updated = order.get("LastUpdateDate").and_then(Value::as_str).and_then(|t| t.parse().ok());
                if let Some(updated) = updated
                    && held.holds(&id, updated).await
                {
                    continue;
                }
                let order_items = self.items(&id, ctx).await?;
                out.push(json!({ "order": order, "order_items": order_items }));
            }
            match body.pointer("/payload/NextToken").and_then(Value::as_str) {
                Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                _ => return Ok(out),
            }
        }
    }

    /// One `Success` message per order, all in one feed (the `createFeed` quota is a few per hour).
    async fn acknowledge_order(&self, channel_order_id: &str, ctx: &CallContext) -> Result<Accepted, ConnectorError> {
        let ids = [channel_order_id.to_owned()];
        let mut submitted = self.acknowledge_orders(&ids, ctx).await?;
        Ok(submitted.pop().map_or(Accepted::Done, Accepted::Submitted))
    }

    async fn acknowledge_orders(&self, ids: &[String], ctx: &CallContext) -> Result<Vec<Submission>, ConnectorError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let orders: Vec<(&str, Verdict<'_>)> = ids.iter().map(|id| (id.as_str(), Verdict::Take)).collect();
        Ok(vec![self.order_feed(Submission::ACKNOWLEDGE, &orders, ctx).await?])
    }

    /// A `Failure` acknowledgement of every item of the order, with the account's `cancel_reason`
    /// (Amazon takes only its own list; `reason` is logged).
    async fn cancel_order(
        &self,
        channel_order_id: &str,
        reason: &str,
        ctx: &CallContext,
    ) -> Result<Accepted, ConnectorError> {
        let code = cancel_reason(self.api.parts.settings.get("cancel_reason").map(String::as_str))?;
        let items: Vec<String> =
            self.items(channel_order_id, ctx).await?.iter().filter_map(|i| id_text(i.get("OrderItemId"))).collect();
        if items.is_empty() {
            return Err(ConnectorError::permanent(format!("order {channel_order_id} has no items to cancel")));
        }
        tracing::info!(
            order = channel_order_id,
            cancel_reason = code,
            reason,
            "cancelling through an acknowledgement feed"
        );
        let orders = [(channel_order_id, Verdict::Cancel { items, reason: code })];
        self.order_feed(Submission::CANCEL, &orders, ctx).await.map(Accepted::Submitted)
    }

    async fn submission_result(
        &self,
        submission: &Submission,
        ctx: &CallContext,
    ) -> Result<SubmissionState, ConnectorError> {
        let feed = self.api.send(Req::get(format!("{FEEDS}/feeds/{}", encode(&submission.id))), ctx).await?.body;
        let status = text(&feed, "/processingStatus")?;
        let report_id = feed.get("resultFeedDocumentId").and_then(Value::as_str).filter(|d| !d.is_empty());
        let errors = match (status.as_str(), report_id) {
            ("IN_QUEUE" | "IN_PROGRESS", _) => return Ok(SubmissionState::Pending),
            ("CANCELLED", _) => {
                let mut outcome = PushOutcome::default();
                let e = ConnectorError::transient(format!(
                    "feed {} was cancelled before processing: nothing was applied, send it again",
                    submission.id
                ));
                outcome.reject_all(submission.items.iter().map(String::as_str), &e);
                return Ok(SubmissionState::Done(outcome));
            }
            ("DONE" | "FATAL", Some(doc)) => report_errors(&submission.operation, &self.report(doc, ctx).await?)?,
            ("FATAL", None) => Vec::new(),
            ("DONE", None) => {
                return Err(ConnectorError::transient(format!("feed {} is DONE without a report", submission.id)));
            }
            (other, _) => {
                return Err(ConnectorError::transient(format!(
                    "feed {}: unknown processingStatus {other:?}",
                    submission.id
                )));
            }
        };
        let fatal = (status == "FATAL").then(|| format!("feed {} was rejected as a whole (FATAL)", submission.id));
        Ok(SubmissionState::Done(verdicts(&submission.items, &errors, fatal.as_deref())))
    }

    /// Reads the returns report the previous sweep asked for, when Amazon has finished it, and asks for
    /// the next one; while Amazon is still building it, waits for the next sweep.
    async fn sweep_returns(&self, resume: Option<&str>, ctx: &CallContext) -> Result<ReturnsSweep, ConnectorError> {
        let state: Value = resume.and_then(|r| serde_json::from_str(r).ok()).unwrap_or_default();
        let mut seen = state.get("seen").and_then(Value::as_object).cloned().unwrap_or_default();
        let mut docs = Vec::new();
        if let Some(id) = state.get("report").and_then(Value::as_str) {
            let report = self.api.send(Req::get(format!("{REPORTS}/reports/{}", encode(id))), ctx).await?.body;
            match report.get("processingStatus").and_then(Value::as_str) {
                Some("IN_QUEUE" | "IN_PROGRESS") => {
                    return Ok(ReturnsSweep { docs, resume: resume.map(str::to_owned) });
                }
                Some("DONE") => {
                    let document = text(&report, "/reportDocumentId")?;
                    (docs, seen) = self.returns_documents(&document, &seen, ctx).await?;
                }
                // CANCELLED: no returns in the window; FATAL: nothing to read. Either way, ask again.
                status => tracing::warn!(report = id, ?status, "returns report not done: asking for a new one"),
            }
        }
        let next = self.request_returns_report(ctx).await?;
        Ok(ReturnsSweep { docs, resume: Some(json!({ "report": next, "seen": seen }).to_string()) })
    }

    async fn read_stock(&self, items: &[StockRead], ctx: &CallContext) -> Result<Vec<(String, i64)>, ConnectorError> {
        let channel_skus = &StockRead::skus(items);
        let (seller, marketplace) = self.ids()?;
        let mut out = Vec::new();
        for sku in channel_skus {
            let req = Req::get(format!("/listings/2021-08-01/items/{seller}/{}", encode(sku)))
                .query("marketplaceIds", marketplace.clone())
                .query("includedData", "fulfillmentAvailability");
            let body = self.api.send(req, ctx).await?.body;
            if let Some(q) = body.pointer("/fulfillmentAvailability/0/quantity").and_then(Value::as_i64) {
                out.push((sku.clone(), q));
            }
        }
        Ok(out)
    }

    async fn list_listings(&self, cursor: Option<&str>, ctx: &CallContext) -> Result<ListingPage, ConnectorError> {
        let (seller, marketplace) = self.ids()?;
        let mut req = Req::get(format!("/listings/2021-08-01/items/{}", encode(&seller)))
            .query("marketplaceIds", marketplace.clone())
            .query("includedData", "summaries,offers,fulfillmentAvailability")
            .query("pageSize", LISTING_PAGE);
        if let Some(token) = cursor {
            req = req.query("pageToken", token);
        }
        let body = self.api.send(req, ctx).await?.body;
        let now = Utc::now();
        let listings = field(&body, "/items")?
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| listing(i, &marketplace, now))
            .collect();
        let next = body.pointer("/pagination/nextToken").and_then(Value::as_str).filter(|t| !t.is_empty());
        Ok(ListingPage { listings, next: next.map(str::to_owned) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_acknowledgement_feed_is_the_documented_envelope_with_its_text_escaped() {
        let cancel = Verdict::Cancel { items: items(&["6102", "61<03>"]), reason: "NoInventory" };
        let xml = acknowledgement_feed("A&B", &[("902-3159896-1390916", Verdict::Take), ("O'1\"&", cancel)]);
        assert!(xml.starts_with(r#"<?xml version="1.0" encoding="UTF-8"?>"#), "{xml}");
        let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
        let root = doc.root_element();
        assert!(root.has_tag_name("AmazonEnvelope"));
        let text = |path: &[&str]| {
            let mut node = root;
            for name in path {
                node = node.children().find(|c| c.has_tag_name(*name)).unwrap_or_else(|| panic!("no {name}"));
            }
            node.text().unwrap_or_default().to_owned()
        };
        assert_eq!(text(&["Header", "MerchantIdentifier"]), "A&B");
        assert_eq!(text(&["MessageType"]), "OrderAcknowledgement");
        let messages: Vec<_> = root.children().filter(|c| c.has_tag_name("Message")).collect();
        assert_eq!(messages.len(), 2);
        let field = |m: roxmltree::Node<'_, '_>, path: &[&str]| {
            let mut node = m;
            for name in path {
                node = node.children().find(|c| c.has_tag_name(*name)).unwrap();
            }
            node.text().unwrap_or_default().to_owned()
        };
        assert_eq!(field(messages[0], &["MessageID"]), "1");
        assert_eq!(field(messages[0], &["OrderAcknowledgement", "StatusCode"]), "Success");
        assert!(!xml[..xml.find("</Message>").unwrap()].contains("<Item>"), "no items when acknowledging");
        assert_eq!(field(messages[1], &["MessageID"]), "2");
        assert_eq!(field(messages[1], &["OrderAcknowledgement", "AmazonOrderID"]), "O'1\"&");
        assert_eq!(field(messages[1], &["OrderAcknowledgement", "StatusCode"]), "Failure");
        let ack = messages[1].children().find(|c| c.has_tag_name("OrderAcknowledgement")).unwrap();
        let codes: Vec<String> =
            ack.children().filter(|c| c.has_tag_name("Item")).map(|i| field(i, &["AmazonOrderItemCode"])).collect();
        assert_eq!(codes, ["6102", "61<03>"]);
        assert_eq!(
            ack.children().filter(|c| c.has_tag_name("Item")).map(|i| field(i, &["CancelReason"])).collect::<Vec<_>>(),
            ["NoInventory"; 2]
        );
    }

    #[test]
    fn xml_text_escapes_the_five_entities_and_borrows_clean_text() {
        assert_eq!(xml_text(r#"a&b<c>d"e'f"#), "a&amp;b&lt;c&gt;d&quot;e&apos;f");
        assert!(matches!(xml_text("902-3159896-1390916"), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn cancel_reasons_default_to_no_inventory_and_must_be_amazons() {
        assert_eq!(cancel_reason(None).unwrap(), "NoInventory");
        assert_eq!(cancel_reason(Some("BuyerCanceled")).unwrap(), "BuyerCanceled");
        let e = cancel_reason(Some("OutOfStock")).unwrap_err();
        assert_eq!(e.class, FailureClass::Permanent);
        assert!(e.message.contains("ShippingAddressUndeliverable"), "{e}");
    }

    /// The shape of a processed `POST_ORDER_ACKNOWLEDGEMENT_DATA` report: one message in error, one
    /// warning, a summary.
    const XML_REPORT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<AmazonEnvelope xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation="amzn-envelope.xsd">
  <Header><DocumentVersion>1.02</DocumentVersion><MerchantIdentifier>A2EUQ1WTGCTBG2</MerchantIdentifier></Header>
  <MessageType>ProcessingReport</MessageType>
  <Message>
    <MessageID>1</MessageID>
    <ProcessingReport>
      <DocumentTransactionID>50001018822</DocumentTransactionID>
      <StatusCode>Complete</StatusCode>
      <ProcessingSummary>
        <MessagesProcessed>3</MessagesProcessed><MessagesSuccessful>2</MessagesSuccessful>
        <MessagesWithError>1</MessagesWithError><MessagesWithWarning>1</MessagesWithWarning>
      </ProcessingSummary>
      <Result>
        <MessageID>2</MessageID><ResultCode>Error</ResultCode><ResultMessageCode>25</ResultMessageCode>
        <ResultDescription>The order 171-1-2 has already shipped and can no longer be cancelled.</ResultDescription>
        <AdditionalInfo><AmazonOrderID>171-1-2</AmazonOrderID></AdditionalInfo>
      </Result>
      <Result>
        <MessageID>3</MessageID><ResultCode>Warning</ResultCode><ResultMessageCode>18097</ResultMessageCode>
        <ResultDescription>MerchantOrderID was ignored.</ResultDescription>
      </Result>
      <Result>
        <MessageID>1</MessageID><ResultCode>Error</ResultCode><ResultMessageCode>5001</ResultMessageCode>
        <ResultDescription>An internal error occurred. Please try again later.</ResultDescription>
      </Result>
    </ProcessingReport>
  </Message>
</AmazonEnvelope>"#;

    #[test]
    fn the_xml_processing_report_rejects_each_message_in_error_by_class() {
        let errors = report_errors(Submission::CANCEL, XML_REPORT.as_bytes()).unwrap();
        assert_eq!(errors.len(), 2, "the warning is not an error: {errors:?}");
        let outcome = verdicts(&items(&["171-1-1", "171-1-2", "171-1-3"]), &errors, None);
        assert_eq!(outcome.delivered, ["171-1-3"]);
        let rejected: Vec<(&str, FailureClass)> = outcome.rejected.iter().map(|(i, e)| (i.as_str(), e.class)).collect();
        assert_eq!(rejected, [("171-1-1", FailureClass::Transient), ("171-1-2", FailureClass::Permanent)]);
        assert!(outcome.rejected[1].1.message.contains("already shipped"), "{:?}", outcome.rejected[1].1);
    }

    #[test]
    fn the_json_listings_report_rejects_only_error_issues_and_a_feed_level_one_rejects_all() {
        let report = serde_json::json!({
            "header": { "sellerId": "A2EUQ1WTGCTBG2", "version": "2.0", "feedId": "50001018822" },
            "issues": [
                { "messageId": 2, "code": "4000001", "severity": "ERROR", "message": "SKU B not found for this seller" },
                { "messageId": 1, "code": "90220", "severity": "WARNING", "message": "attribute ignored" }
            ],
            "summary": { "errors": 1, "warnings": 1, "messagesProcessed": 3, "messagesAccepted": 2, "messagesInvalid": 1 }
        });
        let errors = report_errors(Submission::STOCK, report.to_string().as_bytes()).unwrap();
        let outcome = verdicts(&items(&["A", "B", "C"]), &errors, None);
        assert_eq!(outcome.delivered, ["A", "C"]);
        assert_eq!(outcome.rejected.len(), 1);
        assert_eq!((outcome.rejected[0].0.as_str(), outcome.rejected[0].1.class), ("B", FailureClass::Permanent));

        let whole =
            serde_json::json!({ "issues": [{ "code": "5000", "severity": "ERROR", "message": "invalid header" }] });
        let errors = report_errors(Submission::PRICE, whole.to_string().as_bytes()).unwrap();
        assert_eq!(verdicts(&items(&["A", "B"]), &errors, None).rejected.len(), 2);
    }

    #[test]
    fn a_fatal_feed_rejects_every_item_permanently_and_an_unreadable_report_is_transient() {
        let outcome = verdicts(&items(&["A", "B"]), &[], Some("feed 1 was rejected as a whole (FATAL)"));
        assert!(outcome.delivered.is_empty());
        assert!(outcome.rejected.iter().all(|(_, e)| e.class == FailureClass::Permanent));
        assert_eq!(
            report_errors(Submission::CANCEL, b"<AmazonEnvelope><oops").unwrap_err().class,
            FailureClass::Transient
        );
        assert_eq!(report_errors(Submission::STOCK, b"not json").unwrap_err().class, FailureClass::Transient);
    }

    fn content(sku: &str, title: Option<&str>, images: usize, changed: Vec<usize>) -> ContentUpdate {
        let image = |n: usize| manifold_domain::Image {
            url: format!("https://img.example/{n}.png"),
            alt: None,
            checksum: None,
        };
        ContentUpdate {
            sku: manifold_domain::Sku::new(sku).unwrap(),
            channel_sku: sku.to_owned(),
            ids: ListingIds::default(),
            text: title.map(|t| crate::content::ContentText { title: Some(t.to_owned()), ..Default::default() }),
            images: Some(crate::content::ContentImages { images: (0..images).map(image).collect(), changed }),
        }
    }

    #[test]
    fn content_patches_name_the_text_and_only_the_changed_image_positions() {
        let patches = content_patches(&content("MUG", Some("Mug"), 3, vec![1]), "A1PA6795UKMFR9", Some("de_DE"));
        assert_eq!(patches.len(), 2, "{patches:?}");
        assert_eq!(
            patches[0],
            json!({ "op": "replace", "path": "/attributes/item_name",
                    "value": [{ "value": "Mug", "marketplace_id": "A1PA6795UKMFR9", "language_tag": "de_DE" }] })
        );
        assert_eq!(patches[1]["path"], "/attributes/other_product_image_locator_1");
        assert_eq!(patches[1]["value"][0]["media_location"], "https://img.example/1.png");

        // Beyond the ninth image nothing is sent; a position past a shorter list is deleted.
        let patches = content_patches(&content("MUG", None, 12, vec![10, 0, 0]), "M", None);
        let paths: Vec<&str> = patches.iter().filter_map(|p| p["path"].as_str()).collect();
        assert_eq!(paths, ["/attributes/main_product_image_locator"]);
        let patches = content_patches(&content("MUG", None, 3, vec![4]), "M", None);
        assert_eq!(
            patches,
            [
                json!({ "op": "delete", "path": "/attributes/other_product_image_locator_4", "value": [{ "marketplace_id": "M" }] })
            ]
        );
    }

    #[test]
    fn a_submission_is_refused_when_invalid_or_with_an_error_issue() {
        let warned = json!({ "sku": "A", "status": "ACCEPTED", "submissionId": "1",
                             "issues": [{ "code": "90220", "message": "ignored", "severity": "WARNING" }] });
        assert!(submission_verdict("A", &warned).is_ok());
        let error = json!({ "status": "ACCEPTED", "issues": [{ "code": "90244", "message": "bad image", "severity": "ERROR" }] });
        let e = submission_verdict("A", &error).unwrap_err();
        assert_eq!(e.class, FailureClass::Permanent);
        assert!(e.message.contains("bad image"), "{e}");
        let invalid = json!({ "status": "INVALID", "issues": [] });
        assert_eq!(submission_verdict("A", &invalid).unwrap_err().class, FailureClass::Permanent);
    }

    /// Against the simulator: each listing on its own (an unknown SKU and an invalid title are
    /// rejected, the others land), and content patches leave stock alone.
    #[tokio::test]
    async fn content_rejects_only_the_listings_amazon_refuses() {
        let sim =
            manifold_simulator::Simulator::start(manifold_simulator::SimConfig::default().unlimited(Channel::Amazon))
                .await
                .unwrap();
        let item = |sku: &str| manifold_simulator::CatalogItem::by_sku(sku, 4);
        sim.seed_catalog(Channel::Amazon, vec![item("A"), item("B")]);
        let account: AccountConfig = serde_json::from_value(json!({
            "channel": "amazon", "account": "a-1", "api_version": "v0", "secret": "s",
            "endpoint": sim.base_url(Channel::Amazon), "rate_limit": { "kind": "unlimited" },
            "settings": { "seller_id": "S1", "marketplace_id": "A1PA6795UKMFR9", "product_type": "MUG" },
        }))
        .unwrap();
        let http = crate::http_client(std::time::Duration::from_secs(5)).unwrap();
        let amazon = crate::build(&account, [("access_token", "t")].into_iter().collect(), http);
        let items = [
            content("GONE", Some("Mug"), 1, vec![0]),
            content("A", Some(""), 1, vec![0]),
            content("B", Some("Mug"), 2, vec![0, 1]),
        ];
        let outcome = amazon.push_content(&items, &CallContext::new("t")).await.unwrap();
        assert_eq!(outcome.delivered, ["B"]);
        let rejected: Vec<(&str, FailureClass)> = outcome.rejected.iter().map(|(s, e)| (s.as_str(), e.class)).collect();
        assert_eq!(rejected, [("GONE", FailureClass::Permanent), ("A", FailureClass::Permanent)]);
        assert!(outcome.rejected[1].1.message.contains("item_name"), "{}", outcome.rejected[1].1);
        let snapshot = sim.snapshot();
        let shown = &snapshot.content[&Channel::Amazon];
        assert_eq!(shown.keys().collect::<Vec<_>>(), ["B"], "nothing of a refused listing applied");
        assert_eq!(shown["B"].images.len(), 2);
        assert_eq!(snapshot.stock[&Channel::Amazon]["B"], 4);
        let patch = snapshot.writes[&Channel::Amazon].last().unwrap();
        assert_eq!(patch.body["productType"], "MUG", "the account's product type");
    }
}
