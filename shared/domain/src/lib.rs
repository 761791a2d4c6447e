//! The business-level contract of Manifold.
//!
//! Every channel maps *into* these canonical records and every consumer (the ledger, the outbound
//! connectors, the ERP and CRM subscribers on the event bus) reads *from* them, so nothing outside the
//! normalizers ever needs to know what a Shopify or Amazon payload looks like. The types here do no I/O.
//!
//! The records are versioned (`v1`): their JSON Schemas are generated from this code and committed
//! under `schemas/`, and a test fails when the two drift apart.

pub mod channel;
pub mod config;
pub mod customers;
pub mod error;
pub mod events;
pub mod export;
pub mod ids;
pub mod money;
pub mod records;
pub mod rules;
pub mod schema;
pub mod webhooks;

pub use channel::Channel;
pub use error::DomainError;
pub use ids::{AccountId, ChannelSku, OrderId, Sku, TraceId};
pub use money::{Amount, Currency};
pub use records::*;
