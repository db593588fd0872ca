//! The protocol engine over real sockets (127.0.0.1, ::1, unix), with an in-test delivery
//! target and authentication provider. Configuration-level tests are in `tests/`.

mod clients;
mod harness;
mod protocol;
