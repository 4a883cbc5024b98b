//! End-to-end: the gateway with its embedded defaults, started in-process on a free port and
//! driven over real HTTP, as a host back end and its users would.

mod clients;
mod demo;
mod faults;
mod helpers;
mod hub_contract;
mod identity;
mod isolation;
mod journey;
mod limits;
mod nodes;
mod openapi_contract;
mod rate_limit;
mod realtime;
mod redis_outage;
mod users;
