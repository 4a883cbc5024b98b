//! Integration tests of the hub: the official clients (Node `@microsoft/signalr`, Python
//! `signalrcore` and `pysignalr`, installed by `tests/clients/hub/setup.sh`) and hand-made
//! wire traffic against a hub served on 127.0.0.1:0.

mod clients;
mod messagepack;
mod raw;
mod reconnect;
mod support;
