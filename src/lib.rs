//! Telehub: the live part of a telemedicine consultation.
//!
//! This crate is the server: configuration, startup, the HTTP API and the
//! WebSocket sessions, and storage. Rooms live in `telehub-actors`, the wire
//! protocol in `telehub-signaling`. See ARCHITECTURE.md for the map.

pub mod app;
pub mod auth;
pub mod broker;
pub mod config;
pub mod http;
pub mod media;
pub mod notify;
pub mod payments;
pub mod ratelimit;
pub mod session;
pub mod startup;
pub mod store;
pub mod telemetry;
