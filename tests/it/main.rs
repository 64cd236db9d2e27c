//! Integration tests: real nodes on port 0, each with a fresh database,
//! driven over HTTP and WebSocket like any client would.

mod api;
mod bad_input;
mod chat;
mod cluster;
mod end;
mod faults;
mod helpers;
mod history;
mod media;
mod nginx;
mod notify;
mod payments;
mod postgres;
mod presence;
mod rights;
mod shutdown;
mod signaling;
mod slow;
mod storage;
mod stripe;
mod tokens;
mod turn;
mod waiting_room;
mod webrtc;
