//! What the connector tests against the simulator share: an account of each channel as a
//! configuration file gives it, its connector, and catalog items keyed as each channel keys them.
#![allow(dead_code)]

use std::time::Duration;

use manifold_connectors::{ChannelConnector, Credentials, build, http_client};
use manifold_domain::{
    Channel,
    config::{AccountConfig, ChannelConfig},
};
use manifold_simulator::{CatalogItem, SimHandle};

pub fn version(channel: Channel) -> &'static str {
    match channel {
        Channel::Shopify => "2026-07",
        Channel::Woocommerce | Channel::Bigcommerce | Channel::Etsy => "v3",
        Channel::Amazon => "v0",
        Channel::Tiktok => "202309",
        Channel::Zalando | Channel::Ebay => "v1",
        Channel::Kaufland => "v2",
        Channel::Otto => "v4",
    }
}

/// The account as a configuration file would give it (parsed, so fields added later keep their defaults).
pub fn account(sim: &SimHandle, channel: Channel) -> AccountConfig {
    account_limited(sim, channel, r#"{ kind = "unlimited" }"#)
}

pub fn account_limited(sim: &SimHandle, channel: Channel, rate_limit: &str) -> AccountConfig {
    let location = if channel == Channel::Bigcommerce { "1" } else { "gid://shopify/Location/1" };
    let text = format!(
        r#"version = 1
[[accounts]]
channel = "{channel}"
account = "listings-test"
api_version = "{version}"
secret = "manifold/{channel}/listings"
endpoint = "{endpoint}"
rate_limit = {rate_limit}
[accounts.settings]
location_id = "{location}"
seller_id = "A2EUQ1WTGCTBG2"
marketplace_id = "A1PA6795UKMFR9"
shop_id = "12345678"
warehouse_id = "7068517275539793707"
app_key = "sim-app-key"
sales_channel_id = "bf48ba35-149d-4b76-8ac9-d08d126b517f"
storefront = "de"
ship_from_city = "Hamburg"
ship_from_zip_code = "22179"
ship_from_country = "DEU"
"#,
        version = version(channel),
        endpoint = sim.base_url(channel),
        rate_limit = rate_limit,
    );
    ChannelConfig::parse("listings-test.toml", &text).unwrap().accounts.remove(0)
}

pub fn connector(sim: &SimHandle, channel: Channel) -> std::sync::Arc<dyn ChannelConnector> {
    let creds: Credentials = [
        ("access_token", "sim-token"),
        ("client_id", "ck_sim"),
        ("client_secret", "cs_sim"),
        ("api_key", "sim-keystring"),
        ("client_key", manifold_simulator::KAUFLAND_KEYS.0),
        ("secret_key", manifold_simulator::KAUFLAND_KEYS.1),
    ]
    .into_iter()
    .collect();
    build(&account(sim, channel), creds, http_client(Duration::from_secs(5)).unwrap())
}

/// Catalog item `n` of `channel`, keyed as that channel keys its stock writes, and the item id the
/// connector must read back from the listing for it (`None`: the channel writes by SKU).
pub fn item(channel: Channel, n: usize) -> (CatalogItem, Option<String>) {
    let sku = format!("LST-{n:04}");
    let product = format!("{}", 7000 + n / 3);
    let variant = format!("{}", 9000 + n);
    let (id, product_id, variant_id, item_id) = match channel {
        Channel::Shopify => {
            let gid = format!("gid://shopify/InventoryItem/{n}");
            (
                gid.clone(),
                Some(format!("gid://shopify/Product/{product}")),
                Some(format!("gid://shopify/ProductVariant/{variant}")),
                Some(gid),
            )
        }
        // Every third product is simple, the others variations of a variable product.
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
    let sku = if channel == Channel::Zalando { id.clone() } else { sku };
    let quantity = i64::try_from(n % 17).unwrap();
    let price_minor = Some(1000 + i64::try_from(n).unwrap());
    (CatalogItem { id, sku, quantity, product_id, variant_id, price_minor }, item_id)
}
