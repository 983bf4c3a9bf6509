//! Password hashing with argon2id (the `argon2` crate's defaults, OWASP's recommended
//! parameters) and the password rules people are shown.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};

/// Shortest password accepted.
pub const MIN_LENGTH: usize = 10;
/// Longest password accepted (argon2 could take more; this bounds the work per login).
pub const MAX_LENGTH: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordProblem {
    TooShort,
    TooLong,
}

/// Checks a new password against the rules.
pub fn check_new(password: &str) -> Result<(), PasswordProblem> {
    let len = password.chars().count();
    if len < MIN_LENGTH {
        Err(PasswordProblem::TooShort)
    } else if len > MAX_LENGTH {
        Err(PasswordProblem::TooLong)
    } else {
        Ok(())
    }
}

pub fn hash(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default().hash_password(password.as_bytes(), &salt)?.to_string())
}

/// Whether `password` matches the stored PHC string; a malformed hash never matches.
pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash to verify against when the user does not exist, so that the response time does not
/// tell which emails have accounts.
pub fn dummy_hash() -> &'static str {
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$ZmFrZWhhc2hmYWtlaGFzaGZha2VoYXNoZmFrZWhhcw"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_wrong_passwords_do_not() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterY", &h));
        assert!(!verify("anything", "not a hash"));
        assert!(!verify("anything", dummy_hash()));
    }

    #[test]
    fn rules_bound_the_length() {
        assert_eq!(check_new("short"), Err(PasswordProblem::TooShort));
        assert_eq!(check_new("long enough!"), Ok(()));
        assert_eq!(check_new(&"x".repeat(300)), Err(PasswordProblem::TooLong));
    }
}
