//! Each connector walks its account's listings page by page against the channel simulator, and the
//! ids it reads are the ones the channel's own stock write takes: every listed SKU is then pushed by
//! the item id its listing gave, and the simulator holds the new quantity under its own key.

use std::{collections::BTreeMap, time::Duration};

mod common;

use common::{account_limited, connector, item};
use manifold_connectors::{CallContext, ChannelConnector, Credentials, Listing, StockUpdate, build, http_client};
use manifold_domain::{Channel, Sku};
use manifold_simulator::{CatalogItem, SimConfig, Simulator};

async fn all_listings(connector: &dyn ChannelConnector) -> (Vec<Listing>, usize) {
    let ctx = CallContext::new("listings-test");
    let (mut all, mut pages, mut cursor) = (Vec::new(), 0, None::<String>);
    loop {
        let page = connector.list_listings(cursor.as_deref(), &ctx).await.unwrap();
        all.extend(page.listings);
        pages += 1;
        match page.next {
            Some(next) => cursor = Some(next),
            None => return (all, pages),
        }
        assert!(pages < 1000, "paging never ends");
    }
}

#[tokio::test]
async fn every_connector_lists_its_catalog_with_the_ids_its_writes_take() {
    // More than one page everywhere the page is small (Amazon 20, Shopify, WooCommerce and eBay 100).
    const N: usize = 230;
    let mut config = SimConfig::default();
    for channel in Channel::ALL {
        config = config.unlimited(channel);
    }
    let sim = Simulator::start(config).await.unwrap();
    for channel in Channel::ALL {
        let seeded: Vec<(CatalogItem, Option<String>)> = (0..N).map(|n| item(channel, n)).collect();
        sim.seed_catalog(channel, seeded.iter().map(|(i, _)| i.clone()).collect());
        let connector = connector(&sim, channel);
        let (listings, pages) = all_listings(&*connector).await;
        assert_eq!(listings.len(), N, "{channel}: every catalog item listed once");
        let by_sku: BTreeMap<&str, &Listing> = listings.iter().map(|l| (l.sku.as_str(), l)).collect();
        assert_eq!(by_sku.len(), N, "{channel}: no SKU listed twice");
        for (catalog, item_id) in &seeded {
            let listing =
                by_sku.get(catalog.sku.as_str()).unwrap_or_else(|| panic!("{channel}: {} unlisted", catalog.sku));
            assert_eq!(listing.ids.item_id(channel), *item_id, "{channel}: ids of {}", catalog.sku);
            assert_eq!(listing.quantity, Some(catalog.quantity), "{channel}: quantity of {}", catalog.sku);
            // Zalando's and OTTO's stock reads carry no price.
            if !matches!(channel, Channel::Zalando | Channel::Otto) {
                let expected = rust_decimal::Decimal::new(catalog.price_minor.unwrap(), 2);
                assert_eq!(listing.price, Some(expected), "{channel}: price of {}", catalog.sku);
            }
        }
        if matches!(channel, Channel::Amazon | Channel::Shopify | Channel::Woocommerce | Channel::Ebay) {
            assert!(pages > 1, "{channel}: {pages} page(s) for {N} items");
        }

        // The ids read are the ones the writes take: every SKU pushed by its listing's id lands.
        let updates: Vec<StockUpdate> = listings
            .iter()
            .map(|l| StockUpdate {
                sku: Sku::new(l.sku.clone()).unwrap(),
                channel_sku: l.sku.clone(),
                quantity: 42,
                channel_item_id: l.ids.item_id(channel),
            })
            .collect();
        let outcome = connector.push_stock(&updates, &CallContext::new("listings-push")).await.unwrap();
        assert!(outcome.rejected.is_empty(), "{channel}: {:?}", outcome.rejected.first());
        // A feed (Amazon's bulk path) is applied while the channel processes it: wait for its report.
        for submission in &outcome.submitted {
            let ctx = CallContext::new("listings-feed");
            let mut asked = 0;
            let processed = loop {
                match connector.submission_result(submission, &ctx).await.unwrap() {
                    manifold_connectors::SubmissionState::Done(processed) => break processed,
                    manifold_connectors::SubmissionState::Pending => asked += 1,
                }
                assert!(asked < 5, "{channel}: feed {} never processed", submission.id);
            };
            assert!(processed.rejected.is_empty(), "{channel}: {:?}", processed.rejected.first());
        }
        let stock = sim.snapshot().stock.remove(&channel).unwrap_or_default();
        for (catalog, _) in &seeded {
            assert_eq!(stock.get(&catalog.id), Some(&42), "{channel}: {} under its own key", catalog.id);
        }
    }
}

/// Amazon's `searchListingsItems` pages are 20 listings: a catalog of 200 is 10 calls, paced by the
/// account's limiter within the simulator's documented bucket (5/s, burst 10), so none is refused.
#[tokio::test]
async fn a_listing_walk_stays_within_the_channels_limit() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    sim.seed_catalog(Channel::Amazon, (0..200).map(|n| item(Channel::Amazon, n).0).collect());
    let account =
        account_limited(&sim, Channel::Amazon, r#"{ kind = "token_bucket", rate_per_second = 5.0, burst = 5 }"#);
    let creds: Credentials = [("access_token", "sim-token")].into_iter().collect();
    let connector = build(&account, creds, http_client(Duration::from_secs(5)).unwrap());
    let (listings, pages) = all_listings(&*connector).await;
    assert_eq!((listings.len(), pages), (200, 10));
    let snapshot = sim.snapshot();
    assert_eq!(snapshot.throttled.get(&Channel::Amazon).copied().unwrap_or(0), 0, "no 429 from the channel");
}
