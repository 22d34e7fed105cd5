//! Unit tests of the pure parts: version parsing, tokens, locality.

use super::*;

#[test]
fn kube_versions() {
    assert_eq!(native_sidecars("1.28"), Some(false));
    assert_eq!(native_sidecars("v1.29.3"), Some(true));
    assert_eq!(native_sidecars("1.30.1-gke.100"), Some(true));
    assert_eq!(native_sidecars("1.35"), Some(true));
    assert_eq!(native_sidecars("x"), None);
}

#[test]
fn random_tokens_are_40_alphanumerics_and_differ() {
    let a = random_token().expect("token");
    let b = random_token().expect("token");
    assert_eq!(a.len(), 40);
    assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_ne!(a, b);
    assert!(check_token(&a).is_ok());
    assert!(check_token("short").is_err());
}
