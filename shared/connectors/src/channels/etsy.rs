//! Etsy Open API v3.
//!
//! - Credentials: `api_key` (the app keystring, `x-api-key`, also the OAuth client id) and
//!   `refresh_token`: the OAuth 2 access token (1 h) comes from [`crate::token`], which writes the refresh
//!   token Etsy rotates on every refresh back to the secret (a stored `access_token` alone is used as is).
//! - Settings: `shop_id`.
//! - Stock and prices: `PUT /v3/application/listings/{listing_id}/inventory` replaces the listing's whole
//!   product set (omitted products are deleted), so each listing is read first (`GET .../inventory`),
//!   the pushed SKUs' offerings changed, and every product written back. `channel_item_id` = listing id.
//! - Listings: `GET /v3/application/shops/{shop_id}/listings?state=active` 100 per page (offset, `count`)
//!   with `includes=Inventory`, so each listing's products (SKU, product id, offerings with quantity and
//!   price) come in the same call; a listing without its inventory is read with `GET .../inventory`.
//!   Every product with a SKU is one listing whose item id is the listing id. This spends one request
//!   per 100 listings of Etsy's 10,000 a day.
//! - Content: title and description with one `PATCH /v3/application/shops/{shop_id}/listings/{listing_id}`
//!   (updateListing, JSON like the other writes); each changed image with one multipart
//!   `POST .../listings/{listing_id}/images` (uploadListingImage: file part `image`, `rank` = position + 1,
//!   `overwrite=true` to replace the image at that rank, `alt_text`). Etsy takes no image URL, so the
//!   bytes are fetched from the image host and checked against their checksum first; a listing whose
//!   images fail that check gets no call at all. Only changed ranks are uploaded: images are separate
//!   resources on Etsy, so one changed image is one call. Images dropped from the end of the list are
//!   not deleted (that takes `deleteListingImage` by image id).
//! - Limits: `x-remaining-this-second` (and `x-remaining-today`, logged) feed the limiter; 429 beyond.
//! - `fetch_order`: the ShopReceipt (`GET /v3/application/shops/{shop_id}/receipts/{receipt_id}`).

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use http::{HeaderMap, Method};
use manifold_domain::{Channel, Image, Shipment, config::AccountConfig};
use serde_json::{Map, Value, json};

use super::{cursor_number, group_by, id_text, missing_item_id, number, settle};
use crate::client::StockRead;
use crate::{
    Credentials,
    client::{
        Accepted, CallContext, ChannelConnector, Listing, ListingIds, ListingPage, PriceUpdate, PushOutcome,
        StockUpdate,
    },
    content::{ContentImages, ContentText, ContentUpdate, fetch_image, file_name, multipart},
    error::ConnectorError,
    ratelimit::Signals,
    token::Token,
    transport::{Api, ApiParts, Dialect, Req, credential, field, header, required},
};
use crate::{
    token::{ClientAuth, Flow, Grant, Lifecycle, Source},
    verify::scheme::{Scheme, StandardWebhooks},
};

/// This channel in the connector registry ([`super::module`]).
pub(crate) const MODULE: super::ConnectorModule = super::ConnectorModule {
    build: |account, creds, api| std::sync::Arc::new(Etsy::new(account, creds, api)),
    // OAuth 2 with PKCE (public client: the keystring is the client id); access tokens live 1 h and
    // every refresh returns a new refresh token.
    tokens: Lifecycle::Flow(Flow {
        grant: Grant::RefreshToken,
        endpoint: "/v3/public/oauth/token",
        auth: ClientAuth::PublicClient,
        client_id: Source::Credential("api_key"),
        client_secret: "client_secret",
        scope: None,
    }),
    webhooks: Scheme::StandardWebhooks(StandardWebhooks { tolerance_seconds: 5 * 60 }),
    item_id: |ids| ids.listing.clone(),
    content: crate::content::ContentSupport {
        title: true,
        description: true,
        attributes: false,
        images: crate::content::ImageFlow::StagedUpload,
        key: crate::content::ContentKey::Listing,
        note: Some("Etsy properties are fixed per taxonomy; free attributes are not mapped onto them"),
    },
};

#[derive(Debug)]
struct EtsyDialect {
    creds: Credentials,
}

impl Dialect for EtsyDialect {
    fn authorize(&self, req: &mut Req, token: Option<&Token>) -> Result<(), ConnectorError> {
        req.headers.push(("x-api-key", credential(&self.creds, "api_key")?));
        req.headers.push(("authorization", format!("Bearer {}", required(token)?.expose())));
        Ok(())
    }

    fn signals(&self, headers: &HeaderMap, _body: &Value) -> Signals {
        if header(headers, "x-remaining-today").and_then(|v| v.parse::<u64>().ok()) == Some(0) {
            tracing::warn!("Etsy daily request allowance exhausted");
        }
        Signals {
            retry_after: crate::error::retry_after_header(headers),
            remaining_this_second: header(headers, "x-remaining-this-second").and_then(|v| v.parse().ok()),
            ..Signals::default()
        }
    }
}

/// An Etsy shop.
#[derive(Debug)]
pub struct Etsy {
    api: Api,
}

/// What to change on the offering of a product with a given SKU.
enum Change {
    Quantity(u32),
    Price(Value),
}

impl Etsy {
    pub fn new(_account: &AccountConfig, creds: &Credentials, parts: ApiParts) -> Self {
        Self { api: Api::new(parts, EtsyDialect { creds: creds.clone() }) }
    }

    fn shop(&self, rest: &str) -> Result<String, ConnectorError> {
        Ok(format!("/v3/application/shops/{}/{rest}", self.api.parts.setting("shop_id")?))
    }

    /// Read-modify-write of each listing's full inventory.
    async fn update(
        &self,
        items: Vec<(&str, Option<&str>, Change)>,
        ctx: &CallContext,
    ) -> Result<PushOutcome, ConnectorError> {
        let mut outcome = PushOutcome::default();
        let (known, unknown): (Vec<_>, Vec<_>) = items.into_iter().partition(|i| i.1.is_some());
        for (sku, _, _) in unknown {
            outcome.rejected.push((sku.to_owned(), missing_item_id(sku, "listing id")));
        }
        for (listing, group) in group_by(&known, |i| i.1.unwrap_or_default().to_owned()) {
            let skus: Vec<&str> = group.iter().map(|i| i.0).collect();
            let changes: HashMap<&str, &Change> = group.iter().map(|i| (i.0, &i.2)).collect();
            let result = self.update_listing(&listing, &changes, ctx).await;
            settle(&mut outcome, &skus, result)?;
        }
        Ok(outcome)
    }

    async fn update_listing(
        &self,
        listing: &str,
        changes: &HashMap<&str, &Change>,
        ctx: &CallContext,
    ) -> Result<PushOutcome, ConnectorError> {
        let path = format!("/v3/application/listings/{listing}/inventory");
        let current = self.api.send(Req::get(path.clone()), ctx).await?.body;
        let mut outcome = PushOutcome::default();
        let mut products = Vec::new();
        for p in field(&current, "/products")?.as_array().into_iter().flatten() {
            if p.get("is_deleted").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let sku = p.get("sku").and_then(Value::as_str).unwrap_or_default();
            let change = changes.get(sku).copied();
            if change.is_some() {
                outcome.delivered.push(sku.to_owned());
            }
            products.push(writable_product(p, change));
        }
        for sku in changes.keys() {
            if !outcome.delivered.iter().any(|d| d == sku) {
                outcome.rejected.push((
                    (*sku).to_owned(),
                    ConnectorError::permanent(format!("listing {listing} has no product with SKU {sku}")),
                ));
            }
        }
        if outcome.delivered.is_empty() {
            return Ok(outcome);
        }
        let mut body = Map::new();
        body.insert("products".into(), Value::Array(products));
        for key in ["price_on_property", "quantity_on_property", "sku_on_property"] {
            body.insert(key.into(), current.get(key).cloned().unwrap_or_else(|| json!([])));
        }
        self.api.send(Req::put(path, Value::Object(body)), ctx).await?;
        Ok(outcome)
    }

    /// One listing's content (see module docs). The changed images are fetched and checked before
    /// anything is written, so a bad image leaves the listing as it was, text included.
    async fn push_listing_content(&self, update: &ContentUpdate, ctx: &CallContext) -> Result<(), ConnectorError> {
        let listing = update.id(Channel::Etsy, "listing id", update.ids.listing.as_ref())?;
        let mut uploads = Vec::new();
        for (rank, image) in changed_ranks(update.images.as_ref()) {
            uploads.push((rank, image, fetch_image(&self.api.parts.http, image).await?));
        }
        let path = self.shop(&format!("listings/{listing}"))?;
        if let Some(body) = update.text.as_ref().and_then(listing_text) {
            self.api.send(Req::patch(path.clone(), body), ctx).await?;
        }
        for (rank, image, bytes) in uploads {
            let mut fields = vec![("rank", rank.to_string()), ("overwrite", "true".to_owned())];
            fields.extend(image.alt.clone().map(|alt| ("alt_text", alt)));
            let (content_type, body) = multipart(&fields, ("image", file_name(&image.url), &bytes));
            self.api.send(Req::new(Method::POST, format!("{path}/images")).raw(content_type, body), ctx).await?;
        }
        // Positions past the new list were removed at the source: the listing's images at those
        // ranks are deleted (`getListingImages`, then `deleteListingImage` each).
        if let Some(images) = &update.images
            && images.changed.iter().any(|p| *p >= images.images.len())
        {
            let held = self.api.send(Req::get(format!("/v3/application/listings/{listing}/images")), ctx).await?.body;
            for image in field(&held, "/results")?.as_array().into_iter().flatten() {
                let rank = image.get("rank").and_then(Value::as_u64).unwrap_or(0);
                let Some(id) = id_text(image.get("listing_image_id")) else { continue };
                if usize::try_from(rank).is_ok_and(|r| r > images.images.len()) {
                    let req = Req::new(Method::DELETE, format!("{path}/images/{id}")).raw_reply();
                    self.api.send(req, ctx).await?;
                }
            }
        }
        Ok(())
    }
}

/// The updateListing body of a content's text, or `None` when it changes nothing Etsy takes.
fn listing_text(text: &ContentText) -> Option<Value> {
    let mut body = Map::new();
    if let Some(title) = &text.title {
        body.insert("title".into(), json!(title));
    }
    if let Some(description) = &text.description {
        body.insert("description".into(), json!(plain_text(description)));
    }
    (!body.is_empty()).then_some(Value::Object(body))
}

/// A description as Etsy shows it: plain text. Etsy renders no HTML, so tags are removed, block ends
/// and `<br>` become line breaks, and the common entities are decoded; text without markup is kept
/// as it is.
fn plain_text(html: &str) -> String {
    if !html.contains('<') && !html.contains('&') {
        return html.to_owned();
    }
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('>') else {
            out.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let tag = rest[open + 1..open + close].trim().to_ascii_lowercase();
        let name = tag.trim_start_matches('/').split([' ', '/']).next().unwrap_or_default();
        let block_end = tag.starts_with('/') && matches!(name, "p" | "div" | "li" | "h1" | "h2" | "h3" | "h4" | "tr");
        if name == "br" || block_end {
            out.push('\n');
        } else if name == "li" {
            out.push_str("- ");
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    let decoded = out
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    decoded.lines().map(str::trim_end).collect::<Vec<_>>().join("\n").trim().to_owned()
}

/// Images an Etsy listing shows at most (ranks 1 to 10).
const MAX_LISTING_IMAGES: usize = 10;

/// The changed images with their Etsy ranks (1-based), lowest first: an upload at a rank past the
/// listing's last image appends, so ranks go up in order. Changed positions past the list are
/// removals, deleted after the uploads; positions past Etsy's ten are not sent (with a warning).
fn changed_ranks(images: Option<&ContentImages>) -> Vec<(usize, &Image)> {
    let Some(images) = images else { return Vec::new() };
    if images.images.len() > MAX_LISTING_IMAGES {
        tracing::warn!(
            images = images.images.len(),
            "Etsy shows {MAX_LISTING_IMAGES} images per listing; the rest are not sent"
        );
    }
    let mut positions = images.changed.clone();
    positions.sort_unstable();
    positions.dedup();
    positions
        .into_iter()
        .filter(|p| *p < MAX_LISTING_IMAGES)
        .filter_map(|p| images.images.get(p).map(|image| (p + 1, image)))
        .collect()
}

/// A product as `GET .../inventory` returns it, rewritten in the shape `PUT` takes (prices as decimal
/// numbers instead of `{amount, divisor}`), with `change` applied to its offerings.
fn writable_product(p: &Value, change: Option<&Change>) -> Value {
    let offerings: Vec<Value> = p
        .get("offerings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|o| o.get("is_deleted").and_then(Value::as_bool) != Some(true))
        .map(|o| {
            let price = o.get("price").map_or(Value::Null, money_to_number);
            let mut offering = json!({
                "price": price,
                "quantity": o.get("quantity").cloned().unwrap_or(json!(0)),
                "is_enabled": o.get("is_enabled").cloned().unwrap_or(json!(true)),
            });
            match change {
                Some(Change::Quantity(q)) => offering["quantity"] = json!(q),
                Some(Change::Price(v)) => offering["price"] = v.clone(),
                None => {}
            }
            offering
        })
        .collect();
    let property_values: Vec<Value> = p
        .get("property_values")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|v| {
            let keep = ["property_id", "value_ids", "scale_id", "property_name", "values"];
            Value::Object(keep.iter().filter_map(|k| v.get(*k).map(|x| ((*k).to_owned(), x.clone()))).collect())
        })
        .collect();
    json!({ "sku": p.get("sku"), "property_values": property_values, "offerings": offerings })
}

/// Listings per `getListingsByShop` page (Etsy's maximum).
const LISTING_PAGE: usize = 100;

/// The products of one listing's inventory, each with a SKU, as listings.
fn products_of(listing_id: &str, inventory: &Value, now: DateTime<Utc>) -> Vec<Listing> {
    inventory
        .get("products")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|p| p.get("is_deleted").and_then(Value::as_bool) != Some(true))
        .filter_map(|p| {
            let sku = p.get("sku").and_then(Value::as_str).filter(|s| !s.is_empty())?.to_owned();
            let offering = p
                .get("offerings")
                .and_then(Value::as_array)
                .and_then(|o| o.iter().find(|x| x.get("is_deleted").and_then(Value::as_bool) != Some(true)));
            let money = offering.and_then(|o| o.get("price"));
            let price = money.and_then(|m| {
                let amount = m.get("amount").and_then(Value::as_i64)?;
                let divisor = m.get("divisor").and_then(Value::as_u64).filter(|d| *d > 0)?;
                let scale = divisor.checked_ilog10()?;
                (10_u64.checked_pow(scale)? == divisor).then(|| rust_decimal::Decimal::new(amount, scale))
            });
            Some(Listing {
                sku,
                ids: ListingIds {
                    listing: Some(listing_id.to_owned()),
                    variant: id_text(p.get("product_id")),
                    offer: id_text(offering.and_then(|o| o.get("offering_id"))),
                    ..ListingIds::default()
                },
                quantity: offering.and_then(|o| o.get("quantity")).and_then(Value::as_i64),
                price,
                currency: money
                    .and_then(|m| m.get("currency_code"))
                    .and_then(Value::as_str)
                    .and_then(|c| c.parse().ok()),
                seen_at: now,
            })
        })
        .collect()
}

/// `{amount: 1999, divisor: 100}` -> `19.99`.
fn money_to_number(m: &Value) -> Value {
    let amount = m.get("amount").and_then(Value::as_i64);
    let divisor = m.get("divisor").and_then(Value::as_u64).and_then(|d| u32::try_from(d).ok());
    let currency = m.get("currency_code").and_then(Value::as_str).and_then(|c| c.parse().ok());
    match (amount, divisor, currency) {
        (Some(a), Some(d), Some(c)) => {
            manifold_domain::Amount::from_minor_units(a, d, c).map_or(Value::Null, |x| number(&x))
        }
        _ => m.clone(),
    }
}

#[async_trait]
impl ChannelConnector for Etsy {
    fn channel(&self) -> Channel {
        Channel::Etsy
    }

    /// One listing (with all its products) per write.
    fn max_batch(&self) -> usize {
        1
    }

    async fn push_stock(&self, items: &[StockUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        let changes = items
            .iter()
            .map(|i| (i.channel_sku.as_str(), i.channel_item_id.as_deref(), Change::Quantity(i.quantity)))
            .collect();
        self.update(changes, ctx).await
    }

    async fn push_prices(&self, items: &[PriceUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        let changes = items
            .iter()
            .map(|i| (i.channel_sku.as_str(), i.channel_item_id.as_deref(), Change::Price(number(&i.amount))))
            .collect();
        self.update(changes, ctx).await
    }

    /// Each listing on its own: a permanent failure rejects that listing's SKU and the next goes on.
    async fn push_content(&self, items: &[ContentUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        super::each_listing(items, |item| self.push_listing_content(item, ctx)).await
    }

    async fn push_tracking(&self, shipment: &Shipment, ctx: &CallContext) -> Result<(), ConnectorError> {
        let path = self.shop(&format!("receipts/{}/tracking", shipment.channel_order_id))?;
        let body = json!({ "tracking_code": shipment.tracking_number, "carrier_name": shipment.carrier.as_deref().unwrap_or("other") });
        self.api.send(Req::post(path, body), ctx).await.map(drop)
    }

    async fn fetch_order(&self, channel_order_id: &str, ctx: &CallContext) -> Result<Value, ConnectorError> {
        Ok(self.api.send(Req::get(self.shop(&format!("receipts/{channel_order_id}"))?), ctx).await?.body)
    }

    async fn list_orders_since(&self, since: DateTime<Utc>, ctx: &CallContext) -> Result<Vec<Value>, ConnectorError> {
        let mut out = Vec::new();
        let mut offset = 0usize;
        loop {
            let req = Req::get(self.shop("receipts")?)
                .query("min_last_modified", since.timestamp().to_string())
                .query("limit", "100")
                .query("offset", offset.to_string());
            let body = self.api.send(req, ctx).await?.body;
            let results = field(&body, "/results")?.as_array().cloned().unwrap_or_default();
            let count = body.get("count").and_then(Value::as_u64).unwrap_or(0);
            offset += results.len();
            let done = results.is_empty() || offset as u64 >= count;
            out.extend(results);
            if done {
                return Ok(out);
            }
        }
    }

    async fn cancel_order(
        &self,
        _channel_order_id: &str,
        _reason: &str,
        _ctx: &CallContext,
    ) -> Result<Accepted, ConnectorError> {
        Err(ConnectorError::unsupported(Channel::Etsy, "cancel a receipt (sellers cancel in the Etsy UI)"))
    }

    /// Etsy reads stock per listing, and a SKU alone does not name its listing.
    /// By listing id (`getListingsByListingIds` with the inventory, 100 listings a call): Etsy keys
    /// stock by listing, and has no read by SKU. An item without a listing id is left out.
    async fn read_stock(&self, items: &[StockRead], ctx: &CallContext) -> Result<Vec<(String, i64)>, ConnectorError> {
        let wanted: std::collections::HashSet<&str> = items.iter().map(|i| i.channel_sku.as_str()).collect();
        let mut listing_ids: Vec<&str> = items.iter().filter_map(|i| i.channel_item_id.as_deref()).collect();
        listing_ids.sort_unstable();
        listing_ids.dedup();
        let now = Utc::now();
        let mut out = Vec::new();
        for chunk in listing_ids.chunks(LISTING_PAGE) {
            let req = Req::get("/v3/application/listings/batch")
                .query("listing_ids", chunk.join(","))
                .query("includes", "Inventory");
            let body = self.api.send(req, ctx).await?.body;
            for l in field(&body, "/results")?.as_array().into_iter().flatten() {
                let Some(id) = id_text(l.get("listing_id")) else { continue };
                let inventory = l.get("inventory").unwrap_or(&Value::Null);
                out.extend(
                    products_of(&id, inventory, now)
                        .into_iter()
                        .filter(|p| wanted.contains(p.sku.as_str()))
                        .filter_map(|p| Some((p.sku, p.quantity?))),
                );
            }
        }
        Ok(out)
    }

    async fn list_listings(&self, cursor: Option<&str>, ctx: &CallContext) -> Result<ListingPage, ConnectorError> {
        let offset = cursor_number(cursor, 0)?;
        let req = Req::get(self.shop("listings")?)
            .query("state", "active")
            .query("includes", "Inventory")
            .query("limit", LISTING_PAGE.to_string())
            .query("offset", offset.to_string());
        let body = self.api.send(req, ctx).await?.body;
        let results = field(&body, "/results")?.as_array().cloned().unwrap_or_default();
        let count = body.get("count").and_then(Value::as_u64).unwrap_or(0);
        let now = Utc::now();
        let mut listings = Vec::new();
        for l in &results {
            let Some(id) = id_text(l.get("listing_id")) else { continue };
            if let Some(inventory) = l.get("inventory").filter(|i| i.get("products").is_some()) {
                listings.extend(products_of(&id, inventory, now));
            } else {
                let path = format!("/v3/application/listings/{id}/inventory");
                let inventory = self.api.send(Req::get(path), ctx).await?.body;
                listings.extend(products_of(&id, &inventory, now));
            }
        }
        let seen = u64::from(offset) + results.len() as u64;
        let next = (!results.is_empty() && seen < count).then(|| seen.to_string());
        Ok(ListingPage { listings, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etsy_money_becomes_a_decimal_number() {
        assert_eq!(money_to_number(&json!({ "amount": 1999, "divisor": 100, "currency_code": "USD" })), json!(19.99));
    }

    #[test]
    fn rewrites_products_for_put_and_applies_the_change() {
        let p = json!({
            "product_id": 1, "sku": "A", "is_deleted": false,
            "property_values": [{ "property_id": 513, "property_name": "Size", "scale_id": null, "value_ids": [1], "values": ["S"] }],
            "offerings": [{ "offering_id": 9, "quantity": 3, "is_enabled": true, "is_deleted": false,
                            "price": { "amount": 1000, "divisor": 100, "currency_code": "EUR" } }]
        });
        let w = writable_product(&p, Some(&Change::Quantity(7)));
        assert_eq!(w["offerings"][0], json!({ "price": 10.0, "quantity": 7, "is_enabled": true }));
        assert_eq!(w["property_values"][0]["values"], json!(["S"]));
        assert!(w.get("product_id").is_none(), "PUT takes no product ids");
    }

    #[test]
    fn changed_images_go_up_by_rank_and_removed_positions_are_not_uploaded() {
        let image = |n: &str| Image { url: format!("https://img.example/{n}.png"), alt: None, checksum: None };
        let images = ContentImages { images: vec![image("a"), image("b"), image("c")], changed: vec![2, 0, 2] };
        let ranks: Vec<(usize, &str)> =
            changed_ranks(Some(&images)).into_iter().map(|(r, i)| (r, file_name(&i.url))).collect();
        assert_eq!(ranks, vec![(1, "a.png"), (3, "c.png")]);
        let removed = ContentImages { changed: vec![3], ..images.clone() };
        assert!(changed_ranks(Some(&removed)).is_empty());
        let many = ContentImages { images: (0..12).map(|n| image(&n.to_string())).collect(), changed: vec![9, 10, 11] };
        let ranks: Vec<usize> = changed_ranks(Some(&many)).into_iter().map(|(r, _)| r).collect();
        assert_eq!(ranks, vec![10], "Etsy shows ten");
        assert!(changed_ranks(None).is_empty());
    }

    #[test]
    fn descriptions_reach_etsy_as_plain_text() {
        assert_eq!(plain_text("Hand glazed, 350 ml."), "Hand glazed, 350 ml.");
        assert_eq!(
            plain_text("<p>Hand <b>glazed</b> stoneware.</p><p>Dishwasher safe &amp; microwave safe.<br/>350 ml</p>"),
            "Hand glazed stoneware.\nDishwasher safe & microwave safe.\n350 ml"
        );
        assert_eq!(plain_text("<ul><li>One</li><li>Two</li></ul>"), "- One\n- Two");
        assert_eq!(plain_text("5 &lt; 6 <unclosed"), "5 < 6 <unclosed");
    }

    #[test]
    fn listing_text_sends_only_what_is_given() {
        let text = ContentText { title: Some("Mug".into()), ..ContentText::default() };
        assert_eq!(listing_text(&text), Some(json!({ "title": "Mug" })));
        assert_eq!(listing_text(&ContentText::default()), None);
    }
}
