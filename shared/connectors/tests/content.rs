//! Each connector that takes product content writes a listing's title, description and images in
//! its channel's own flow against the simulator (URL import, or the bytes fetched from the image
//! host and uploaded), and a later change of one image costs only that image's calls.

mod common;

use common::{connector, item};
use manifold_connectors::{
    CallContext, ConnectorError,
    content::{self, ContentImages, ContentText, ContentUpdate, ImageFlow},
};
use manifold_domain::{Channel, Image, Sku};
use manifold_simulator::{SimConfig, SimHandle, Simulator};
use sha2::Digest as _;

fn image(sim: &SimHandle, name: &str, alt: &str) -> Image {
    let bytes = format!("\u{89}PNG simulated image {name}").into_bytes();
    let checksum = hex::encode(sha2::Sha256::digest(&bytes));
    Image { url: sim.put_asset(name, bytes), alt: Some(alt.into()), checksum: Some(checksum) }
}

fn writes(sim: &SimHandle, channel: Channel) -> usize {
    sim.snapshot().writes.get(&channel).map_or(0, Vec::len)
}

/// The channel calls that change one image: one everywhere, but TikTok Shop uploads the image
/// first and then edits the product with the image's reference.
fn calls_for_one_image(channel: Channel) -> usize {
    if channel == Channel::Tiktok { 2 } else { 1 }
}

async fn content_lands(channel: Channel) {
    let support = content::support(channel);
    let sim = Simulator::start(SimConfig::default().unlimited(channel)).await.unwrap();
    let (catalog, _) = item(channel, 1);
    sim.seed_catalog(channel, vec![catalog]);
    let connector = connector(&sim, channel);
    let listing = connector.list_listings(None, &CallContext::new("content-test")).await.unwrap().listings.remove(0);
    let images =
        vec![image(&sim, "mug-1.png", "front"), image(&sim, "mug-2.png", "side"), image(&sim, "mug-3.png", "top")];
    let text = ContentText {
        title: support.title.then(|| "Stoneware mug, 350 ml".to_owned()),
        description: support.description.then(|| "<p>Hand glazed stoneware.</p>".to_owned()),
        attributes: if support.attributes {
            [("Material".to_owned(), "Stoneware".to_owned())].into_iter().collect()
        } else {
            std::collections::BTreeMap::new()
        },
    };
    let update = ContentUpdate {
        sku: Sku::new(listing.sku.clone()).unwrap(),
        channel_sku: listing.sku.clone(),
        ids: listing.ids.clone(),
        text: Some(text),
        images: Some(ContentImages { images: images.clone(), changed: vec![0, 1, 2] }),
    };
    let outcome = connector.push_content(std::slice::from_ref(&update), &CallContext::new("content-1")).await.unwrap();
    assert!(outcome.rejected.is_empty(), "{channel}: {:?}", outcome.rejected);
    assert_eq!(outcome.delivered, vec![listing.sku.clone()], "{channel}");

    let shown = sim.snapshot().content.remove(&channel).unwrap_or_default();
    assert_eq!(shown.len(), 1, "{channel}: one listing's content: {shown:?}");
    let (_, shown) = shown.into_iter().next().unwrap();
    assert_eq!(shown.title.as_deref(), Some("Stoneware mug, 350 ml"), "{channel}");
    // Etsy renders no HTML: it is given the text.
    let description = if channel == Channel::Etsy { "Hand glazed stoneware." } else { "<p>Hand glazed stoneware.</p>" };
    assert_eq!(shown.description.as_deref(), Some(description), "{channel}");
    if support.attributes {
        assert_eq!(shown.attributes.get("Material"), Some(&vec!["Stoneware".to_owned()]), "{channel}");
    }
    let same_images = |shown: &[manifold_simulator::SimImage], expected: &[Image]| {
        assert_eq!(shown.len(), expected.len(), "{channel}: {shown:?}");
        for (s, e) in shown.iter().zip(expected) {
            match support.images {
                // The channel fetched it itself: it shows the URL it was given.
                ImageFlow::UrlImport => assert_eq!(s.url, e.url, "{channel}"),
                // Uploaded: the channel holds the very bytes the image host served.
                _ => assert_eq!(s.sha256.as_ref(), e.checksum.as_ref(), "{channel}"),
            }
        }
    };
    same_images(&shown.images, &images);

    // One image changes: only its calls are made, and the others stay as they were.
    let before = writes(&sim, channel);
    let mut changed = images.clone();
    changed[1] = image(&sim, "mug-2b.png", "side, new glaze");
    let update = ContentUpdate {
        text: None,
        images: Some(ContentImages { images: changed.clone(), changed: vec![1] }),
        ..update
    };
    let outcome = connector.push_content(std::slice::from_ref(&update), &CallContext::new("content-2")).await.unwrap();
    assert!(outcome.rejected.is_empty(), "{channel}: {:?}", outcome.rejected);
    assert_eq!(writes(&sim, channel) - before, calls_for_one_image(channel), "{channel}: calls for one image");
    let shown = sim.snapshot().content.remove(&channel).unwrap().into_values().next().unwrap();
    assert_eq!(shown.title.as_deref(), Some("Stoneware mug, 350 ml"), "{channel}: text kept");
    same_images(&shown.images, &changed);

    // The source drops the last image: the listing drops it too, in one write everywhere.
    let before = writes(&sim, channel);
    let fewer = changed[..2].to_vec();
    let shrink =
        ContentUpdate { images: Some(ContentImages { images: fewer.clone(), changed: vec![2] }), ..update.clone() };
    let outcome = connector.push_content(std::slice::from_ref(&shrink), &CallContext::new("content-2b")).await.unwrap();
    assert!(outcome.rejected.is_empty(), "{channel}: {:?}", outcome.rejected);
    assert_eq!(writes(&sim, channel) - before, 1, "{channel}: calls to drop one image");
    let shown = sim.snapshot().content.remove(&channel).unwrap().into_values().next().unwrap();
    same_images(&shown.images, &fewer);

    // An uploaded image is checked against its checksum before any upload: a wrong one is the
    // source's mistake (permanent), and the channel is not called.
    if support.images == ImageFlow::StagedUpload {
        let before = writes(&sim, channel);
        let mut wrong = changed.clone();
        wrong[2].checksum = Some("0".repeat(64));
        let update = ContentUpdate { images: Some(ContentImages { images: wrong, changed: vec![2] }), ..update };
        let outcome = connector.push_content(&[update], &CallContext::new("content-3")).await.unwrap();
        assert_eq!(outcome.rejected.len(), 1, "{channel}");
        assert!(!outcome.rejected[0].1.is_retryable(), "{channel}: {}", outcome.rejected[0].1);
        assert!(outcome.rejected[0].1.to_string().contains("checksum"), "{channel}: {}", outcome.rejected[0].1);
        assert_eq!(writes(&sim, channel), before, "{channel}: nothing uploaded");
    }
}

#[tokio::test]
async fn shopify_content() {
    content_lands(Channel::Shopify).await;
}

#[tokio::test]
async fn woocommerce_content() {
    content_lands(Channel::Woocommerce).await;
}

#[tokio::test]
async fn bigcommerce_content() {
    content_lands(Channel::Bigcommerce).await;
}

#[tokio::test]
async fn amazon_content() {
    content_lands(Channel::Amazon).await;
}

#[tokio::test]
async fn etsy_content() {
    content_lands(Channel::Etsy).await;
}

#[tokio::test]
async fn tiktok_content() {
    content_lands(Channel::Tiktok).await;
}

#[tokio::test]
async fn ebay_content() {
    content_lands(Channel::Ebay).await;
}

/// Channels whose APIs change no listing content answer so without a call, and say why.
#[tokio::test]
async fn channels_without_content_writes_make_no_call() {
    for channel in [Channel::Zalando, Channel::Otto, Channel::Kaufland] {
        let support = content::support(channel);
        assert!(!support.any(), "{channel}");
        assert!(support.note.is_some(), "{channel}: the run says why");
        let sim = Simulator::start(SimConfig::default().unlimited(channel)).await.unwrap();
        let update = ContentUpdate {
            sku: Sku::new("MUG-1").unwrap(),
            channel_sku: "MUG-1".into(),
            ids: manifold_connectors::ListingIds::default(),
            text: Some(ContentText { title: Some("Mug".into()), ..Default::default() }),
            images: None,
        };
        let err: ConnectorError =
            connector(&sim, channel).push_content(&[update], &CallContext::new("content-none")).await.unwrap_err();
        assert!(!err.is_retryable(), "{channel}: {err}");
        assert_eq!(sim.snapshot().requests.get(&channel).copied().unwrap_or(0), 0, "{channel}");
    }
}
