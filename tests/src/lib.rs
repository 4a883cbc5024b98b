//! The end-to-end suite lives in `e2e/`; this crate has no library code.
