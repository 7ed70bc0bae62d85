//! The calling contract both protocol sessions share, as a trait.
//!
//! A driver (the server's connection task, or the browser simulator) runs every
//! session the same way:
//!
//! ```text
//! loop {
//!     while let Some(bytes) = s.poll_transmit() { write bytes }
//!     while let Some(event) = s.poll_event() { publish event }
//!     if let Some(effect) = s.poll_effect() {
//!         if S::is_start_tls(&effect) {           // STARTTLS / STLS: no result
//!             handshake on the socket             // the go-ahead was flushed above
//!             s.handle_tls_established(now, version, cipher)   // or close on failure
//!             continue;
//!         }
//!         let result = perform(effect);           // IO happens here, outside core
//!         if let Some(r) = result { s.handle_result(now, r) }
//!         continue;
//!     }
//!     if s.is_closed() { break }
//!     wait for the first of:
//!         input (only while s.wants_input())  -> s.handle_input(now, bytes) / s.handle_disconnect(now) at EOF
//!         s.poll_timeout() passes             -> s.handle_timeout(now)
//!         shutdown requested                  -> s.handle_shutdown(now)
//! }
//! ```
//!
//! At most one effect that expects a result is outstanding at a time; while it is,
//! the session processes no further input, so pipelined commands keep their order.

use crate::event::Event;
use crate::policy::{PolicyEffect, PolicyResult, PolicySession};
use crate::pop3::{Pop3Effect, Pop3Result, Pop3Session};
use crate::smtp::{SmtpEffect, SmtpResult, SmtpSession};
use crate::time::Millis;

/// A sans-IO protocol session: bytes and effect results in, bytes, effects and events out.
pub trait Session {
    type Effect;
    type Result;

    fn handle_input(&mut self, now: Millis, bytes: &[u8]);
    fn handle_result(&mut self, now: Millis, result: Self::Result);
    fn handle_timeout(&mut self, now: Millis);
    fn handle_disconnect(&mut self, now: Millis);
    fn handle_shutdown(&mut self, now: Millis);
    /// The TLS handshake a [`is_start_tls`](Self::is_start_tls) effect asked for
    /// completed with this protocol version and cipher suite.
    fn handle_tls_established(&mut self, now: Millis, version: String, cipher: String);
    /// Whether `effect` asks for a TLS handshake (STARTTLS, STLS) rather than a result.
    fn is_start_tls(effect: &Self::Effect) -> bool;
    fn poll_transmit(&mut self) -> Option<Vec<u8>>;
    fn poll_effect(&mut self) -> Option<Self::Effect>;
    fn poll_event(&mut self) -> Option<Event>;
    fn poll_timeout(&self) -> Option<Millis>;
    fn wants_input(&self) -> bool;
    fn is_closed(&self) -> bool;
}

macro_rules! forward_session {
    ($ty:ty, $effect:ty, $result:ty) => {
        impl Session for $ty {
            type Effect = $effect;
            type Result = $result;

            fn handle_input(&mut self, now: Millis, bytes: &[u8]) {
                <$ty>::handle_input(self, now, bytes)
            }
            fn handle_result(&mut self, now: Millis, result: $result) {
                <$ty>::handle_result(self, now, result)
            }
            fn handle_timeout(&mut self, now: Millis) {
                <$ty>::handle_timeout(self, now)
            }
            fn handle_disconnect(&mut self, now: Millis) {
                <$ty>::handle_disconnect(self, now)
            }
            fn handle_shutdown(&mut self, now: Millis) {
                <$ty>::handle_shutdown(self, now)
            }
            fn handle_tls_established(&mut self, now: Millis, version: String, cipher: String) {
                <$ty>::handle_tls_established(self, now, version, cipher)
            }
            fn is_start_tls(effect: &$effect) -> bool {
                <$ty>::is_start_tls(effect)
            }
            fn poll_transmit(&mut self) -> Option<Vec<u8>> {
                <$ty>::poll_transmit(self)
            }
            fn poll_effect(&mut self) -> Option<$effect> {
                <$ty>::poll_effect(self)
            }
            fn poll_event(&mut self) -> Option<Event> {
                <$ty>::poll_event(self)
            }
            fn poll_timeout(&self) -> Option<Millis> {
                <$ty>::poll_timeout(self)
            }
            fn wants_input(&self) -> bool {
                <$ty>::wants_input(self)
            }
            fn is_closed(&self) -> bool {
                <$ty>::is_closed(self)
            }
        }
    };
}

forward_session!(Pop3Session, Pop3Effect, Pop3Result);
forward_session!(SmtpSession, SmtpEffect, SmtpResult);
forward_session!(PolicySession, PolicyEffect, PolicyResult);
