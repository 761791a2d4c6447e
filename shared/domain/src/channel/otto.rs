//! OTTO Market (api.otto.market): no push at all, so the scheduler's orders tier polls its orders at the
//! account's `sync.orders` cadence ([`Inbound::Poll`]); OAuth 2 client-credentials tokens; every resource
//! carries its own major version in the path (`/v1/availability`, `/v4/orders`, `/v4/products`), so a
//! pin is `v` and digits (the account's `api_version` pins the Orders API).
//!
//! The `ship_from_*` settings are required: OTTO's shipment confirmation (`POST /v1/shipments`) takes a
//! ship-from city, zip code and ISO 3166-1 alpha-3 country, and OTTO releases a seller's revenue only
//! once an order is confirmed shipped. That no push interface exists is unverified (it rests on its
//! absence from OTTO's interface index); polling is what OTTO's own guide describes.

use super::{Capabilities, Cell, Channel, ChannelSpec, Inbound, spec::v_number};

pub(super) const SPEC: ChannelSpec = ChannelSpec {
    channel: Channel::Otto,
    title: "OTTO Market",
    inbound: Inbound::Poll,
    event_id_headers: &[],
    topic_header: None,
    body_event_id: None,
    fetch_calls: 1,
    required_settings: &["ship_from_city", "ship_from_zip_code", "ship_from_country"],
    api_version: v_number,
    stock_sla: None,
    // 20 requests/s per partner (unverified current figure): two consumers keep well within it.
    push_concurrency: 2,
    capabilities: Capabilities {
        orders_in: Cell::Supported("GET /v4/orders?fromDate, polled by the orders tier"),
        order_updates_in: Cell::Supported("the same poll: changed orders come back with their new states"),
        returns_in: Cell::Supported("position items RETURNED on the polled GET /v4/orders (one Return per item)"),
        stock_out: Cell::Supported("POST /v1/availability/quantities"),
        price_out: Cell::Supported("POST /v4/products/prices, the update task polled"),
        tracking_out: Cell::Supported("POST /v1/shipments"),
        cancel_out: Cell::Supported("POST /v4/orders/{id}/cancellation"),
        acknowledge: Cell::NotOffered("OTTO has no acknowledgement step (Orders v4)"),
        list_orders_since: Cell::Supported("GET /v4/orders?fromDate, nextcursor"),
        read_stock: Cell::Supported("GET /v1/availability/quantities/{sku}"),
        listing_sync: Cell::Supported("GET /v1/availability/quantities, 200 per page"),
    },
};

/// OTTO's carrier codes (`TrackingKey.carrier` of `POST /v1/shipments`): parcel carriers first, then
/// freight forwarders; read by the connector and its simulator.
pub const CARRIERS: &[&str] = &[
    "DHL",
    "DHL_EXPRESS",
    "DHL_FREIGHT",
    "DHL_HOME_DELIVERY",
    "GLS",
    "HERMES",
    "DPD",
    "UPS",
    "BTW",
    "BURSPED",
    "CARGOLINE",
    "DACHSER",
    "DB_SCHENKER",
    "DSV",
    "EMONS",
    "EPH_DIREKT",
    "IDS",
    "GEIS",
    "GEL",
    "GUETTLER",
    "HES",
    "HELLMANN",
    "HEUEL",
    "KOCH",
    "KUEHNE_NAGEL",
    "LOGWIN",
    "MEYER_JUMBO",
    "RABEN_LOGISTIK",
    "RHENUS",
    "REIMER",
    "REITHMEIER",
    "SCHOCKEMOEHLE",
    "SCHMIDT_GEVELSBERG",
    "ZUFALL",
    "OTHER_FORWARDER",
];
