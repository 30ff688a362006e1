//! agentgw: a SIP agent-login gateway. Agents dial in, key their agent number and passcode,
//! and are logged on; see README.md for running it and docs/architecture.md for the layout.

pub mod admin;
pub mod call;
pub mod config;
pub mod digest;
pub mod events;
pub mod gateway;
pub mod hex;
pub mod limits;
pub mod login;
pub mod media;
pub mod metrics;
pub mod notify;
pub mod sdp;
pub mod sip;
pub mod store;

pub use config::Config;
pub use gateway::{Gateway, GatewayError};
