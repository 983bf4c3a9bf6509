//! API token secrets (SPEC §7): `tds_` and 64 hex digits (256 random bits). The database keeps
//! only their SHA-256 and a prefix to recognise them in lists; the secret is shown once.

/// A new token's secret, as its creator shows it once, and what the store keeps of it.
#[derive(Clone)]
pub struct NewSecret {
    pub secret: String,
    pub hash: String,
    pub prefix: String,
}

impl std::fmt::Debug for NewSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSecret").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

/// Marks every TDS API token, so that secret scanners and people recognise one.
pub const SCHEME: &str = "tds_";

/// Marks a staff token (platform operations; see `tds_store::staff_tokens`), so that one is
/// told from a tenant's token before any lookup.
pub const STAFF_SCHEME: &str = "tds_staff_";

/// Draws a new secret.
pub fn generate() -> NewSecret {
    draw(SCHEME)
}

/// Draws a new staff token's secret.
pub fn generate_staff() -> NewSecret {
    draw(STAFF_SCHEME)
}

fn draw(scheme: &str) -> NewSecret {
    let secret = format!("{scheme}{}", crate::session::new_token());
    NewSecret { hash: hash(&secret), prefix: secret.chars().take(scheme.len() + 8).collect(), secret }
}

/// What the store looks a presented secret up by.
pub fn hash(secret: &str) -> String {
    crate::session::token_hash(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_distinct_and_hashed() {
        let (a, b) = (generate(), generate());
        assert!(a.secret.starts_with("tds_") && a.secret.len() == 68, "{}", a.secret);
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.hash, hash(&a.secret));
        assert!(a.secret.starts_with(&a.prefix) && a.prefix.len() == 12);
        assert!(!format!("{a:?}").contains(&a.secret[12..]), "Debug never shows the secret");
    }
}
