//! The login dialogue and its decisions, as pure code.

pub mod audit;
pub mod decide;
pub mod flow;
pub mod ids;
pub mod keys;
pub mod route;
pub mod rules;

pub use audit::AuditEvent;
pub use flow::{
    Action, AgentStatus, CheckOutcome, EndedBy, Flow, FlowConfig, Input, Mode, Outcome,
};
pub use ids::{AgentNumber, CallId, Passcode, Station, Tenant};
pub use route::DEFAULT_TENANT;
