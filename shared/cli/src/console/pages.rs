//! The console's pages, rendered on the server from the CLI's reports. Every page reads the same
//! functions its CLI command does; a page that cannot read something says so in place of its table.

use std::collections::BTreeSet;

use axum::{
    Extension,
    extract::{Query, State},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use manifold_domain::{Channel, Sku};
use manifold_ledger::{DEFAULT_LOCATION, DynamoStore, PositionKey};
use maud::{DOCTYPE, Markup, html};

use super::{Ctx, Search, Session, audit, chart};
use crate::commands::{dlq, health, stock, trace, usage};

const TIME: &str = "%Y-%m-%d %H:%M:%S";

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".to_owned(), |t| t.format(TIME).to_string())
}

/// The frame of every page: navigation, the page, the script that refreshes live sections.
fn layout(title: &str, active: &str, body: &Markup) -> Response {
    let nav = [
        ("/channels", "Channels"),
        ("/failures", "Failures"),
        ("/stock", "Stock"),
        ("/orders", "Orders"),
        ("/usage", "Usage and cost"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Manifold console" }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/console.js" defer {}
            }
            body {
                header {
                    strong { "Manifold" }
                    nav {
                        @for (href, label) in nav {
                            a href=(href) class=[(href == active).then_some("active")] { (label) }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
    .into_response()
}

fn problem(what: &str, e: &crate::CliError) -> Markup {
    html! { p.error { "Could not read " (what) ": " (e.chain()) } }
}

fn trace_link(trace_id: &str) -> Markup {
    html! { a.trace href=(format!("/orders?q={}", super::enc(trace_id))) { (trace_id) } }
}

/// `GET /channels`: every account's health, flagged on the alarms' thresholds.
pub(crate) async fn channels(State(shared): State<Ctx>) -> Response {
    let ctx = &shared.ctx;
    let body = match health::health(&ctx.app, &ctx.aws, &ctx.routes, Utc::now()).await {
        // In the live section, so a refresh that fails replaces the rows rather than leaving them up.
        Err(e) => html! { section data-live="15" id="channels" { (problem("the channels' health", &e)) } },
        Ok(report) => html! {
            section data-live="15" id="channels" {
                p.meta { "As of " (report.at.format(TIME)) " UTC. A row is red on an alarm's threshold: open breaker, "
                    (manifold_aws::health::SYNC_FAILED_THRESHOLD) " failed pushes in " (manifold_aws::health::SYNC_FAILED_WINDOW_MINUTES)
                    " minutes, a dead letter, a failed run, a refresh token expiring within " (health::TOKEN_WARNING_DAYS) " days." }
                table {
                    thead { tr {
                        th { "Channel" } th { "Account" } th { "Breaker" } th { "Last push OK" } th.num { "Failed (1 h)" }
                        th.num { "Throttled (1 h)" } th.num { "DLQ" } th { "Last sync runs (drift)" } th { "Token expires" } th { "Alerts" }
                    } }
                    tbody {
                        @for a in &report.accounts {
                            tr class=(if a.alerts.is_empty() { "ok" } else { "alert" }) data-account=(format!("{}/{}", a.channel, a.account)) {
                                td { (a.channel) } td { (a.account) @if !a.enabled { " (disabled)" } }
                                td { (a.breaker) } td { (time(a.health.last_success_at)) }
                                td.num { (a.health.failed) } td.num { (a.health.throttled) }
                                td.num { @match a.dlq { Some(d) => (d.visible + d.in_flight), None => "-" } }
                                td { @for r in &a.runs {
                                    span.run { (r.kind.as_str()) " " (r.status.as_str()) " " (r.finished_at.unwrap_or(r.started_at).format("%m-%d %H:%M"))
                                        @if r.drift > 0 { " drift " (r.drift) } }
                                } @if a.runs.is_empty() { "-" } }
                                td { (time(a.token_expires_at)) }
                                td { @if a.alerts.is_empty() { "ok" } @else { (a.alerts.join("; ")) } }
                            }
                        }
                    }
                }
            }
        },
    };
    layout("Channels", "/channels", &body)
}

/// `GET /failures`: dead letters per queue, quarantined payloads, and the console's recent actions.
pub(crate) async fn failures(
    State(shared): State<Ctx>,
    Extension(session): Extension<Session>,
    Query(search): Query<Search>,
) -> Response {
    let ctx = &shared.ctx;
    let mut queues = Vec::new();
    for route in &ctx.routes.routes {
        let shown = match dlq::depth(&ctx.aws.sqs, &route.dlq_url).await {
            Ok(d) if d.visible == 0 => Ok((d, Vec::new())),
            Ok(_) => dlq::show(&ctx.aws, route, 20).await.map(|s| (s.depth, s.messages)),
            Err(e) => Err(e),
        };
        queues.push((route, shown));
    }
    let quarantined = ctx.app.quarantine.list(false).await;
    let actions = audit::recent(ctx, 20).await;
    let body = html! {
        @if let Some(notice) = search.notice.as_deref().filter(|n| session.notice_ok(n, search.sig.as_deref().unwrap_or_default())) {
            p.notice role="status" { (notice) }
        }
        section id="dlq" {
            h2 { "Dead letters" }
            @for (route, shown) in &queues {
                @match shown {
                    Err(e) => { (problem(&route.name, e)) }
                    Ok((depth, messages)) => {
                        details.queue open[!messages.is_empty()] data-queue=(route.name) {
                            summary { strong { (route.name) } " " (depth.visible) " dead letter(s)"
                                @if depth.in_flight > 0 { ", " (depth.in_flight) " in flight" } }
                            @if !messages.is_empty() {
                                table { thead { tr { th { "Message" } th { "Sent" } th.num { "Receives" } th { "Trace" } th { "Last error" } th { "Body" } th {} } }
                                tbody { @for m in messages {
                                    tr data-message=(m.message_id) {
                                        td { code { (m.message_id) } } td { (time(m.sent_at)) }
                                        td.num { @if let Some(n) = m.receive_count { (n) } }
                                        td { @if let Some(t) = &m.trace_id { (trace_link(t)) } }
                                        td.error-text { (m.last_error.as_deref().unwrap_or("-")) }
                                        td { code.body { (crate::output::excerpt(&m.body, 120)) } }
                                        td { a.button href=(format!("/failures/redrive?{}", super::url_encode(&[("queue", &route.name), ("message", &m.message_id)]))) { "Redrive…" } }
                                    }
                                } }
                                }
                            }
                        }
                    }
                }
            }
            @if !ctx.routes.unconfigured.is_empty() { p.meta { "Not configured here: " (ctx.routes.unconfigured.join(", ")) } }
        }
        section id="quarantine" {
            h2 { "Quarantined payloads" }
            @match &quarantined {
                Err(e) => p.error { "Could not read the quarantine: " (e) }
                Ok(items) if items.is_empty() => p { "Nothing is quarantined." }
                Ok(items) => table {
                    thead { tr { th { "Id" } th { "Received" } th { "Channel" } th { "Account" } th { "Stage" } th { "Trace" } th { "Reason" } th {} } }
                    tbody { @for q in items {
                        tr data-quarantine=(q.id) {
                            td { code { (q.id) } } td { (q.received_at.format(TIME)) } td { (q.channel) } td { (q.account) } td { (q.stage) }
                            td { (trace_link(&q.trace_id)) } td.error-text { (q.reason) }
                            td { a.button href=(format!("/failures/replay?{}", super::url_encode(&[("id", &q.id)]))) { "Replay…" } }
                        }
                    } }
                }
            }
        }
        section id="actions" {
            h2 { "Recent actions" }
            @match &actions {
                Err(e) => (problem("the action log", e)),
                Ok(list) if list.is_empty() => p { "No action taken in the console yet." }
                Ok(list) => table {
                    thead { tr { th { "When" } th { "Operator" } th { "Action" } th { "Target" } th { "Outcome" } } }
                    tbody { @for a in list { tr { td { (a.at.format(TIME)) } td { (a.operator) } td { (a.action) } td { (a.target) } td { (a.outcome) } } } }
                }
            }
        }
        // The session's token, for the forms the confirmation pages post.
        meta name="csrf" content=(session.token);
    };
    layout("Failures", "/failures", &body)
}

/// `GET /failures/redrive?queue=&message=`: what a redrive will do, and the button that does it.
pub(crate) async fn confirm_redrive(Extension(session): Extension<Session>, Query(search): Query<Search>) -> Response {
    let queue = search.queue.unwrap_or_default();
    let message = search.message.unwrap_or_default();
    let body = html! {
        p { "Move dead letter " code { (message) } " from " strong { (queue) } " back to the queue it came from? "
            "Its consumer processes it again; consumers are idempotent, so a message that already took effect has no second effect." }
        form method="post" action="/failures/redrive" {
            input type="hidden" name="csrf" value=(session.token);
            input type="hidden" name="queue" value=(queue);
            input type="hidden" name="message" value=(message);
            button type="submit" id="confirm" { "Redrive this message" }
            " " a href="/failures" { "Cancel" }
        }
    };
    layout("Redrive a dead letter", "/failures", &body)
}

/// `GET /failures/replay?id=`: what a replay will do, and the button that does it.
pub(crate) async fn confirm_replay(Extension(session): Extension<Session>, Query(search): Query<Search>) -> Response {
    let id = search.id.unwrap_or_default();
    let body = html! {
        p { "Replay quarantined payload " code { (id) } " through ingest? It is marked replayed only if it succeeds; "
            "if it fails again it stays, with the new reason." }
        form method="post" action="/failures/replay" {
            input type="hidden" name="csrf" value=(session.token);
            input type="hidden" name="id" value=(id);
            button type="submit" id="confirm" { "Replay this payload" }
            " " a href="/failures" { "Cancel" }
        }
    };
    layout("Replay a quarantined payload", "/failures", &body)
}

/// Ledger entries the Stock page shows per location.
const ENTRIES_SHOWN: i32 = 15;

/// `GET /stock?sku=`: the SKU's position per location, its recent ledger entries, and per listing
/// what the channel shows now against what it should show.
pub(crate) async fn stock(State(shared): State<Ctx>, Query(search): Query<Search>) -> Response {
    let ctx = &shared.ctx;
    let raw = search.sku.unwrap_or_default();
    let form = html! {
        form method="get" action="/stock" {
            label for="sku" { "SKU " } input id="sku" name="sku" value=(raw) required;
            " " button type="submit" { "Look up" }
        }
    };
    if raw.trim().is_empty() {
        return layout("Stock", "/stock", &form);
    }
    let sku = match Sku::new(raw.trim().to_owned()) {
        Ok(s) => s,
        Err(e) => return layout("Stock", "/stock", &html! { (form) p.error { "Not a SKU: " (e) } }),
    };
    let config = ctx.app.config().await;
    let locations: BTreeSet<String> =
        config.accounts.iter().map(|a| a.stock.location.clone()).chain([DEFAULT_LOCATION.to_owned()]).collect();
    let ledger = DynamoStore::new(ctx.aws.ddb.clone(), &ctx.aws.env.ledger_table);
    let mut sections = Vec::new();
    for location in locations {
        let key = PositionKey::new(sku.clone(), location);
        let mut report = match stock::stock(&ctx.aws, &config, &key).await {
            Ok(r) => r,
            Err(e) => {
                sections.push(problem(&format!("{} @ {}", key.sku, key.location), &e));
                continue;
            }
        };
        if report.position.version == 0 && report.channels.is_empty() {
            continue;
        }
        stock::read_channels(&ctx.app, &mut report).await;
        // The position's own entries, and each shard's of a hot SKU (its stock moves there).
        let shards = manifold_ledger::shard::Shards::from_config(&config).of(&key.sku);
        let physical = std::iter::once(key.clone()).chain(
            (shards > 1).then(|| (0..shards).map(|k| manifold_ledger::shard::shard_key(&key, k))).into_iter().flatten(),
        );
        let mut entries = Vec::new();
        let mut unread = None;
        for position in physical {
            match ledger.latest_entries(&position, ENTRIES_SHOWN).await {
                Ok(mut e) => entries.append(&mut e),
                Err(e) => unread = Some(format!("{}: {e}", position.location)),
            }
        }
        entries.sort_by_key(|e| std::cmp::Reverse(e.at));
        entries.truncate(usize::try_from(ENTRIES_SHOWN).unwrap_or(15));
        let p = &report.position;
        sections.push(html! {
            section.location data-location=(p.location) {
                h2 { (p.sku) " @ " (p.location) }
                dl.position {
                    dt { "On hand" } dd { (p.on_hand) } dt { "Reserved" } dd { (p.reserved) }
                    dt { "Available" } dd { (p.available) } dt { "Version" } dd { (p.version) }
                }
                h3 { "Listings" }
                @if report.channels.is_empty() { p { "No enabled account sells from this location." } }
                @else {
                    table.listings {
                        thead { tr { th { "Channel" } th { "Account" } th { "Channel SKU" } th.num { "Should show" } th.num { "Shows now" }
                            th.num { "Last pushed" } th { "Pushed at" } th { "Confirmed" } th { "Trace" } } }
                        tbody { @for c in &report.channels {
                            tr class=(if c.mismatch() { "alert" } else { "ok" }) data-listing=(format!("{}/{}", c.channel, c.account)) {
                                td { (c.channel) } td { (c.account) } td { (c.channel_sku) }
                                td.num.should { (c.publishable_now) }
                                td.num.shows { @match (c.shows_now, &c.read_note) {
                                    (Some(q), _) => { (q) @if c.mismatch() { " " strong { "mismatch" } } }
                                    (None, Some(note)) => { span.meta { (note) } }
                                    (None, None) => "-"
                                } }
                                td.num { @match c.last_published { Some(q) => (q), None => "-" } }
                                td { (time(c.last_pushed_at)) }
                                td { @if c.confirmed { "yes" } @else { "no" } }
                                td { @if let Some(t) = &c.last_trace_id { (trace_link(t)) } @else { "-" } }
                            }
                        } }
                    }
                }
                h3 { "Recent ledger entries (reservations, releases, counts)" }
                @if let Some(e) = &unread { p.error { "Could not read the ledger entries of " (e) } }
                @if entries.is_empty() && unread.is_none() { p { "None." } }
                @else {
                    table { thead { tr { th { "At" } th { "Reason" } th.num { "On hand" } th.num { "Reserved" } th { "Order" } th { "Trace" } } }
                    tbody { @for e in &entries {
                        tr { td { (e.at.format(TIME)) }
                            td { (serde_json::to_value(e.reason).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()) }
                            td.num { (format!("{:+} → {}", e.on_hand_delta, e.on_hand_after)) }
                            td.num { (format!("{:+} → {}", e.reserved_delta, e.reserved_after)) }
                            td { @if let Some(o) = &e.order_id { (o) } }
                            td { @if let Some(t) = &e.trace_id { (trace_link(t)) } } }
                    } } }
                }
            }
        });
    }
    let body = html! {
        (form)
        @if sections.is_empty() { p { "No stock and no listing is known for " (sku) "." } }
        @for s in &sections { (s) }
    };
    layout("Stock", "/stock", &body)
}

/// `GET /orders?q=`: an order by its channel order id, or a trace id; its timeline.
pub(crate) async fn orders(State(shared): State<Ctx>, Query(search): Query<Search>) -> Response {
    let ctx = &shared.ctx;
    let q = search.q.unwrap_or_default().trim().to_owned();
    let form = html! {
        form method="get" action="/orders" {
            label for="q" { "Channel order id or trace id " } input id="q" name="q" value=(q) required;
            " " button type="submit" { "Find" }
        }
    };
    if q.is_empty() {
        return layout("Orders", "/orders", &form);
    }
    let config = ctx.app.config().await;
    let found = trace::find_orders(&ctx.aws, &config, &q).await;
    let mut traces: Vec<String> = found
        .as_ref()
        .map_or_else(|_| Vec::new(), |orders| orders.iter().flat_map(|o| o.traces.iter().cloned()).collect());
    traces.dedup();
    // No order by that id: perhaps it is a trace id.
    let as_trace = traces.is_empty();
    if as_trace {
        traces.push(q.clone());
    }
    let mut timelines = Vec::new();
    for t in &traces {
        timelines.push((t.clone(), trace::trace(&ctx.aws, t).await));
    }
    let body = html! {
        (form)
        @match &found {
            Err(e) => (problem("the orders", e)),
            Ok(orders) => @for f in orders {
                @let o = &f.order;
                section.order data-order=(o.id) {
                    h2 { (o.channel) " order " (o.channel_order_id) " (" (o.account) ")" }
                    dl.position {
                        dt { "Order id" } dd { (o.id) } dt { "Status" } dd { (format!("{:?}", o.status).to_lowercase()) }
                        dt { "Created" } dd { (o.created_at.format(TIME)) } dt { "Total" } dd { (o.totals.total) " " (o.currency) }
                        @if let Some(c) = &o.customer_id { dt { "Customer" } dd { (c) } }
                    }
                    table { thead { tr { th { "SKU" } th { "Title" } th.num { "Quantity" } } }
                        tbody { @for l in &o.lines { tr { td { @if let Some(s) = &l.sku { (s) } @else { "(unmapped)" } } td { (l.title) } td.num { (l.quantity) } } } } }
                }
            }
        }
        @for (t, report) in &timelines {
            section.timeline data-trace=(t) {
                h2 { "Timeline of trace " code { (t) } }
                @match report {
                    Err(e) => (problem("the trace", e)),
                    Ok(r) => {
                        @let steps = r.timeline();
                        @if steps.is_empty() && as_trace { p { "No order has the channel order id " (t) " on any account, and no trace has that id." } }
                        @else if steps.is_empty() { p { "Nothing is stored under " (t) "." } }
                        @else { ol.steps { @for s in &steps {
                            li data-stage=(s.stage) { span.at { (time(s.at)) } " " span.stage { (s.stage) } " " (s.what) }
                        } } }
                    }
                }
            }
        }
    };
    layout("Orders", "/orders", &body)
}

/// `GET /usage?days=`: channel API calls, AWS requests and counted cost per channel per day.
pub(crate) async fn usage(State(shared): State<Ctx>, Query(search): Query<Search>) -> Response {
    let ctx = &shared.ctx;
    let days = search.days.unwrap_or(7).clamp(1, 90);
    let state = manifold_aws::state::StateStore::new(ctx.aws.ddb.clone(), &ctx.aws.env.state_table);
    let body = match usage::usage(&state, &Channel::ALL, days, Utc::now().date_naive()).await {
        Err(e) => problem("usage", &e),
        Ok(report) => {
            let categories: Vec<String> =
                report.days.iter().map(|u| u.day.clone()).collect::<BTreeSet<_>>().into_iter().collect();
            let channels: Vec<String> =
                report.days.iter().map(|u| u.channel.clone()).collect::<BTreeSet<_>>().into_iter().collect();
            let series = |f: &dyn Fn(&manifold_aws::state::Usage) -> f64| -> Vec<chart::Series> {
                channels
                    .iter()
                    .map(|c| chart::Series {
                        name: c.clone(),
                        values: categories
                            .iter()
                            .map(|d| report.days.iter().filter(|u| &u.day == d && &u.channel == c).map(f).sum())
                            .collect(),
                    })
                    .collect()
            };
            #[allow(clippy::cast_precision_loss)]
            let api = series(&|u| u.api_calls as f64);
            #[allow(clippy::cast_precision_loss)]
            let aws = series(&|u| u.aws_requests as f64);
            // Micro-dollars: an order costs a few of them, which a dollar axis would round to nothing.
            let cost = series(&|u| u.micro_usd);
            html! {
                form method="get" action="/usage" { label for="days" { "Days " } input id="days" name="days" type="number" min="1" max="90" value=(days); " " button type="submit" { "Show" } }
                @if report.days.is_empty() { p { "Nothing recorded from " (report.from) " to " (report.to) "." } }
                @else {
                    (chart::bars("Channel API calls per day", &categories, &api, |v| format!("{v:.0}")))
                    (chart::bars("AWS requests per day", &categories, &aws, |v| format!("{v:.0}")))
                    (chart::bars("Counted AWS cost per day (millionths of a USD)", &categories, &cost, |v| format!("{v:.1}")))
                    table { thead { tr { th { "Day" } th { "Channel" } th.num { "API calls" } th.num { "AWS requests" } th.num { "Orders" } th.num { "Est. USD" } } }
                        tbody { @for u in &report.days { tr data-usage=(format!("{}/{}", u.day, u.channel)) {
                            td { (u.day) } td { (u.channel) } td.num { (u.api_calls) } td.num { (u.aws_requests) } td.num { (u.orders) } td.num { (format!("{:.6}", u.micro_usd / 1_000_000.0)) } } } }
                        tfoot { tr { td { "Total" } td {} td.num { (report.totals.api_calls) } td.num { (report.totals.aws_requests) } td.num { (report.totals.orders) } td.num { (format!("{:.6}", report.totals.usd)) } } }
                    }
                }
            }
        }
    };
    layout("Usage and cost", "/usage", &body)
}
