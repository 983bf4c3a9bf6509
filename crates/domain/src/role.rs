//! A member's role in a tenant. Roles are ordered: each one can do everything the one below can.

use crate::ValidationError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// viewer reads everything of the tenant; editor also manages gateways, devices, alert rules,
/// acknowledges alerts and runs reports; admin also manages users, memberships, settings, API
/// tokens and the certificates of the tenant's gateways.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Editor,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Editor, Role::Admin];

    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        match input.trim().to_ascii_lowercase().as_str() {
            "viewer" | "leitor" | "visualizador" => Ok(Self::Viewer),
            "editor" => Ok(Self::Editor),
            "admin" | "administrador" => Ok(Self::Admin),
            _ => Err(ValidationError::Choice {
                field: "role",
                value: input.to_owned(),
                expected: "admin, editor, viewer",
            }),
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Editor => "editor",
            Self::Admin => "admin",
        }
    }

    /// Whether a member with this role may do what `required` allows.
    pub fn allows(self, required: Role) -> bool {
        self >= required
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_power() {
        assert!(Role::Admin.allows(Role::Editor));
        assert!(Role::Editor.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Editor));
        assert!(!Role::Editor.allows(Role::Admin));
    }

    #[test]
    fn roles_parse_and_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()).unwrap(), role);
            assert_eq!(Role::parse(&role.as_str().to_uppercase()).unwrap(), role);
        }
        assert!(Role::parse("owner").unwrap_err().to_string().contains("admin, editor, viewer"));
    }
}
