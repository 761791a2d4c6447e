//! The one mechanism that keeps personal data out of logs.
//!
//! Every log line passes through [`scrub_line`] before it is written (see [`crate::logging`]): values of
//! personal-data keys (emails, names, phones, address parts) are replaced by a short, stable hash, and
//! e-mail addresses are hashed wherever they appear in free text. A stable hash (not a blank) still lets
//! an operator correlate "the same customer" across lines without seeing who it is.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Keys whose values are personal data, whatever the channel calls them. Compared case-insensitively.
const PII_KEYS: &[&str] = &[
    "email",
    "buyer_email",
    "buyeremail",
    "contact_email",
    "customer_email",
    "name",
    "first_name",
    "last_name",
    "firstname",
    "lastname",
    "full_name",
    "fullname",
    "buyer_name",
    "buyername",
    "phone",
    "phone_number",
    "phonenumber",
    "telephone",
    "mobile",
    "address",
    "address1",
    "address2",
    "address_1",
    "address_2",
    "addressline1",
    "addressline2",
    "line1",
    "line2",
    "street",
    "street_1",
    "street_2",
    "zip",
    "postal_code",
    "postalcode",
    "postcode",
    "city",
    "company",
    "shipping_address",
    "billing_address",
    "recipient_address",
    "shipto",
    "ship_to",
    "ip",
    "browser_ip",
    "customer_ip_address",
    "latitude",
    "longitude",
];

fn is_pii_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    PII_KEYS.contains(&k.as_str())
}

/// A short stable token standing for a personal value: `pii:` plus 12 hex digits of its SHA-256.
pub fn hash(value: &str) -> String {
    let digest = Sha256::digest(value.trim().to_lowercase().as_bytes());
    format!("pii:{}", &hex::encode(digest)[..12])
}

/// Replaces personal data inside a JSON value, recursively.
pub fn redact_value(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if is_pii_key(k) {
                    redact_all(v);
                } else {
                    redact_value(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_value),
        Value::String(s) => {
            // A field holding serialized JSON (a payload logged with `%`) is redacted structurally too.
            let t = s.trim_start();
            if (t.starts_with('{') || t.starts_with('['))
                && let Ok(mut inner) = serde_json::from_str::<Value>(s)
            {
                redact_value(&mut inner);
                *s = inner.to_string();
            } else if let Some(clean) = redact_emails(s) {
                *s = clean;
            }
        }
        _ => {}
    }
}

/// Hashes every string under a personal-data key (an address object becomes an object of hashes).
fn redact_all(value: &mut Value) {
    match value {
        Value::String(s) if !s.is_empty() => *s = hash(s),
        Value::Number(n) => *value = Value::String(hash(&n.to_string())),
        Value::Object(map) => map.values_mut().for_each(redact_all),
        Value::Array(items) => items.iter_mut().for_each(redact_all),
        _ => {}
    }
}

/// Hashes e-mail-like words in free text; `None` when there are none.
pub fn redact_emails(text: &str) -> Option<String> {
    if !text.contains('@') {
        return None;
    }
    let is_word = |c: char| c.is_alphanumeric() || "._%+-@".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut changed = false;
    let mut rest = text;
    while let Some(start) = rest.find(|c: char| is_word(c)) {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail.find(|c: char| !is_word(c)).unwrap_or(tail.len());
        let word = &tail[..end];
        if looks_like_email(word) {
            out.push_str(&hash(word));
            changed = true;
        } else {
            out.push_str(word);
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    changed.then_some(out)
}

fn looks_like_email(word: &str) -> bool {
    let Some((local, domain)) = word.split_once('@') else { return false };
    !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
}

/// Scrubs one formatted log line. JSON lines are redacted structurally; anything else by e-mail pattern.
pub fn scrub_line(line: &str) -> String {
    match serde_json::from_str::<Value>(line) {
        Ok(mut v) => {
            // Span names are code, not data: keep them readable (`span` and every entry of `spans`).
            let mut names = Vec::new();
            if let Some(span) = v.get_mut("span").and_then(Value::as_object_mut) {
                names.push(span.remove("name"));
            }
            if let Some(spans) = v.get_mut("spans").and_then(Value::as_array_mut) {
                names.extend(spans.iter_mut().map(|s| s.as_object_mut().and_then(|m| m.remove("name"))));
            }
            redact_value(&mut v);
            let mut names = names.into_iter();
            if let Some(span) = v.get_mut("span").and_then(Value::as_object_mut)
                && let Some(Some(name)) = names.next()
            {
                span.insert("name".into(), name);
            }
            if let Some(spans) = v.get_mut("spans").and_then(Value::as_array_mut) {
                for (s, name) in spans.iter_mut().zip(names) {
                    if let (Some(m), Some(name)) = (s.as_object_mut(), name) {
                        m.insert("name".into(), name);
                    }
                }
            }
            v.to_string()
        }
        Err(_) => redact_emails(line).unwrap_or_else(|| line.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_in_free_text_are_hashed_and_stable() {
        let a = redact_emails("customer bob.norman@mail.example.com failed").unwrap();
        assert!(!a.contains("bob.norman"));
        assert!(a.starts_with("customer pii:") && a.ends_with(" failed"), "{a}");
        assert_eq!(a, redact_emails("customer BOB.NORMAN@mail.example.com failed").unwrap());
        assert!(redact_emails("sku@2x is not an email").is_none());
    }

    #[test]
    fn personal_keys_are_hashed_at_any_depth() {
        let mut v = serde_json::json!({
            "order": {"customer": {"first_name": "Bob", "phone": "+1-555"}, "shipping_address": {"address1": "1 Main", "country_code": "US"}},
            "sku": "TEE-1"
        });
        redact_value(&mut v);
        let s = v.to_string();
        assert!(!s.contains("Bob") && !s.contains("555") && !s.contains("1 Main"), "{s}");
        assert!(s.contains("TEE-1"), "business data stays: {s}");
    }
}
