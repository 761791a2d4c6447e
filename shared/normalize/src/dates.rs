//! Timestamps as channels send them.
//!
//! Shopify and Amazon send RFC 3339, BigCommerce RFC 2822 (`Tue, 05 Mar 2019 21:40:11 +0000`),
//! WooCommerce zone-less ISO 8601 in its `*_gmt` fields (UTC by definition), and Etsy and TikTok unix
//! seconds. Zone-less strings are always read as UTC: the normalizers pick the `*_gmt` variant where a
//! channel offers both, so a store's local time never leaks in.

use chrono::{DateTime, NaiveDateTime, Utc};

const ZONELESS: &[&str] = &["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M"];

/// Parses RFC 3339, RFC 2822 or a zone-less ISO 8601 date-time (as UTC).
pub(crate) fn parse(text: &str) -> Option<DateTime<Utc>> {
    // Kaufland's own examples end some timestamps in a stray `T` (`2019-07-19T17:24:05T`).
    let s = text.trim();
    let s = s.strip_suffix('T').filter(|rest| rest.contains('T')).unwrap_or(s);
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.with_timezone(&Utc));
    }
    if let Ok(d) = DateTime::parse_from_rfc2822(s) {
        return Some(d.with_timezone(&Utc));
    }
    ZONELESS.iter().find_map(|f| NaiveDateTime::parse_from_str(s, f).ok()).map(|n| n.and_utc())
}

pub(crate) fn from_unix_seconds(secs: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(secs, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_channel_format_parses_to_the_same_instant() {
        let want = DateTime::parse_from_rfc3339("2019-03-05T21:40:11Z").unwrap().with_timezone(&Utc);
        for s in [
            "2019-03-05T21:40:11Z",
            "2019-03-05T16:40:11-05:00",
            "Tue, 05 Mar 2019 21:40:11 +0000",
            "2019-03-05T21:40:11",
            "2019-03-05 21:40:11",
            "2019-03-05T21:40:11T",
        ] {
            assert_eq!(parse(s), Some(want), "{s}");
        }
        assert_eq!(from_unix_seconds(want.timestamp()), Some(want));
        assert_eq!(parse("yesterday"), None);
    }
}
