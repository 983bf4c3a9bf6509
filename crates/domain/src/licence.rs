//! A tenant's licence: whether its people may use the web UI today. A lapsed licence never stops
//! its gateways from reporting; it only puts the UI behind the licence page.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Licence {
    pub active: bool,
    /// Last day (in the tenant's zone) the licence is valid; `None` means no end date.
    pub valid_until: Option<NaiveDate>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LicenceState {
    Valid,
    Inactive,
    Expired,
}

impl Licence {
    /// The state on `today` (a date in the tenant's zone); the end date itself is still valid.
    pub fn state_on(self, today: NaiveDate) -> LicenceState {
        if !self.active {
            LicenceState::Inactive
        } else if self.valid_until.is_some_and(|end| today > end) {
            LicenceState::Expired
        } else {
            LicenceState::Valid
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn licence_is_valid_through_its_last_day() {
        let end = NaiveDate::from_ymd_opt(2026, 12, 31).unwrap();
        let lic = Licence { active: true, valid_until: Some(end) };
        assert_eq!(lic.state_on(end), LicenceState::Valid);
        assert_eq!(lic.state_on(end.succ_opt().unwrap()), LicenceState::Expired);
        assert_eq!(Licence { active: false, ..lic }.state_on(end), LicenceState::Inactive);
        assert_eq!(Licence { active: true, valid_until: None }.state_on(end), LicenceState::Valid);
    }
}
