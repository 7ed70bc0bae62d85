//! POP3 server session (RFC 1939, RFC 2449). Being written.
