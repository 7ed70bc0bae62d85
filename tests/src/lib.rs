//! Helpers for the end-to-end tests. Being written.
