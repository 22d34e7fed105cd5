//! Helpers for chart render tests (helm 3 and 4, parsed manifests).
