//! The login dialogue and its decisions, as pure code.

pub mod flow;
pub mod rules;

pub use flow::{
    Action, AgentNumber, AgentStatus, CheckOutcome, EndedBy, Flow, FlowConfig, Input, Mode,
    Outcome, Passcode,
};
