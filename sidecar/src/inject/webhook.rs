//! AdmissionReview handling for `berth injector` (see [`super::injector`]).
