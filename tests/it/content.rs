//! Product content against moto and the simulators: the ERP's titles, descriptions and images reach
//! every channel that takes them, each in its own flow (URL import or staged upload), through the
//! content tier, the push queues and the push consumers; a run with nothing changed calls no
//! channel, one changed image is the only content call of the next run, and the channels that take
//! no content say so once in the run.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, DurationRound, Utc};
use manifold_app::content::{ContentInput, STALE_CONTENT};
use manifold_connectors::content::{self, ImageFlow};
use manifold_domain::{AccountId, Channel, Image};
use manifold_simulator::SimContent;
use sha2::Digest as _;

use crate::{inbound::Harness, matrix::catalog_item, rules::push_all};

/// An image hosted by the simulator (the image host the staged-upload connectors fetch from).
fn hosted(h: &Harness, name: &str) -> Image {
    let bytes = format!("\u{89}PNG {name}").into_bytes();
    let checksum = hex::encode(sha2::Sha256::digest(&bytes));
    Image { url: h.sim.put_asset(name, bytes), alt: Some(format!("{name} view")), checksum: Some(checksum) }
}

fn input(sku: &str, images: Vec<Image>, at: DateTime<Utc>) -> ContentInput {
    ContentInput {
        title: format!("Stoneware mug {sku}"),
        description: Some(format!("<p>Hand glazed, {sku}.</p>")),
        attributes: [("Material".to_owned(), "Stoneware".to_owned())].into_iter().collect(),
        images,
        tags: vec!["kitchen".into()],
        weight_grams: Some(420),
        updated_at: Some(at),
    }
}

/// What each channel shows, by its content key.
fn shown(h: &Harness, channel: Channel) -> BTreeMap<String, SimContent> {
    h.sim.snapshot().content.remove(&channel).unwrap_or_default()
}

/// Whether `shown` holds `images` as the channel's flow keeps them (URLs it fetched itself, or the
/// bytes uploaded to it).
fn holds(channel: Channel, shown: &SimContent, images: &[Image]) -> bool {
    shown.images.len() == images.len()
        && shown.images.iter().zip(images).all(|(s, i)| match content::support(channel).images {
            ImageFlow::UrlImport => s.url == i.url,
            _ => s.sha256 == i.checksum,
        })
}

#[tokio::test]
async fn content_reaches_every_channel_that_takes_it_and_one_changed_image_is_the_next_runs_only_call() {
    let h = Harness::with_config(crate::rules::on_demand).await;
    let t0 = Utc::now().duration_trunc(Duration::seconds(1)).unwrap();

    // Two listings of two products on every channel, synced; content for each SKU with three images.
    let mut listed: Vec<(Channel, AccountId, String, Vec<Image>)> = Vec::new();
    for (i, channel) in Channel::ALL.into_iter().enumerate() {
        h.sim.seed_catalog(channel, (1..=2).map(|k| catalog_item(channel, 100 * (i + 1) + 3 * k).0).collect());
        let account = h.app.config().await.enabled_accounts().find(|a| a.channel == channel).cloned().unwrap();
        h.app.sync_listings(&account).await.expect("listing sync");
        for stored in h.app.listings.account_listings(channel, &account.account).await.unwrap() {
            let sku = stored.listing.sku.clone();
            let images: Vec<Image> = (1..=3).map(|n| hosted(&h, &format!("{sku}-{n}.png"))).collect();
            h.app.set_content(&sku, &input(&sku, images.clone(), t0), "trace-pim", t0).await.expect("content set");
            listed.push((channel, account.account.clone(), sku, images));
        }
    }
    // A variant of one of Shopify's products, with content of its own: Shopify's content is the
    // product's, so the product keeps its first SKU's, and the run says so.
    let variant = catalog_item(Channel::Shopify, 104).0;
    let first = listed.iter().find(|(c, ..)| *c == Channel::Shopify).map(|l| l.2.clone()).unwrap();
    h.sim.seed_catalog(Channel::Shopify, vec![variant.clone()]);
    let shop = h.app.config().await.enabled_accounts().find(|a| a.channel == Channel::Shopify).cloned().unwrap();
    h.app.sync_listings(&shop).await.expect("listing sync");
    h.app.set_content(&variant.sku, &input(&variant.sku, Vec::new(), t0), "trace-pim", t0).await.unwrap();
    assert!(variant.sku > first, "the variant sorts after the product's first SKU");

    let takes = |c: Channel| content::support(c).any();
    let taking = listed.iter().filter(|(c, ..)| takes(*c)).count();
    assert_eq!(taking, 14, "seven channels take content");

    // The daily run: every listing of a channel that takes content gets it, in one job each.
    let run = h.app.run_tier("images", t0).await.unwrap();
    assert_eq!(run.push_jobs, taking, "{run:?}");
    let note = run.note.clone().unwrap_or_default();
    for channel in [Channel::Zalando, Channel::Otto, Channel::Kaufland] {
        assert_eq!(note.matches(&format!("{channel} takes no product content")).count(), 1, "{note}");
    }
    assert_eq!(note.matches("shopify does not take attributes").count(), 1, "said once, not per SKU: {note}");
    assert!(note.contains("1 SKU(s) share a shopify product with an earlier SKU whose content differs"), "{note}");
    let writes = push_all(&h).await;
    for (channel, w) in &writes {
        assert_eq!(w.is_empty(), !takes(*channel), "{channel}: {w:?}");
    }
    for channel in Channel::ALL.into_iter().filter(|c| takes(*c)) {
        let shown = shown(&h, channel);
        assert_eq!(shown.len(), 2, "{channel}: {shown:?}");
        for (_, _, sku, images) in listed.iter().filter(|(c, ..)| *c == channel) {
            let title = format!("Stoneware mug {sku}");
            let (_, listing) = shown
                .iter()
                .find(|(_, s)| s.title.as_deref() == Some(title.as_str()))
                .unwrap_or_else(|| panic!("{channel}: {sku} has no title: {shown:?}"));
            let description = format!("<p>Hand glazed, {sku}.</p>");
            // Etsy renders no HTML: it is given the text.
            let description = if channel == Channel::Etsy { format!("Hand glazed, {sku}.") } else { description };
            assert_eq!(listing.description.as_deref(), Some(description.as_str()), "{channel}: {:?}", writes[&channel]);
            assert!(holds(channel, listing, images), "{channel}: {sku}: {listing:?}");
        }
    }
    // eBay takes attributes as aspects; the rest said they do not.
    assert!(shown(&h, Channel::Ebay).values().all(|s| s.attributes.get("Material") == Some(&vec!["Stoneware".into()])));

    // Nothing changed: the next run queues nothing and no channel is called.
    let requests: u64 = h.sim.snapshot().requests.values().sum();
    let again = h.app.run_tier("images", t0 + Duration::hours(24)).await.unwrap();
    assert_eq!(again.push_jobs, 0, "{again:?}");
    assert!(push_all(&h).await.values().all(Vec::is_empty));
    assert_eq!(h.sim.snapshot().requests.values().sum::<u64>(), requests);

    // One image of one SKU per channel changes: that image is the only content call of the next run
    // (TikTok Shop uploads it, then edits the product with its reference).
    let t1 = t0 + Duration::hours(25);
    let mut changed = Vec::new();
    for channel in Channel::ALL {
        let (_, _, sku, images) = listed.iter().find(|(c, ..)| *c == channel).unwrap();
        let mut images = images.clone();
        images[1] = hosted(&h, &format!("{sku}-2-new-glaze.png"));
        h.app.set_content(sku, &input(sku, images.clone(), t1), "trace-pim-2", t1).await.unwrap();
        changed.push((channel, sku.clone(), images));
    }
    // What `manifold products show` prints: per account, what was given and what the next run sends.
    let (_, etsy_sku, _) = changed.iter().find(|(c, ..)| *c == Channel::Etsy).unwrap();
    let status = h.app.content_status(etsy_sku).await.unwrap();
    assert_eq!(status.content.as_ref().map(|c| c.images.len()), Some(3));
    let etsy = status.accounts.iter().find(|a| a.channel == Channel::Etsy).unwrap();
    assert_eq!((etsy.pending.as_slice(), etsy.takes.len()), (["image 2".to_owned()].as_slice(), 3), "{etsy:?}");
    assert!(etsy.delivered_at.is_some() && etsy.trace_id.is_some(), "{etsy:?}");
    let zalando = status.accounts.iter().find(|a| a.channel == Channel::Zalando).unwrap();
    assert!(zalando.takes.is_empty() && zalando.pending.is_empty() && zalando.delivered_at.is_none(), "{zalando:?}");

    let run = h.app.run_tier("images", t1 + Duration::hours(1)).await.unwrap();
    assert_eq!(run.push_jobs, 7, "{run:?}");
    let writes = push_all(&h).await;
    for (channel, sku, images) in &changed {
        let calls = if *channel == Channel::Tiktok { 2 } else { usize::from(takes(*channel)) };
        assert_eq!(writes[channel].len(), calls, "{channel}: {:?}", writes[channel]);
        if takes(*channel) {
            let title = format!("Stoneware mug {sku}");
            let shown = shown(&h, *channel);
            let listing = shown.values().find(|s| s.title.as_deref() == Some(title.as_str())).unwrap();
            assert!(holds(*channel, listing, images), "{channel}: {listing:?}");
        }
    }

    // `manifold trace` finds a delivery under its run's trace id, with the hashes it compared.
    let (channel, account, sku, _) = listed.iter().find(|(c, ..)| *c == Channel::Etsy).unwrap();
    let delivered = h.app.content.delivered_of(*channel, account, std::slice::from_ref(sku)).await.unwrap();
    let d = &delivered[sku];
    assert_eq!(d.image_hashes.len(), 3);
    let traced = h.app.records.by_trace(&d.trace_id).await.unwrap();
    assert!(traced.iter().any(|r| r.kind == "content_delivery" && r.record["sku"] == sku.as_str()), "{traced:?}");
}

#[tokio::test]
async fn a_content_file_applies_its_good_rows_reports_the_bad_ones_by_number_and_stale_content_changes_nothing() {
    let h = Harness::new().await;
    let t0 = Utc::now().duration_trunc(Duration::seconds(1)).unwrap();
    let file = serde_json::json!([
        { "sku": "MUG-1", "title": "Mug", "images": [{ "url": "https://cdn.example/mug-1.jpg", "alt": "front" }],
          "updated_at": t0 },
        { "sku": "MUG-2", "title": "" },
        { "sku": "MUG-3", "title": "Mug 3", "images": [{ "url": "file:///etc/passwd" }] },
        { "sku": "MUG-4", "title": "Mug 4", "colour": "red" },
        { "sku": "MUG-1", "title": "Mug, older", "updated_at": t0 - Duration::hours(1) },
    ])
    .to_string();
    let report = h.app.import_content(&file, "trace-import", t0).await.unwrap();
    assert_eq!(report["applied"], 1, "{report}");
    let rows: Vec<u64> = report["errors"].as_array().unwrap().iter().map(|e| e["row"].as_u64().unwrap()).collect();
    assert_eq!(rows, vec![2, 3, 4, 5], "{report}");
    let reasons = report["errors"].to_string();
    for expected in ["title must be 1 to 500 characters", "http(s) URL", "colour", "already set"] {
        assert!(reasons.contains(expected), "{expected}: {reasons}");
    }
    // The same file again changes nothing; the stored content is the good row's.
    let again = h.app.import_content(&file, "trace-import-2", t0).await.unwrap();
    assert_eq!((again["applied"].as_u64(), again["unchanged"].as_u64()), (Some(0), Some(1)), "{again}");
    let stored = h.app.content.get().get(&manifold_domain::Sku::new("MUG-1").unwrap()).await.unwrap().unwrap();
    assert_eq!((stored.title.as_str(), stored.images.len()), ("Mug", 1));
    // A stale PUT is refused as such (the API answers 409).
    let stale = ContentInput { updated_at: Some(t0 - Duration::minutes(1)), ..input("MUG-1", Vec::new(), t0) };
    let err = h.app.set_content("MUG-1", &stale, "trace-stale", t0).await.unwrap_err();
    assert!(
        matches!(&err, manifold_app::outcome::Failure::Permanent { stage, .. } if *stage == STALE_CONTENT),
        "{err}"
    );
    assert_eq!(manifold_app::content::api_status(&err), 409);
}
