//! Helpers the end-to-end test binaries share; the suite itself lives in `e2e/`.

pub mod synapse;
