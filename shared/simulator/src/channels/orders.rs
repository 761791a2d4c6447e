//! Order lists as the channels serve them to a poller. A sweep for orders whose webhook never came is
//! only as good as the list it reads, so each channel's list endpoint filters the seeded orders by
//! their last update as that channel documents the filter (Shopify `updated_at_min`, BigCommerce
//! `min_date_modified`, Amazon `LastUpdatedAfter`, Etsy `min_last_modified`, TikTok `update_time_ge`,
//! eBay `lastmodifieddate:[..]` and OTTO `fromDate` include the bound; WooCommerce `modified_after` does
//! not) and pages in its own shape (page numbers, offsets, opaque tokens, `Link` headers, JSON:API links,
//! OTTO's `nextcursor`). Lists are
//! served oldest update first, ties by order id, so a page boundary is stable while nothing changes.
//!
//! [`crate::SimHandle::cap_order_pages`] makes every list serve at most that many orders per page,
//! whatever was asked: a channel may always answer with fewer than the page size, and it lets a test
//! walk several pages with a few dozen orders.

use chrono::{DateTime, TimeZone, Utc};
use manifold_domain::Channel;
use serde_json::Value;

use crate::state::{Inner, SeededOrder};

/// A time field of a document (see [`parse_time`]).
pub(crate) fn text(doc: &Value, pointer: &str) -> Option<DateTime<Utc>> {
    doc.pointer(pointer).and_then(Value::as_str).and_then(parse_time)
}

/// A Unix-seconds field of a document.
pub(crate) fn seconds(doc: &Value, pointer: &str) -> Option<DateTime<Utc>> {
    doc.pointer(pointer).and_then(Value::as_i64).and_then(|s| Utc.timestamp_opt(s, 0).single())
}

/// When a seeded order was last updated (its channel module's `updated_at`).
pub(crate) fn updated_at(channel: Channel, doc: &Value) -> Option<DateTime<Utc>> {
    (super::module(channel).updated_at)(doc)
}

/// A time as the channels write it: RFC 3339, RFC 2822 (BigCommerce), or RFC 3339 without a zone
/// (WooCommerce's `*_gmt` fields and filters, read as UTC).
pub(crate) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_rfc2822(s))
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok().map(|t| t.and_utc()))
}

/// Whether a list filter includes orders updated exactly at its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bound {
    AtOrAfter,
    After,
}

/// The channel's seeded orders updated since `since` (all of them without a bound) and before
/// `until`, oldest update first, ties by id; orders without a readable update time sort first and
/// pass only an unbounded filter.
pub(crate) fn updated_since(
    s: &Inner,
    channel: Channel,
    since: Option<(DateTime<Utc>, Bound)>,
    until: Option<DateTime<Utc>>,
) -> Vec<SeededOrder> {
    let mut listed: Vec<(Option<DateTime<Utc>>, SeededOrder)> = s
        .orders
        .get(&channel)
        .into_iter()
        .flatten()
        .map(|o| (updated_at(channel, &o.doc), o.clone()))
        .filter(|(at, _)| match (since, at) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some((bound, Bound::AtOrAfter)), Some(at)) => *at >= bound,
            (Some((bound, Bound::After)), Some(at)) => *at > bound,
        })
        .filter(|(at, _)| until.is_none_or(|u| at.is_some_and(|at| at < u)))
        .collect();
    listed.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
    listed.into_iter().map(|(_, o)| o).collect()
}

/// The page size a list request gets: `requested` (or the channel's `default`) when within
/// `1..=max`, capped by the simulator's order page cap; `Err` names the documented range.
pub(crate) fn page_size(s: &Inner, requested: Option<&String>, default: usize, max: usize) -> Result<usize, String> {
    let size = match requested {
        None => default,
        Some(r) => r.parse().map_err(|_| format!("page size {r:?} is not a number"))?,
    };
    if !(1..=max).contains(&size) {
        return Err(format!("page size must be between 1 and {max}"));
    }
    Ok(s.order_page_cap.map_or(size, |cap| size.min(cap)))
}

/// One page of `all` from `offset`, and whether more follow.
pub(crate) fn page<T: Clone>(all: &[T], offset: usize, size: usize) -> (Vec<T>, bool) {
    let page = all.iter().skip(offset).take(size).cloned().collect();
    (page, offset.saturating_add(size) < all.len())
}

/// An opaque continuation token (Shopify `page_info`, Amazon `NextToken`, TikTok `page_token`) that
/// carries the listing's filter and the next offset, as the channels' own tokens do.
pub(crate) fn token(filter: &str, offset: usize) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{offset}|{filter}"))
}

/// The filter and offset a [`token`] carries, `None` when it is not one.
pub(crate) fn read_token(token: &str) -> Option<(String, usize)> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).ok()?;
    let (offset, filter) = std::str::from_utf8(&raw).ok()?.split_once('|')?;
    Some((filter.to_owned(), offset.parse().ok()?))
}

/// A query value percent-encoded for a URL the simulator hands back (links, `next`).
pub(crate) fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn inner_with(channel: Channel, times: &[(&str, &str)]) -> Inner {
        let mut s = Inner::default();
        for (id, at) in times {
            s.orders.entry(channel).or_default().push(SeededOrder {
                id: (*id).to_owned(),
                doc: json!({ "id": id, "updated_at": at }),
                exported: false,
            });
        }
        s
    }

    #[test]
    fn bounds_include_or_exclude_the_instant_and_order_by_update_then_id() {
        let s = inner_with(
            Channel::Shopify,
            &[("c", "2026-01-01T10:00:00Z"), ("a", "2026-01-01T10:00:00Z"), ("b", "2026-01-01T09:59:59Z")],
        );
        let at = parse_time("2026-01-01T10:00:00Z");
        let ids = |v: Vec<SeededOrder>| v.into_iter().map(|o| o.id).collect::<Vec<_>>();
        assert_eq!(ids(updated_since(&s, Channel::Shopify, at.map(|t| (t, Bound::AtOrAfter)), None)), ["a", "c"]);
        assert!(updated_since(&s, Channel::Shopify, at.map(|t| (t, Bound::After)), None).is_empty());
        assert_eq!(ids(updated_since(&s, Channel::Shopify, None, at)), ["b"]);
    }

    #[test]
    fn pages_are_capped_and_tokens_round_trip() {
        let mut s = Inner::default();
        assert_eq!(page_size(&s, None, 50, 250), Ok(50));
        assert!(page_size(&s, Some(&"251".to_owned()), 50, 250).is_err());
        s.order_page_cap = Some(7);
        assert_eq!(page_size(&s, Some(&"250".to_owned()), 50, 250), Ok(7));
        assert_eq!(page(&[1, 2, 3], 2, 2), (vec![3], false));
        assert_eq!(read_token(&token("2026-01-01T10:00:00Z|any", 14)), Some(("2026-01-01T10:00:00Z|any".into(), 14)));
        assert_eq!(parse_time("Mon, 11 Mar 2019 15:17:25 +0000"), parse_time("2019-03-11T15:17:25Z"));
        assert_eq!(parse_time("2017-03-22T19:28:08"), parse_time("2017-03-22T19:28:08Z"));
        assert_eq!(encode("lastmodifieddate:[x..]"), "lastmodifieddate%3A%5Bx..%5D");
    }
}
