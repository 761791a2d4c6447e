//! Which parts of a listing's content a run sends: nothing when it shows the content already, the
//! text alone when only text changed, one image position when one image changed, and never a field
//! the channel does not take.

use chrono::{TimeZone, Utc};
use manifold_connectors::{Listing, ListingIds};
use manifold_domain::{Channel, config::ChannelConfig};

use super::*;

fn account(channel: Channel) -> AccountConfig {
    let version = manifold_simulator::api_version(channel);
    let text = format!(
        "version = 1\n[[accounts]]\nchannel = \"{channel}\"\naccount = \"content\"\napi_version = \"{version}\"\n\
         secret = \"manifold/{channel}/content\"\nendpoint = \"https://example.invalid\"\n\
         rate_limit = {{ kind = \"unlimited\" }}\n[accounts.settings]\nlocation_id = \"1\"\nshop_id = \"1\"\n\
         seller_id = \"A1\"\nmarketplace_id = \"A1PA6795UKMFR9\"\nsales_channel_id = \"bf48ba35-149d-4b76-8ac9-d08d126b517f\"\n\
         warehouse_id = \"1\"\napp_key = \"k\"\nstorefront = \"de\"\n"
    );
    ChannelConfig::parse("content.toml", &text).unwrap().accounts.remove(0)
}

fn listing() -> Listing {
    Listing {
        sku: "MUG-1".into(),
        ids: ListingIds { product: Some("7001".into()), ..ListingIds::default() },
        quantity: None,
        price: None,
        currency: None,
        seen_at: Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
    }
}

fn image(n: u8) -> Image {
    Image { url: format!("https://cdn.example/mug-{n}.jpg"), alt: Some(format!("view {n}")), checksum: None }
}

fn content() -> ProductContent {
    ProductContent {
        sku: Sku::new("MUG-1").unwrap(),
        title: "Stoneware mug".into(),
        description: Some("<p>Hand glazed.</p>".into()),
        attributes: [("material".to_owned(), "stoneware".to_owned())].into_iter().collect(),
        images: vec![image(1), image(2), image(3)],
        tags: vec!["kitchen".into()],
        weight_grams: Some(420),
        updated_at: Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, 0).unwrap(),
    }
}

/// What the listing holds after `job` is delivered.
fn delivered(job: &ContentJob) -> DeliveredContent {
    DeliveredContent {
        channel: job.channel,
        account: job.account.clone(),
        channel_sku: job.update.channel_sku.clone(),
        sku: job.update.sku.clone(),
        text_hash: job.text_hash.clone(),
        image_hashes: job.image_hashes.clone(),
        trace_id: "t".into(),
        delivered_at: job.updated_at,
    }
}

#[test]
fn a_listing_never_given_content_gets_all_of_what_its_channel_takes() {
    let job = content_job(&account(Channel::Shopify), &listing(), &content(), None).unwrap();
    let text = job.update.text.as_ref().unwrap();
    assert_eq!(text.title.as_deref(), Some("Stoneware mug"));
    assert_eq!(text.description.as_deref(), Some("<p>Hand glazed.</p>"));
    // Shopify takes no free attributes: they are not sent (the run says so once).
    assert!(text.attributes.is_empty());
    let images = job.update.images.as_ref().unwrap();
    assert_eq!(images.changed, vec![0, 1, 2]);
    assert_eq!(job.update.ids.product.as_deref(), Some("7001"));

    // eBay takes attributes.
    let ebay = content_job(&account(Channel::Ebay), &listing(), &content(), None).unwrap();
    assert_eq!(ebay.update.text.unwrap().attributes.get("material").map(String::as_str), Some("stoneware"));
}

#[test]
fn a_listing_showing_the_content_gets_nothing() {
    let account = account(Channel::Woocommerce);
    let first = content_job(&account, &listing(), &content(), None).unwrap();
    assert_eq!(content_job(&account, &listing(), &content(), Some(&delivered(&first))), None);
}

#[test]
fn one_changed_image_is_that_image_alone() {
    let account = account(Channel::Etsy);
    let first = content_job(&account, &listing(), &content(), None).unwrap();
    let mut changed = content();
    changed.images[1].checksum = Some("a".repeat(64));
    let job = content_job(&account, &listing(), &changed, Some(&delivered(&first))).unwrap();
    assert_eq!(job.update.text, None, "the text is unchanged");
    let images = job.update.images.unwrap();
    assert_eq!(images.changed, vec![1]);
    assert_eq!(images.images.len(), 3, "channels that replace the list get all of it");
}

#[test]
fn a_field_the_channel_does_not_take_changes_nothing_there() {
    let account = account(Channel::Shopify);
    let first = content_job(&account, &listing(), &content(), None).unwrap();
    let mut changed = content();
    changed.attributes.insert("capacity".into(), "350 ml".into());
    changed.tags.push("gift".into());
    assert_eq!(content_job(&account, &listing(), &changed, Some(&delivered(&first))), None);
}

#[test]
fn fewer_images_than_given_is_a_change() {
    let account = account(Channel::Bigcommerce);
    let first = content_job(&account, &listing(), &content(), None).unwrap();
    let mut fewer = content();
    fewer.images.pop();
    let job = content_job(&account, &listing(), &fewer, Some(&delivered(&first))).unwrap();
    let images = job.update.images.unwrap();
    assert_eq!(images.changed, vec![2], "the removed position");
    assert_eq!(images.images.len(), 2);
    assert_eq!(job.image_hashes.len(), 2);
}

#[test]
fn channels_say_once_what_they_do_not_take() {
    let zalando = account(Channel::Zalando);
    let note = support_note(&zalando, content::support(Channel::Zalando)).unwrap();
    assert!(note.starts_with("zalando takes no product content through its API: "), "{note}");
    let shopify = account(Channel::Shopify);
    let note = support_note(&shopify, content::support(Channel::Shopify)).unwrap();
    assert!(note.starts_with("shopify does not take attributes through its API"), "{note}");
    assert_eq!(support_note(&account(Channel::Ebay), content::support(Channel::Ebay)), None);
}

#[test]
fn bad_content_is_refused_with_its_reason() {
    let now = Utc::now();
    let input = |json: serde_json::Value| serde_json::from_value::<ContentInput>(json).unwrap();
    let ok = input(serde_json::json!({ "title": " Mug ", "images": [{ "url": "https://cdn.example/a.jpg" }] }));
    let content = ok.to_content("MUG-1", now).unwrap();
    assert_eq!(content.title, "Mug");
    assert_eq!(content.updated_at, now);
    let cases = [
        (serde_json::json!({ "title": "" }), "title must be 1 to 500 characters"),
        (serde_json::json!({ "title": "Mug", "images": [{ "url": "ftp://x/a.jpg" }] }), "must be an http(s) URL"),
        (serde_json::json!({ "title": "Mug", "images": [{ "url": "not a url" }] }), "images[0].url"),
        (serde_json::json!({ "title": "Mug", "images": [{ "url": "https://x/a.jpg", "checksum": "abc" }] }), "SHA-256"),
        (serde_json::json!({ "title": "Mug", "attributes": { " ": "x" } }), "is blank"),
        (serde_json::json!({ "title": "Mug", "weight_grams": 0 }), "weight_grams must be positive"),
    ];
    for (json, expected) in cases {
        let err = input(json.clone()).to_content("MUG-1", now).unwrap_err();
        assert!(err.contains(expected), "{json}: {err}");
    }
    assert!(serde_json::from_value::<ContentInput>(serde_json::json!({ "title": "Mug", "colour": "red" })).is_err());
}
