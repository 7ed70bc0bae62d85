//! The popgate web app. Being written.
