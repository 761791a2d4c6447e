//! Listings end to end on moto and the channel simulators: a listing sync per account fills the
//! listings store; afterwards a SKU an account does not list is never pushed there (so never rejected
//! and quarantined), the push writes by the id the listing gave (no `item_ids` configured), a listing
//! seen for the first time gets the current quantity at once, and `manifold listings` reports SKUs
//! nobody lists and listings the ledger does not know.

use std::{collections::HashMap, sync::Arc};

use chrono::Utc;
use manifold_app::{App, app::Settings, ledger::OnHandUpdate};
use manifold_aws::secrets::StaticSecrets;
use manifold_cli::{aws::Aws, commands::listings};
use manifold_domain::{Channel, config::ChannelConfig};
use manifold_simulator::{CatalogItem, SimConfig, SimHandle, Simulator};
use serde_json::json;

use crate::support::{self, Stack, lambda_event};

/// A private stack, the simulator, and an App with one Shopify and one WooCommerce account on it.
struct Rig {
    sim: SimHandle,
    stack: Stack,
    app: App,
    config: ChannelConfig,
    /// Keeps this test's SKUs apart from every other test's.
    run: String,
}

impl Rig {
    async fn new() -> Self {
        let sim = Simulator::start(SimConfig::default().unlimited(Channel::Shopify).unlimited(Channel::Woocommerce))
            .await
            .expect("simulator starts on loopback");
        let stack = Stack::new().await;
        let text = format!(
            r#"version = 1
[[accounts]]
channel = "shopify"
account = "shop-lst"
api_version = "2026-07"
secret = "manifold/shopify/lst"
endpoint = "{shopify}"
rate_limit = {{ kind = "unlimited" }}
settings = {{ location_id = "gid://shopify/Location/1" }}

[[accounts]]
channel = "woocommerce"
account = "woo-lst"
api_version = "v3"
secret = "manifold/woocommerce/lst"
endpoint = "{woo}"
rate_limit = {{ kind = "unlimited" }}
"#,
            shopify = sim.base_url(Channel::Shopify),
            woo = sim.base_url(Channel::Woocommerce),
        );
        let config = ChannelConfig::parse("listings.toml", &text).expect("valid configuration");
        let secrets = StaticSecrets(HashMap::from([
            ("manifold/shopify/lst".to_owned(), json!({ "access_token": "sim-token" }).to_string()),
            ("manifold/woocommerce/lst".to_owned(), json!({ "client_id": "ck", "client_secret": "cs" }).to_string()),
        ]));
        let app = App::build(config.clone(), stack.env.clone(), Settings::default(), &stack.sdk, Arc::new(secrets))
            .expect("app builds");
        let run = support::unique("LST").replace('-', "").to_uppercase();
        Self { sim, stack, app, config, run }
    }

    fn sku(&self, name: &str) -> String {
        format!("{}-{name}", self.run)
    }

    fn account(&self, channel: Channel) -> manifold_domain::config::AccountConfig {
        self.config.enabled_accounts().find(|a| a.channel == channel).cloned().expect("configured")
    }

    /// Lists `skus` on the channel: Shopify by inventory item gid, WooCommerce by product id.
    fn list(&self, channel: Channel, skus: &[(&str, u32)]) {
        let items = skus
            .iter()
            .map(|(name, n)| {
                let id = match channel {
                    Channel::Shopify => format!("gid://shopify/InventoryItem/{n}"),
                    _ => n.to_string(),
                };
                CatalogItem {
                    id,
                    sku: self.sku(name),
                    quantity: 0,
                    product_id: Some(format!("gid://shopify/Product/{n}")),
                    variant_id: Some(format!("gid://shopify/ProductVariant/{n}")),
                    price_minor: Some(1500),
                }
            })
            .collect();
        self.sim.seed_catalog(channel, items);
    }

    async fn sync(&self, channel: Channel) -> manifold_app::listings::ListingSyncReport {
        self.app.sync_listings(&self.account(channel)).await.expect("listing sync")
    }

    async fn set_on_hand(&self, name: &str, on_hand: i64) {
        let update: OnHandUpdate = serde_json::from_value(json!({ "on_hand": on_hand })).unwrap();
        self.app.set_on_hand(&self.sku(name), &update, &support::unique("count"), Utc::now()).await.expect("count");
    }

    /// Takes every job off the channel's push queue: (SKU, quantity) of each, and runs the push
    /// consumer on them as the event source mapping would.
    async fn push(&self, channel: Channel) -> Vec<(String, u32)> {
        let messages = self.stack.drain(&self.stack.env.push_queues[&channel]).await;
        let jobs = messages
            .iter()
            .map(|m| {
                let job: serde_json::Value = serde_json::from_str(m.body().unwrap_or("{}")).unwrap();
                (
                    job["sku"].as_str().unwrap_or_default().to_owned(),
                    u32::try_from(job["quantity"].as_u64().unwrap()).unwrap(),
                )
            })
            .collect();
        if !messages.is_empty() {
            let response = self.app.push_batch(channel, lambda_event(&messages)).await;
            assert!(response.batch_item_failures.is_empty(), "{channel}: {:?}", response.batch_item_failures);
        }
        jobs
    }

    fn stock(&self, channel: Channel, key: &str) -> Option<i64> {
        self.sim.snapshot().stock.get(&channel).and_then(|s| s.get(key)).copied()
    }
}

#[tokio::test]
async fn a_sku_an_account_does_not_list_is_never_pushed_there_nor_quarantined() {
    let rig = Rig::new().await;
    rig.list(Channel::Shopify, &[("BOTH", 11), ("SHOPIFY-ONLY", 12)]);
    rig.list(Channel::Woocommerce, &[("BOTH", 501)]);
    assert_eq!(rig.sync(Channel::Shopify).await.listed, 2);
    assert_eq!(rig.sync(Channel::Woocommerce).await.listed, 1);

    rig.set_on_hand("SHOPIFY-ONLY", 6).await;
    rig.set_on_hand("BOTH", 3).await;

    let woo = rig.push(Channel::Woocommerce).await;
    assert_eq!(woo, vec![(rig.sku("BOTH"), 3)], "WooCommerce is only pushed what it lists");
    let mut shopify = rig.push(Channel::Shopify).await;
    shopify.sort();
    assert_eq!(shopify, vec![(rig.sku("BOTH"), 3), (rig.sku("SHOPIFY-ONLY"), 6)]);

    // Written by the ids the listings gave: no item_ids are configured.
    assert_eq!(rig.stock(Channel::Woocommerce, "501"), Some(3));
    assert_eq!(rig.stock(Channel::Shopify, "gid://shopify/InventoryItem/12"), Some(6));
    assert_eq!(rig.stock(Channel::Shopify, "gid://shopify/InventoryItem/11"), Some(3));
    let quarantined = rig.app.quarantine.list(true).await.expect("quarantine");
    assert!(quarantined.is_empty(), "nothing rejected, nothing quarantined: {quarantined:?}");
}

#[tokio::test]
async fn an_account_never_synced_still_gets_every_sku() {
    let rig = Rig::new().await;
    rig.list(Channel::Shopify, &[("LISTED", 21)]);
    rig.sync(Channel::Shopify).await;
    rig.set_on_hand("UNLISTED", 2).await;
    assert!(rig.push(Channel::Shopify).await.is_empty(), "synced Shopify does not list it");
    let woo = rig.stack.drain(&rig.stack.env.push_queues[&Channel::Woocommerce]).await;
    assert_eq!(woo.len(), 1, "WooCommerce has no listing sync yet: pushed as before");
}

#[tokio::test]
async fn a_new_listing_receives_the_current_quantity_at_once() {
    let rig = Rig::new().await;
    rig.list(Channel::Shopify, &[("NEW", 31)]);
    rig.list(Channel::Woocommerce, &[("OTHER", 700)]);
    rig.sync(Channel::Shopify).await;
    rig.sync(Channel::Woocommerce).await;
    rig.set_on_hand("NEW", 7).await;
    assert!(rig.push(Channel::Woocommerce).await.is_empty(), "not listed on WooCommerce yet");

    rig.list(Channel::Woocommerce, &[("OTHER", 700), ("NEW", 777)]);
    let report = rig.sync(Channel::Woocommerce).await;
    assert_eq!((report.listed, report.new, report.pushed), (2, 1, 1), "{report:?}");
    assert_eq!(rig.push(Channel::Woocommerce).await, vec![(rig.sku("NEW"), 7)]);
    assert_eq!(rig.stock(Channel::Woocommerce, "777"), Some(7), "the new listing shows the current quantity");

    // Nothing new the next day: nothing pushed.
    let again = rig.sync(Channel::Woocommerce).await;
    assert_eq!((again.new, again.pushed, again.gone), (0, 0, 0));
}

#[tokio::test]
async fn the_cli_reports_skus_nobody_lists_and_listings_the_ledger_does_not_know() {
    let rig = Rig::new().await;
    rig.list(Channel::Shopify, &[("SOLD", 41), ("NOT-COUNTED", 42)]);
    rig.list(Channel::Woocommerce, &[("SOLD", 801)]);
    rig.sync(Channel::Shopify).await;
    rig.sync(Channel::Woocommerce).await;
    rig.set_on_hand("SOLD", 4).await;
    rig.set_on_hand("IN-STOCK-NOWHERE", 9).await;

    let aws = Aws::new(rig.stack.env.clone(), &rig.stack.sdk);
    let unlisted = listings::unlisted(&aws).await.expect("unlisted");
    assert_eq!(unlisted.skus, vec![rig.sku("IN-STOCK-NOWHERE")]);
    assert_eq!(unlisted.accounts_with_listings, 2);
    let unknown = listings::unknown(&aws).await.expect("unknown");
    let rows: Vec<(&str, &str)> =
        unknown.listings.iter().map(|l| (l.channel.as_str(), l.channel_sku.as_str())).collect();
    assert_eq!(rows, vec![("shopify", rig.sku("NOT-COUNTED").as_str())]);
}

#[tokio::test]
async fn the_listings_tier_syncs_every_account() {
    let rig = Rig::new().await;
    rig.list(Channel::Shopify, &[("TIER", 51)]);
    rig.list(Channel::Woocommerce, &[("TIER", 901), ("TIER-2", 902)]);
    let report = rig.app.run_tier("listings", Utc::now()).await.expect("listings tier");
    assert_eq!((report.positions, report.drift, report.note.as_deref()), (3, 3, None), "{report:?}");
    let again = rig.app.run_tier("listings", Utc::now()).await.expect("listings tier");
    assert_eq!((again.positions, again.drift), (3, 0), "nothing new, nothing gone");
}

#[tokio::test]
async fn a_listings_run_walks_a_page_per_invocation_and_ends_the_walk_on_its_last_page() {
    use manifold_app::listings::{ListingKey, Lookup};
    let rig = Rig::new().await;
    let names: Vec<String> = (0..150).map(|n| format!("PAGED-{n}")).collect();
    let items: Vec<(&str, u32)> = names.iter().zip(1000..).map(|(n, id)| (n.as_str(), id)).collect();
    rig.list(Channel::Woocommerce, &items);
    let account = rig.account(Channel::Woocommerce);
    let key = |name: &str| ListingKey {
        channel: Channel::Woocommerce,
        account: account.account.clone(),
        channel_sku: rig.sku(name),
    };
    let started = Utc::now();

    let (first, next) = rig.app.sync_listings_page(&account, None, started, Utc::now()).await.expect("page 1");
    assert_eq!((first.listed, first.gone), (100, 0));
    let next = next.expect("WooCommerce pages by 100: a second page");
    let unknown = rig.app.listings.lookup(&[key("NOT-SOLD")]).await.unwrap();
    assert_eq!(unknown, vec![Lookup::Unsynced], "mid-walk the account still gets every SKU");

    let (last, after) = rig.app.sync_listings_page(&account, Some(&next), started, Utc::now()).await.expect("page 2");
    assert_eq!((last.listed, after), (50, None));
    let found = rig.app.listings.lookup(&[key("NOT-SOLD"), key("PAGED-149")]).await.unwrap();
    assert_eq!(found[0], Lookup::NotListed, "the walk ended: the account is synced");
    assert!(
        matches!(&found[1], Lookup::Listed(l) if l.listing.ids.item_id(Channel::Woocommerce).as_deref() == Some("1149"))
    );
}
