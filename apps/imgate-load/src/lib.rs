//! imgate-load: drives a running imgate gateway from outside, over its public REST API and
//! its SignalR hub, the way a host back end and many browsers would.
//!
//! It is a measuring tool, not a test suite: it reports what it saw (counts, errors by kind,
//! the gateway process's memory and descriptors) and leaves judging to the numbers. It does
//! not start the gateway; `scripts/soak.sh` does.
//!
//! - [`signalr::HubClient`]: a minimal SignalR client (negotiate v1, WebSockets, JSON or
//!   MessagePack).
//! - [`api::GatewayApi`]: the REST calls, with host JWTs minted from the gateway's secret.
//! - [`procfs`]: RSS, descriptors and threads of a process; the machine's cores and memory.
//! - [`soak`]: the soak scenario, its delivery check and its report section.
//! - [`bench`]: the benchmarks (`make bench`) and the servers they compare the gateway with.
//! - [`ws`]: client WebSockets with small buffers, from chosen loopback addresses.
//! - [`markdown::replace_section`]: rewriting one section of a shared document.

pub mod api;
pub mod bench;
pub mod markdown;
pub mod procfs;
pub mod signalr;
pub mod soak;
pub mod ws;
