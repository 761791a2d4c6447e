//! Channel credentials that stay valid, end to end: accounts whose secrets (in moto's Secrets Manager)
//! hold refresh tokens or client credentials, the simulators issuing access tokens that live two
//! seconds and refusing any they did not issue, and the push consumer draining real SQS queues.
//!
//! Proves: pushes keep succeeding across token expiry with zero failed pushes; a refresh token the
//! channel rotates lands in the secret; a token the channel refuses is refreshed and the call retried
//! once; a bad refresh token ends as an auth failure; concurrent pushes share one refresh.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use aws_sdk_sqs::types::MessageSystemAttributeName;
use manifold_app::{App, app::Settings, push::PushSettings};
use manifold_aws::secrets::{CachedSecrets, SecretsManager};
use manifold_connectors::{CallContext, StockUpdate, breaker::BreakerPolicy};
use manifold_domain::{
    AccountId, Channel, Sku,
    config::{AccountConfig, ChannelConfig},
};
use manifold_ledger::fanout::PushJob;
use manifold_simulator::{CatalogItem, SimConfig, SimHandle, Simulator};
use serde_json::{Value, json};

use crate::support::{self, Stack};

const ACCOUNT: &str = "tok-account";
/// Every channel whose access tokens expire.
const EXPIRING: [Channel; 6] =
    [Channel::Amazon, Channel::Ebay, Channel::Etsy, Channel::Tiktok, Channel::Zalando, Channel::Otto];

/// A private stack, simulators with short-lived tokens, one account per channel whose secret lives in
/// moto, and an `App` wired as in production (cached Secrets Manager secrets).
struct Rig {
    sim: SimHandle,
    stack: Stack,
    sm: aws_sdk_secretsmanager::Client,
    config: ChannelConfig,
    app: App,
    /// The refresh token each account's secret was created with.
    granted: BTreeMap<Channel, String>,
}

impl Rig {
    async fn new(channels: &[Channel], lifetime: Duration) -> Self {
        let sim = Simulator::start(
            channels.iter().fold(SimConfig::default().strict_tokens(lifetime), |c, ch| c.unlimited(*ch)),
        )
        .await
        .expect("simulator starts on loopback");
        let stack = Stack::new().await;
        let sm = aws_sdk_secretsmanager::Client::new(&stack.sdk);
        let prefix = support::unique("tok");
        let mut granted = BTreeMap::new();
        let mut accounts = Vec::new();
        for channel in channels {
            let secret = format!("manifold/{channel}/{prefix}");
            let refresh = sim.grant_refresh_token(*channel);
            sm.create_secret()
                .name(&secret)
                .secret_string(secret_value(*channel, &refresh).to_string())
                .send()
                .await
                .expect("create secret in moto");
            granted.insert(*channel, refresh);
            accounts.push(account(&sim, *channel, &secret));
            if *channel == Channel::Etsy {
                let item = CatalogItem {
                    id: "TOK-1".into(),
                    sku: "TOK-1".into(),
                    quantity: 0,
                    product_id: Some("L1".into()),
                    variant_id: None,
                    price_minor: Some(1000),
                };
                sim.seed_catalog(Channel::Etsy, vec![item]);
            }
        }
        let config = ChannelConfig::of_accounts(accounts);
        let app = app(&stack, &sm, config.clone());
        Self { sim, stack, sm, config, app, granted }
    }

    async fn secret(&self, channel: Channel) -> Value {
        let name = &self.config.accounts.iter().find(|a| a.channel == channel).unwrap().secret;
        let raw = self.sm.get_secret_value().secret_id(name).send().await.expect("get secret").secret_string.unwrap();
        serde_json::from_str(&raw).unwrap()
    }

    async fn send(&self, channel: Channel, quantity: u32, version: u64) {
        let job = PushJob {
            channel,
            account: AccountId::new(ACCOUNT).unwrap(),
            sku: Sku::new("TOK-1").unwrap(),
            location: "default".into(),
            channel_sku: "TOK-1".into(),
            quantity,
            version,
            trace_id: None,
        };
        self.stack
            .sqs
            .send_message()
            .queue_url(&self.stack.env.push_queues[&channel])
            .message_body(serde_json::to_string(&job).unwrap())
            .send()
            .await
            .expect("send push job");
    }

    /// Plays the Lambda poller until `expected` messages were handled; returns how many were
    /// reported as batch item failures. Failed messages are deleted too: each test counts attempts
    /// itself instead of waiting for SQS to redeliver.
    async fn poll(&self, app: &App, channel: Channel, expected: usize) -> usize {
        let url = &self.stack.env.push_queues[&channel];
        let (mut handled, mut failed) = (0, 0);
        let start = tokio::time::Instant::now();
        while handled < expected {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{channel}: only {handled} of {expected} messages arrived"
            );
            let got = self
                .stack
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .wait_time_seconds(1)
                .send()
                .await
                .expect("receive");
            let messages = got.messages.unwrap_or_default();
            if messages.is_empty() {
                continue;
            }
            let response = app.push_batch(channel, support::lambda_event(&messages)).await;
            failed += response.batch_item_failures.len();
            handled += messages.len();
            for m in &messages {
                let receipt = m.receipt_handle().unwrap_or_default();
                self.stack.sqs.delete_message().queue_url(url).receipt_handle(receipt).send().await.expect("delete");
            }
        }
        failed
    }

    fn stock(&self, channel: Channel) -> Option<i64> {
        self.sim.snapshot().stock.get(&channel).and_then(|s| s.get(stock_key(channel))).copied()
    }

    fn count(&self, channel: Channel, what: fn(&manifold_simulator::Snapshot) -> &BTreeMap<Channel, u64>) -> u64 {
        what(&self.sim.snapshot()).get(&channel).copied().unwrap_or(0)
    }

    fn token_requests(&self, channel: Channel) -> u64 {
        self.count(channel, |s| &s.token_requests)
    }
}

/// An `App` as a cold start builds it: Secrets Manager behind the five-minute cache.
fn app(stack: &Stack, sm: &aws_sdk_secretsmanager::Client, config: ChannelConfig) -> App {
    let push = PushSettings {
        breaker: BreakerPolicy { failure_threshold: 50, cool_down: Duration::from_secs(1) },
        max_receive_count: 5,
        backoff_base: Duration::from_secs(1),
        backoff_cap: Duration::from_secs(2),
        auth_delay: Duration::from_secs(2),
        ..PushSettings::default()
    };
    let secrets = Arc::new(CachedSecrets::new(SecretsManager::new(sm.clone()), Duration::from_mins(5)));
    let settings = Settings { push, ..Settings::default() };
    App::build(config, stack.env.clone(), settings, &stack.sdk, secrets).expect("app builds")
}

/// What each channel's secret holds: the inputs of its token lifecycle, no access token.
fn secret_value(channel: Channel, refresh_token: &str) -> Value {
    match channel {
        Channel::Amazon | Channel::Ebay => {
            json!({ "refresh_token": refresh_token, "client_id": "amzn1.application-oa2-client.sim", "client_secret": "sim-secret" })
        }
        Channel::Etsy => json!({ "refresh_token": refresh_token, "api_key": "sim-keystring" }),
        Channel::Tiktok => json!({ "refresh_token": refresh_token, "client_secret": "sim-app-secret" }),
        Channel::Zalando | Channel::Otto => json!({ "client_id": "sim-client", "client_secret": "sim-secret" }),
        other => panic!("{other} tokens do not expire"),
    }
}

/// The key the simulator keeps the pushed SKU's stock under.
fn stock_key(channel: Channel) -> &'static str {
    if channel == Channel::Tiktok { "S1" } else { "TOK-1" }
}

fn account(sim: &SimHandle, channel: Channel, secret: &str) -> AccountConfig {
    let (api_version, settings): (&str, &[(&str, &str)]) = match channel {
        Channel::Amazon => ("v0", &[("seller_id", "A2EUQ1WTGCTBG2"), ("marketplace_id", "A1PA6795UKMFR9")]),
        Channel::Etsy => ("v3", &[("shop_id", "12345678")]),
        Channel::Tiktok => ("202309", &[("app_key", "sim-app-key"), ("warehouse_id", "7068517275539793707")]),
        Channel::Zalando => ("v1", &[("sales_channel_id", "bf48ba35-149d-4b76-8ac9-d08d126b517f")]),
        Channel::Otto => {
            ("v4", &[("ship_from_city", "Hamburg"), ("ship_from_zip_code", "22179"), ("ship_from_country", "DEU")])
        }
        _ => ("v1", &[]),
    };
    let mut settings: BTreeMap<String, String> =
        settings.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    // Amazon's and TikTok's token endpoints live on their own hosts: point them at the simulator. The
    // others are derived from the account's endpoint, as in production.
    if matches!(channel, Channel::Amazon | Channel::Tiktok) {
        settings.insert("token_endpoint".into(), sim.token_endpoint(channel).unwrap());
    }
    let item_ids = match channel {
        Channel::Etsy => BTreeMap::from([("TOK-1".to_owned(), "L1".to_owned())]),
        Channel::Tiktok => BTreeMap::from([("TOK-1".to_owned(), "P1/S1".to_owned())]),
        _ => BTreeMap::new(),
    };
    AccountConfig {
        secret: secret.to_owned(),
        item_ids,
        settings,
        ..support::sim_account(channel, ACCOUNT, api_version, sim.base_url(channel), &[])
    }
}

#[tokio::test]
async fn pushes_keep_succeeding_across_token_expiry_with_zero_failed_pushes() {
    let rig = Rig::new(&EXPIRING, Duration::from_secs(2)).await;
    let start = tokio::time::Instant::now();
    let mut version = 0u64;
    // Push until every channel has replaced its token at least twice (several 2 s lifetimes).
    while EXPIRING.iter().any(|c| rig.token_requests(*c) < 3) {
        assert!(
            start.elapsed() < Duration::from_mins(1),
            "tokens were not refreshed: {:?}",
            rig.sim.snapshot().token_requests
        );
        version += 1;
        let quantity = u32::try_from(version).unwrap();
        for channel in EXPIRING {
            rig.send(channel, quantity, version).await;
        }
        for channel in EXPIRING {
            assert_eq!(rig.poll(&rig.app, channel, 1).await, 0, "{channel}: a push failed in round {version}");
            assert_eq!(rig.stock(channel), Some(i64::from(quantity)), "{channel}: round {version}");
        }
    }
    assert!(version >= 3, "the pushes spanned several token lifetimes ({version} rounds)");
}

#[tokio::test]
async fn a_rotated_refresh_token_lands_in_the_secret_and_serves_the_next_cold_start() {
    let rotating = [Channel::Etsy, Channel::Tiktok, Channel::Amazon];
    let rig = Rig::new(&rotating, Duration::from_hours(1)).await;
    for channel in rotating {
        rig.send(channel, 7, 1).await;
        assert_eq!(rig.poll(&rig.app, channel, 1).await, 0, "{channel}");
    }

    for channel in [Channel::Etsy, Channel::Tiktok] {
        let stored = rig.secret(channel).await;
        let refresh = stored["refresh_token"].as_str().unwrap();
        assert_ne!(refresh, rig.granted[&channel], "{channel} rotated its refresh token: the new one is stored");
        let kept = if channel == Channel::Etsy { "api_key" } else { "client_secret" };
        assert!(
            stored[kept].is_string(),
            "{channel}: the other credentials are kept: {:?}",
            stored.as_object().map(|o| o.keys().collect::<Vec<_>>())
        );
    }
    // Amazon keeps its refresh token: nothing is written.
    assert_eq!(rig.secret(Channel::Amazon).await["refresh_token"], rig.granted[&Channel::Amazon]);

    // A cold start reads only the secret: the old refresh token is revoked, the stored one works.
    let cold = app(&rig.stack, &rig.sm, rig.config.clone());
    for channel in rotating {
        rig.send(channel, 8, 2).await;
        assert_eq!(rig.poll(&cold, channel, 1).await, 0, "{channel}: a cold start pushes with the stored token");
        assert_eq!(rig.stock(channel), Some(8));
    }
}

#[tokio::test]
async fn a_refused_token_is_refreshed_and_the_call_retried_once() {
    let channels = [Channel::Ebay, Channel::Amazon, Channel::Etsy];
    let rig = Rig::new(&channels, Duration::from_hours(1)).await;
    for channel in channels {
        rig.send(channel, 1, 1).await;
        assert_eq!(rig.poll(&rig.app, channel, 1).await, 0);
        assert_eq!(rig.token_requests(channel), 1, "{channel}: one token for the first push");
    }

    for channel in channels {
        // The channel ends the token's life early: our cache still thinks it valid.
        rig.sim.expire_access_tokens(channel);
        let before = rig.count(channel, |s| &s.requests);
        rig.send(channel, 2, 2).await;

        assert_eq!(rig.poll(&rig.app, channel, 1).await, 0, "{channel}: the refusal did not fail the push");
        assert_eq!(rig.stock(channel), Some(2));
        assert_eq!(rig.count(channel, |s| &s.unauthorized), 1, "{channel}: refused once");
        assert_eq!(rig.token_requests(channel), 2, "{channel}: refreshed once");
        // eBay and Amazon: one write refused, one retried. Etsy: the refused read, then read and write.
        let calls = if channel == Channel::Etsy { 3 } else { 2 };
        assert_eq!(rig.count(channel, |s| &s.requests) - before, calls, "{channel}: retried once");
    }
}

#[tokio::test]
async fn a_bad_refresh_token_ends_as_an_auth_failure() {
    let rig = Rig::new(&[Channel::Etsy], Duration::from_hours(1)).await;
    let secret = rig.config.accounts[0].secret.clone();
    let revoked = json!({ "refresh_token": "revoked-by-the-seller", "api_key": "sim-keystring" }).to_string();
    rig.sm.put_secret_value().secret_id(&secret).secret_string(revoked).send().await.expect("put secret");

    rig.send(Channel::Etsy, 5, 1).await;
    // Held as an auth failure: parked (re-sent with a delay, the original acknowledged), so waiting
    // for the seller to re-authorize burns no receive.
    assert_eq!(rig.poll(&rig.app, Channel::Etsy, 1).await, 0, "the push is parked, not failed");
    let delayed = rig
        .stack
        .sqs
        .get_queue_attributes()
        .queue_url(&rig.stack.env.push_queues[&Channel::Etsy])
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed).cloned());
    assert_eq!(delayed.as_deref(), Some("1"), "the held push waits on its queue");

    assert_eq!(rig.token_requests(Channel::Etsy), 2, "refused, then tried once more after re-reading the secret");
    assert_eq!(rig.count(Channel::Etsy, |s| &s.requests), 0, "no API call without a token");
    assert_eq!(rig.stock(Channel::Etsy), Some(0));
}

#[tokio::test]
async fn fifty_concurrent_pushes_share_one_token_refresh() {
    let rig = Rig::new(&[Channel::Zalando], Duration::from_hours(1)).await;
    let account = rig.config.accounts[0].clone();
    let connector = rig.app.connector(&account).await.expect("connector");
    let pushes = (0..50u32).map(|i| {
        let connector = connector.clone();
        async move {
            let item = StockUpdate {
                sku: Sku::new(format!("SKU-{i}")).unwrap(),
                channel_sku: format!("SKU-{i}"),
                quantity: i,
                channel_item_id: None,
            };
            connector.push_stock(&[item], &CallContext::new(format!("trace-{i}"))).await
        }
    });
    let outcomes = futures::future::join_all(pushes).await;

    assert!(outcomes.iter().all(|o| o.as_ref().is_ok_and(|o| o.delivered.len() == 1)), "{outcomes:?}");
    assert_eq!(rig.token_requests(Channel::Zalando), 1);
    assert_eq!(rig.count(Channel::Zalando, |s| &s.requests), 50);
}

#[tokio::test]
async fn ebay_notification_keys_are_looked_up_with_a_minted_application_token() {
    // Given an eBay account whose secret holds client credentials, and a simulator that refuses any token
    // it did not issue (the key lookup included).
    let rig = Rig::new(&[Channel::Ebay], Duration::from_secs(30)).await;
    let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let pem =
        p256::pkcs8::EncodePublicKey::to_public_key_pem(key.verifying_key(), p256::pkcs8::LineEnding::LF).unwrap();
    let put = reqwest::Client::new()
        .put(format!("{}/_sim/ebay/public_key/kid-app", rig.sim.url()))
        .json(&json!({ "key": pem }))
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
    let body = include_bytes!("../../shared/normalize/fixtures/ebay/notification-order-written-from-docs.json");
    let signature =
        manifold_connectors::verify::sign_ebay(&key, "kid-app", manifold_connectors::verify::EbayDigest::Sha1, body)
            .unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert("x-ebay-signature", http::HeaderValue::from_str(&signature).unwrap());

    // When a signed notification arrives, the key is fetched with an application token minted for it.
    let before = rig.token_requests(Channel::Ebay);
    let out = rig.app.handle_webhook("ebay", ACCOUNT, &headers, body, chrono::Utc::now()).await;
    assert_eq!(out.status, 200, "{}", out.message);
    assert_eq!(rig.token_requests(Channel::Ebay), before + 1, "one client-credentials exchange");
    assert_eq!(rig.count(Channel::Ebay, |s| &s.unauthorized), 0, "no lookup was refused");
}
