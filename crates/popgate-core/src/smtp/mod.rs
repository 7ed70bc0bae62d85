//! SMTP server session (RFC 5321). Being written.
