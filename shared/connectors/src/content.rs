//! Product content out: titles, descriptions, attributes and images for listings a channel already
//! has. Channels differ in what their APIs let a seller change and in how images reach them, so each
//! channel's [`ContentSupport`] says both, and the content tier sends a channel only what it takes
//! (saying once per run what it does not). Images go in the channel's own flow: a URL the channel
//! fetches itself ([`ImageFlow::UrlImport`]), or bytes fetched here and uploaded
//! ([`ImageFlow::StagedUpload`], checked against the image's checksum first).

use std::collections::BTreeMap;

use manifold_domain::{Channel, Image, Sku};
use sha2::Digest as _;

use crate::{client::ListingIds, error::ConnectorError};

/// How a channel's images reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageFlow {
    /// The channel fetches each image from its URL.
    UrlImport,
    /// The image's bytes are uploaded to the channel, which answers a reference to attach.
    StagedUpload,
    /// Not through the API.
    Unsupported,
}

/// What a channel's content belongs to: the product (its variants share it), the listing, or the
/// SKU (each sellable item has its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentKey {
    /// [`ListingIds::product`] (Shopify, WooCommerce, BigCommerce, TikTok Shop).
    Product,
    /// [`ListingIds::listing`] (Etsy).
    Listing,
    /// The channel SKU (Amazon's listings items, eBay's inventory items).
    Sku,
}

/// What a channel's API lets a seller change of a listing's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ContentSupport {
    pub title: bool,
    pub description: bool,
    pub attributes: bool,
    pub images: ImageFlow,
    /// What the content belongs to: SKUs of one product share it where it is the product's.
    pub key: ContentKey,
    /// Why the rest is not supported, said once per content run.
    pub note: Option<&'static str>,
}

impl ContentSupport {
    /// A channel whose API changes no content of a listing.
    pub const NONE: Self = Self {
        title: false,
        description: false,
        attributes: false,
        images: ImageFlow::Unsupported,
        key: ContentKey::Sku,
        note: None,
    };

    /// The key of what a listing's content belongs to on this channel (the product of a variant,
    /// the listing, or the SKU itself); the channel SKU when its listing read gave no such id.
    pub fn key_of(&self, ids: &ListingIds, channel_sku: &str) -> String {
        let id = match self.key {
            ContentKey::Product => ids.product.as_ref(),
            ContentKey::Listing => ids.listing.as_ref(),
            ContentKey::Sku => None,
        };
        id.map_or_else(|| format!("sku:{channel_sku}"), |id| format!("id:{id}"))
    }

    /// Whether the channel takes any content at all.
    pub fn any(&self) -> bool {
        self.title || self.description || self.attributes || self.images != ImageFlow::Unsupported
    }

    /// The content fields the channel does not take, by name.
    pub fn unsupported(&self) -> Vec<&'static str> {
        [
            (!self.title).then_some("title"),
            (!self.description).then_some("description"),
            (!self.attributes).then_some("attributes"),
            (self.images == ImageFlow::Unsupported).then_some("images"),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// What `channel`'s API takes of a listing's content.
pub fn support(channel: Channel) -> &'static ContentSupport {
    &crate::channels::module(channel).content
}

/// The text of a listing's content, reduced to the fields its channel takes (`None`: not sent).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContentText {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

/// A listing's images, all of them in order, and which positions differ from what the channel was
/// last given (every position when that is unknown). A changed position at or past `images.len()`
/// is an image the source removed. Channels that replace the whole list send `images`; channels
/// that change one image at a time (Etsy's ranks, Amazon's locators, BigCommerce's images) write
/// only the changed positions and delete the removed ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContentImages {
    pub images: Vec<Image>,
    pub changed: Vec<usize>,
}

/// A change of one listing's content: text, images or both (never neither).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContentUpdate {
    pub sku: Sku,
    pub channel_sku: String,
    /// The listing's ids, as its listing read gave them: content is written to listings that exist.
    pub ids: ListingIds,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<ContentText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<ContentImages>,
}

impl ContentUpdate {
    /// The id `what` (a listing id, a product id) the channel's content write keys by, or a
    /// permanent error naming the SKU when its listing read gave none.
    pub(crate) fn id<'a>(
        &self,
        channel: Channel,
        what: &str,
        id: Option<&'a String>,
    ) -> Result<&'a str, ConnectorError> {
        id.map(String::as_str).ok_or_else(|| {
            ConnectorError::permanent(format!(
                "{channel} listing of {} has no {what}; sync the account's listings first",
                self.channel_sku
            ))
        })
    }
}

/// Largest image accepted for a staged upload (Etsy and TikTok document lower limits still).
const MAX_IMAGE_BYTES: usize = 10 * 1024 * 1024;

/// Fetches an image for a staged upload, checked against its checksum. The image host is not the
/// channel: a host that fails is retryable, an image that is missing, too large or not what its
/// checksum says is permanent (the source must correct it).
pub(crate) async fn fetch_image(http: &reqwest::Client, image: &Image) -> Result<bytes::Bytes, ConnectorError> {
    let reply = http
        .get(&image.url)
        .send()
        .await
        .map_err(|e| ConnectorError::transient(format!("image {} not fetched: {e}", image.url)))?;
    let status = reply.status();
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(ConnectorError::transient(format!("image {} not fetched: host answered {status}", image.url)));
    }
    if !status.is_success() {
        return Err(ConnectorError::permanent(format!("image {} not fetched: host answered {status}", image.url)));
    }
    let bytes =
        reply.bytes().await.map_err(|e| ConnectorError::transient(format!("image {} not read: {e}", image.url)))?;
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(ConnectorError::permanent(format!(
            "image {} is {} bytes; at most {MAX_IMAGE_BYTES} are uploaded",
            image.url,
            bytes.len()
        )));
    }
    if let Some(expected) = &image.checksum {
        let actual = hex::encode(sha2::Sha256::digest(&bytes));
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(ConnectorError::permanent(format!(
                "image {} has SHA-256 {actual}, not its checksum {expected}",
                image.url
            )));
        }
    }
    Ok(bytes)
}

/// The file name of an image URL's last path segment (`image` when it has none).
pub(crate) fn file_name(url: &str) -> &str {
    url.split(['?', '#']).next().and_then(|p| p.rsplit('/').next()).filter(|n| !n.is_empty()).unwrap_or("image")
}

/// A `multipart/form-data` body of text fields and one file: its content type and bytes.
pub(crate) fn multipart(fields: &[(&str, String)], file: (&str, &str, &[u8])) -> (String, Vec<u8>) {
    let boundary = format!("manifold-{}", hex::encode(sha2::Sha256::digest(file.2))[..24].to_owned());
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    let (name, file_name, bytes) = file;
    let file_name = file_name.replace('"', "");
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn support_lists_what_a_channel_does_not_take() {
        let s = ContentSupport {
            title: true,
            description: false,
            attributes: false,
            images: ImageFlow::UrlImport,
            key: ContentKey::Product,
            note: None,
        };
        assert!(s.any());
        assert_eq!(s.unsupported(), vec!["description", "attributes"]);
        assert!(!ContentSupport::NONE.any());
        assert_eq!(ContentSupport::NONE.unsupported(), vec!["title", "description", "attributes", "images"]);
    }

    #[test]
    fn variants_of_one_product_share_its_key_where_content_is_the_products() {
        let ids = |product: &str| ListingIds { product: Some(product.into()), ..ListingIds::default() };
        let shopify = support(Channel::Shopify);
        assert_eq!(shopify.key_of(&ids("7"), "A-1"), shopify.key_of(&ids("7"), "A-2"));
        assert_ne!(shopify.key_of(&ids("7"), "A-1"), shopify.key_of(&ids("8"), "A-1"));
        assert_eq!(shopify.key_of(&ListingIds::default(), "A-1"), "sku:A-1");
        let ebay = support(Channel::Ebay);
        assert_ne!(ebay.key_of(&ids("7"), "A-1"), ebay.key_of(&ids("7"), "A-2"));
    }

    #[test]
    fn file_names_come_from_the_last_segment() {
        assert_eq!(file_name("https://cdn.example/a/b/mug-1.jpg?v=2"), "mug-1.jpg");
        assert_eq!(file_name("https://cdn.example/"), "image");
    }

    #[test]
    fn multipart_bodies_carry_fields_and_the_file() {
        let (ct, body) = multipart(&[("rank", "2".into())], ("image", "a\"b.png", b"PNG"));
        let boundary = ct.strip_prefix("multipart/form-data; boundary=").unwrap();
        let text = String::from_utf8(body).unwrap();
        assert!(
            text.starts_with(&format!("--{boundary}\r\nContent-Disposition: form-data; name=\"rank\"\r\n\r\n2\r\n"))
        );
        assert!(text.contains("name=\"image\"; filename=\"ab.png\""));
        assert!(text.ends_with(&format!("PNG\r\n--{boundary}--\r\n")));
    }
}
