//! The listing sync against the WooCommerce simulator (ids by product and variation) and the
//! in-memory store: what is written, what is new, what is gone, and which ids pushes use.

use std::{collections::BTreeMap, time::Duration};

use chrono::{TimeDelta, Utc};
use manifold_connectors::{CallContext, ChannelConnector, Credentials, build, http_client};
use manifold_domain::{
    AccountId, Channel,
    config::{AccountConfig, ChannelConfig},
};
use manifold_simulator::{CatalogItem, SimConfig, SimHandle, Simulator};

use super::*;

fn account(sim: &SimHandle, item_ids: &[(&str, &str)], sku_map: &[(&str, &str)]) -> AccountConfig {
    let lines = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| format!("\"{k}\" = \"{v}\"")).collect::<Vec<_>>();
    let (ids, map) = (lines(item_ids).join("\n") + "\n", lines(sku_map).join("\n") + "\n");
    let text = format!(
        "version = 1\n[[accounts]]\nchannel = \"woocommerce\"\naccount = \"woo-listings\"\napi_version = \"v3\"\n\
         secret = \"manifold/woocommerce/listings\"\nendpoint = \"{}\"\nrate_limit = {{ kind = \"unlimited\" }}\n\
         [accounts.item_ids]\n{ids}[accounts.sku_map]\n{map}",
        sim.base_url(Channel::Woocommerce)
    );
    ChannelConfig::parse("listings.toml", &text).unwrap().accounts.remove(0)
}

fn connector(_sim: &SimHandle, account: &AccountConfig) -> std::sync::Arc<dyn ChannelConnector> {
    let creds: Credentials = [("client_id", "ck"), ("client_secret", "cs")].into_iter().collect();
    build(account, creds, http_client(Duration::from_secs(5)).unwrap())
}

fn item(id: &str, sku: &str, quantity: i64) -> CatalogItem {
    CatalogItem {
        id: id.into(),
        sku: sku.into(),
        quantity,
        product_id: None,
        variant_id: None,
        price_minor: Some(1250),
    }
}

#[tokio::test]
async fn a_sync_stores_listings_reports_new_ones_and_marks_vanished_ones_gone() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    sim.seed_catalog(Channel::Woocommerce, vec![item("11", "TEE-S", 4), item("20/21", "HOODIE-M", 2)]);
    let account = account(&sim, &[], &[("HOODIE-M", "HOODIE-BLK-M")]);
    let store = MemoryListings::default();
    let woo = connector(&sim, &account);
    let ctx = CallContext::new("t");
    let key = |sku: &str| ListingKey {
        channel: Channel::Woocommerce,
        account: account.account.clone(),
        channel_sku: sku.into(),
    };

    // Before any sync the account sells everything.
    assert_eq!(store.lookup(&[key("ANYTHING")]).await.unwrap(), vec![Lookup::Unsynced]);

    let t0 = Utc::now();
    let (report, new) = sync_account(&store, &*woo, &account, &ctx, t0).await.unwrap();
    assert_eq!((report.listed, report.new, report.gone), (2, 2, 0));
    let hoodie = new.iter().find(|l| l.listing.sku == "HOODIE-M").unwrap();
    assert_eq!(hoodie.master.as_ref().map(ToString::to_string).as_deref(), Some("HOODIE-BLK-M"), "sku_map applies");
    assert_eq!(hoodie.listing.ids.item_id(Channel::Woocommerce).as_deref(), Some("20/21"));
    assert_eq!(hoodie.listing.quantity, Some(2));

    let found = store.lookup(&[key("TEE-S"), key("NOT-SOLD")]).await.unwrap();
    assert!(
        matches!(&found[0], Lookup::Listed(l) if l.listing.ids.item_id(Channel::Woocommerce).as_deref() == Some("11"))
    );
    assert_eq!(found[1], Lookup::NotListed, "synced: what it does not list is not sold there");

    // The channel drops the T-shirt and adds a cap: one new, one gone, the hoodie kept its first sighting.
    let sim2 = Simulator::start(SimConfig::default()).await.unwrap();
    sim2.seed_catalog(Channel::Woocommerce, vec![item("20/21", "HOODIE-M", 1), item("30", "CAP", 9)]);
    let account2 = AccountConfig { endpoint: sim2.base_url(Channel::Woocommerce), ..account.clone() };
    let t1 = t0 + TimeDelta::hours(24);
    let (report, new) = sync_account(&store, &*connector(&sim2, &account2), &account2, &ctx, t1).await.unwrap();
    assert_eq!((report.listed, report.new, report.gone), (2, 1, 1));
    assert_eq!(new[0].listing.sku, "CAP");
    let stored: BTreeMap<String, StoredListing> = store
        .account_listings(Channel::Woocommerce, &account.account)
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.listing.sku.clone(), l))
        .collect();
    assert_eq!(stored["TEE-S"].gone_at, Some(t1));
    assert_eq!((stored["HOODIE-M"].first_seen, stored["HOODIE-M"].listing.quantity), (t0, Some(1)));
    assert_eq!(store.lookup(&[key("TEE-S")]).await.unwrap(), vec![Lookup::NotListed]);

    // Back again: new again.
    let (report, _) =
        sync_account(&store, &*connector(&sim, &account), &account, &ctx, t1 + TimeDelta::hours(24)).await.unwrap();
    assert_eq!((report.new, report.gone), (1, 1), "the T-shirt is back, the cap is gone");
}

#[tokio::test]
async fn a_failed_walk_marks_nothing_gone_and_changes_no_sync() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let account = account(&sim, &[], &[]);
    let store = MemoryListings::default();
    let ctx = CallContext::new("t");
    let key = |sku: &str| ListingKey {
        channel: Channel::Woocommerce,
        account: AccountId::new("woo-listings").unwrap(),
        channel_sku: sku.into(),
    };
    // 150 products: two pages.
    sim.seed_catalog(
        Channel::Woocommerce,
        (0..150).map(|n| item(&(100 + n).to_string(), &format!("S-{n}"), 1)).collect(),
    );
    let err = sync_account(&store, &*connector(&sim, &account), &account, &ctx, Utc::now()).await;
    sim.inject(manifold_simulator::FaultSpec {
        channel: Channel::Woocommerce,
        kind: manifold_simulator::FaultKind::Unauthorized,
        probability: None,
        next_n: None,
    });
    assert!(err.is_ok());
    let err = sync_account(&store, &*connector(&sim, &account), &account, &ctx, Utc::now()).await.unwrap_err();
    assert!(!err.is_retryable());
    assert!(matches!(&store.lookup(&[key("S-149")]).await.unwrap()[0], Lookup::Listed(_)), "nothing marked gone");

    // A store that never completed a walk keeps the account unfiltered.
    let fresh = MemoryListings::default();
    assert!(sync_account(&fresh, &*connector(&sim, &account), &account, &ctx, Utc::now()).await.is_err());
    assert_eq!(fresh.lookup(&[key("S-1")]).await.unwrap(), vec![Lookup::Unsynced], "still pushes everything");
}

#[tokio::test]
async fn pushes_use_the_configured_override_then_the_listing_id() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    sim.seed_catalog(Channel::Woocommerce, vec![item("11", "TEE-S", 4), item("20/21", "HOODIE-M", 2)]);
    let account = account(&sim, &[("TEE-S", "99")], &[]);
    let store = MemoryListings::default();
    sync_account(&store, &*connector(&sim, &account), &account, &CallContext::new("t"), Utc::now()).await.unwrap();
    let skus = ["TEE-S", "HOODIE-M", "UNLISTED"].map(String::from);
    let ids = item_ids(&store, &account, &skus).await.unwrap();
    assert_eq!(ids.get("TEE-S").map(String::as_str), Some("99"), "item_ids override the listing");
    assert_eq!(ids.get("HOODIE-M").map(String::as_str), Some("20/21"));
    assert!(!ids.contains_key("UNLISTED"));
}

#[tokio::test]
async fn a_walk_that_finds_nothing_leaves_the_account_unfiltered() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let account = account(&sim, &[], &[]);
    let store = MemoryListings::default();
    let (report, new) =
        sync_account(&store, &*connector(&sim, &account), &account, &CallContext::new("t"), Utc::now()).await.unwrap();
    assert_eq!((report.listed, report.gone, new.len()), (0, 0, 0));
    let key = ListingKey { channel: Channel::Woocommerce, account: account.account.clone(), channel_sku: "ANY".into() };
    assert_eq!(store.lookup(&[key]).await.unwrap(), vec![Lookup::Unsynced], "an empty catalog filters nothing");
}
