//! The operations console (`manifold console`) against moto and the channel simulators, over HTTP on
//! loopback and in headless Chromium.
//!
//! The scenario is a real run: a stock count is written to the ledger and fanned out to eBay through
//! the push gate; eBay answers 503 until the push dead-letters; a Shopify order is ingested (with its
//! usage counted) and a broken delivery is quarantined by ingest itself. The pages are then read for
//! what that left, a dead letter is redriven from the console, and the push consumer delivers it.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use chrono::{TimeDelta, Utc};
use fantoccini::Locator;
use manifold_app::{App, app::Settings, ingest::IngestOutcome, push::PushSettings};
use manifold_aws::secrets::StaticSecrets;
use manifold_cli::{
    aws::Aws,
    commands::dlq::Routes,
    console::{self, Console, ConsoleContext},
};
use manifold_connectors::breaker::BreakerPolicy;
use manifold_domain::{
    Channel, Sku,
    config::{AccountConfig, ChannelConfig},
};
use manifold_ledger::{Ledger, PositionKey, fanout::fan_out};
use manifold_simulator::{CatalogItem, FaultKind, FaultSpec, SimConfig, SimHandle, Simulator};
use serde_json::json;

use crate::support::{self, DeadLetters, Stack};

const SKU: &str = "CONSOLE-1";
const SHOPIFY_ORDER: &str =
    include_str!("../../shared/normalize/fixtures/shopify/order-1073459981-rest-2026-07-create-paid.json");

/// The scenario, with its console serving on loopback.
struct Scene {
    sim: SimHandle,
    stack: Stack,
    app: App,
    console: Console,
    push_queue: String,
    push_dlq: String,
    stock_trace: String,
    order_trace: String,
    quarantine_id: String,
}

fn account(sim: &SimHandle, channel: Channel, name: &str, settings: &[(&str, &str)]) -> AccountConfig {
    let api_version = if channel == Channel::Shopify { "2026-07" } else { "v1" };
    support::sim_account(channel, name, api_version, sim.base_url(channel), settings)
}

impl Scene {
    async fn new() -> Self {
        let sim = Simulator::start(SimConfig::default().unlimited(Channel::Ebay).unlimited(Channel::Shopify))
            .await
            .expect("simulator starts");
        let mut stack = Stack::new().await;
        let dead_letters = DeadLetters { max_receive: 2, visibility_secs: 1 };
        let (push_queue, push_dlq) = support::queue_with_dlq(&stack.sqs, "push-ebay", dead_letters).await;
        stack.env.push_queues.insert(Channel::Ebay, push_queue.clone());
        let config = ChannelConfig::of_accounts(vec![
            account(&sim, Channel::Ebay, "ebay-de", &[]),
            account(&sim, Channel::Shopify, "shop-eu", &[("location_id", "gid://shopify/Location/1")]),
        ]);
        // eBay's refresh token runs out in two days: the Channels page flags it.
        let expiry = (Utc::now() + TimeDelta::days(2)).to_rfc3339();
        let secrets = StaticSecrets(HashMap::from([
            (
                "manifold/ebay/ebay-de".to_owned(),
                json!({ "access_token": "sim-token", "refresh_token_expires_at": expiry }).to_string(),
            ),
            ("manifold/shopify/shop-eu".to_owned(), json!({ "access_token": "sim-token" }).to_string()),
        ]));
        let push = PushSettings {
            breaker: BreakerPolicy { failure_threshold: 50, cool_down: Duration::from_secs(1) },
            max_receive_count: 2,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(1),
            ..PushSettings::default()
        };
        let settings = Settings { push, ..Settings::default() };
        let app = App::build(config.clone(), stack.env.clone(), settings, &stack.sdk, Arc::new(secrets)).expect("app");

        // eBay lists the SKU at 3; the ledger counts 7 and fans it out, and eBay answers 503.
        sim.seed_catalog(
            Channel::Ebay,
            vec![CatalogItem {
                id: SKU.into(),
                sku: SKU.into(),
                quantity: 3,
                product_id: None,
                variant_id: None,
                price_minor: None,
            }],
        );
        sim.set_stock(Channel::Ebay, SKU, 3);
        let key = PositionKey::new(Sku::new(SKU).unwrap(), "default");
        app.ledger.set_on_hand(&key, 7, "console-count").await.expect("count");
        let position = app.ledger.position(&key).await.expect("position");
        let stock_trace = support::unique("trace-stock");
        let fanned =
            fan_out(&config, &[position], &app.push_gate, &*app.push_queue, Some(&stock_trace)).await.expect("fan out");
        let ebay_jobs = fanned.enqueued.iter().filter(|j| j.channel == Channel::Ebay).count();
        assert_eq!(ebay_jobs, 1, "one eBay job (Shopify's goes to its own queue)");
        sim.inject(FaultSpec {
            channel: Channel::Ebay,
            kind: FaultKind::ServerError,
            probability: None,
            next_n: Some(50),
        });
        support::eventually("the push dead-letters", Duration::from_mins(1), || async {
            support::poll_once(&stack.sqs, &push_queue, 10, |e| app.push_batch(Channel::Ebay, e)).await;
            (support::queue_depth(&stack.sqs, &push_dlq).await == 1).then_some(())
        })
        .await;
        // eBay recovers: the dead letter waits for an operator, and reads now show 3.
        sim.clear_faults();

        // A Shopify order is stored; a broken delivery is quarantined by ingest.
        let order_trace = support::unique("trace-order");
        let doc: serde_json::Value = serde_json::from_str(SHOPIFY_ORDER).unwrap();
        let stored = app
            .ingest(&support::shopify_delivery(&order_trace, doc["order"].to_string()), Utc::now())
            .await
            .expect("ingest");
        assert!(matches!(stored, IngestOutcome::Stored { .. }), "{stored:?}");
        let broken =
            app.ingest(&support::shopify_delivery(&support::unique("trace-bad"), "not json".into()), Utc::now()).await;
        let Ok(IngestOutcome::Quarantined { id: Some(quarantine_id), .. }) = broken else {
            panic!("the broken delivery is quarantined: {broken:?}")
        };

        let routes = Routes::from_lookup(|k| match k {
            "PUSH_EBAY_DLQ_URL" => Some(push_dlq.clone()),
            "PUSH_QUEUE_EBAY" => Some(push_queue.clone()),
            _ => None,
        });
        let ctx = ConsoleContext {
            app: app.clone(),
            aws: Aws::new(stack.env.clone(), &stack.sdk),
            routes,
            operator: console::operator(&stack.sdk).await.expect("STS names the operator"),
        };
        let console = Console::start(ctx, "127.0.0.1:0".parse().unwrap(), false).await.expect("console starts");
        Self { sim, stack, app, console, push_queue, push_dlq, stock_trace, order_trace, quarantine_id }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.console.addr)
    }

    /// Runs the eBay push consumer until its queue is empty.
    async fn deliver(&self) {
        support::eventually("the push queue drains", Duration::from_mins(1), || async {
            support::poll_once(&self.stack.sqs, &self.push_queue, 10, |e| self.app.push_batch(Channel::Ebay, e)).await;
            (support::queue_depth(&self.stack.sqs, &self.push_queue).await == 0).then_some(())
        })
        .await;
    }

    fn ebay_stock(&self) -> Option<i64> {
        self.sim.snapshot().stock.get(&Channel::Ebay).and_then(|s| s.get(SKU)).copied()
    }
}

/// A browser-like HTTP session: keeps the console's session cookie.
struct Browser {
    http: reqwest::Client,
    cookie: Option<String>,
}

impl Browser {
    fn new() -> Self {
        Self { http: reqwest::Client::new(), cookie: None }
    }

    async fn get(&mut self, url: &str) -> (u16, String) {
        let mut req = self.http.get(url);
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        let res = req.send().await.expect("GET");
        if let Some(set) = res.headers().get("set-cookie").and_then(|v| v.to_str().ok()) {
            self.cookie = set.split(';').next().map(str::to_owned);
        }
        (res.status().as_u16(), res.text().await.unwrap())
    }

    async fn post(&self, url: &str, form: &[(&str, &str)]) -> (u16, String) {
        let mut req = self.http.post(url).form(form);
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        let res = req.send().await.expect("POST");
        (res.status().as_u16(), res.text().await.unwrap())
    }
}

/// The value of the hidden `name` field of the page's form.
fn field(page: &str, name: &str) -> String {
    let at = page.find(&format!("name=\"{name}\" value=\"")).unwrap_or_else(|| panic!("no {name} field in {page}"));
    let rest = &page[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// The text of each cell of the table row marked `marker` (an attribute such as `data-usage="..."`).
fn row_cells(page: &str, marker: &str) -> Vec<String> {
    let at = page.find(marker).unwrap_or_else(|| panic!("no row {marker} in {page}"));
    let row = &page[at..at + page[at..].find("</tr>").expect("the row ends")];
    row.split("<td")
        .skip(1)
        .map(|cell| cell[cell.find('>').unwrap() + 1..cell.find("</td>").unwrap()].to_owned())
        .collect()
}

fn dead_letter_id(page: &str) -> String {
    let at = page.find("data-message=\"").expect("a dead letter row");
    let rest = &page[at + 14..];
    rest[..rest.find('"').unwrap()].to_owned()
}

#[tokio::test]
async fn every_page_shows_the_scenario_and_a_redrive_from_the_console_fixes_the_channel() {
    let scene = Box::pin(Scene::new()).await;
    let mut browser = Browser::new();

    // Channels: eBay is red (a dead letter, two failed pushes, a token expiring), Shopify is not.
    let (status, page) = browser.get(&scene.url("/channels")).await;
    assert_eq!(status, 200, "{page}");
    let ebay_row = &page[page.find("data-account=\"ebay/ebay-de\"").expect("eBay row")..];
    let ebay_row = &ebay_row[..ebay_row.find("</tr>").unwrap()];
    assert!(page[..page.find("data-account=\"ebay/ebay-de\"").unwrap()].ends_with("class=\"alert\" "), "{page}");
    assert!(ebay_row.contains("1 in the ebay push DLQ"), "{ebay_row}");
    assert!(ebay_row.contains("refresh token expires in"), "{ebay_row}");
    assert!(ebay_row.contains("<td class=\"num\">2</td>"), "two failed pushes in the hour: {ebay_row}");
    assert!(page.contains("class=\"ok\" data-account=\"shopify/shop-eu\""), "{page}");

    // Failures: the dead letter with eBay's error, the quarantined delivery with its reason.
    let (_, page) = browser.get(&scene.url("/failures")).await;
    let message = dead_letter_id(&page);
    assert!(page.contains("push-ebay") && page.contains(&scene.stock_trace), "{page}");
    assert!(page.contains("simulated server error"), "the last error is shown: {page}");
    assert!(page.contains(&format!("data-quarantine=\"{}\"", scene.quarantine_id)), "{page}");
    assert!(page.contains("No action taken in the console yet."), "{page}");

    // Stock: the ledger says 7, eBay shows 3: a mismatch, with the push's trace.
    let (_, page) = browser.get(&scene.url(&format!("/stock?sku={SKU}"))).await;
    let row = &page[page.find("data-listing=\"ebay/ebay-de\"").expect("eBay listing")..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains("<td class=\"num should\">7</td>"), "{row}");
    assert!(row.contains("3 <strong>mismatch</strong>"), "{row}");
    assert!(row.contains(&scene.stock_trace), "{row}");
    assert!(page.contains("On hand</dt><dd>7</dd>"), "{page}");

    // Orders: by channel order id, the order and its timeline (the stored record).
    let (_, page) = browser.get(&scene.url("/orders?q=1073459981")).await;
    assert!(page.contains("shopify order 1073459981 (shop-eu)"), "{page}");
    assert!(page.contains(&format!("data-trace=\"{}\"", scene.order_trace)), "{page}");
    assert!(page.contains("data-stage=\"record\"") && page.contains("ORDER#shopify:shop-eu:1073459981"), "{page}");
    // By trace id: the stock push's story (the push gate's offer).
    let (_, page) = browser.get(&scene.url(&format!("/orders?q={}", scene.stock_trace))).await;
    assert!(page.contains("data-stage=\"push\"") && page.contains("ebay ebay-de CONSOLE-1 set to 7"), "{page}");

    // Usage: ingest counted Shopify's order today, the push consumer eBay's calls, drawn as charts.
    let (_, page) = browser.get(&scene.url("/usage")).await;
    let today = Utc::now().date_naive().to_string();
    let cells = row_cells(&page, &format!("data-usage=\"{today}/shopify\""));
    // Day, channel, API calls, AWS requests, orders, estimated USD: one order, whose ingest made AWS calls.
    assert_eq!(cells[4], "1", "{cells:?}");
    assert!(cells[3].parse::<u64>().unwrap() > 0, "{cells:?}");
    assert!(cells[5].parse::<f64>().unwrap() > 0.0, "{cells:?}");
    // eBay's: the push consumer's calls (answered 503, but made and counted), and no order.
    let cells = row_cells(&page, &format!("data-usage=\"{today}/ebay\""));
    assert!(cells[2].parse::<u64>().unwrap() > 0 && cells[3].parse::<u64>().unwrap() > 0, "{cells:?}");
    assert_eq!(cells[4], "0", "{cells:?}");
    assert_eq!(page.matches("<svg xmlns=\"http://www.w3.org/2000/svg\"").count(), 3, "three charts: {page}");

    // Redrive: the confirmation page carries the session's token; the post moves the message.
    let (_, confirm) = browser.get(&scene.url(&format!("/failures/redrive?queue=push-ebay&message={message}"))).await;
    let csrf = field(&confirm, "csrf");
    scene.sim.clear_faults();
    let (status, page) = browser
        .post(&scene.url("/failures/redrive"), &[("csrf", &csrf), ("queue", "push-ebay"), ("message", &message)])
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(&format!("redriven: {message} is back on")), "{page}");
    assert!(!page.contains(&format!("data-message=\"{message}\"")), "it left the list: {page}");
    assert!(page.contains("arn:aws:") && page.contains("redrive"), "the action is logged with the operator: {page}");
    assert_eq!(support::queue_depth(&scene.stack.sqs, &scene.push_dlq).await, 0);

    // The push consumer delivers it: eBay shows 7 and the Stock page matches.
    scene.deliver().await;
    assert_eq!(scene.ebay_stock(), Some(7));
    let (_, page) = browser.get(&scene.url(&format!("/stock?sku={SKU}"))).await;
    let row = &page[page.find("data-listing=\"ebay/ebay-de\"").unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains("class=\"num shows\">7</td>") && !row.contains("mismatch"), "{row}");
    let (_, page) = browser.get(&scene.url("/channels")).await;
    assert!(page.contains("class=\"ok\" data-account=\"shopify/shop-eu\""), "{page}");
}

#[tokio::test]
async fn an_orders_page_follows_the_order_from_its_reservation_to_its_cancellation() {
    let scene = Box::pin(Scene::new()).await;
    let app = &scene.app;
    let ledger_run = async || {
        let events = scene.stack.drain(&scene.stack.events_queue.clone()).await;
        let response = app.ledger_batch(support::lambda_event(&events)).await;
        assert!(response.batch_item_failures.is_empty(), "{:?}", response.batch_item_failures);
    };
    // The scenario's order (ingested under `order_trace`) is reserved by the ledger under its trace.
    let key = PositionKey::new(Sku::new("IPOD2009BLACK").unwrap(), manifold_ledger::DEFAULT_LOCATION);
    app.ledger.set_on_hand(&key, 5, "count").await.expect("count");
    ledger_run().await;
    assert_eq!(app.ledger.position(&key).await.unwrap().reserved, 1);
    // Shopify cancels it later, under a trace of its own: the record now keeps only that one.
    let cancel_trace = support::unique("trace-cancel");
    let mut doc: serde_json::Value = serde_json::from_str(SHOPIFY_ORDER).unwrap();
    let order = doc["order"].as_object_mut().unwrap();
    order.insert("cancelled_at".into(), json!("2025-04-03T09:00:00-05:00"));
    order.insert("updated_at".into(), json!("2025-04-03T09:00:00-05:00"));
    order.insert("cancel_reason".into(), json!("customer"));
    let cancelled = app
        .ingest(&support::shopify_delivery(&cancel_trace, doc["order"].to_string()), Utc::now())
        .await
        .expect("ingest");
    assert!(matches!(cancelled, IngestOutcome::Stored { .. }), "{cancelled:?}");
    ledger_run().await;
    assert_eq!(app.ledger.position(&key).await.unwrap().reserved, 0, "the cancellation released it");

    // Searched by its channel order id, the order shows both stories: the reservation's and the
    // cancellation's, oldest first.
    let (_, page) = Browser::new().get(&scene.url("/orders?q=1073459981")).await;
    let reserved_at = page.find(&format!("data-trace=\"{}\"", scene.order_trace)).expect("the reservation's trace");
    let cancelled_at = page.find(&format!("data-trace=\"{cancel_trace}\"")).expect("the cancellation's trace");
    assert!(reserved_at < cancelled_at, "oldest first");
    assert!(page[reserved_at..cancelled_at].contains("data-stage=\"ledger\""), "{page}");
    assert!(page[cancelled_at..].contains("data-stage=\"ledger\""), "the release: {page}");

    // An id that is neither an order's nor a trace's says so.
    let (_, page) = Browser::new().get(&scene.url("/orders?q=no-such-thing")).await;
    assert!(page.contains("No order has the channel order id no-such-thing"), "{page}");
}

#[tokio::test]
async fn actions_need_the_session_token_and_the_console_stays_on_loopback() {
    let scene = Box::pin(Scene::new()).await;
    let message = {
        let (_, page) = Browser::new().get(&scene.url("/failures")).await;
        dead_letter_id(&page)
    };
    let form = |csrf: &str| {
        vec![
            ("csrf".to_owned(), csrf.to_owned()),
            ("queue".into(), "push-ebay".into()),
            ("message".into(), message.clone()),
        ]
    };
    let post = |cookie: Option<String>, form: Vec<(String, String)>| {
        let url = scene.url("/failures/redrive");
        async move {
            let mut req = reqwest::Client::new().post(url).form(&form);
            if let Some(c) = cookie {
                req = req.header("cookie", c);
            }
            req.send().await.unwrap().status().as_u16()
        }
    };
    // No cookie, no token.
    assert_eq!(post(None, form("")).await, 403);
    // A session of its own, but the token of another session.
    let mut mine = Browser::new();
    let (_, confirm) = mine.get(&scene.url(&format!("/failures/redrive?queue=push-ebay&message={message}"))).await;
    let mut theirs = Browser::new();
    let (_, other) = theirs.get(&scene.url(&format!("/failures/redrive?queue=push-ebay&message={message}"))).await;
    assert_ne!(field(&confirm, "csrf"), field(&other, "csrf"), "each session has its own token");
    assert_eq!(post(mine.cookie.clone(), form(&field(&other, "csrf"))).await, 403);
    // The right cookie without the token.
    assert_eq!(post(mine.cookie.clone(), form("")).await, 403);
    // Replay is guarded the same way.
    let replay = reqwest::Client::new()
        .post(scene.url("/failures/replay"))
        .form(&[("csrf", "00"), ("id", scene.quarantine_id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status().as_u16(), 403);
    assert_eq!(support::queue_depth(&scene.stack.sqs, &scene.push_dlq).await, 1, "nothing was redriven");

    // A page asked for under another host name (DNS rebinding) is refused.
    let rebound = reqwest::Client::new()
        .get(scene.url("/channels"))
        .header("host", "console.attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status().as_u16(), 403);
    // Nor may a page on another site make a browser read through it (an <img> of /failures receives
    // dead letters; one of /stock calls every channel).
    for site in ["cross-site", "same-site"] {
        let status = reqwest::Client::new()
            .get(scene.url(&format!("/stock?sku={SKU}")))
            .header("sec-fetch-site", site)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), 403, "{site}");
    }
    // A link carrying a made-up outcome shows nothing: outcomes are signed for the session they belong to.
    let forged = format!("/failures?notice={}&sig=00", "redriven%3A+everything+is+fine");
    let (status, page) = mine.get(&scene.url(&forged)).await;
    assert_eq!(status, 200);
    assert!(!page.contains("everything is fine"), "{page}");

    // The console binds loopback only, unless told otherwise.
    let ctx = ConsoleContext {
        app: scene.app.clone(),
        aws: Aws::new(scene.stack.env.clone(), &scene.stack.sdk),
        routes: Routes::default(),
        operator: "arn:aws:iam::123456789012:user/test".into(),
    };
    let open: SocketAddr = "0.0.0.0:0".parse().unwrap();
    let refused = Console::start(ctx.clone(), open, false).await.expect_err("0.0.0.0 is refused");
    assert!(refused.to_string().contains("not a loopback address"), "{refused}");
    assert!(scene.console.addr.ip().is_loopback());
    // On every interface it must be told the host names it is reached by, and answers those only.
    let unnamed = Console::start(ctx.clone(), open, true).await.expect_err("0.0.0.0 needs --host");
    assert!(unnamed.to_string().contains("--host"), "{unnamed}");
    let allowed =
        Console::start_for(ctx, open, true, &["ops-box.internal".to_owned()]).await.expect("allowed when asked");
    assert!(allowed.addr.ip().is_unspecified());
    let at = format!("http://127.0.0.1:{}/channels", allowed.addr.port());
    let named = format!("ops-box.internal:{}", allowed.addr.port());
    let answer = |host: String| reqwest::Client::new().get(&at).header("host", host).send();
    assert_eq!(answer(named).await.unwrap().status().as_u16(), 200);
    assert_eq!(answer(format!("elsewhere:{}", allowed.addr.port())).await.unwrap().status().as_u16(), 403);
}

/// Headless Chromium through chromedriver (Debian's `chromium` and `chromium-driver`, installed by
/// `infra/local/bootstrap.sh`): open Failures, search the SKU and read the mismatch, redrive the
/// dead letter through its confirmation, see it leave the list, and the channel match once the push
/// consumer ran. Screenshots of every page go to `$CARGO_TARGET_TMPDIR/console-screenshots`.
#[tokio::test]
async fn in_a_browser_an_operator_redrives_a_dead_letter_and_sees_the_listing_match() {
    let driver = crate::support::chromedriver().await;
    let scene = Box::pin(Scene::new()).await;
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=1400,1000"]
        }),
    );
    let browser = fantoccini::ClientBuilder::rustls()
        .expect("TLS roots")
        .capabilities(caps)
        .connect(&driver.url())
        .await
        .expect("a Chromium session");
    let shot = async |name: &str| {
        let png = browser.screenshot().await.expect("screenshot");
        std::fs::write(shots.join(format!("{name}.png")), png).unwrap();
    };

    browser.goto(&scene.url("/channels")).await.unwrap();
    let alert = browser.find(Locator::Css("tr.alert[data-account='ebay/ebay-de']")).await.expect("eBay is red");
    assert!(alert.text().await.unwrap().contains("in the ebay push DLQ"));
    shot("channels").await;

    // The SKU's listing mismatch, searched from the Stock page's form.
    browser.goto(&scene.url("/stock")).await.unwrap();
    browser.find(Locator::Id("sku")).await.unwrap().send_keys(SKU).await.unwrap();
    browser.find(Locator::Css("form button[type=submit]")).await.unwrap().click().await.unwrap();
    let row = browser.wait().for_element(Locator::Css("tr[data-listing='ebay/ebay-de']")).await.unwrap();
    let text = row.text().await.unwrap();
    assert!(text.contains("3 mismatch"), "{text}");
    shot("stock-mismatch").await;

    // Failures: redrive the dead letter through its confirmation.
    browser.goto(&scene.url("/failures")).await.unwrap();
    shot("failures").await;
    let row =
        browser.find(Locator::Css("details[data-queue='push-ebay'] tr[data-message]")).await.expect("a dead letter");
    let message = row.attr("data-message").await.unwrap().expect("its id");
    row.find(Locator::LinkText("Redrive…")).await.unwrap().click().await.unwrap();
    browser.wait().for_element(Locator::Id("confirm")).await.unwrap();
    shot("redrive-confirm").await;
    scene.sim.clear_faults();
    browser.find(Locator::Id("confirm")).await.unwrap().click().await.unwrap();
    let notice = browser.wait().for_element(Locator::Css("p.notice")).await.unwrap().text().await.unwrap();
    assert!(notice.contains(&format!("redriven: {message}")), "{notice}");
    assert!(
        browser.find(Locator::Css(&format!("tr[data-message='{message}']"))).await.is_err(),
        "the dead letter left the list"
    );
    shot("failures-after-redrive").await;

    // The push consumer delivers it; the listing now shows what it should.
    scene.deliver().await;
    browser.goto(&scene.url(&format!("/stock?sku={SKU}"))).await.unwrap();
    let row = browser.find(Locator::Css("tr[data-listing='ebay/ebay-de']")).await.unwrap();
    let listed = row.find(Locator::Css("td.shows")).await.unwrap().text().await.unwrap();
    assert_eq!(listed.trim(), "7");
    assert_eq!(scene.ebay_stock(), Some(7));
    shot("stock-matched").await;

    browser.goto(&scene.url(&format!("/orders?q={}", scene.order_trace))).await.unwrap();
    shot("orders").await;
    browser.goto(&scene.url("/usage")).await.unwrap();
    shot("usage").await;
    browser.close().await.unwrap();
}
