//! Everything that speaks a channel's own protocol: inbound webhook verification (`verify`) and the
//! outbound API clients behind one [`ChannelConnector`] trait (`client`, one folder per channel under
//! `channels/`), with their rate limiting and failure classification.

pub mod credentials;
pub mod verify;

pub use credentials::Credentials;
