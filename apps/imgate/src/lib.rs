//! The imgate gateway as a library, so tests can start it in-process: [`settings::Settings`]
//! (layered configuration, validated) and [`start`] (adapters wired to ports behind the HTTP
//! server). No business logic lives here.

pub mod demo;
pub mod settings;
mod wiring;

pub use wiring::{start, Gateway};
