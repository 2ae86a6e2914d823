//! The errors the fake can answer, in Meta's Cloud API error shape.

use std::time::Duration;

use serde_json::{json, Map, Value};

/// An error answer, queued with [`super::GraphFake::fail_next`] or played by the fake itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphError {
    /// A Cloud API error in Meta's shape (see [`GraphError::body`]).
    Code {
        /// The HTTP status of the answer.
        http_status: u16,
        /// Meta's error code (`error.code`).
        code: i64,
        /// `error.error_subcode`, omitted when `None` (Meta no longer returns it from v16.0).
        subcode: Option<i64>,
        /// The code's title; `error.message` is `"(#<code>) <title>"`.
        title: String,
        /// The cause, `error.error_data.details`.
        message: String,
    },
    /// A bare server error with this HTTP status (e.g. `500`, `502`, `503`), with Graph's
    /// transient-error body: code `2` ("API Service: temporary due to downtime or due to being
    /// overloaded", `503` in the copy of Meta's table in YCloud's "Handle WhatsApp errors"), the
    /// message of Meta's "Messenger Platform › Common Error Codes" for code 2, and
    /// `is_transient: true`.
    ServerError(u16),
    /// The request is held this long and then answered `504 Gateway Timeout`; the message is
    /// not sent. Give the client a shorter timeout to see a timeout.
    Timeout(Duration),
}

/// One row of [`KNOWN_ERRORS`]: a Cloud API error code the sender must classify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownError {
    /// Meta's error code.
    pub code: i64,
    /// The HTTP status Meta answers it with.
    pub http_status: u16,
    /// The code's title (part of `error.message`; Meta says not to rely on titles).
    pub title: &'static str,
    /// A typical `error_data.details`.
    pub details: &'static str,
    /// Where the status and title were checked, or that they were not.
    pub source: &'static str,
}

/// The error codes wacrm's sender must classify, with the status and title the fake uses.
///
/// Meta's own advice ("Error codes" page) is to branch on `code` (and `details`), not on the HTTP
/// status or title; where sources disagree on a status the disagreement is noted in `source`.
pub const KNOWN_ERRORS: &[KnownError] = &[
    KnownError {
        code: 130_429,
        http_status: 429,
        title: "Rate limit hit",
        details: "Message failed to send because there were too many messages sent from this \
                  phone number in a short period of time",
        source: "title and details: Meta, \"Errors messages webhooks reference\" (example \
                 130429); status 429 Too Many Requests: YCloud \"Handle WhatsApp errors\", which \
                 reproduces Meta's error table (not confirmed on Meta's own page)",
    },
    KnownError {
        code: 131_056,
        http_status: 400,
        title: "(Business Account, Consumer Account) pair rate limit hit",
        details: "Message failed to send because there were too many messages sent from this \
                  phone number to the same phone number in a short period of time.",
        source: "title and details: YCloud \"WhatsApp Errors\" (a Meta response it relays, type \
                 OAuthException); status 400 as in Meta's throttling table, not confirmed by a \
                 stored copy",
    },
    KnownError {
        code: 131_047,
        http_status: 400,
        title: "Re-engagement message",
        details: "Message failed to send because more than 24 hours have passed since the \
                  customer last replied to this number.",
        source: "title: Zavu \"WhatsApp Error Codes\" (canonical Meta codes); status 400: \
                 ChakraHQ \"Message Delivery Errors\" (delivery errors are returned with HTTP \
                 400)",
    },
    KnownError {
        code: 131_026,
        http_status: 400,
        title: "Message Undeliverable",
        details: "Unable to deliver message. Reasons can include: the recipient phone number is \
                  not a WhatsApp phone number; the recipient has not accepted the latest Terms \
                  of Service; the recipient uses an outdated WhatsApp client.",
        source: "title and details: YCloud \"Handle WhatsApp errors\" (Meta's table); status \
                 400 Bad Request: ChakraHQ \"Message Delivery Errors\"",
    },
    KnownError {
        code: 131_050,
        http_status: 400,
        title: "Unable to deliver the message",
        details: "Unable to deliver the message. This recipient has chosen to stop receiving \
                  marketing messages on WhatsApp from your business.",
        source: "details: Dualhook \"WhatsApp Error 131050\" (quoting Meta's details string); \
                 title and status 400 not confirmed by a stored copy of Meta's table",
    },
    KnownError {
        code: 368,
        http_status: 403,
        title: "Temporarily blocked for policies violations",
        details: "The WhatsApp Business Account associated with the app has been restricted or \
                  disabled for violating a platform policy.",
        source: "360dialog \"Error Code Reference\" (Meta Cloud API integrity errors, 403 \
                 Forbidden) and ChakraHQ \"Integrity Errors\"",
    },
    KnownError {
        code: 132_000,
        http_status: 400,
        title: "Number of parameters does not match the expected number of params",
        details: "body: number of localizable_params (0) does not match the expected number of \
                  params (1)",
        source: "title and details: HighLevel \"WhatsApp Error 132000\" (the message Meta \
                 returns); status 400 not confirmed by a stored copy",
    },
    KnownError {
        code: 132_001,
        http_status: 404,
        title: "Template name does not exist in the translation",
        details: "template name does not exist in the translation",
        source: "title and status 404 as in Meta's template-error table, not confirmed by a \
                 stored copy",
    },
    KnownError {
        code: 132_005,
        http_status: 400,
        title: "Translated text too long",
        details: "Translated text is too long.",
        source: "as in Meta's template-error table, not confirmed by a stored copy",
    },
    KnownError {
        code: 132_007,
        http_status: 400,
        title: "Template Format Character Policy Violated",
        details: "Template content violates a WhatsApp policy.",
        source: "as in Meta's template-error table, not confirmed by a stored copy",
    },
    KnownError {
        code: 132_012,
        http_status: 400,
        title: "Parameter format does not match format in the created template",
        details: "Variable parameter values formatted incorrectly.",
        source: "as in Meta's template-error table, not confirmed by a stored copy",
    },
    KnownError {
        code: 132_015,
        http_status: 400,
        title: "Template is Paused",
        details: "Template is paused due to low quality so it cannot be sent in a template \
                  message.",
        source: "as in Meta's template-error table, not confirmed by a stored copy",
    },
    KnownError {
        code: 132_016,
        http_status: 400,
        title: "Template is Disabled",
        details: "Template has been paused too many times due to low quality and is now \
                  permanently disabled.",
        source: "as in Meta's template-error table, not confirmed by a stored copy",
    },
    KnownError {
        code: 190,
        http_status: 401,
        title: "Access token has expired",
        details: "Your access token has expired.",
        source: "a copy of Meta's table (Aivo \"Error Codes\": \"190 Access token has expired | \
                 Your access token has expired. | 401 Unauthorized\")",
    },
];

/// `error.message` Graph uses for a wrong or missing token (the document's `Unauthorized`
/// response example "Invalid OAuth access token", code 190).
pub(super) const INVALID_TOKEN_MESSAGE: &str =
    "Invalid OAuth access token - Cannot parse access token";

impl GraphError {
    /// The [`KNOWN_ERRORS`] row for `code` as a [`GraphError::Code`], if there is one.
    #[must_use]
    pub fn known(code: i64) -> Option<GraphError> {
        KNOWN_ERRORS
            .iter()
            .find(|k| k.code == code)
            .map(|k| GraphError::Code {
                http_status: k.http_status,
                code: k.code,
                subcode: None,
                title: k.title.to_owned(),
                message: k.details.to_owned(),
            })
    }

    /// Builds a [`GraphError::Code`] from a [`KNOWN_ERRORS`] row that is known to exist.
    fn row(code: i64) -> GraphError {
        GraphError::known(code).unwrap_or(GraphError::Code {
            http_status: 400,
            code,
            subcode: None,
            title: format!("Error {code}"),
            message: String::new(),
        })
    }

    /// `130429` Rate limit hit: the phone number's throughput was exceeded.
    #[must_use]
    pub fn rate_limit_hit() -> GraphError {
        GraphError::row(130_429)
    }

    /// `131056` pair rate limit hit: too many messages to the same recipient too quickly.
    #[must_use]
    pub fn pair_rate_limit_hit() -> GraphError {
        GraphError::row(131_056)
    }

    /// `131047` Re-engagement message: the 24-hour customer service window is closed; only a
    /// template may be sent.
    #[must_use]
    pub fn re_engagement() -> GraphError {
        GraphError::row(131_047)
    }

    /// `131026` Message Undeliverable.
    #[must_use]
    pub fn undeliverable() -> GraphError {
        GraphError::row(131_026)
    }

    /// `131050`: the recipient stopped marketing messages from the business.
    #[must_use]
    pub fn marketing_opt_out() -> GraphError {
        GraphError::row(131_050)
    }

    /// `368` Temporarily blocked for policies violations (HTTP 403).
    #[must_use]
    pub fn temporarily_blocked() -> GraphError {
        GraphError::row(368)
    }

    /// `132000`: the number of template parameters does not match the template.
    #[must_use]
    pub fn template_param_count_mismatch() -> GraphError {
        GraphError::row(132_000)
    }

    /// `132001`: the template does not exist in that language (HTTP 404).
    #[must_use]
    pub fn template_does_not_exist() -> GraphError {
        GraphError::row(132_001)
    }

    /// `132005`: the hydrated template text is too long.
    #[must_use]
    pub fn template_text_too_long() -> GraphError {
        GraphError::row(132_005)
    }

    /// `132007`: the template content violates a format or character policy.
    #[must_use]
    pub fn template_format_policy_violated() -> GraphError {
        GraphError::row(132_007)
    }

    /// `132012`: a template parameter does not have the template's format.
    #[must_use]
    pub fn template_param_format_mismatch() -> GraphError {
        GraphError::row(132_012)
    }

    /// `132015`: the template is paused for low quality.
    #[must_use]
    pub fn template_paused() -> GraphError {
        GraphError::row(132_015)
    }

    /// `132016`: the template is disabled for low quality.
    #[must_use]
    pub fn template_disabled() -> GraphError {
        GraphError::row(132_016)
    }

    /// `190` Access token has expired (HTTP 401).
    #[must_use]
    pub fn access_token_expired() -> GraphError {
        GraphError::row(190)
    }

    /// `100` Invalid parameter (HTTP 400) with these details: what the fake answers to a body
    /// that violates the schema or a reference check.
    #[must_use]
    pub fn invalid_parameter(details: impl Into<String>) -> GraphError {
        GraphError::Code {
            http_status: 400,
            code: 100,
            subcode: None,
            title: "Invalid parameter".to_owned(),
            message: details.into(),
        }
    }

    /// The HTTP status this error is answered with.
    #[must_use]
    pub fn http_status(&self) -> u16 {
        match self {
            GraphError::Code { http_status, .. } => *http_status,
            GraphError::ServerError(status) => *status,
            GraphError::Timeout(_) => 504,
        }
    }

    /// Meta's error code in the body (`2` for [`GraphError::ServerError`] and
    /// [`GraphError::Timeout`]).
    #[must_use]
    pub fn code(&self) -> i64 {
        match self {
            GraphError::Code { code, .. } => *code,
            GraphError::ServerError(_) | GraphError::Timeout(_) => 2,
        }
    }

    /// The JSON body answered, with this `fbtrace_id`:
    ///
    /// - [`GraphError::Code`]: `{"error": {"message": "(#<code>) <title>", "type":
    ///   "OAuthException", "code", "error_data": {"messaging_product": "whatsapp", "details":
    ///   <message>}, "error_subcode"?, "fbtrace_id"}}`;
    /// - [`GraphError::ServerError`] and [`GraphError::Timeout`]: Graph's transient error,
    ///   `{"error": {"message": "An unexpected error has occurred. Please retry your request
    ///   later.", "type": "OAuthException", "code": 2, "is_transient": true, "fbtrace_id"}}`.
    #[must_use]
    pub fn body(&self, fbtrace_id: &str) -> Value {
        let mut error = Map::new();
        match self {
            GraphError::Code {
                code,
                subcode,
                title,
                message,
                ..
            } => {
                error.insert("message".to_owned(), json!(format!("(#{code}) {title}")));
                error.insert("type".to_owned(), json!("OAuthException"));
                error.insert("code".to_owned(), json!(code));
                error.insert(
                    "error_data".to_owned(),
                    json!({"messaging_product": "whatsapp", "details": message}),
                );
                if let Some(subcode) = subcode {
                    error.insert("error_subcode".to_owned(), json!(subcode));
                }
            }
            GraphError::ServerError(_) | GraphError::Timeout(_) => {
                error.insert(
                    "message".to_owned(),
                    json!("An unexpected error has occurred. Please retry your request later."),
                );
                error.insert("type".to_owned(), json!("OAuthException"));
                error.insert("code".to_owned(), json!(2));
                error.insert("is_transient".to_owned(), json!(true));
            }
        }
        error.insert("fbtrace_id".to_owned(), json!(fbtrace_id));
        json!({ "error": Value::Object(error) })
    }
}

/// Graph's answer to a wrong or missing access token: `401`, code `190`, no `error_data` (it is
/// a Graph error, not a WhatsApp one).
pub(super) fn invalid_token_body(fbtrace_id: &str) -> Value {
    json!({"error": {
        "message": INVALID_TOKEN_MESSAGE,
        "type": "OAuthException",
        "code": 190,
        "fbtrace_id": fbtrace_id,
    }})
}

/// Graph's answer to a path it does not know: code `2500`.
pub(super) fn unknown_path_body(path: &str, fbtrace_id: &str) -> Value {
    json!({"error": {
        "message": format!("Unknown path components: {path}"),
        "type": "OAuthException",
        "code": 2500,
        "fbtrace_id": fbtrace_id,
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_constructor_has_a_row_and_rows_are_unique() {
        let built = [
            GraphError::rate_limit_hit(),
            GraphError::pair_rate_limit_hit(),
            GraphError::re_engagement(),
            GraphError::undeliverable(),
            GraphError::marketing_opt_out(),
            GraphError::temporarily_blocked(),
            GraphError::template_param_count_mismatch(),
            GraphError::template_does_not_exist(),
            GraphError::template_text_too_long(),
            GraphError::template_format_policy_violated(),
            GraphError::template_param_format_mismatch(),
            GraphError::template_paused(),
            GraphError::template_disabled(),
            GraphError::access_token_expired(),
        ];
        assert_eq!(built.len(), KNOWN_ERRORS.len());
        for (error, row) in built.iter().zip(KNOWN_ERRORS) {
            assert_eq!(error.code(), row.code);
            assert_eq!(error.http_status(), row.http_status);
            assert!(!row.source.is_empty());
        }
        let mut codes: Vec<i64> = KNOWN_ERRORS.iter().map(|k| k.code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), KNOWN_ERRORS.len());
    }

    #[test]
    fn code_body_has_meta_shape() {
        let body = GraphError::temporarily_blocked().body("AbC");
        assert_eq!(
            body,
            json!({"error": {
                "message": "(#368) Temporarily blocked for policies violations",
                "type": "OAuthException",
                "code": 368,
                "error_data": {
                    "messaging_product": "whatsapp",
                    "details": "The WhatsApp Business Account associated with the app has been \
                                restricted or disabled for violating a platform policy."
                },
                "fbtrace_id": "AbC"
            }})
        );
        let with_subcode = GraphError::Code {
            http_status: 400,
            code: 130_429,
            subcode: Some(2_494_055),
            title: "Rate limit hit".to_owned(),
            message: "x".to_owned(),
        };
        assert_eq!(
            with_subcode.body("t")["error"]["error_subcode"],
            json!(2_494_055)
        );
        assert_eq!(GraphError::ServerError(503).http_status(), 503);
        assert_eq!(
            GraphError::Timeout(Duration::from_millis(5)).body("t")["error"]["is_transient"],
            json!(true)
        );
    }
}
