//! Published vectors, refusals per channel, eBay against a real HTTP key server on loopback, and
//! property tests (sign → verify round-trips; our Etsy signature equals the `standardwebhooks` reference
//! library's). That no input panics a verifier is `no_panic`'s job.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap as AxumHeaders, StatusCode},
    routing::get,
};
use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use chrono::{DateTime, TimeZone as _, Utc};
use hmac::{Hmac, Mac as _};
use http::{HeaderMap, HeaderName, HeaderValue};
use manifold_domain::Channel;
use p256::{
    ecdsa::SigningKey,
    pkcs8::{EncodePublicKey as _, LineEnding},
};
use proptest::{prelude::*, test_runner::TestRunner};
use rand_core::OsRng;
use serde_json::{Value, json};
use sha2::Sha256;

use super::*;

const SHOPIFY_VECTOR: &str = include_str!("../../fixtures/signatures/shopify-webhook-hmac-vector.json");
const WOO_VECTOR: &str = include_str!("../../fixtures/signatures/woocommerce-webhook-signature-vector.json");
const STANDARD_WEBHOOKS_VECTORS: &str = include_str!("../../fixtures/signatures/standard-webhooks-test-vectors.json");

const ETSY_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const BODY: &[u8] = br#"{"id":820982911946154500,"total_price":"199.00"}"#;

fn creds(secret: &str) -> Credentials {
    [("webhook_secret", secret)].into_iter().collect()
}

fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn at(unix: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(unix, 0).single().expect("valid timestamp")
}

fn now() -> DateTime<Utc> {
    at(1_750_000_000)
}

/// For channels other than eBay, which never ask for a key: the endpoint is a closed loopback port.
fn verifier() -> Verifier {
    Verifier::new(Arc::new(HttpPublicKeySource::new(reqwest::Client::new(), "http://127.0.0.1:9")))
}

fn header_map(pairs: &[(&str, &str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| (HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap()))
        .collect()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
}

fn str_of<'v>(v: &'v Value, key: &str) -> &'v str {
    v[key].as_str().unwrap_or_else(|| panic!("fixture field {key}"))
}

// ---------------------------------------------------------------- published vectors

#[tokio::test]
async fn shopify_published_vector_verifies_and_is_reproduced_by_sign() {
    let v = json(SHOPIFY_VECTOR);
    let secret = str_of(&v, "secret");
    let body = str_of(&v, "raw_body").as_bytes();
    let headers: Vec<(&str, &str)> =
        v["headers"].as_object().unwrap().iter().map(|(k, val)| (k.as_str(), val.as_str().unwrap())).collect();

    let outcome =
        verifier().verify(Channel::Shopify, &header_map(&headers), body, &creds(secret), &settings(&[]), now()).await;
    assert_eq!(outcome.unwrap(), Verified::Authentic);

    let signed = sign(Channel::Shopify, secret, &settings(&[]), "", body, now()).unwrap();
    assert_eq!(signed["x-shopify-hmac-sha256"], v["headers"]["X-Shopify-Hmac-Sha256"].as_str().unwrap());
}

#[tokio::test]
async fn woocommerce_published_vector_verifies_and_is_reproduced_by_sign() {
    let v = json(WOO_VECTOR);
    let secret = str_of(&v, "secret");
    let body = str_of(&v, "raw_body").as_bytes();
    let expected = str_of(&v, "expected_x_wc_webhook_signature");

    let headers = header_map(&[("X-WC-Webhook-Signature", expected)]);
    let outcome = verifier().verify(Channel::Woocommerce, &headers, body, &creds(secret), &settings(&[]), now()).await;
    assert_eq!(outcome.unwrap(), Verified::Authentic);

    let signed = sign(Channel::Woocommerce, secret, &settings(&[]), "", body, now()).unwrap();
    assert_eq!(signed["x-wc-webhook-signature"], expected);
}

#[tokio::test]
async fn standard_webhooks_published_vectors_pass_and_the_negative_one_fails() {
    let v = json(STANDARD_WEBHOOKS_VECTORS);
    let positives = v["vectors"].as_array().unwrap();
    assert_eq!(positives.len(), 2);
    for vector in positives {
        let (secret, id, payload) = (str_of(vector, "secret"), str_of(vector, "msg_id"), str_of(vector, "payload"));
        let ts = vector["timestamp"].as_i64().unwrap();
        let expected = str_of(vector, "expected_signature");
        let headers =
            header_map(&[("webhook-id", id), ("webhook-timestamp", &ts.to_string()), ("webhook-signature", expected)]);
        let outcome = verifier()
            .verify(Channel::Etsy, &headers, payload.as_bytes(), &creds(secret), &settings(&[]), at(ts))
            .await;
        assert_eq!(outcome.unwrap(), Verified::Authentic, "{}", vector["source"]);

        let signed = sign(Channel::Etsy, secret, &settings(&[]), id, payload.as_bytes(), at(ts)).unwrap();
        assert_eq!(signed["webhook-signature"], expected);
    }

    let negatives = v["negative_vectors"].as_array().unwrap();
    assert_eq!(negatives.len(), 1);
    for vector in negatives {
        let id = str_of(vector, "msg_id");
        // The negative vector has no timestamp of its own: it is the positive vector with the same id, altered.
        let ts = positives.iter().find(|p| p["msg_id"] == id).unwrap()["timestamp"].as_i64().unwrap();
        let headers = header_map(&[
            ("webhook-id", id),
            ("webhook-timestamp", &ts.to_string()),
            ("webhook-signature", str_of(vector, "signature_header")),
        ]);
        let outcome = verifier()
            .verify(
                Channel::Etsy,
                &headers,
                str_of(vector, "payload").as_bytes(),
                &creds(str_of(vector, "secret")),
                &settings(&[]),
                at(ts),
            )
            .await;
        assert!(matches!(outcome, Err(VerifyError::Mismatch)), "{outcome:?}");
    }
}

// ---------------------------------------------------------------- refusals, per shared-secret channel

struct Case {
    channel: Channel,
    secret: &'static str,
    wrong_secret: &'static str,
    settings: &'static [(&'static str, &'static str)],
    /// (header, a value that is not even the right encoding)
    garbled: (&'static str, &'static str),
}

const HMAC_CASES: &[Case] = &[
    Case {
        channel: Channel::Shopify,
        secret: "shpss_client_secret",
        wrong_secret: "shpss_other",
        settings: &[],
        garbled: ("X-Shopify-Hmac-Sha256", "not base64!"),
    },
    Case {
        channel: Channel::Woocommerce,
        secret: "wc-secret",
        wrong_secret: "wc-other",
        settings: &[],
        garbled: ("X-WC-Webhook-Signature", "%%%"),
    },
    Case {
        channel: Channel::Tiktok,
        secret: "tiktok-app-secret",
        wrong_secret: "tiktok-other",
        settings: &[("app_key", "29a39d")],
        garbled: ("Authorization", "zz-not-hex"),
    },
    Case {
        channel: Channel::Etsy,
        secret: ETSY_SECRET,
        wrong_secret: "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        settings: &[],
        garbled: ("webhook-signature", "v1,@@not-base64@@"),
    },
];

async fn check(case: &Case, headers: &HeaderMap, body: &[u8], secret: &str) -> Result<Verified, VerifyError> {
    verifier().verify(case.channel, headers, body, &creds(secret), &settings(case.settings), now()).await
}

#[tokio::test]
async fn signed_deliveries_pass_and_any_tampering_is_refused() {
    for case in HMAC_CASES {
        let channel = case.channel;
        let signed = sign(channel, case.secret, &settings(case.settings), "msg_1", BODY, now()).unwrap();
        assert_eq!(check(case, &signed, BODY, case.secret).await.unwrap(), Verified::Authentic, "{channel}");

        let wrong = check(case, &signed, BODY, case.wrong_secret).await;
        assert!(matches!(wrong, Err(VerifyError::Mismatch)), "{channel} wrong secret: {wrong:?}");

        for i in [0, BODY.len() / 2, BODY.len() - 1] {
            let mut flipped = BODY.to_vec();
            flipped[i] ^= 0x01;
            let outcome = check(case, &signed, &flipped, case.secret).await;
            assert!(matches!(outcome, Err(VerifyError::Mismatch)), "{channel} byte {i} flipped: {outcome:?}");
        }

        for name in signed.keys() {
            let mut without = signed.clone();
            without.remove(name);
            let outcome = check(case, &without, BODY, case.secret).await;
            assert!(
                matches!(outcome, Err(VerifyError::Missing(missing)) if missing.eq_ignore_ascii_case(name.as_str())),
                "{channel} without {name}: {outcome:?}"
            );
        }

        let mut garbled = signed.clone();
        garbled.insert(case.garbled.0, HeaderValue::from_static(case.garbled.1));
        let outcome = check(case, &garbled, BODY, case.secret).await;
        assert!(matches!(outcome, Err(VerifyError::Malformed(_))), "{channel} garbled: {outcome:?}");

        let no_secret =
            verifier().verify(channel, &signed, BODY, &Credentials::default(), &settings(case.settings), now()).await;
        assert!(matches!(no_secret, Err(VerifyError::Unconfigured("webhook_secret"))), "{channel}: {no_secret:?}");
    }
}

#[tokio::test]
async fn tiktok_signs_app_key_then_body_in_hex_and_needs_the_app_key() {
    let (secret, app_key) = ("tiktok-app-secret", "29a39d");
    let signed = sign(Channel::Tiktok, secret, &settings(&[("app_key", app_key)]), "", BODY, now()).unwrap();

    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{app_key}{}", std::str::from_utf8(BODY).unwrap()).as_bytes());
    assert_eq!(signed["authorization"], hex::encode(mac.finalize().into_bytes()));

    let other_key = verifier()
        .verify(Channel::Tiktok, &signed, BODY, &creds(secret), &settings(&[("app_key", "other")]), now())
        .await;
    assert!(matches!(other_key, Err(VerifyError::Mismatch)), "{other_key:?}");
    let no_key = verifier().verify(Channel::Tiktok, &signed, BODY, &creds(secret), &settings(&[]), now()).await;
    assert!(matches!(no_key, Err(VerifyError::Unconfigured("app_key"))), "{no_key:?}");
}

#[tokio::test]
async fn etsy_refuses_replays_and_future_timestamps_beyond_five_minutes() {
    let signed_at = 1_700_000_000;
    let signed = sign(Channel::Etsy, ETSY_SECRET, &settings(&[]), "msg_1", BODY, at(signed_at)).unwrap();
    let signed = &signed;
    let verify_at = |t: i64| async move {
        verifier().verify(Channel::Etsy, signed, BODY, &creds(ETSY_SECRET), &settings(&[]), at(t)).await
    };

    for edge in [signed_at - 300, signed_at, signed_at + 300] {
        assert_eq!(verify_at(edge).await.unwrap(), Verified::Authentic, "at {edge}");
    }
    let late = verify_at(signed_at + 301).await;
    assert!(matches!(late, Err(VerifyError::Expired { skew_seconds: 301 })), "{late:?}");
    let early = verify_at(signed_at - 301).await;
    assert!(matches!(early, Err(VerifyError::Expired { skew_seconds: -301 })), "{early:?}");
}

#[tokio::test]
async fn etsy_accepts_any_v1_entry_and_ignores_other_versions() {
    let signed = sign(Channel::Etsy, ETSY_SECRET, &settings(&[]), "msg_1", BODY, now()).unwrap();
    let good = signed["webhook-signature"].to_str().unwrap().to_owned();
    let verify_with = |signature: String| {
        let mut headers = signed.clone();
        headers.insert("webhook-signature", HeaderValue::from_str(&signature).unwrap());
        let creds = creds(ETSY_SECRET);
        async move { verifier().verify(Channel::Etsy, &headers, BODY, &creds, &settings(&[]), now()).await }
    };

    let rotated = format!("v1,{} v1a,AAAA {good}", BASE64.encode([7u8; 32]));
    assert_eq!(verify_with(rotated).await.unwrap(), Verified::Authentic);
    let only_other_versions = verify_with(format!("v2,{}", &good[3..])).await;
    assert!(matches!(only_other_versions, Err(VerifyError::Malformed(_))), "{only_other_versions:?}");
    let not_a_number = {
        let mut headers = signed.clone();
        headers.insert("webhook-timestamp", HeaderValue::from_static("yesterday"));
        verifier().verify(Channel::Etsy, &headers, BODY, &creds(ETSY_SECRET), &settings(&[]), now()).await
    };
    assert!(matches!(not_a_number, Err(VerifyError::Malformed(_))), "{not_a_number:?}");
}

#[tokio::test]
async fn woocommerce_creation_ping_is_recognised_only_as_woocommerce_unsigned_form() {
    let v = verifier();
    let verify = |channel, headers: HeaderMap, body: &'static [u8]| {
        let v = &v;
        async move { v.verify(channel, &headers, body, &creds("wc-secret"), &settings(&[]), now()).await }
    };

    let ping = verify(Channel::Woocommerce, HeaderMap::new(), b"webhook_id=42").await;
    assert_eq!(ping.unwrap(), Verified::Ping);

    for not_a_ping in [&b"webhook_id="[..], b"webhook_id=4x", b"webhook_id=1&x=2", b"{\"id\":1}"] {
        let outcome = verify(Channel::Woocommerce, HeaderMap::new(), not_a_ping).await;
        assert!(matches!(outcome, Err(VerifyError::Missing("X-WC-Webhook-Signature"))), "{outcome:?}");
    }
    let signed_but_wrong =
        verify(Channel::Woocommerce, header_map(&[("x-wc-webhook-signature", "AAAA")]), b"webhook_id=42").await;
    assert!(matches!(signed_but_wrong, Err(VerifyError::Mismatch)), "{signed_but_wrong:?}");
    let shopify = verify(Channel::Shopify, HeaderMap::new(), b"webhook_id=42").await;
    assert!(matches!(shopify, Err(VerifyError::Missing(_))), "{shopify:?}");
}

#[tokio::test]
async fn bigcommerce_compares_the_subscription_header_with_the_secret() {
    let v = verifier();
    let bc = |headers: HeaderMap, secret: &'static str, s: BTreeMap<String, String>| {
        let v = &v;
        async move { v.verify(Channel::Bigcommerce, &headers, BODY, &creds(secret), &s, now()).await }
    };

    let signed = sign(Channel::Bigcommerce, "bc-token", &settings(&[]), "", BODY, now()).unwrap();
    assert_eq!(signed["x-manifold-webhook-token"], "bc-token");
    assert_eq!(bc(signed.clone(), "bc-token", settings(&[])).await.unwrap(), Verified::Authentic);

    let wrong = bc(signed.clone(), "bc-other", settings(&[])).await;
    assert!(matches!(wrong, Err(VerifyError::Mismatch)), "{wrong:?}");
    let prefix = bc(header_map(&[("x-manifold-webhook-token", "bc-tok")]), "bc-token", settings(&[])).await;
    assert!(matches!(prefix, Err(VerifyError::Mismatch)), "{prefix:?}");
    let missing = bc(HeaderMap::new(), "bc-token", settings(&[])).await;
    assert!(matches!(missing, Err(VerifyError::Missing("X-Manifold-Webhook-Token"))), "{missing:?}");
    let empty_secret = bc(header_map(&[("x-manifold-webhook-token", "")]), "", settings(&[])).await;
    assert!(matches!(empty_secret, Err(VerifyError::Unconfigured("webhook_secret"))), "{empty_secret:?}");

    let custom = settings(&[("webhook_header", "X-Store-Auth")]);
    let signed = sign(Channel::Bigcommerce, "bc-token", &custom, "", BODY, now()).unwrap();
    assert_eq!(signed["x-store-auth"], "bc-token");
    assert_eq!(bc(signed.clone(), "bc-token", custom.clone()).await.unwrap(), Verified::Authentic);
    let default_header_ignored = bc(header_map(&[("x-manifold-webhook-token", "bc-token")]), "bc-token", custom).await;
    assert!(matches!(default_header_ignored, Err(VerifyError::Missing(_))), "{default_header_ignored:?}");
    let bad_name = bc(signed, "bc-token", settings(&[("webhook_header", "not a header")])).await;
    assert!(matches!(bad_name, Err(VerifyError::Unconfigured("webhook_header"))), "{bad_name:?}");
}

#[tokio::test]
async fn amazon_zalando_and_otto_have_no_webhooks() {
    for channel in [Channel::Amazon, Channel::Zalando, Channel::Otto] {
        let outcome = verifier().verify(channel, &HeaderMap::new(), BODY, &creds("x"), &settings(&[]), now()).await;
        assert!(matches!(outcome, Err(VerifyError::NotSupported(c)) if c == channel), "{outcome:?}");
        assert!(!outcome.unwrap_err().is_retryable());
        assert!(matches!(sign(channel, "x", &settings(&[]), "", BODY, now()), Err(VerifyError::NotSupported(_))));
    }
}

#[test]
fn headers_are_case_insensitive_refuse_non_ascii_and_never_print_values() {
    let mut map = header_map(&[("x-shopify-hmac-sha256", "abc")]);
    map.insert("x-bin", HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
    let headers = Headers::new(&map);
    for name in ["x-shopify-hmac-sha256", "X-Shopify-Hmac-Sha256", "X-SHOPIFY-HMAC-SHA256"] {
        assert_eq!(headers.get(name).unwrap(), Some("abc"));
    }
    assert!(matches!(headers.require("X-Absent"), Err(VerifyError::Missing("X-Absent"))));
    assert!(matches!(headers.get("x-bin"), Err(VerifyError::Malformed(_))));
    let shown = format!("{headers:?}");
    assert!(shown.contains("x-shopify-hmac-sha256") && !shown.contains("abc"), "{shown}");
}

// ---------------------------------------------------------------- eBay against a loopback key server

/// eBay's `getPublicKey`, served on loopback: known kids answer the key JSON, `broken` answers 500,
/// anything else 404. Counts requests and records the bearer tokens it was sent.
struct KeyServer {
    endpoint: String,
    state: Arc<ServerState>,
}

#[derive(Default)]
struct ServerState {
    keys: HashMap<String, Value>,
    hits: AtomicUsize,
    authorizations: Mutex<Vec<String>>,
}

impl KeyServer {
    async fn start(keys: &[(&str, &SigningKey, bool)]) -> Self {
        let keys = keys
            .iter()
            .map(|(kid, key, one_line)| {
                let pem = key.verifying_key().to_public_key_pem(LineEnding::LF).unwrap();
                // eBay serves the PEM with its line breaks removed.
                let pem = if *one_line { pem.replace('\n', "") } else { pem };
                ((*kid).to_owned(), json!({"algorithm": "ECDSA", "digest": "SHA1", "key": pem}))
            })
            .collect();
        let state = Arc::new(ServerState { keys, ..ServerState::default() });
        let app = Router::new()
            .route("/commerce/notification/v1/public_key/{kid}", get(serve_key))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { endpoint, state }
    }

    fn source(&self) -> Arc<dyn PublicKeySource> {
        Arc::new(HttpPublicKeySource::new(reqwest::Client::new(), format!("{}/", self.endpoint)))
    }

    fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }
}

async fn serve_key(
    State(state): State<Arc<ServerState>>,
    Path(kid): Path<String>,
    headers: AxumHeaders,
) -> Result<Json<Value>, StatusCode> {
    state.hits.fetch_add(1, Ordering::SeqCst);
    if let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        state.authorizations.lock().unwrap().push(auth.to_owned());
    }
    match kid.as_str() {
        "broken" => Err(StatusCode::INTERNAL_SERVER_ERROR),
        _ => state.keys.get(&kid).cloned().map(Json).ok_or(StatusCode::NOT_FOUND),
    }
}

fn ebay_headers(signature: &str) -> HeaderMap {
    header_map(&[("X-EBAY-SIGNATURE", signature)])
}

fn ebay_creds() -> Credentials {
    [("access_token", "v^1.1#app-token")].into_iter().collect()
}

async fn verify_ebay(verifier: &Verifier, headers: &HeaderMap, body: &[u8]) -> Result<Verified, VerifyError> {
    verifier.verify(Channel::Ebay, headers, body, &ebay_creds(), &settings(&[]), now()).await
}

#[tokio::test]
async fn ebay_signatures_verify_with_the_fetched_key_for_both_digests() {
    let (one_line, multi_line) = (SigningKey::random(&mut OsRng), SigningKey::random(&mut OsRng));
    let server = KeyServer::start(&[("kid-one-line", &one_line, true), ("kid-pem", &multi_line, false)]).await;
    let verifier = Verifier::new(server.source());

    for (kid, key) in [("kid-one-line", &one_line), ("kid-pem", &multi_line)] {
        for digest in [EbayDigest::Sha1, EbayDigest::Sha256] {
            let header = sign_ebay(key, kid, digest, BODY).unwrap();
            let outcome = verify_ebay(&verifier, &ebay_headers(&header), BODY).await;
            assert_eq!(outcome.unwrap(), Verified::Authentic, "{kid} {digest:?}");

            let mut flipped = BODY.to_vec();
            flipped[3] ^= 0x20;
            let outcome = verify_ebay(&verifier, &ebay_headers(&header), &flipped).await;
            assert!(matches!(outcome, Err(VerifyError::Mismatch)), "{kid} {digest:?} flipped: {outcome:?}");
        }
    }
    assert_eq!(server.hits(), 2, "one fetch per kid");
    let sent = server.state.authorizations.lock().unwrap().clone();
    assert_eq!(sent, vec!["Bearer v^1.1#app-token".to_owned(); 2]);
}

#[tokio::test]
async fn ebay_refuses_a_signature_from_another_key_than_the_kids() {
    let (published, impostor) = (SigningKey::random(&mut OsRng), SigningKey::random(&mut OsRng));
    let server = KeyServer::start(&[("kid-a", &published, true)]).await;
    let verifier = Verifier::new(server.source());

    let forged = sign_ebay(&impostor, "kid-a", EbayDigest::Sha1, BODY).unwrap();
    let outcome = verify_ebay(&verifier, &ebay_headers(&forged), BODY).await;
    assert!(matches!(outcome, Err(VerifyError::Mismatch)), "{outcome:?}");

    // The same signature relabelled with the other digest does not pass either.
    let sha256 = sign_ebay(&published, "kid-a", EbayDigest::Sha256, BODY).unwrap();
    let decoded: Value = serde_json::from_slice(&BASE64.decode(&sha256).unwrap()).unwrap();
    let relabelled = BASE64.encode(
        json!({"alg": "ecdsa", "kid": "kid-a", "signature": decoded["signature"], "digest": "SHA1"}).to_string(),
    );
    let outcome = verify_ebay(&verifier, &ebay_headers(&relabelled), BODY).await;
    assert!(matches!(outcome, Err(VerifyError::Mismatch)), "{outcome:?}");
}

#[tokio::test]
async fn ebay_refuses_missing_and_malformed_headers_without_fetching() {
    let key = SigningKey::random(&mut OsRng);
    let server = KeyServer::start(&[("kid-a", &key, true)]).await;
    let verifier = Verifier::new(server.source());
    let good: Value =
        serde_json::from_slice(&BASE64.decode(sign_ebay(&key, "kid-a", EbayDigest::Sha1, BODY).unwrap()).unwrap())
            .unwrap();
    let with = |field: &str, value: Value| {
        let mut header = good.clone();
        header[field] = value;
        BASE64.encode(header.to_string())
    };

    let missing = verify_ebay(&verifier, &HeaderMap::new(), BODY).await;
    assert!(matches!(missing, Err(VerifyError::Missing("X-EBAY-SIGNATURE"))), "{missing:?}");
    for (what, header) in [
        ("not base64", "%%%".to_owned()),
        ("base64 of not JSON", BASE64.encode("alg=ecdsa")),
        ("other alg", with("alg", json!("rsa"))),
        ("unknown digest", with("digest", json!("MD5"))),
        ("kid escaping the path", with("kid", json!("../../oauth2/token"))),
        ("signature not base64", with("signature", json!("***"))),
        ("signature not DER", with("signature", json!(BASE64.encode([1u8; 64])))),
    ] {
        let outcome = verify_ebay(&verifier, &ebay_headers(&header), BODY).await;
        assert!(matches!(outcome, Err(VerifyError::Malformed(_))), "{what}: {outcome:?}");
    }
    assert_eq!(server.hits(), 0, "nothing malformed reaches eBay");
}

#[tokio::test]
async fn ebay_unknown_kid_is_refused_and_remembered_and_server_errors_are_retryable() {
    let key = SigningKey::random(&mut OsRng);
    let server = KeyServer::start(&[]).await;
    let verifier = Verifier::new(server.source());

    let unknown = sign_ebay(&key, "kid-nobody-published", EbayDigest::Sha1, BODY).unwrap();
    for _ in 0..3 {
        let outcome = verify_ebay(&verifier, &ebay_headers(&unknown), BODY).await;
        assert!(matches!(outcome, Err(VerifyError::Malformed(_))), "{outcome:?}");
    }
    assert_eq!(server.hits(), 1, "a 404 is remembered for a while");

    let broken = sign_ebay(&key, "broken", EbayDigest::Sha1, BODY).unwrap();
    let outcome = verify_ebay(&verifier, &ebay_headers(&broken), BODY).await;
    assert!(
        matches!(&outcome, Err(e @ VerifyError::KeyFetch(KeyFetchError::Status { status: 500 })) if e.is_retryable()),
        "{outcome:?}"
    );
    let again = verify_ebay(&verifier, &ebay_headers(&broken), BODY).await;
    assert!(matches!(again, Err(VerifyError::KeyFetch(_))), "{again:?}");
    assert_eq!(server.hits(), 3, "failures are not cached");

    let unreachable = Verifier::new(Arc::new(
        HttpPublicKeySource::new(reqwest::Client::new(), "http://127.0.0.1:9").with_timeout(Duration::from_secs(2)),
    ));
    let outcome = verify_ebay(&unreachable, &ebay_headers(&unknown), BODY).await;
    assert!(
        matches!(&outcome, Err(e @ VerifyError::KeyFetch(KeyFetchError::Http(_))) if e.is_retryable()),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn ebay_key_is_fetched_once_for_many_sequential_and_concurrent_verifications() {
    let key = SigningKey::random(&mut OsRng);
    let server = KeyServer::start(&[("kid-a", &key, true)]).await;
    let verifier = Verifier::new(server.source());
    let bodies: Vec<Vec<u8>> = (0..40).map(|i| format!("{{\"notificationId\":\"n-{i}\"}}").into_bytes()).collect();
    let headers: Vec<HeaderMap> =
        bodies.iter().map(|b| ebay_headers(&sign_ebay(&key, "kid-a", EbayDigest::Sha1, b).unwrap())).collect();

    // Concurrent first: they all miss the empty cache at once and must share one fetch.
    let concurrent =
        futures::future::join_all(bodies.iter().zip(&headers).map(|(b, h)| verify_ebay(&verifier, h, b))).await;
    assert!(concurrent.iter().all(|o| matches!(o, Ok(Verified::Authentic))), "{concurrent:?}");
    for (b, h) in bodies.iter().zip(&headers) {
        assert_eq!(verify_ebay(&verifier, h, b).await.unwrap(), Verified::Authentic);
    }
    assert_eq!(server.hits(), 1);

    let uncached = Verifier::with_key_ttl(server.source(), Duration::ZERO);
    for (b, h) in bodies.iter().zip(&headers).take(5) {
        assert_eq!(verify_ebay(&uncached, h, b).await.unwrap(), Verified::Authentic);
    }
    assert_eq!(server.hits(), 1 + 5, "with a zero TTL every verification fetches");
}

// ---------------------------------------------------------------- properties

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn signing_round_trips_and_any_flipped_bit_is_refused() {
    let rt = runtime();
    let verifier = verifier();
    let inputs = (
        prop::sample::select(vec![Channel::Shopify, Channel::Woocommerce, Channel::Tiktok, Channel::Etsy]),
        prop::collection::vec(any::<u8>(), 1..512),
        prop::collection::vec(any::<u8>(), 0..64),
        any::<prop::sample::Index>(),
        0u8..8,
    );
    TestRunner::new(ProptestConfig::with_cases(300))
        .run(&inputs, |(channel, body, key, index, bit)| {
            let secret = if channel == Channel::Etsy {
                format!("whsec_{}", BASE64.encode(&key))
            } else {
                String::from_utf8_lossy(&key).into_owned()
            };
            let s = settings(&[("app_key", "29a39d")]);
            let headers = sign(channel, &secret, &s, "msg_prop", &body, now()).unwrap();
            let accepted = rt.block_on(verifier.verify(channel, &headers, &body, &creds(&secret), &s, now()));
            prop_assert_eq!(accepted.unwrap(), Verified::Authentic);

            let mut flipped = body.clone();
            flipped[index.index(body.len())] ^= 1 << bit;
            let refused = rt.block_on(verifier.verify(channel, &headers, &flipped, &creds(&secret), &s, now()));
            prop_assert!(matches!(refused, Err(VerifyError::Mismatch)), "{:?}", refused);
            Ok(())
        })
        .unwrap();
}

#[test]
fn etsy_signature_equals_the_standard_webhooks_reference_library() {
    let inputs = (prop::collection::vec(any::<u8>(), 1..64), "msg_[A-Za-z0-9]{1,30}", 0i64..4_000_000_000, ".{0,200}");
    TestRunner::new(ProptestConfig::with_cases(300))
        .run(&inputs, |(key, id, ts, payload)| {
            let secret = format!("whsec_{}", BASE64.encode(&key));
            let ours = sign(Channel::Etsy, &secret, &settings(&[]), &id, payload.as_bytes(), at(ts)).unwrap();
            let reference = standardwebhooks::Webhook::new(&secret).unwrap().sign(&id, ts, payload.as_bytes()).unwrap();
            prop_assert_eq!(ours["webhook-signature"].to_str().unwrap(), reference);
            Ok(())
        })
        .unwrap();
}

#[tokio::test]
async fn kaufland_notifications_are_checked_against_the_registered_callback_url() {
    let secret = "b3575f222f7b768c25160b879699118b331c0883e26a03d46f23ab4e7e1b9cf1";
    let url = "https://hooks.example.com/v1/webhooks/kaufland/kaufland-de";
    let good = settings(&[("callback_url", url)]);
    let body = br#"{"event_name":"order_new","id_order":"MB7UWLD"}"#;
    let headers = sign(Channel::Kaufland, secret, &good, "", body, now()).unwrap();
    // The signature is the request signature of `POST` to the callback URL: computed apart here.
    let ts = now().timestamp();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("POST\n{url}\n{}\n{ts}", std::str::from_utf8(body).unwrap()).as_bytes());
    assert_eq!(headers["shop-signature"].to_str().unwrap(), hex::encode(mac.finalize().into_bytes()));
    assert_eq!(headers["shop-timestamp"].to_str().unwrap(), ts.to_string());

    let check = |headers: HeaderMap, body: &'static [u8], settings: BTreeMap<String, String>, at: DateTime<Utc>| async move {
        let creds: Credentials = [("secret_key", secret)].into_iter().collect();
        verifier().verify(Channel::Kaufland, &headers, body, &creds, &settings, at).await
    };
    assert_eq!(check(headers.clone(), body, good.clone(), now()).await.unwrap(), Verified::Authentic);
    let other_body: &'static [u8] = br#"{"event_name":"order_new","id_order":"OTHER"}"#;
    assert!(matches!(check(headers.clone(), other_body, good.clone(), now()).await, Err(VerifyError::Mismatch)));
    let elsewhere = settings(&[("callback_url", "https://hooks.example.com/v1/webhooks/kaufland/other")]);
    assert!(matches!(check(headers.clone(), body, elsewhere, now()).await, Err(VerifyError::Mismatch)));
    let later = now() + chrono::Duration::minutes(6);
    assert!(matches!(check(headers.clone(), body, good.clone(), later).await, Err(VerifyError::Expired { .. })));
    let patient = settings(&[("callback_url", url), ("signature_tolerance_seconds", "600")]);
    assert!(check(headers.clone(), body, patient, later).await.is_ok(), "the tolerance is configurable");
    assert!(matches!(
        check(headers.clone(), body, settings(&[]), now()).await,
        Err(VerifyError::Unconfigured("callback_url"))
    ));
    let mut unsigned = headers;
    unsigned.remove("shop-signature");
    assert!(matches!(check(unsigned, body, good, now()).await, Err(VerifyError::Missing("Shop-Signature"))));
}
