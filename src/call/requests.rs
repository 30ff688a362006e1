//! The store requests a call's flow asks for, each run as a task of its own whose reply the
//! driver hands back to the flow: a login or logout check, the station's logout, a status
//! change or query, a stay line's logout.

use crate::login::{AgentNumber, AgentStatus, Station};
use crate::login::{CheckOutcome, Mode};
use crate::store::{LoginAttempt, LoginPolicy, Store, StoreError};
use std::sync::Arc;
use tokio::task::JoinHandle;

/// A request's answer for the flow, and the agent's own language when a check found the
/// credentials right.
pub(super) type Reply = Result<(CheckOutcome, Option<String>), StoreError>;

/// What a call's requests need.
pub(super) struct Requests {
    pub store: Store,
    pub policy: Arc<LoginPolicy>,
}

impl Requests {
    /// Checks credentials: a login, or a logout by number and passcode.
    pub fn check(&self, mode: Mode, attempt: LoginAttempt) -> JoinHandle<Reply> {
        let (store, policy) = (self.store.clone(), self.policy.clone());
        tokio::spawn(async move {
            match mode {
                Mode::Login => store.login_identified(&attempt, &policy).await,
                Mode::Logout => store.logout_with_credentials(&attempt, &policy).await,
            }
        })
    }

    /// Ends the session of whoever is logged on at `station`.
    pub fn logout_station(&self, station: Station) -> JoinHandle<Reply> {
        let store = self.store.clone();
        tokio::spawn(async move {
            let reason = "logged off by phone at the station";
            Ok(
                match store.logout_station(station.as_str(), reason).await? {
                    Some(_) => (CheckOutcome::LoggedOff, None),
                    None => (CheckOutcome::NotLoggedOn, None),
                },
            )
        })
    }

    /// Sets a stay line's agent's status.
    pub fn set_status(&self, agent: AgentNumber, status: AgentStatus) -> JoinHandle<Reply> {
        let store = self.store.clone();
        tokio::spawn(async move {
            Ok(match store.set_status(&agent.0, status).await? {
                true => (CheckOutcome::Status(status), None),
                false => (CheckOutcome::NotLoggedOn, None),
            })
        })
    }

    /// Reads a stay line's agent's status.
    pub fn query_status(&self, agent: AgentNumber) -> JoinHandle<Reply> {
        let store = self.store.clone();
        tokio::spawn(async move {
            let status = store.status(&agent.0).await?;
            Ok((
                status.map_or(CheckOutcome::NotLoggedOn, CheckOutcome::Status),
                None,
            ))
        })
    }

    /// Ends a stay line's agent's session.
    pub fn logout(&self, agent: AgentNumber, reason: &'static str) -> JoinHandle<Reply> {
        let store = self.store.clone();
        tokio::spawn(async move {
            Ok(match store.logout(&agent.0, reason).await? {
                true => (CheckOutcome::LoggedOff, None),
                false => (CheckOutcome::NotLoggedOn, None),
            })
        })
    }
}
