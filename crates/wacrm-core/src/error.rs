//! How callers should treat an error, shared by every wacrm crate.

use serde::{Deserialize, Serialize};

/// What to do about a failure. Every library error in wacrm says which one it is, by type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Transient (timeouts, unavailable services, rate limits): try the same thing again later.
    Retry,
    /// The input itself is bad and retrying will not help: keep it as a dead letter and move on.
    DeadLetter,
    /// Nothing more can be done without an operator (bad credentials, corrupt configuration).
    Fatal,
}

impl ErrorClass {
    /// `retry`, `dead_letter` or `fatal`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Retry => "retry",
            ErrorClass::DeadLetter => "dead_letter",
            ErrorClass::Fatal => "fatal",
        }
    }
}
