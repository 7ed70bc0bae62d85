//! Listeners and connection drivers. Being written.
