//! Helpers for pod tests (podman pods driven from rendered manifests).
