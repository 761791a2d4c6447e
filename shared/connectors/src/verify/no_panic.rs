//! No delivery panics a verifier: property targets per channel and for eBay's signature header.
//!
//! The webhook function verifies before anything else, so whatever reaches the public URL reaches this
//! code: a panic there turns a forged request into a 502 and a dropped warm environment. Each channel's
//! scheme (through [`Verifier::verify`], as the webhook handler calls it) is fed:
//!
//! * genuinely signed deliveries, mutated: headers removed, replaced, duplicated or with bytes changed,
//!   the body changed, the account's settings and secret odd or missing;
//! * arbitrary headers and bodies;
//! * for eBay, `X-EBAY-SIGNATURE` values built from arbitrary bytes, arbitrary JSON and mutations of a
//!   genuine header's JSON, and public-key PEMs as a key endpoint might answer them.
//!
//! Case counts are modest for CI (128 per target); `PROPTEST_CASES` raises them for a longer run.

use std::{collections::BTreeMap, sync::Arc};

use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use chrono::{DateTime, TimeZone as _, Utc};
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderName, HeaderValue};
use manifold_domain::Channel;
use p256::{
    ecdsa::{SigningKey, VerifyingKey},
    pkcs8::{EncodePublicKey as _, LineEnding},
};
use proptest::{prelude::*, test_runner::TestRunner};
use serde_json::{Map, Value};

use super::{
    Credentials, EbayDigest, KeyFetchError, PublicKeySource, Verified, Verifier, VerifyError, ebay::parse_public_key,
    sign, sign_ebay,
};

/// Cases per target unless `PROPTEST_CASES` says otherwise.
const DEFAULT_CASES: u32 = 128;

fn runner() -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_CASES);
    // No regression files in the source tree: inputs that failed once are pinned as plain tests.
    TestRunner::new(ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime")
}

const KID: &str = "kid-a";
const ETSY_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SECRET: &str = "a-shared-secret";
const APP_KEY: &str = "29a39d";

fn ebay_key() -> SigningKey {
    SigningKey::from_slice(&[0x2a; 32]).expect("a valid P-256 scalar")
}

/// eBay's key endpoint, in memory: the one key under [`KID`], nothing under any other id.
#[derive(Debug)]
struct FixedKey(VerifyingKey);

impl PublicKeySource for FixedKey {
    fn public_key<'a>(
        &'a self,
        kid: &'a str,
        _access_token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<VerifyingKey>, KeyFetchError>> {
        let key = (kid == KID).then_some(self.0);
        Box::pin(async move { Ok(key) })
    }
}

fn verifier() -> Verifier {
    Verifier::new(Arc::new(FixedKey(*ebay_key().verifying_key())))
}

fn now() -> DateTime<Utc> {
    Utc.timestamp_opt(1_750_000_000, 0).single().expect("valid timestamp")
}

fn secret_of(channel: Channel) -> &'static str {
    if channel == Channel::Etsy { ETSY_SECRET } else { SECRET }
}

fn good_settings() -> BTreeMap<String, String> {
    [("app_key", APP_KEY), ("callback_url", "https://hooks.example.com/v1/webhooks/kaufland/k")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The headers `channel` sends with `body`, genuinely signed (none for channels without webhooks).
fn signed(channel: Channel, body: &[u8]) -> HeaderMap {
    match channel {
        Channel::Ebay => {
            let value = sign_ebay(&ebay_key(), KID, EbayDigest::Sha1, body).expect("signs");
            [(HeaderName::from_static("x-ebay-signature"), HeaderValue::from_str(&value).expect("base64"))]
                .into_iter()
                .collect()
        }
        Channel::Amazon | Channel::Zalando | Channel::Otto => HeaderMap::new(),
        _ => sign(channel, secret_of(channel), &good_settings(), "msg_1", body, now()).expect("signs"),
    }
}

// ---------------------------------------------------------------- inputs

/// Header names the verifiers read, plus noise.
fn header_name() -> impl Strategy<Value = HeaderName> {
    prop_oneof![
        prop::sample::select(vec![
            "x-shopify-hmac-sha256",
            "x-wc-webhook-signature",
            "authorization",
            "x-manifold-webhook-token",
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
            "x-ebay-signature",
            "shop-timestamp",
            "shop-signature",
        ])
        .prop_map(HeaderName::from_static),
        "[a-z][a-z0-9-]{0,20}".prop_map(|n| HeaderName::from_bytes(n.as_bytes()).expect("a valid name")),
    ]
}

/// Header values: printable text, raw bytes (obs-text included), numbers, signature-shaped entries, and
/// eBay-shaped base64 JSON.
fn header_value() -> impl Strategy<Value = HeaderValue> {
    prop_oneof![
        "[ -~]{0,80}".prop_map(|s| HeaderValue::from_str(&s).expect("visible ASCII")),
        prop::collection::vec(any::<u8>(), 0..80)
            .prop_filter_map("header-safe bytes", |b| HeaderValue::from_bytes(&b).ok()),
        prop_oneof![Just(i64::MIN.to_string()), Just(i64::MAX.to_string()), "-?[0-9]{1,22}"]
            .prop_map(|s| HeaderValue::from_str(&s).expect("digits")),
        prop::collection::vec("(v1|v2|v1a)?,?[A-Za-z0-9+/=]{0,48}", 0..4)
            .prop_map(|entries| HeaderValue::from_str(&entries.join(" ")).expect("visible ASCII")),
        ebay_signature_value(),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[ -~]{0,24}".prop_map(Value::String),
        prop::sample::select(vec!["ecdsa", "ECDSA", "SHA1", "SHA256", "sha1", "MD5", KID]).prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(vec!["alg", "kid", "signature", "digest", "x"]), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<Map<_, _>>())),
        ]
    })
}

/// A change to eBay's signature header JSON (`{"alg","kid","signature","digest"}`).
#[derive(Debug, Clone)]
enum FieldEdit {
    Remove(&'static str),
    Replace(&'static str, Value),
    /// `signature` becomes base64 of these bytes (a DER signature with bytes changed, or noise).
    Signature(Vec<u8>),
}

fn field() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["alg", "kid", "signature", "digest"])
}

fn field_edits() -> impl Strategy<Value = Vec<FieldEdit>> {
    let edit = prop_oneof![
        field().prop_map(FieldEdit::Remove),
        (field(), arb_json()).prop_map(|(f, v)| FieldEdit::Replace(f, v)),
        (field(), "[ -~]{0,140}").prop_map(|(f, s)| FieldEdit::Replace(f, Value::String(s))),
        prop::collection::vec(any::<u8>(), 0..96).prop_map(FieldEdit::Signature),
    ];
    prop::collection::vec(edit, 0..3)
}

/// A genuine eBay header for `body` with `edits` applied to its JSON, base64 again.
fn ebay_header_with(body: &[u8], edits: &[FieldEdit], der_edit: Option<(prop::sample::Index, u8)>) -> String {
    let genuine = sign_ebay(&ebay_key(), KID, EbayDigest::Sha256, body).expect("signs");
    let mut header: Value = serde_json::from_slice(&BASE64.decode(genuine).expect("base64")).expect("JSON");
    if let Some((index, xor)) = der_edit {
        let mut der = BASE64.decode(header["signature"].as_str().expect("a signature")).expect("base64");
        let i = index.index(der.len());
        der[i] ^= xor.max(1);
        header["signature"] = Value::String(BASE64.encode(der));
    }
    for edit in edits {
        match edit {
            FieldEdit::Remove(f) => {
                header.as_object_mut().expect("an object").remove(*f);
            }
            FieldEdit::Replace(f, v) => header[*f] = v.clone(),
            FieldEdit::Signature(bytes) => header["signature"] = Value::String(BASE64.encode(bytes)),
        }
    }
    BASE64.encode(header.to_string())
}

/// `X-EBAY-SIGNATURE` values: base64 of arbitrary bytes or JSON, genuine headers mutated, or not base64.
fn ebay_signature_value() -> impl Strategy<Value = HeaderValue> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..160).prop_map(|b| BASE64.encode(b)),
        arb_json().prop_map(|v| BASE64.encode(v.to_string())),
        (field_edits(), prop::option::of((any::<prop::sample::Index>(), any::<u8>())))
            .prop_map(|(edits, der)| ebay_header_with(b"{}", &edits, der)),
        "[ -~]{0,120}",
    ]
    .prop_map(|s| HeaderValue::from_str(&s).expect("visible ASCII"))
}

/// A change to a signed delivery's headers.
#[derive(Debug, Clone)]
enum HeaderEdit {
    /// Removes the n-th header present.
    Remove(prop::sample::Index),
    /// Sets (replaces) a header.
    Set(HeaderName, HeaderValue),
    /// Adds a second value under a name.
    Append(HeaderName, HeaderValue),
    /// Changes one byte of the n-th header's value (kept only when still a valid header value).
    Byte(prop::sample::Index, prop::sample::Index, u8),
}

fn header_edits() -> impl Strategy<Value = Vec<HeaderEdit>> {
    let edit = prop_oneof![
        any::<prop::sample::Index>().prop_map(HeaderEdit::Remove),
        (header_name(), header_value()).prop_map(|(n, v)| HeaderEdit::Set(n, v)),
        (header_name(), header_value()).prop_map(|(n, v)| HeaderEdit::Append(n, v)),
        (any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<u8>())
            .prop_map(|(h, i, b)| HeaderEdit::Byte(h, i, b)),
    ];
    prop::collection::vec(edit, 0..3)
}

fn apply(headers: &mut HeaderMap, edit: &HeaderEdit) {
    let names: Vec<HeaderName> = headers.keys().cloned().collect();
    match edit {
        HeaderEdit::Remove(i) if !names.is_empty() => {
            headers.remove(&names[i.index(names.len())]);
        }
        HeaderEdit::Set(name, value) => {
            headers.insert(name.clone(), value.clone());
        }
        HeaderEdit::Append(name, value) => {
            headers.append(name.clone(), value.clone());
        }
        HeaderEdit::Byte(h, i, byte) if !names.is_empty() => {
            let name = &names[h.index(names.len())];
            let mut bytes = headers[name].as_bytes().to_vec();
            if bytes.is_empty() {
                return;
            }
            let i = i.index(bytes.len());
            bytes[i] = *byte;
            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                headers.insert(name.clone(), value);
            }
        }
        HeaderEdit::Remove(_) | HeaderEdit::Byte(..) => {}
    }
}

/// The account side, which can be wrong too: the secret and the settings the scheme reads.
#[derive(Debug, Clone)]
struct Account {
    secret: Option<String>,
    app_key: Option<String>,
    webhook_header: Option<String>,
}

fn account() -> impl Strategy<Value = Account> {
    let secret = prop_oneof![
        4 => Just(None),
        1 => Just(Some(String::new())),
        1 => Just(Some("whsec_".to_owned())),
        1 => "[ -~]{0,40}".prop_map(Some),
    ];
    let setting = prop_oneof![4 => Just(None), 1 => "[ -~]{0,24}".prop_map(Some)];
    (secret, setting.clone(), setting).prop_map(|(secret, app_key, webhook_header)| Account {
        secret,
        app_key,
        webhook_header,
    })
}

impl Account {
    /// `None` fields keep the genuine value.
    fn credentials(&self, channel: Channel) -> Credentials {
        let secret = self.secret.as_deref().unwrap_or(secret_of(channel));
        [("webhook_secret", secret), ("access_token", "v^1.1#app-token")].into_iter().collect()
    }

    fn settings(&self) -> BTreeMap<String, String> {
        let mut settings = good_settings();
        if let Some(key) = &self.app_key {
            settings.insert("app_key".into(), key.clone());
        }
        if let Some(header) = &self.webhook_header {
            settings.insert("webhook_header".into(), header.clone());
        }
        settings
    }
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..384),
        arb_json().prop_map(|v| v.to_string().into_bytes()),
        Just(b"webhook_id=15".to_vec()),
    ]
}

// ---------------------------------------------------------------- targets

fn mutated_deliveries(channel: Channel) {
    let rt = runtime();
    let verifier = verifier();
    let inputs = (
        body(),
        header_edits(),
        prop::option::of((any::<prop::sample::Index>(), 1u8..=255)),
        account(),
        -1_000i64..1_000,
    );
    runner()
        .run(&inputs, |(body, edits, flip, account, skew)| {
            let mut headers = signed(channel, &body);
            for edit in &edits {
                apply(&mut headers, edit);
            }
            let mut sent = body.clone();
            if let Some((i, xor)) = flip
                && !sent.is_empty()
            {
                let i = i.index(sent.len());
                sent[i] ^= xor;
            }
            let at = now() + chrono::Duration::seconds(skew);
            let outcome = rt.block_on(verifier.verify(
                channel,
                &headers,
                &sent,
                &account.credentials(channel),
                &account.settings(),
                at,
            ));
            // A changed body never passes on a signature over the original (the BigCommerce token signs nothing).
            if sent != body && channel != Channel::Bigcommerce {
                prop_assert!(
                    !matches!(outcome, Ok(Verified::Authentic)),
                    "{channel} accepted a changed body as authentic"
                );
            }
            Ok(())
        })
        .unwrap();
}

fn arbitrary_deliveries(channel: Channel) {
    let rt = runtime();
    let verifier = verifier();
    let inputs = (prop::collection::vec((header_name(), header_value()), 0..6), body(), account(), any::<i64>());
    runner()
        .run(&inputs, |(pairs, body, account, now_unix)| {
            let headers: HeaderMap = pairs.into_iter().collect();
            let now = Utc.timestamp_opt(now_unix % 10_000_000_000, 0).single().unwrap_or_else(now);
            let outcome = rt.block_on(verifier.verify(
                channel,
                &headers,
                &body,
                &account.credentials(channel),
                &account.settings(),
                now,
            ));
            // Nothing random is authentic, bar WooCommerce's unsigned ping and a BigCommerce header that
            // happens to equal the (random) secret.
            if let Ok(verified) = outcome {
                let ping = channel == Channel::Woocommerce && verified == Verified::Ping;
                let token = channel == Channel::Bigcommerce;
                prop_assert!(ping || token, "{channel} accepted random input as {verified:?}");
            }
            Ok(())
        })
        .unwrap();
}

macro_rules! targets {
    ($($module:ident => $channel:ident),* $(,)?) => {$(
        mod $module {
            use super::*;

            #[test]
            fn mutated_deliveries_never_panic() {
                mutated_deliveries(Channel::$channel);
            }

            #[test]
            fn arbitrary_deliveries_never_panic() {
                arbitrary_deliveries(Channel::$channel);
            }
        }
    )*};
}

targets! {
    amazon => Amazon,
    bigcommerce => Bigcommerce,
    ebay => Ebay,
    etsy => Etsy,
    shopify => Shopify,
    tiktok => Tiktok,
    woocommerce => Woocommerce,
    zalando => Zalando,
}

#[test]
fn ebay_signature_header_parsing_never_panics() {
    let rt = runtime();
    let verifier = verifier();
    let body = br#"{"metadata":{"topic":"ORDER_CONFIRMATION"}}"#;
    let inputs = (ebay_signature_value(), any::<bool>());
    runner()
        .run(&inputs, |(value, genuine_body)| {
            let headers: HeaderMap = [(HeaderName::from_static("x-ebay-signature"), value)].into_iter().collect();
            let sent: &[u8] = if genuine_body { body } else { b"{}" };
            let creds: Credentials = [("access_token", "t")].into_iter().collect();
            let _ = rt.block_on(verifier.verify(Channel::Ebay, &headers, sent, &creds, &BTreeMap::new(), now()));
            Ok(())
        })
        .unwrap();
}

#[test]
fn ebay_mutated_signature_headers_are_refused_without_panicking() {
    let rt = runtime();
    let verifier = verifier();
    let body = br#"{"notification":{"data":{"orderId":"12-03456-78901"}}}"#;
    let inputs = (field_edits(), prop::option::of((any::<prop::sample::Index>(), any::<u8>())));
    runner()
        .run(&inputs, |(edits, der)| {
            let value = ebay_header_with(body, &edits, der);
            let headers: HeaderMap =
                [(HeaderName::from_static("x-ebay-signature"), HeaderValue::from_str(&value).expect("base64"))]
                    .into_iter()
                    .collect();
            let creds: Credentials = [("access_token", "t")].into_iter().collect();
            let outcome = rt.block_on(verifier.verify(Channel::Ebay, &headers, body, &creds, &BTreeMap::new(), now()));
            if der.is_some() && !edits.iter().any(|e| matches!(e, FieldEdit::Replace(..))) {
                // A changed signature byte never verifies (an edit may only have removed a field or
                // replaced the signature, which cannot verify either).
                prop_assert!(!matches!(outcome, Ok(Verified::Authentic)), "a changed signature verified");
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn ebay_public_key_responses_never_panic() {
    let genuine = ebay_key().verifying_key().to_public_key_pem(LineEnding::LF).expect("PEM");
    let pem = prop_oneof![
        "[ -~\n]{0,200}",
        (any::<prop::sample::Index>(), any::<char>()).prop_map(move |(i, c)| {
            let mut chars: Vec<char> = genuine.chars().collect();
            let i = i.index(chars.len());
            chars[i] = c;
            chars.into_iter().collect()
        }),
        prop::collection::vec(any::<u8>(), 0..120)
            .prop_map(|b| format!("-----BEGIN PUBLIC KEY-----{}-----END PUBLIC KEY-----", BASE64.encode(b))),
    ];
    runner()
        .run(&pem, |pem| {
            let _ = parse_public_key(&pem);
            Ok(())
        })
        .unwrap();
}

#[test]
fn genuine_deliveries_still_verify() {
    // The targets above start from these: a wrong start would make every mutation trivially refused.
    let rt = runtime();
    let verifier = verifier();
    let body = br#"{"id":1}"#;
    for channel in Channel::ALL {
        let outcome = rt.block_on(verifier.verify(
            channel,
            &signed(channel, body),
            body,
            &Account { secret: None, app_key: None, webhook_header: None }.credentials(channel),
            &good_settings(),
            now(),
        ));
        match channel {
            Channel::Amazon | Channel::Zalando | Channel::Otto => {
                assert!(matches!(outcome, Err(VerifyError::NotSupported(_))), "{channel}: {outcome:?}");
            }
            _ => assert_eq!(outcome.unwrap(), Verified::Authentic, "{channel}"),
        }
    }
}
