//! The Graph API's send endpoint: `POST {base}/{version}/{phone_number_id}/messages`.
//!
//! [`message_body`] writes a core [`SendRequest`] as the body Meta's document describes;
//! [`GraphClient`] sends it (or a mark-as-read) and reads the answer; [`GraphError::disposition`]
//! classifies a failure by Meta's error code — never by its text, as Meta advises — into retry,
//! permanent, opt-out or token failure.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Map, Value};
use wacrm_core::outbound::{
    Interactive, MediaRef, OutboundContent, SendRequest, TemplateComponentKind, TemplateParameter,
};
use wacrm_core::{ErrorClass, MetaError};

use crate::config::WhatsAppConfig;

fn media(m: &MediaRef, filename: Option<&String>) -> Value {
    let mut o = Map::new();
    if let Some(id) = &m.id {
        o.insert("id".into(), json!(id));
    }
    if let Some(link) = &m.link {
        o.insert("link".into(), json!(link));
    }
    if let Some(caption) = &m.caption {
        o.insert("caption".into(), json!(caption));
    }
    if let Some(filename) = filename {
        o.insert("filename".into(), json!(filename));
    }
    Value::Object(o)
}

fn with_name(mut value: Value, name: &Option<String>) -> Value {
    if let (Some(name), Some(o)) = (name, value.as_object_mut()) {
        o.insert("parameter_name".into(), json!(name));
    }
    value
}

fn parameter(p: &TemplateParameter) -> Value {
    match p {
        TemplateParameter::Text {
            text,
            parameter_name,
        } => with_name(json!({"type": "text", "text": text}), parameter_name),
        TemplateParameter::Currency {
            fallback_value,
            code,
            amount_1000,
            parameter_name,
        } => with_name(
            json!({"type": "currency", "currency": {
                "fallback_value": fallback_value, "code": code, "amount_1000": amount_1000}}),
            parameter_name,
        ),
        TemplateParameter::DateTime {
            fallback_value,
            parameter_name,
        } => with_name(
            json!({"type": "date_time", "date_time": {"fallback_value": fallback_value}}),
            parameter_name,
        ),
        TemplateParameter::Image { image } => json!({"type": "image", "image": media(image, None)}),
        TemplateParameter::Video { video } => json!({"type": "video", "video": media(video, None)}),
        TemplateParameter::Document { document } => {
            json!({"type": "document", "document": media(document, None)})
        }
        TemplateParameter::Payload { payload } => json!({"type": "payload", "payload": payload}),
        TemplateParameter::CouponCode { coupon_code } => {
            json!({"type": "coupon_code", "coupon_code": coupon_code})
        }
    }
}

fn text_part(text: &Option<String>) -> Option<Value> {
    text.as_ref().map(|t| json!({"text": t}))
}

fn interactive(i: &Interactive) -> Value {
    let (kind, body, header, footer, action) = match i {
        Interactive::Buttons {
            body,
            header,
            footer,
            buttons,
        } => (
            "button",
            body,
            header,
            footer,
            json!({"buttons": buttons.iter().map(|b| json!({
                "type": "reply", "reply": {"id": b.id, "title": b.title}})).collect::<Vec<_>>()}),
        ),
        Interactive::List {
            body,
            header,
            footer,
            button,
            sections,
        } => (
            "list",
            body,
            header,
            footer,
            json!({"button": button, "sections": sections.iter().map(|s| {
                let mut section = Map::new();
                if let Some(title) = &s.title {
                    section.insert("title".into(), json!(title));
                }
                section.insert("rows".into(), Value::Array(s.rows.iter().map(|r| {
                    let mut row = json!({"id": r.id, "title": r.title});
                    if let (Some(d), Some(o)) = (&r.description, row.as_object_mut()) {
                        o.insert("description".into(), json!(d));
                    }
                    row
                }).collect()));
                Value::Object(section)
            }).collect::<Vec<_>>()}),
        ),
    };
    let mut o = Map::new();
    o.insert("type".into(), json!(kind));
    if let Some(h) = header {
        o.insert("header".into(), json!({"type": "text", "text": h}));
    }
    o.insert("body".into(), json!({"text": body}));
    if let Some(f) = text_part(footer) {
        o.insert("footer".into(), f);
    }
    o.insert("action".into(), action);
    Value::Object(o)
}

/// The body of `POST /{phone_number_id}/messages` for a send request.
pub fn message_body(request: &SendRequest) -> Value {
    let (kind, object) = match &request.content {
        OutboundContent::Text { body, preview_url } => {
            ("text", json!({"body": body, "preview_url": preview_url}))
        }
        OutboundContent::Template {
            name,
            language,
            components,
        } => {
            let mut template = json!({
                "name": name,
                "language": {"policy": "deterministic", "code": language},
            });
            if !components.is_empty() {
                let components: Vec<Value> = components
                    .iter()
                    .map(|c| {
                        let mut o = Map::new();
                        let kind = match c.kind {
                            TemplateComponentKind::Header => "header",
                            TemplateComponentKind::Body => "body",
                            TemplateComponentKind::Button => "button",
                        };
                        o.insert("type".into(), json!(kind));
                        if let Some(sub_type) = &c.sub_type {
                            o.insert("sub_type".into(), json!(sub_type));
                        }
                        if let Some(index) = c.index {
                            o.insert("index".into(), json!(index.to_string()));
                        }
                        o.insert(
                            "parameters".into(),
                            Value::Array(c.parameters.iter().map(parameter).collect()),
                        );
                        Value::Object(o)
                    })
                    .collect();
                if let Some(o) = template.as_object_mut() {
                    o.insert("components".into(), Value::Array(components));
                }
            }
            ("template", template)
        }
        OutboundContent::Image { media: m } => ("image", media(m, None)),
        OutboundContent::Video { media: m } => ("video", media(m, None)),
        OutboundContent::Audio { media: m } => ("audio", media(m, None)),
        OutboundContent::Sticker { media: m } => ("sticker", media(m, None)),
        OutboundContent::Document { media: m, filename } => {
            ("document", media(m, filename.as_ref()))
        }
        OutboundContent::Interactive { interactive: i } => ("interactive", interactive(i)),
        OutboundContent::Reaction { message_id, emoji } => (
            "reaction",
            json!({"message_id": message_id, "emoji": emoji}),
        ),
    };
    let mut body = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": request.to,
        "type": kind,
    });
    if let Some(o) = body.as_object_mut() {
        o.insert(kind.into(), object);
        if let Some(reply_to) = &request.reply_to {
            o.insert("context".into(), json!({"message_id": reply_to}));
        }
    }
    body
}

/// The body of a mark-as-read.
pub fn mark_read_body(wamid: &str) -> Value {
    json!({"messaging_product": "whatsapp", "status": "read", "message_id": wamid})
}

/// What to do about a failed call.
///
/// The first question is whether Meta may have acted on the request: Meta has no idempotency
/// key for sends, so a send repeated after an outcome nobody knows is a second WhatsApp message
/// to the customer. Only outcomes that say nothing was sent are retried; the table, with its
/// sources, is in docs/sending.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// The number's or the app's throughput was exceeded (130429, 131057, 4, 80007, or a 429
    /// without an error object): nothing was sent; wait, retry.
    RetryThroughput,
    /// Too many messages to this recipient (131056): nothing was sent; wait longer, retry.
    RetryPair,
    /// Meta said it is temporarily unable and sent nothing (2, 131000, 131016), or the request
    /// never reached Meta (a failed connect): back off, retry.
    RetryTransient,
    /// Meta may or may not have sent it: a timeout or a reset after the request was written, a
    /// 5xx without a code that says nothing was done, an unreadable 2xx. Recorded as `unknown`
    /// and never sent again automatically.
    Unknown,
    /// The message will never be sent as asked (window closed, undeliverable, template errors,
    /// policy blocks, invalid parameters): report it on the request.
    Permanent,
    /// The recipient stopped marketing messages (131050): report it and record the opt-out.
    OptedOut,
    /// The access token is invalid or expired (190, or OAuth code 0/102): nothing will be sent
    /// from this number until it is replaced; alert.
    TokenInvalid,
}

impl Disposition {
    /// Whether trying again can succeed without risking a second message.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Disposition::RetryThroughput | Disposition::RetryPair | Disposition::RetryTransient
        )
    }

    /// The error class.
    pub fn class(self) -> ErrorClass {
        match self {
            d if d.is_retryable() => ErrorClass::Retry,
            Disposition::TokenInvalid => ErrorClass::Fatal,
            _ => ErrorClass::DeadLetter,
        }
    }
}

/// A failed Graph API call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    /// Meta answered with an error object.
    #[error("WhatsApp answered {http_status} with error {}", .error.code)]
    Api {
        /// The HTTP status.
        http_status: u16,
        /// The error as Meta reported it, its texts scrubbed
        /// ([`wacrm_core::redact::scrub`]: no phone, e-mail or quoted content).
        error: MetaError,
    },
    /// Meta answered with a status and a body that is not its error shape.
    #[error("WhatsApp answered {http_status} without an error object")]
    Status {
        /// The HTTP status.
        http_status: u16,
    },
    /// The request never reached Meta (the connection could not be made): nothing was sent.
    #[error("WhatsApp could not be reached: {0}")]
    NotSent(String),
    /// The request was written but no complete answer came (a timeout, a reset connection):
    /// it may or may not have been sent.
    #[error("no answer from WhatsApp after the request was sent: {0}")]
    NoAnswer(String),
    /// A 2xx answer without a readable message id: it may have been sent.
    #[error("WhatsApp's answer has no message id: {0}")]
    BadAnswer(String),
    /// No access token is configured for the number.
    #[error("no access token configured for phone number id {0}")]
    NoToken(String),
    /// The business number is not a phone number id (digits only); nothing was sent.
    #[error("{0:?} is not a phone number id")]
    InvalidNumber(String),
}

impl GraphError {
    /// Meta's error code, when it gave one.
    pub fn code(&self) -> Option<i64> {
        match self {
            GraphError::Api { error, .. } => Some(error.code),
            _ => None,
        }
    }

    /// What to do about it, by Meta's code first and the HTTP status second.
    pub fn disposition(&self) -> Disposition {
        match self {
            GraphError::Api { http_status, error } => classify(error.code, *http_status),
            GraphError::Status { http_status: 429 } => Disposition::RetryThroughput,
            GraphError::Status { http_status: 401 } => Disposition::TokenInvalid,
            GraphError::Status { http_status } if *http_status >= 500 => Disposition::Unknown,
            GraphError::Status { .. } => Disposition::Permanent,
            GraphError::NotSent(_) => Disposition::RetryTransient,
            GraphError::NoAnswer(_) | GraphError::BadAnswer(_) => Disposition::Unknown,
            GraphError::NoToken(_) => Disposition::TokenInvalid,
            GraphError::InvalidNumber(_) => Disposition::Permanent,
        }
    }

    /// The error as a core [`MetaError`], for the request's record.
    pub fn as_meta_error(&self) -> MetaError {
        match self {
            GraphError::Api { error, .. } => error.clone(),
            other => MetaError {
                code: 0,
                title: Some("wacrm".into()),
                message: Some(other.to_string()),
                details: None,
            },
        }
    }
}

/// Classifies a Meta error code (and, for codes not listed, the HTTP status).
///
/// Retried: codes whose meaning is "nothing was done, try later" — rate limits (130429,
/// 131056, 131057, 4, 80007) and Meta's temporary failures (2 "temporarily unavailable or
/// overloaded", 131000 "message failed to send", 131016 "service unavailable"). An unlisted
/// code on a 5xx says nothing about whether the message went out: `Unknown`. An unlisted code
/// on a 4xx is a refusal: `Permanent`.
pub fn classify(code: i64, http_status: u16) -> Disposition {
    match code {
        130_429 | 131_057 | 4 | 80_007 => Disposition::RetryThroughput,
        131_056 => Disposition::RetryPair,
        2 | 131_000 | 131_016 => Disposition::RetryTransient,
        131_050 => Disposition::OptedOut,
        190 | 0 | 102 => Disposition::TokenInvalid,
        3
        | 131_047
        | 131_026
        | 368
        | 131_051
        | 131_052
        | 131_053
        | 131_031
        | 131_042
        | 100
        | 10
        | 200..=299
        | 132_000..=132_099
        | 133_010 => Disposition::Permanent,
        _ if http_status >= 500 => Disposition::Unknown,
        _ => Disposition::Permanent,
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorObject,
}

#[derive(Deserialize)]
struct ErrorObject {
    code: i64,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    error_user_title: Option<String>,
    #[serde(default)]
    error_data: Option<ErrorData>,
}

#[derive(Deserialize)]
struct ErrorData {
    #[serde(default)]
    details: Option<String>,
}

#[derive(Deserialize)]
struct SendAnswer {
    #[serde(default)]
    messages: Vec<SentId>,
}

#[derive(Deserialize)]
struct SentId {
    id: String,
}

/// Calls the Graph API's messages endpoint.
#[derive(Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    config: WhatsAppConfig,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field("base_url", &self.config.graph_base_url)
            .field("version", &self.config.graph_version)
            .finish_non_exhaustive()
    }
}

impl GraphClient {
    /// A client for the configured base URL, version and tokens.
    pub fn new(config: WhatsAppConfig) -> Result<Self, GraphError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.request_timeout_ms))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| GraphError::NotSent(format!("HTTP client: {e}")))?;
        Ok(GraphClient { http, config })
    }

    /// `{base}/{version}/{phone_number_id}/messages`, built from path segments: a number is
    /// digits only, and even so it is percent-encoded as one segment, so no input can aim the
    /// business token at another Graph path.
    fn url(&self, phone_number_id: &str) -> Result<reqwest::Url, GraphError> {
        if !wacrm_core::conversation::is_phone_number_id(phone_number_id) {
            return Err(GraphError::InvalidNumber(phone_number_id.to_owned()));
        }
        let mut url = reqwest::Url::parse(&self.config.graph_base_url)
            .map_err(|e| GraphError::NotSent(format!("graph_base_url: {e}")))?;
        url.path_segments_mut()
            .map_err(|()| GraphError::NotSent("graph_base_url cannot have a path".into()))?
            .pop_if_empty()
            .push(&self.config.graph_version)
            .push(phone_number_id)
            .push("messages");
        Ok(url)
    }

    /// Sends a message; the wamid WhatsApp gave it.
    pub async fn send(&self, phone_number_id: &str, body: &Value) -> Result<String, GraphError> {
        let answer = self.post(phone_number_id, body).await?;
        // The parser's message quotes the value it did not expect (the answer echoes the
        // recipient).
        let parsed: SendAnswer = serde_json::from_slice(&answer)
            .map_err(|e| GraphError::BadAnswer(wacrm_core::redact::scrub(&e.to_string())))?;
        parsed
            .messages
            .into_iter()
            .next()
            .map(|m| m.id)
            .ok_or_else(|| GraphError::BadAnswer("no messages[0].id".into()))
    }

    /// Marks an inbound message as read.
    pub async fn mark_read(&self, phone_number_id: &str, wamid: &str) -> Result<(), GraphError> {
        self.post(phone_number_id, &mark_read_body(wamid))
            .await
            .map(drop)
    }

    async fn post(&self, phone_number_id: &str, body: &Value) -> Result<Vec<u8>, GraphError> {
        let token = self
            .config
            .access_token_for(phone_number_id)
            .ok_or_else(|| GraphError::NoToken(phone_number_id.to_owned()))?;
        let url = self.url(phone_number_id)?;
        let response = self
            .http
            .post(url)
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .map_err(|e| {
                // A failed connect (a connect timeout included) means nothing reached Meta;
                // anything later may have reached it.
                if e.is_connect() || e.is_builder() {
                    GraphError::NotSent(e.without_url().to_string())
                } else {
                    GraphError::NoAnswer(e.without_url().to_string())
                }
            })?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| GraphError::NoAnswer(e.without_url().to_string()))?;
        if (200..300).contains(&status) {
            return Ok(bytes.to_vec());
        }
        // Meta's texts become ours here, scrubbed: `details` may quote the recipient or the
        // message. The code is what the sender acts on and stays whole.
        let scrub = |text: Option<String>| text.as_deref().map(wacrm_core::redact::scrub);
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(ErrorBody { error }) => Err(GraphError::Api {
                http_status: status,
                error: MetaError {
                    code: error.code,
                    title: scrub(error.error_user_title),
                    message: scrub(error.message),
                    details: scrub(error.error_data.and_then(|d| d.details)),
                },
            }),
            Err(_) => Err(GraphError::Status {
                http_status: status,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_classify_by_whether_meta_may_have_sent() {
        assert_eq!(classify(130_429, 429), Disposition::RetryThroughput);
        assert_eq!(classify(4, 400), Disposition::RetryThroughput);
        assert_eq!(classify(80_007, 400), Disposition::RetryThroughput);
        assert_eq!(classify(131_056, 400), Disposition::RetryPair);
        for code in [
            131_047, 131_026, 368, 132_000, 132_001, 132_005, 132_007, 132_015,
        ] {
            assert_eq!(classify(code, 400), Disposition::Permanent, "{code}");
        }
        assert_eq!(classify(131_050, 400), Disposition::OptedOut);
        assert_eq!(classify(190, 401), Disposition::TokenInvalid);
        assert_eq!(classify(2, 503), Disposition::RetryTransient);
        assert_eq!(classify(131_016, 503), Disposition::RetryTransient);
        // A 5xx whose code does not say nothing was done: nobody knows whether it went out.
        assert_eq!(classify(999_999, 502), Disposition::Unknown);
        assert_eq!(classify(1, 500), Disposition::Unknown);
        // A permissions problem answered 500 is a refusal all the same.
        assert_eq!(classify(3, 500), Disposition::Permanent);
        assert_eq!(classify(999_999, 400), Disposition::Permanent);
        assert_eq!(
            GraphError::NoAnswer("timeout".into()).disposition(),
            Disposition::Unknown
        );
        assert_eq!(
            GraphError::BadAnswer("not json".into()).disposition(),
            Disposition::Unknown
        );
        assert_eq!(
            GraphError::Status { http_status: 502 }.disposition(),
            Disposition::Unknown
        );
        assert_eq!(
            GraphError::Status { http_status: 429 }.disposition(),
            Disposition::RetryThroughput
        );
        assert!(GraphError::NotSent("refused".into())
            .disposition()
            .is_retryable());
    }

    fn client(base: &str) -> GraphClient {
        GraphClient::new(WhatsAppConfig {
            graph_base_url: base.to_owned(),
            access_token: Some("t".into()),
            ..WhatsAppConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn urls_are_built_from_segments_and_numbers_are_digits() {
        let c = client("https://graph.example/");
        assert_eq!(
            c.url("106540352242922").unwrap().as_str(),
            "https://graph.example/v23.0/106540352242922/messages"
        );
        for bad in [
            "123/subscribed_apps?override_callback_uri=x#",
            "",
            "12a",
            "../me",
            "1%2F2",
        ] {
            assert_eq!(
                c.url(bad),
                Err(GraphError::InvalidNumber(bad.to_owned())),
                "{bad}"
            );
        }
        let nested = client("http://127.0.0.1:9/graph");
        assert_eq!(
            nested.url("1").unwrap().as_str(),
            "http://127.0.0.1:9/graph/v23.0/1/messages"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_not_sent_and_retried() {
        // A port nothing listens on: the connect fails, so nothing reached Meta.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let error = client(&format!("http://127.0.0.1:{port}"))
            .send("1", &serde_json::json!({}))
            .await
            .unwrap_err();
        assert!(matches!(error, GraphError::NotSent(_)), "{error:?}");
        assert!(error.disposition().is_retryable());
    }
}
