//! berth: a tiny Kubernetes sidecar that checks a pod's dependencies in the
//! background, serves honest health endpoints and coordinates graceful drain.
#![forbid(unsafe_code)]
