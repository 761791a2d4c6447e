//! Everything that speaks a channel's own protocol: inbound webhook verification (`verify`) and the
//! outbound API clients behind one [`ChannelConnector`] trait (`client`, one folder per channel under
//! `channels/`), with their rate limiting and failure classification, and the access tokens they send
//! (`token`, refreshed before they expire; `reauth`, one retry with a fresh secret after a refusal).

pub mod breaker;
pub mod channels;
pub mod client;
pub mod content;
pub mod credentials;
pub mod crm;
pub mod error;
pub mod guarded;
pub mod ratelimit;
pub mod reauth;
pub mod token;
pub mod transport;
pub mod verify;

pub use client::{
    Accepted, CallContext, ChannelConnector, FetchedShipment, HeldOrders, Listing, ListingIds, ListingPage, NoneHeld,
    PriceUpdate, PushOutcome, ReturnsSweep, StockRead, StockUpdate, Submission, SubmissionState, build,
    build_writing_back, http_client,
};
pub use credentials::Credentials;
pub use crm::{CrmConnector, CrmContact, CrmCredentials, Forgotten, Upserted};
pub use error::{ConnectorError, FailureClass};
