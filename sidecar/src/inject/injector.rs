//! `berth injector`: the HTTPS server of the mutating webhook.
