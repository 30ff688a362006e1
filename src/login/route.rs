//! Where a call goes: the number dialed (the Request-URI user) picks the tenant, whether the
//! call logs an agent on or off, its prompt language and its tenant's policies.

use crate::login::rules::{AlreadyLoggedOnPolicy, SameStationPolicy};
use crate::login::{Mode, Tenant};
use crate::sdp::SrtpPolicy;

/// The tenant of calls to numbers no tenant claims.
pub const DEFAULT_TENANT: &str = "default";

/// Where one call goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRoute {
    pub tenant: Tenant,
    pub logout: bool,
    pub language: String,
    pub already_logged_on: AlreadyLoggedOnPolicy,
    pub same_station: SameStationPolicy,
    /// Whether the call's audio is encrypted (`[media] srtp`, or the tenant's).
    pub srtp: SrtpPolicy,
}

/// One tenant's numbers and what differs from the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRoute {
    pub name: String,
    /// Numbers that log on to this tenant.
    pub numbers: Vec<String>,
    /// Numbers that log off from this tenant.
    pub logout_numbers: Vec<String>,
    pub language: Option<String>,
    pub already_logged_on: Option<AlreadyLoggedOnPolicy>,
    pub same_station: Option<SameStationPolicy>,
    pub srtp: Option<SrtpPolicy>,
}

/// The routing table: the tenants, then the default tenant for every other number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    pub tenants: Vec<TenantRoute>,
    /// The default tenant's logout number.
    pub logout_user: String,
    pub language: String,
    pub already_logged_on: AlreadyLoggedOnPolicy,
    pub same_station: SameStationPolicy,
    pub srtp: SrtpPolicy,
}

impl CallRoute {
    /// Whether the call logs an agent on or off.
    pub fn mode(&self) -> Mode {
        match self.logout {
            true => Mode::Logout,
            false => Mode::Login,
        }
    }
}

impl Routes {
    /// Which tenant a call to `dialed` is for, and whether it logs off.
    pub fn route(&self, dialed: &str) -> CallRoute {
        for t in &self.tenants {
            let login = t.numbers.iter().any(|n| n == dialed);
            let logout = t.logout_numbers.iter().any(|n| n == dialed);
            if login || logout {
                return CallRoute {
                    tenant: Tenant(t.name.clone()),
                    logout,
                    language: t.language.clone().unwrap_or_else(|| self.language.clone()),
                    already_logged_on: t.already_logged_on.unwrap_or(self.already_logged_on),
                    same_station: t.same_station.unwrap_or(self.same_station),
                    srtp: t.srtp.unwrap_or(self.srtp),
                };
            }
        }
        CallRoute {
            tenant: Tenant(DEFAULT_TENANT.into()),
            logout: dialed == self.logout_user,
            language: self.language.clone(),
            already_logged_on: self.already_logged_on,
            same_station: self.same_station,
            srtp: self.srtp,
        }
    }

    /// Whether `tenant` is one calls can reach (the default or a configured one).
    pub fn has_tenant(&self, tenant: &str) -> bool {
        tenant == DEFAULT_TENANT || self.tenants.iter().any(|t| t.name == tenant)
    }

    /// Every prompt language in use.
    pub fn languages(&self) -> Vec<String> {
        let mut langs = vec![self.language.clone()];
        for l in self.tenants.iter().filter_map(|t| t.language.as_ref()) {
            if !langs.contains(l) {
                langs.push(l.clone());
            }
        }
        langs
    }
}
