//! TikTok Shop Partner API (versions `YYYYMM` in each path).
//!
//! - Credentials: `refresh_token` and `client_secret` (the app secret: signs every request and, with the
//!   `app_key` setting, refreshes the access token through [`crate::token`], which writes the refresh
//!   token TikTok returns back to the secret); the access token goes in `x-tts-access-token`. A stored
//!   `access_token` alone is used as is. Settings: `app_key`, `warehouse_id`, optional `shop_cipher`,
//!   optional `cancel_reason` (a seller reason key, default `seller_cancel_reason_out_of_stock`).
//! - Signature: HMAC-SHA256(app secret, secret + path + sorted `key+value` query pairs (without `sign`
//!   and `access_token`) + body + secret), hex, as the `sign` query parameter with `app_key` and
//!   `timestamp`. Taken from the official SDKs' signing code as published by the community (unverified
//!   against TikTok's own documentation): kept in [`sign`]. A `multipart/form-data` body (image
//!   uploads) is left out of the signature, as those SDKs do; only JSON bodies are signed.
//! - `channel_item_id` (stock, prices) = `product_id/sku_id`; stock goes to
//!   `POST /product/202309/products/{product_id}/inventory/update`, one call per product with all of
//!   its SKUs.
//! - Listings: `POST /product/{v}/products/search?page_size=100&page_token=` `{status: "ACTIVATE"}`:
//!   each product's SKUs with their `seller_sku`, SKU id, price and per-warehouse inventory (the
//!   quantity is the account's `warehouse_id`'s, or the sum without one). Item id `product_id/sku_id`.
//! - Content: images first, each with `POST /product/{v}/images/upload` (multipart: file part `data`,
//!   `use_case=MAIN_IMAGE`; no `shop_cipher`, the upload belongs to no shop), which answers the `uri`
//!   a product refers to it by; then one `POST /product/{v}/products/{product_id}/partial_edit` with
//!   `title`, `description` and `main_images: [{uri}]` as given. `main_images` replaces the whole
//!   list, so unchanged positions keep the uri the product holds (read with
//!   `GET /product/{v}/products/{product_id}` only when some position is unchanged) and only changed
//!   ones are uploaded. TikTok takes no image URL, so the bytes are fetched from the image host and
//!   checked against their checksum before any upload. Item: the product id.
//! - Errors arrive as HTTP 200 with `code != 0`. Limits: 50 requests/s per API (configured bucket).
//! - `fetch_order`: `data.orders[0]` of `GET /order/202309/orders?ids=`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use http::Method;
use manifold_domain::{Channel, Image, Shipment, config::AccountConfig};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use super::{decimal, group_by, id_text, missing_item_id, price_of, settle, split_item_id};
use crate::client::StockRead;
use crate::{
    Credentials,
    client::{
        Accepted, CallContext, ChannelConnector, Listing, ListingIds, ListingPage, PriceUpdate, PushOutcome,
        StockUpdate,
    },
    content::{ContentImages, ContentUpdate, fetch_image, file_name, multipart},
    error::{ConnectorError, FailureClass},
    token::Token,
    transport::{Api, ApiParts, Dialect, Req, credential, field, required},
};
use crate::{
    token::{ClientAuth, Flow, Grant, Lifecycle, Source},
    verify::scheme::{Encoding, HmacHeader, Scheme},
};

/// This channel in the connector registry ([`super::module`]).
pub(crate) const MODULE: super::ConnectorModule = super::ConnectorModule {
    build: |account, creds, api| std::sync::Arc::new(TikTok::new(account, creds, api)),
    // App key (a setting) and app secret; the answer carries new access and refresh tokens.
    tokens: Lifecycle::Flow(Flow {
        grant: Grant::RefreshToken,
        endpoint: "https://auth.tiktok-shops.com/api/v2/token/refresh",
        auth: ClientAuth::TikTok,
        client_id: Source::Setting("app_key"),
        client_secret: "client_secret",
        scope: None,
    }),
    // Message = app key ++ raw body (community SDKs; TikTok publishes no vector).
    webhooks: Scheme::Hmac(HmacHeader {
        header: "Authorization",
        encoding: Encoding::Hex,
        prefix_setting: Some("app_key"),
        ping: None,
    }),
    item_id: |ids| super::compound(ids.product.as_ref(), ids.variant.as_ref()),
    content: crate::content::ContentSupport {
        title: true,
        description: true,
        attributes: false,
        images: crate::content::ImageFlow::StagedUpload,
        key: crate::content::ContentKey::Product,
        note: Some("TikTok Shop attributes are fixed per category; free attributes are not mapped onto them"),
    },
};

/// Business error codes that mean "slow down" (unverified: from SDK error tables).
const THROTTLE_CODES: &[i64] = &[36_009_004, 429];
/// Business error codes of an invalid or expired access token (unverified: from SDK error tables).
const AUTH_CODES: &[i64] = &[105_001, 105_002];

#[derive(Debug)]
struct TikTokDialect {
    creds: Credentials,
    app_key: Option<String>,
    shop_cipher: Option<String>,
}

impl Dialect for TikTokDialect {
    fn authorize(&self, req: &mut Req, token: Option<&Token>) -> Result<(), ConnectorError> {
        let secret = credential(&self.creds, "client_secret")?;
        req.headers.push(("x-tts-access-token", required(token)?.expose().to_owned()));
        let app_key = self.app_key.clone().ok_or_else(|| ConnectorError::missing("setting `app_key` for tiktok"))?;
        req.query.push(("app_key".into(), app_key));
        req.query.push(("timestamp".into(), Utc::now().timestamp().to_string()));
        if let Some(cipher) = self.shop_cipher.as_ref().filter(|_| shop_scoped(&req.path)) {
            req.query.push(("shop_cipher".into(), cipher.clone()));
        }
        // Only a JSON body is signed: a raw one is multipart (an image upload), which TikTok leaves out.
        let body = req.body.as_ref().map(Value::to_string).unwrap_or_default();
        let signature = sign(&secret, &req.path, &req.query, &body);
        req.query.push(("sign".into(), signature));
        Ok(())
    }

    fn body_error(&self, body: &Value) -> Option<ConnectorError> {
        let code = body.get("code").and_then(Value::as_i64)?;
        if code == 0 {
            return None;
        }
        let message = format!("code {code}: {}", body.get("message").and_then(Value::as_str).unwrap_or(""));
        let class = if THROTTLE_CODES.contains(&code) {
            FailureClass::RateLimited
        } else if AUTH_CODES.contains(&code) {
            FailureClass::Auth
        } else {
            FailureClass::Permanent
        };
        Some(ConnectorError::new(class, message))
    }
}

/// Whether a path names a shop's resource and so takes `shop_cipher`: image uploads belong to the app,
/// and TikTok refuses the parameter on them (code 36009004, as integrators report it).
fn shop_scoped(path: &str) -> bool {
    !path.ends_with("/images/upload")
}

/// The request signature (see module docs).
pub fn sign(secret: &str, path: &str, query: &[(String, String)], body: &str) -> String {
    let mut params: Vec<&(String, String)> = query.iter().filter(|(k, _)| k != "sign" && k != "access_token").collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let mut plain = String::from(secret);
    plain.push_str(path);
    for (k, v) in params {
        plain.push_str(k);
        plain.push_str(v);
    }
    plain.push_str(body);
    plain.push_str(secret);
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else { return String::new() };
    mac.update(plain.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// At most this many main images per product (TikTok's product rules; checked here so a longer list
/// costs no upload).
const MAX_MAIN_IMAGES: usize = 9;

/// TikTok's seller cancel reason for an order the seller cannot fulfil.
const DEFAULT_CANCEL_REASON: &str = "seller_cancel_reason_out_of_stock";

/// The account's `cancel_reason`: one of TikTok's seller reason keys (`seller_cancel_…`; they vary by
/// region, e.g. `seller_cancel_reason_out_of_stock_uk`), checked before anything is sent.
fn cancel_reason(configured: Option<&str>) -> Result<&str, ConnectorError> {
    let key = configured.unwrap_or(DEFAULT_CANCEL_REASON);
    if key.starts_with("seller_cancel_") && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        Ok(key)
    } else {
        Err(ConnectorError::permanent(format!(
            "cancel_reason {key:?} is not a TikTok Shop seller cancel reason key (seller_cancel_…)"
        )))
    }
}

/// The SKUs of one searched product as listings; quantity at `warehouse` (all warehouses without one).
fn skus_of(product: &Value, warehouse: Option<&str>, now: DateTime<Utc>) -> Vec<Listing> {
    let product_id = id_text(product.get("id"));
    product
        .get("skus")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|sku| {
            let seller_sku = sku.get("seller_sku").and_then(Value::as_str).filter(|s| !s.is_empty())?.to_owned();
            let quantity = sku.get("inventory").and_then(Value::as_array).map(|w| {
                w.iter()
                    .filter(|x| warehouse.is_none_or(|id| id_text(x.get("warehouse_id")).as_deref() == Some(id)))
                    .filter_map(|x| x.get("quantity").and_then(Value::as_i64))
                    .sum()
            });
            let price = sku.get("price");
            Some(Listing {
                sku: seller_sku,
                ids: ListingIds {
                    product: product_id.clone(),
                    variant: id_text(sku.get("id")),
                    ..ListingIds::default()
                },
                quantity,
                price: price_of(price.and_then(|p| p.get("sale_price")))
                    .or_else(|| price_of(price.and_then(|p| p.get("tax_exclusive_price")))),
                currency: price.and_then(|p| p.get("currency")).and_then(Value::as_str).and_then(|c| c.parse().ok()),
                seen_at: now,
            })
        })
        .collect()
}

/// A TikTok shop.
#[derive(Debug)]
pub struct TikTok {
    api: Api,
}

impl TikTok {
    pub fn new(_account: &AccountConfig, creds: &Credentials, parts: ApiParts) -> Self {
        let dialect = TikTokDialect {
            creds: creds.clone(),
            app_key: parts.settings.get("app_key").cloned(),
            shop_cipher: parts.settings.get("shop_cipher").cloned(),
        };
        Self { api: Api::new(parts, dialect) }
    }

    /// Sends one call per product with that product's SKUs, built by `sku_entry`.
    async fn per_product<T>(
        &self,
        items: &[T],
        parts: impl Fn(&T) -> (&str, Option<&str>),
        path: impl Fn(&str) -> String,
        sku_entry: impl Fn(&T, &str) -> Value,
        ctx: &CallContext,
    ) -> Result<PushOutcome, ConnectorError> {
        let mut outcome = PushOutcome::default();
        let mut known = Vec::new();
        for item in items {
            let (sku, id) = parts(item);
            match id.map(split_item_id) {
                Some((product, Some(sku_id))) => known.push((item, sku, product.to_owned(), sku_id.to_owned())),
                _ => outcome.rejected.push((sku.to_owned(), missing_item_id(sku, "product_id/sku_id"))),
            }
        }
        for (product, group) in group_by(&known, |k| k.2.clone()) {
            let skus: Vec<&str> = group.iter().map(|k| k.1).collect();
            let body = json!({ "skus": group.iter().map(|k| sku_entry(k.0, &k.3)).collect::<Vec<_>>() });
            let result = self.api.send(Req::post(path(&product), body), ctx).await.map(|_| PushOutcome {
                delivered: skus.iter().map(|s| (*s).to_owned()).collect(),
                ..PushOutcome::default()
            });
            settle(&mut outcome, &skus, result)?;
        }
        Ok(outcome)
    }

    fn warehouse(&self) -> Result<String, ConnectorError> {
        Ok(self.api.parts.setting("warehouse_id")?.to_owned())
    }

    fn v(&self) -> &str {
        &self.api.parts.api_version
    }

    /// One product's content in one `partial_edit` (see module docs), after uploading its changed
    /// images.
    async fn push_product_content(&self, update: &ContentUpdate, ctx: &CallContext) -> Result<(), ConnectorError> {
        let product = update.id(Channel::Tiktok, "product id", update.ids.product.as_ref())?;
        let mut body = Map::new();
        if let Some(text) = &update.text {
            if let Some(title) = &text.title {
                body.insert("title".into(), json!(title));
            }
            if let Some(description) = &text.description {
                body.insert("description".into(), json!(description));
            }
        }
        if let Some(images) = &update.images {
            let uris = self.main_images(product, images, ctx).await?;
            body.insert("main_images".into(), uris.into_iter().map(|uri| json!({ "uri": uri })).collect());
        }
        if body.is_empty() {
            return Ok(());
        }
        let path = format!("/product/{}/products/{product}/partial_edit", self.v());
        self.api.send(Req::post(path, Value::Object(body)), ctx).await.map(drop)
    }

    /// The uris of the product's main images in order: the product's own for unchanged positions it
    /// holds, new uploads for the rest. Every image to upload is fetched and checked before the first
    /// upload, so an image that fails its checksum costs no upload.
    async fn main_images(
        &self,
        product: &str,
        images: &ContentImages,
        ctx: &CallContext,
    ) -> Result<Vec<String>, ConnectorError> {
        let count = images.images.len();
        if !(1..=MAX_MAIN_IMAGES).contains(&count) {
            return Err(ConnectorError::permanent(format!(
                "a TikTok Shop product takes 1 to {MAX_MAIN_IMAGES} main images, not {count}"
            )));
        }
        let unchanged = |i: usize| !images.changed.contains(&i);
        let held = if (0..count).any(unchanged) { self.held_images(product, ctx).await? } else { Vec::new() };
        let mut uris: Vec<Option<String>> = (0..count).map(|i| held.get(i).filter(|_| unchanged(i)).cloned()).collect();
        let mut fetched = Vec::new();
        for (i, image) in images.images.iter().enumerate().filter(|(i, _)| uris[*i].is_none()) {
            fetched.push((i, image, fetch_image(&self.api.parts.http, image).await?));
        }
        for (i, image, bytes) in fetched {
            uris[i] = Some(self.upload_image(image, &bytes, ctx).await?);
        }
        Ok(uris.into_iter().flatten().collect())
    }

    /// The uris of the main images the product holds now (Get Product), in order.
    async fn held_images(&self, product: &str, ctx: &CallContext) -> Result<Vec<String>, ConnectorError> {
        let body = self.api.send(Req::get(format!("/product/{}/products/{product}", self.v())), ctx).await?.body;
        Ok(field(&body, "/data")?
            .get("main_images")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|i| i.get("uri").and_then(Value::as_str).map(str::to_owned))
            .collect())
    }

    /// Uploads one image's bytes as a main image and answers the `uri` a product edit refers to it by.
    async fn upload_image(&self, image: &Image, bytes: &[u8], ctx: &CallContext) -> Result<String, ConnectorError> {
        let (content_type, body) =
            multipart(&[("use_case", "MAIN_IMAGE".to_owned())], ("data", file_name(&image.url), bytes));
        let req = Req::new(Method::POST, format!("/product/{}/images/upload", self.v())).raw(content_type, body);
        let reply = self.api.send(req, ctx).await?;
        field(&reply.body, "/data/uri")?
            .as_str()
            .filter(|uri| !uri.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| ConnectorError::transient("malformed response: `/data/uri` is not an image uri"))
    }
}

#[async_trait]
impl ChannelConnector for TikTok {
    fn channel(&self) -> Channel {
        Channel::Tiktok
    }

    /// All SKUs of one product per call.
    fn max_batch(&self) -> usize {
        100
    }

    async fn push_stock(&self, items: &[StockUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        let warehouse = self.warehouse()?;
        let v = self.v().to_owned();
        self.per_product(
            items,
            |i| (i.channel_sku.as_str(), i.channel_item_id.as_deref()),
            |p| format!("/product/{v}/products/{p}/inventory/update"),
            |i, sku_id| json!({ "id": sku_id, "inventory": [{ "warehouse_id": warehouse, "quantity": i.quantity }] }),
            ctx,
        )
        .await
    }

    async fn push_prices(&self, items: &[PriceUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        let v = self.v().to_owned();
        self.per_product(
            items,
            |i| (i.channel_sku.as_str(), i.channel_item_id.as_deref()),
            |p| format!("/product/{v}/products/{p}/prices/update"),
            |i, sku_id| json!({ "id": sku_id, "price": { "amount": decimal(&i.amount), "currency": i.currency.as_str() } }),
            ctx,
        )
        .await
    }

    /// Each product on its own: a permanent failure rejects that SKU and the next goes on.
    async fn push_content(&self, items: &[ContentUpdate], ctx: &CallContext) -> Result<PushOutcome, ConnectorError> {
        super::each_listing(items, |item| self.push_product_content(item, ctx)).await
    }

    /// Ships each package of the order with the seller's own carrier (`self_shipment`); the carrier
    /// name is sent as `shipping_provider_id` (unverified: TikTok expects its provider ids, which a
    /// carrier mapping in configuration would supply).
    async fn push_tracking(&self, shipment: &Shipment, ctx: &CallContext) -> Result<(), ConnectorError> {
        let order = self.fetch_order(&shipment.channel_order_id, ctx).await?;
        let packages: Vec<String> = order
            .get("packages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("id").and_then(Value::as_str).map(str::to_owned))
            .collect();
        if packages.is_empty() {
            return Err(ConnectorError::permanent(format!(
                "order {} has no package to ship",
                shipment.channel_order_id
            )));
        }
        for package in packages {
            let body = json!({
                "handover_method": "DROP_OFF",
                "self_shipment": { "tracking_number": shipment.tracking_number, "shipping_provider_id": shipment.carrier },
            });
            let path = format!("/fulfillment/{}/packages/{package}/ship", self.v());
            self.api.send(Req::post(path, body), ctx).await?;
        }
        Ok(())
    }

    async fn fetch_order(&self, channel_order_id: &str, ctx: &CallContext) -> Result<Value, ConnectorError> {
        let req = Req::get(format!("/order/{}/orders", self.v())).query("ids", channel_order_id);
        let body = self.api.send(req, ctx).await?.body;
        body.pointer("/data/orders/0")
            .cloned()
            .ok_or_else(|| ConnectorError::permanent(format!("order {channel_order_id} not found")))
    }

    /// The order and its returns (Search Returns by order id, every page), for a return status
    /// change (webhook type 12): `{"order": ..., "returns": [return_orders...]}`.
    async fn fetch_returns(&self, channel_order_id: &str, ctx: &CallContext) -> Result<Value, ConnectorError> {
        let order = self.fetch_order(channel_order_id, ctx).await?;
        let mut returns = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let body = json!({ "order_ids": [channel_order_id] });
            let mut req =
                Req::post(format!("/return_refund/{}/returns/search", self.v()), body).query("page_size", "50");
            if let Some(t) = &token {
                req = req.query("page_token", t.clone());
            }
            let data = self.api.send(req, ctx).await?.body;
            returns.extend(data.pointer("/data/return_orders").and_then(Value::as_array).cloned().unwrap_or_default());
            match data.pointer("/data/next_page_token").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                Some(next) => token = Some(next.to_owned()),
                None => break,
            }
        }
        Ok(json!({ "order": order, "returns": returns }))
    }

    async fn list_orders_since(&self, since: DateTime<Utc>, ctx: &CallContext) -> Result<Vec<Value>, ConnectorError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req =
                Req::post(format!("/order/{}/orders/search", self.v()), json!({ "update_time_ge": since.timestamp() }))
                    .query("page_size", "100");
            if let Some(t) = token.take() {
                req = req.query("page_token", t);
            }
            let body = self.api.send(req, ctx).await?.body;
            out.extend(field(&body, "/data/orders")?.as_array().cloned().unwrap_or_default());
            match body.pointer("/data/next_page_token").and_then(Value::as_str) {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => return Ok(out),
            }
        }
    }

    /// Seller cancellation of the whole order. TikTok takes a reason key, not free text: the account's
    /// `cancel_reason` (see [`cancel_reason`]); `reason` goes to the log only.
    async fn cancel_order(
        &self,
        channel_order_id: &str,
        reason: &str,
        ctx: &CallContext,
    ) -> Result<Accepted, ConnectorError> {
        let key = cancel_reason(self.api.parts.settings.get("cancel_reason").map(String::as_str))?;
        tracing::info!(order = channel_order_id, reason, key, "cancelling on TikTok Shop");
        let body = json!({ "order_id": channel_order_id, "cancel_reason": key });
        self.api
            .send(Req::post(format!("/return_refund/{}/cancellations", self.v()), body), ctx)
            .await
            .map(|_| Accepted::Done)
    }

    /// Inventory Search (`POST /product/{v}/inventory/search`) by the SKU ids the listing sync gave
    /// (item id `product_id/sku_id`), 100 a call: it takes product and SKU ids, not seller SKUs. The
    /// quantity is what is available at the account's `warehouse_id` (the total without one); an item
    /// without a SKU id is left out.
    async fn read_stock(&self, items: &[StockRead], ctx: &CallContext) -> Result<Vec<(String, i64)>, ConnectorError> {
        let by_id: std::collections::HashMap<&str, &str> = items
            .iter()
            .filter_map(|i| {
                let (_, sku_id) = i.channel_item_id.as_deref()?.split_once('/')?;
                Some((sku_id, i.channel_sku.as_str()))
            })
            .collect();
        let ids: Vec<&str> = by_id.keys().copied().collect();
        let warehouse = self.api.parts.settings.get("warehouse_id").map(String::as_str);
        let mut out = Vec::new();
        for chunk in ids.chunks(100) {
            let req = Req::post(format!("/product/{}/inventory/search", self.v()), json!({ "sku_ids": chunk }));
            let body = self.api.send(req, ctx).await?.body;
            for product in body.pointer("/data/inventory").and_then(Value::as_array).into_iter().flatten() {
                for sku in product.get("skus").and_then(Value::as_array).into_iter().flatten() {
                    let Some(channel_sku) = id_text(sku.get("id")).and_then(|id| by_id.get(id.as_str()).copied())
                    else {
                        continue;
                    };
                    let at_warehouse = warehouse.and_then(|w| {
                        sku.get("warehouse_inventory")
                            .and_then(Value::as_array)?
                            .iter()
                            .find(|x| id_text(x.get("warehouse_id")).as_deref() == Some(w))?
                            .get("available_quantity")?
                            .as_i64()
                    });
                    let quantity = at_warehouse.or_else(|| sku.get("total_available_quantity")?.as_i64());
                    if let Some(q) = quantity {
                        out.push((channel_sku.to_owned(), q));
                    }
                }
            }
        }
        Ok(out)
    }

    async fn list_listings(&self, cursor: Option<&str>, ctx: &CallContext) -> Result<ListingPage, ConnectorError> {
        let mut req = Req::post(format!("/product/{}/products/search", self.v()), json!({ "status": "ACTIVATE" }))
            .query("page_size", "100");
        if let Some(token) = cursor {
            req = req.query("page_token", token);
        }
        let body = self.api.send(req, ctx).await?.body;
        let warehouse = self.api.parts.settings.get("warehouse_id").map(String::as_str);
        let now = Utc::now();
        let listings = field(&body, "/data/products")?
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|p| skus_of(p, warehouse, now))
            .collect();
        let next = body.pointer("/data/next_page_token").and_then(Value::as_str).filter(|t| !t.is_empty());
        Ok(ListingPage { listings, next: next.map(str::to_owned) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_reasons_are_seller_reason_keys() {
        assert_eq!(cancel_reason(None).unwrap(), "seller_cancel_reason_out_of_stock");
        assert_eq!(
            cancel_reason(Some("seller_cancel_reason_out_of_stock_uk")).unwrap(),
            "seller_cancel_reason_out_of_stock_uk"
        );
        for bad in ["out of stock", "buyer_cancel_reason_x", "seller_cancel_Reason"] {
            assert!(cancel_reason(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn signature_ignores_sign_and_access_token_and_sorts_params() {
        let q1 = vec![("timestamp".to_owned(), "1".to_owned()), ("app_key".to_owned(), "k".to_owned())];
        let q2 = vec![
            ("app_key".to_owned(), "k".to_owned()),
            ("access_token".to_owned(), "x".to_owned()),
            ("timestamp".to_owned(), "1".to_owned()),
        ];
        assert_eq!(sign("s", "/p", &q1, "{}"), sign("s", "/p", &q2, "{}"));
        assert_ne!(sign("s", "/p", &q1, "{}"), sign("s", "/p", &q1, "{\"a\":1}"));
        assert_eq!(sign("s", "/p", &q1, "").len(), 64);
    }

    fn dialect(shop_cipher: Option<&str>) -> TikTokDialect {
        TikTokDialect {
            creds: [("client_secret", "s")].into_iter().collect(),
            app_key: Some("k".into()),
            shop_cipher: shop_cipher.map(str::to_owned),
        }
    }

    fn query<'a>(req: &'a Req, key: &str) -> Option<&'a str> {
        req.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    #[test]
    fn multipart_uploads_are_signed_without_their_body_and_without_the_shop() {
        let (content_type, body) = multipart(&[("use_case", "MAIN_IMAGE".into())], ("data", "a.png", b"PNG"));
        let mut req = Req::new(Method::POST, "/product/202309/images/upload").raw(content_type, body);
        dialect(Some("cipher")).authorize(&mut req, Some(&Token::new("t"))).unwrap();
        assert_eq!(query(&req, "shop_cipher"), None);
        let unsigned: Vec<(String, String)> = req.query.iter().filter(|(k, _)| k != "sign").cloned().collect();
        assert_eq!(query(&req, "sign"), Some(sign("s", &req.path, &unsigned, "").as_str()));

        let mut edit = Req::post("/product/202309/products/1/partial_edit", json!({ "title": "Mug" }));
        dialect(Some("cipher")).authorize(&mut edit, Some(&Token::new("t"))).unwrap();
        assert_eq!(query(&edit, "shop_cipher"), Some("cipher"));
        let unsigned: Vec<(String, String)> = edit.query.iter().filter(|(k, _)| k != "sign").cloned().collect();
        assert_eq!(query(&edit, "sign"), Some(sign("s", &edit.path, &unsigned, r#"{"title":"Mug"}"#).as_str()));
    }
}
