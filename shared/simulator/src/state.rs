//! What the simulated channels remember: stock per channel item, a catalog (when seeded), orders, and
//! everything the tests inspect afterwards (request and 429 counts, idempotency keys, writes).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use manifold_domain::Channel;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::limits::SimLimiter;

/// A catalog entry, seeded through `POST /_sim/catalog/{channel}`. `id` is the key the channel's
/// stock write uses (Shopify inventory item gid, WooCommerce product id or `product/variation`, TikTok
/// SKU id, Zalando EAN, the SKU elsewhere); the other ids feed lookups and the listing reads:
/// `product_id` is the parent (Shopify product gid, BigCommerce and TikTok product id, Amazon ASIN, Etsy
/// and eBay listing id), `variant_id` the child (Shopify variant gid, BigCommerce variant id, Etsy
/// product id, eBay offer id). The catalog is served in `id` order, so pages are stable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogItem {
    pub id: String,
    pub sku: String,
    #[serde(default)]
    pub quantity: i64,
    #[serde(default)]
    pub product_id: Option<String>,
    #[serde(default)]
    pub variant_id: Option<String>,
    /// Price in minor units (Etsy offerings).
    #[serde(default)]
    pub price_minor: Option<i64>,
}

/// One image as a channel shows it: the URL it was given (or its own, for uploads) and, for uploaded
/// bytes, their SHA-256.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimImage {
    pub url: String,
    #[serde(default)]
    pub alt: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
}

/// What a channel shows of one listing's content, keyed as the channel's content writes key it
/// (product id, listing id or SKU).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimContent {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub images: Vec<SimImage>,
}

impl CatalogItem {
    /// Item `n` of a sample catalog of `channel` (SKU `{prefix}-{n:04}`), keyed as that channel keys
    /// its stock writes, with the item id a connector must read back from its listing for it (`None`
    /// where the channel writes by SKU): what the connector and integration tests seed. Three items
    /// share a product (`7000 + n / 3`); on WooCommerce every third is a simple product and the others
    /// variations of a variable one.
    pub fn sample(channel: Channel, n: usize, prefix: &str) -> (CatalogItem, Option<String>) {
        let sku = format!("{prefix}-{n:04}");
        let product = format!("{}", 7000 + n / 3);
        let variant = format!("{}", 9000 + n);
        let (id, product_id, variant_id, item_id) = match channel {
            Channel::Shopify => {
                let gid = format!("gid://shopify/InventoryItem/{n}");
                let product = Some(format!("gid://shopify/Product/{product}"));
                (gid.clone(), product, Some(format!("gid://shopify/ProductVariant/{variant}")), Some(gid))
            }
            Channel::Woocommerce if n.is_multiple_of(3) => {
                (format!("{}", 100 + n), None, None, Some(format!("{}", 100 + n)))
            }
            Channel::Woocommerce => {
                let id = format!("{}/{variant}", 5000 + n / 3);
                (id.clone(), None, None, Some(id))
            }
            Channel::Bigcommerce => (sku.clone(), Some(product), Some(variant.clone()), Some(variant)),
            Channel::Amazon => (sku.clone(), Some(format!("B0{n:08}")), None, None),
            Channel::Etsy => (format!("etsy-{n}"), Some(product.clone()), None, Some(product)),
            Channel::Tiktok => (variant.clone(), Some(product.clone()), None, Some(format!("{product}/{variant}"))),
            Channel::Zalando => (format!("40000000{n:05}"), None, None, None),
            Channel::Ebay => (sku.clone(), Some(format!("11{n:08}")), Some(variant.clone()), Some(variant)),
            // Units: id_unit, keyed by the seller's id_offer (the SKU).
            Channel::Kaufland => (variant.clone(), Some(product), None, Some(variant)),
            // Keyed by SKU: its availability read and write both name the SKU.
            Channel::Otto => (sku.clone(), None, None, None),
        };
        // Zalando's SKU is the EAN its stock writes take.
        let sku = if channel == Channel::Zalando { id.clone() } else { sku };
        let small = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        let item = CatalogItem {
            id,
            sku,
            quantity: small(n % 17),
            product_id,
            variant_id,
            price_minor: Some(1000 + small(n)),
        };
        (item, item_id)
    }

    /// An item keyed by its SKU (Amazon, eBay, OTTO), with this quantity.
    pub fn by_sku(sku: &str, quantity: i64) -> CatalogItem {
        CatalogItem { id: sku.into(), sku: sku.into(), quantity, product_id: None, variant_id: None, price_minor: None }
    }
}

/// A fault to inject into a channel's next responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    ServerError,
    Timeout,
    Unauthorized,
    Malformed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub channel: Channel,
    pub kind: FaultKind,
    #[serde(default)]
    pub probability: Option<f64>,
    #[serde(default)]
    pub next_n: Option<u32>,
}

/// One recorded write (any non-GET request), for shape assertions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Write {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeededOrder {
    pub id: String,
    pub doc: Value,
    pub exported: bool,
}

/// The inspection view (`GET /_sim/state`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Snapshot {
    pub stock: BTreeMap<Channel, BTreeMap<String, i64>>,
    pub requests: BTreeMap<Channel, u64>,
    pub throttled: BTreeMap<Channel, u64>,
    pub idempotency_keys: BTreeMap<Channel, Vec<String>>,
    pub writes: BTreeMap<Channel, Vec<Write>>,
    pub orders: BTreeMap<Channel, Vec<SeededOrder>>,
    /// Calls to the channel's token endpoint (not counted in `requests`).
    #[serde(default)]
    pub token_requests: BTreeMap<Channel, u64>,
    /// Requests refused for an expired or unknown access token.
    #[serde(default)]
    pub unauthorized: BTreeMap<Channel, u64>,
    /// Rate-limit allowance spent so far (points for Shopify, requests elsewhere) and the allowance
    /// the configured limit made available since the first request, for utilisation figures.
    pub allowance: BTreeMap<Channel, Allowance>,
    /// Listing content each channel shows, by the key its content writes use.
    #[serde(default)]
    pub content: BTreeMap<Channel, BTreeMap<String, SimContent>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Allowance {
    pub spent: f64,
    pub available: f64,
}

#[derive(Debug, Default)]
pub struct Inner {
    pub stock: BTreeMap<Channel, BTreeMap<String, i64>>,
    pub catalog: BTreeMap<Channel, BTreeMap<String, CatalogItem>>,
    pub orders: BTreeMap<Channel, Vec<SeededOrder>>,
    pub requests: BTreeMap<Channel, u64>,
    pub throttled: BTreeMap<Channel, u64>,
    pub idempotency: BTreeMap<Channel, Vec<String>>,
    pub idempotent_replies: BTreeMap<String, Value>,
    pub writes: BTreeMap<Channel, Vec<Write>>,
    pub faults: BTreeMap<Channel, FaultSpec>,
    /// Set by `SimHandle::seed_faults`: each channel's probabilistic faults draw from their own
    /// generator seeded from it, so a run's fault pattern per channel repeats with its seed.
    pub fault_seed: Option<u64>,
    pub fault_rngs: BTreeMap<Channel, rand::rngs::StdRng>,
    pub limiters: BTreeMap<Channel, SimLimiter>,
    pub public_keys: BTreeMap<String, String>,
    pub feed_documents: BTreeSet<String>,
    /// Returns and refunds each channel holds, per order id, in the channel's own shape.
    pub returns: BTreeMap<Channel, BTreeMap<String, Vec<Value>>>,
    /// Work a channel finishes after answering (OTTO's price update processes), by id.
    pub tasks: BTreeMap<String, Value>,
    pub access_tokens: BTreeMap<String, crate::tokens::IssuedToken>,
    /// Refresh tokens the token endpoints accept, with their channel.
    pub refresh_tokens: BTreeMap<String, Channel>,
    pub token_requests: BTreeMap<Channel, u64>,
    pub unauthorized: BTreeMap<Channel, u64>,
    /// At most this many orders per page of any order list (`SimHandle::cap_order_pages`).
    pub order_page_cap: Option<usize>,
    /// Every stock write through the channel's API, in order, with when it landed (the bench's
    /// oversell window ends when every channel holds an order's new quantity).
    pub stock_changes: Vec<StockChange>,
    pub content: BTreeMap<Channel, BTreeMap<String, SimContent>>,
    /// Files served at `/_sim/assets/{name}` (an image host for staged uploads), by name.
    pub assets: BTreeMap<String, Vec<u8>>,
    /// Resources a channel keeps whole besides stock, content and orders (eBay's inventory items,
    /// the fields they were put with), by channel and id.
    pub documents: BTreeMap<(Channel, String), Value>,
    /// Images uploaded ahead of being attached (TikTok's `uri`s), by reference.
    pub uploads: BTreeMap<String, SimImage>,
}

/// One stock write the channel accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockChange {
    pub at: std::time::Instant,
    pub channel: Channel,
    pub key: String,
    pub quantity: i64,
}

#[derive(Debug)]
pub struct SimState {
    pub inner: Mutex<Inner>,
    pub timeout_delay: Duration,
    pub base_url: Mutex<String>,
    pub tokens: crate::tokens::TokenPolicy,
}

impl SimState {
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    /// Whether `key` may be written: anything goes until a catalog is seeded for the channel.
    pub fn known(&self, channel: Channel, key: &str) -> bool {
        self.catalog.get(&channel).is_none_or(|c| c.is_empty() || c.contains_key(key))
    }

    pub fn set_stock(&mut self, channel: Channel, key: &str, quantity: i64) {
        self.stock.entry(channel).or_default().insert(key.to_owned(), quantity);
        self.stock_changes.push(StockChange { at: std::time::Instant::now(), channel, key: key.to_owned(), quantity });
        if let Some(item) = self.catalog.get_mut(&channel).and_then(|c| c.get_mut(key)) {
            item.quantity = quantity;
        }
    }

    /// The content a channel shows for `key`, created empty on first write.
    pub fn content_mut(&mut self, channel: Channel, key: &str) -> &mut SimContent {
        self.content.entry(channel).or_default().entry(key.to_owned()).or_default()
    }

    pub fn stock_of(&self, channel: Channel, key: &str) -> Option<i64> {
        self.stock.get(&channel).and_then(|s| s.get(key)).copied()
    }

    /// One page of the channel's catalog (in `id` order) and whether more follow.
    pub fn catalog_page(&self, channel: Channel, offset: usize, size: usize) -> (Vec<CatalogItem>, bool) {
        let all: Vec<&CatalogItem> = self.catalog(channel).collect();
        let page = all.iter().skip(offset).take(size).map(|i| (*i).clone()).collect();
        (page, offset + size < all.len())
    }

    pub fn catalog(&self, channel: Channel) -> impl Iterator<Item = &CatalogItem> {
        self.catalog.get(&channel).into_iter().flat_map(|c| c.values())
    }

    pub fn order(&self, channel: Channel, id: &str) -> Option<&SeededOrder> {
        self.orders.get(&channel).and_then(|o| o.iter().find(|x| x.id == id))
    }

    pub fn order_mut(&mut self, channel: Channel, id: &str) -> Option<&mut SeededOrder> {
        self.orders.get_mut(&channel).and_then(|o| o.iter_mut().find(|x| x.id == id))
    }

    /// Decides whether the channel's configured fault fires for this request.
    pub fn take_fault(&mut self, channel: Channel) -> Option<FaultKind> {
        let fault = self.faults.get_mut(&channel)?;
        let kind = fault.kind;
        let fire = match (&mut fault.next_n, fault.probability) {
            (Some(n), _) if *n > 0 => {
                *n -= 1;
                true
            }
            (Some(_), _) => false,
            (None, Some(p)) => match (self.fault_seed, &mut self.fault_rngs) {
                (Some(seed), rngs) => {
                    use rand::{Rng as _, SeedableRng as _};
                    let rng = rngs.entry(channel).or_insert_with(|| {
                        let salt = Channel::ALL.iter().position(|c| *c == channel).unwrap_or_default() as u64;
                        rand::rngs::StdRng::seed_from_u64(seed ^ (salt << 32))
                    });
                    rng.random::<f64>() < p
                }
                (None, _) => rand::random::<f64>() < p,
            },
            (None, None) => true,
        };
        if fault.next_n == Some(0) {
            self.faults.remove(&channel);
        }
        fire.then_some(kind)
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            stock: self.stock.clone(),
            requests: self.requests.clone(),
            throttled: self.throttled.clone(),
            idempotency_keys: self.idempotency.clone(),
            writes: self.writes.clone(),
            orders: self.orders.clone(),
            token_requests: self.token_requests.clone(),
            unauthorized: self.unauthorized.clone(),
            allowance: self.limiters.iter().map(|(c, l)| (*c, l.allowance())).collect(),
            content: self.content.clone(),
        }
    }
}
