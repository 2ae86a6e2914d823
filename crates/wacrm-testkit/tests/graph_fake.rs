//! Meta's send-request schema as patched by `meta_send_validator`, and the Graph fake driven over
//! HTTP with reqwest as the sender drives the Cloud API.
//!
//! Patches applied (see `wacrm_testkit::openapi::META_SEND_PATCHES`, exactly the send defects of
//! `shared/README.md`): the closed branch of each message type admits the property names of
//! `BaseMessageProperties`; the template button `index` is one digit 0-9 (string or integer);
//! location coordinates are numbers; mark-as-read is added as `WacrmMarkAsReadRequest` (chosen
//! by `status`); `recipient_type`, `type` and `language.policy` are optional.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wacrm_testkit::graph::{GraphConfig, GraphError, GraphFake, KNOWN_ERRORS, REFERENCE_CHECKS};
use wacrm_testkit::openapi::{
    meta_send_validator, patch_meta_send, spec_path, specs_dir, SpecError, SpecValidator,
    META_MARK_AS_READ_SCHEMA, META_SEND_PATCHES, META_SEND_PATH, META_SPEC,
};

const NUMBER: &str = "106540352242922";
const OTHER_NUMBER: &str = "106540352242999";
const CUSTOMER: &str = "+5511987654321";

/// Document examples that still fail after patching, for defects outside `shared/README.md`
/// (which the patches are limited to), with a fragment of the error each must still produce.
/// wacrm's sender sends none of these message kinds.
const UNPATCHED_EXAMPLES: &[(&str, &str, &str)] = &[
    (
        "Send Catalog Template Message",
        "/template/components/1/sub_type: enum: ",
        "button sub_type \"CATALOG\" (upper case) is not in the enum [quick_reply, url, catalog]",
    ),
    (
        "Send Flow Template Message",
        "/template/components/0/sub_type: enum: ",
        "button sub_type \"flow\" is not in the enum [quick_reply, url, catalog]",
    ),
    (
        "Send Multi-Product Message",
        "/interactive/header/type: enum: ",
        "the example keeps the placeholder \"<HEADER_TYPE>\" where a header type belongs",
    ),
    (
        "Send Order Details Message",
        "/interactive/type: enum: ",
        "order_details (action review_and_pay) has no schema in the document",
    ),
    (
        "Send Order Status Message",
        "/interactive/type: enum: ",
        "order_status (action review_order) has no schema in the document",
    ),
];

// ---------------------------------------------------------------------------------------------
// The patched document
// ---------------------------------------------------------------------------------------------

#[test]
fn every_request_example_validates_after_patching() {
    let Some(path) = spec_path(META_SPEC) else {
        return;
    };
    let unpatched = SpecValidator::load(&path).expect("load");
    let spec = meta_send_validator().expect("specs are present");
    let examples = unpatched
        .request_examples(META_SEND_PATH, "post")
        .expect("send examples");
    assert!(examples.len() >= 50, "{} examples", examples.len());

    let mut checked = 0;
    for (name, body) in &examples {
        assert!(
            unpatched
                .validate_request(META_SEND_PATH, "post", body)
                .is_err(),
            "{name}: the unpatched document unexpectedly accepts it (a defect was fixed?)"
        );
        let result = spec.validate_request(META_SEND_PATH, "post", body);
        match UNPATCHED_EXAMPLES.iter().find(|(n, _, _)| n == name) {
            Some((_, fragment, reason)) => {
                let errors = result.expect_err(&format!(
                    "{name}: listed as failing ({reason}) but validates: drop it from the list"
                ));
                assert!(
                    errors.iter().any(|e| e.starts_with(fragment)),
                    "{name}: expected {fragment:?} ({reason}), got {errors:#?}"
                );
            }
            None => {
                if let Err(errors) = result {
                    panic!("{name}: the patched document rejects Meta's own example: {errors:#?}");
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, examples.len() - UNPATCHED_EXAMPLES.len());
    for (name, _, _) in UNPATCHED_EXAMPLES {
        assert!(
            examples.iter().any(|(n, _)| n == name),
            "{name} is no longer an example of the document"
        );
    }

    let mut documented: Vec<&str> = META_SEND_PATCHES
        .iter()
        .flat_map(|p| p.schemas.iter().copied())
        .collect();
    documented.sort_unstable();
    documented.dedup();
    let mut applied: Vec<&str> = spec.patched_schemas().iter().map(String::as_str).collect();
    applied.sort_unstable();
    assert_eq!(
        applied, documented,
        "META_SEND_PATCHES documents every patch"
    );
}

#[test]
fn each_patch_fixes_its_defect_and_nothing_else() {
    let Some(path) = spec_path(META_SPEC) else {
        return;
    };
    let unpatched = SpecValidator::load(&path).expect("load");
    let spec = meta_send_validator().expect("specs are present");
    let check = |body: &Value| spec.validate_request(META_SEND_PATH, "post", body);

    // 1. messaging_product/to/recipient_type/context are accepted beside the payload ...
    let text = json!({"messaging_product": "whatsapp", "recipient_type": "individual",
                      "to": CUSTOMER, "type": "text", "context": {"message_id": "wamid.A"},
                      "text": {"body": "hi", "preview_url": false}});
    assert_eq!(check(&text), Ok(()));
    let errors = unpatched
        .validate_request(META_SEND_PATH, "post", &text)
        .expect_err("unpatched");
    assert!(errors[0].contains("additionalProperties"), "{errors:?}");
    // ... but the message is still closed.
    let mut extra = text.clone();
    extra["colour"] = json!("blue");
    let errors = check(&extra).expect_err("unknown property");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("additionalProperties") && e.contains("colour")),
        "{errors:?}"
    );
    let errors = check(
        &json!({"messaging_product": "whatsapp", "to": CUSTOMER, "type": "text",
                               "text": {"body": "hi", "bold": true}}),
    )
    .expect_err("unknown text property");
    assert!(errors.iter().any(|e| e.contains("'bold'")), "{errors:?}");

    // 2. The button index: 0-9 as string or integer, nothing else.
    let button = |index: Value| {
        json!({"messaging_product": "whatsapp", "to": CUSTOMER, "type": "template",
               "template": {"name": "order_update", "language": {"code": "pt_BR"},
                            "components": [{"type": "button", "sub_type": "quick_reply",
                                            "index": index,
                                            "parameters": [{"type": "payload",
                                                            "payload": "STOP"}]}]}})
    };
    for ok in [json!("0"), json!("9"), json!(0), json!(2)] {
        assert_eq!(check(&button(ok.clone())), Ok(()), "index {ok}");
    }
    for bad in [json!("10"), json!("a"), json!(","), json!(10), json!(-1)] {
        assert!(check(&button(bad.clone())).is_err(), "index {bad}");
    }

    // 3. Coordinates are numbers.
    let location = |lat: Value, long: Value| {
        json!({"messaging_product": "whatsapp", "to": CUSTOMER, "type": "location",
               "location": {"latitude": lat, "longitude": long, "name": "HQ"}})
    };
    assert_eq!(check(&location(json!(-23.56), json!(-46.65))), Ok(()));
    let errors = check(&location(json!("-23.56"), json!(-46.65))).expect_err("string latitude");
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("/location/latitude: type: ")),
        "{errors:?}"
    );

    // 4. recipient_type, type and language.policy may be omitted; messaging_product, to,
    //    template name and language code may not.
    let template = json!({"messaging_product": "whatsapp", "to": CUSTOMER,
                          "template": {"name": "hello_world", "language": {"code": "en_US"}}});
    assert_eq!(check(&template), Ok(()));
    for (pointer, field) in [
        ("", "messaging_product"),
        ("", "to"),
        ("/template", "name"),
        ("/template/language", "code"),
    ] {
        let mut broken = template.clone();
        broken
            .pointer_mut(pointer)
            .and_then(Value::as_object_mut)
            .expect("object")
            .remove(field);
        assert!(check(&broken).is_err(), "without {field}");
    }
    let mut bad_policy = template.clone();
    bad_policy["template"]["language"]["policy"] = json!("fallback");
    assert!(check(&bad_policy).is_err(), "policy keeps its enum");

    // 5. Mark-as-read, and only that shape.
    let read = json!({"messaging_product": "whatsapp", "status": "read",
                      "message_id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUYzMjEzNDM2RTZGQ0MzMDJBRgA="});
    assert_eq!(check(&read), Ok(()));
    assert!(unpatched
        .validate_request(META_SEND_PATH, "post", &read)
        .is_err());
    assert_eq!(spec.validate(META_MARK_AS_READ_SCHEMA, &read), Ok(()));
    let mut typing = read.clone();
    typing["typing_indicator"] = json!({"type": "text"});
    assert_eq!(check(&typing), Ok(()));
    for broken in [
        json!({"messaging_product": "whatsapp", "status": "delivered", "message_id": "wamid.A"}),
        json!({"messaging_product": "whatsapp", "status": "read"}),
        json!({"messaging_product": "whatsapp", "status": "read", "message_id": ""}),
        json!({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.A",
               "to": CUSTOMER}),
        json!({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.A",
               "typing_indicator": {"type": "audio"}}),
    ] {
        assert!(check(&broken).is_err(), "{broken}");
    }

    // Patches refuse to apply twice: a fixed document makes them visibly stale.
    let mut twice = meta_send_validator().expect("specs are present");
    match patch_meta_send(&mut twice) {
        Err(SpecError::PatchDidNotApply { schema, .. }) => assert_eq!(schema, "TextMessage"),
        other => panic!("patching a patched document: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The fake over HTTP
// ---------------------------------------------------------------------------------------------

struct Answer {
    status: u16,
    body: Value,
}

/// The specs are present (so schema validation is on).
fn validating() -> bool {
    specs_dir().is_some()
}

async fn started() -> GraphFake {
    GraphFake::start(GraphConfig::default()).await
}

fn messages_url(fake: &GraphFake, number: &str) -> String {
    format!(
        "{}/{}/{number}/messages",
        fake.base_url(),
        fake.config().version
    )
}

async fn post_as(token: Option<&str>, url: &str, body: &Value) -> Answer {
    let mut request = reqwest::Client::new().post(url).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the fake answers");
    let status = response.status().as_u16();
    let text = response.text().await.expect("a readable body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer { status, body }
}

async fn send_from(fake: &GraphFake, number: &str, body: &Value) -> Answer {
    let token = fake.config().access_token;
    post_as(Some(&token), &messages_url(fake, number), body).await
}

async fn send(fake: &GraphFake, body: &Value) -> Answer {
    send_from(fake, NUMBER, body).await
}

fn text_to(to: &str, body: &str) -> Value {
    json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
           "type": "text", "text": {"preview_url": false, "body": body}})
}

/// Validates an answer against a component schema of Meta's document, when present.
fn assert_meta_schema(schema: &str, body: &Value) {
    let Some(path) = spec_path(META_SPEC) else {
        return;
    };
    let spec = SpecValidator::load(path).expect("Meta's document loads");
    assert_eq!(spec.validate(schema, body), Ok(()), "{schema}: {body:#}");
}

/// The bodies wacrm's sender produces, one per kind.
fn sender_bodies() -> Vec<(&'static str, Value)> {
    vec![
        (
            "text",
            text_to(CUSTOMER, "Olá! Seu pedido saiu para entrega."),
        ),
        (
            "template with named parameters",
            json!({"messaging_product": "whatsapp", "to": CUSTOMER, "type": "template",
                   "template": {"name": "order_shipped", "language": {"code": "pt_BR"},
                                "components": [{"type": "body", "parameters": [
                                    {"type": "text", "parameter_name": "first_name",
                                     "text": "Ana"},
                                    {"type": "text", "parameter_name": "order_id",
                                     "text": "A-1042"}]}]}}),
        ),
        (
            "template with positional parameters and a button",
            json!({"messaging_product": "whatsapp", "recipient_type": "individual",
                   "to": CUSTOMER, "type": "template",
                   "template": {"name": "appointment_reminder",
                                "language": {"code": "en_US", "policy": "deterministic"},
                                "components": [
                                    {"type": "header", "parameters": [
                                        {"type": "image",
                                         "image": {"link": "https://example.com/h.png"}}]},
                                    {"type": "body", "parameters": [
                                        {"type": "text", "text": "Ana"},
                                        {"type": "date_time", "date_time":
                                            {"fallback_value": "May 3, 2026"}}]},
                                    {"type": "button", "sub_type": "quick_reply", "index": "0",
                                     "parameters": [{"type": "payload", "payload": "CONFIRM"}]}]}}),
        ),
        (
            "image by link",
            json!({"messaging_product": "whatsapp", "to": CUSTOMER, "type": "image",
                   "image": {"link": "https://example.com/receipt.jpg", "caption": "Recibo"}}),
        ),
        (
            "document by id",
            json!({"messaging_product": "whatsapp", "to": CUSTOMER, "type": "document",
                   "document": {"id": "1013859600285441", "filename": "boleto.pdf",
                                "caption": "Seu boleto"}}),
        ),
        (
            "interactive reply buttons",
            json!({"messaging_product": "whatsapp", "to": CUSTOMER, "type": "interactive",
                   "interactive": {"type": "button",
                                   "body": {"text": "Confirma a entrega?"},
                                   "action": {"buttons": [
                                       {"type": "reply", "reply": {"id": "yes", "title": "Sim"}},
                                       {"type": "reply", "reply": {"id": "no", "title": "Não"}}]}}}),
        ),
        (
            "interactive list",
            json!({"messaging_product": "whatsapp", "to": CUSTOMER, "type": "interactive",
                   "interactive": {"type": "list",
                                   "header": {"type": "text", "text": "Horários"},
                                   "body": {"text": "Escolha um horário"},
                                   "footer": {"text": "Loja Centro"},
                                   "action": {"button": "Ver horários", "sections": [
                                       {"title": "Manhã", "rows": [
                                           {"id": "9", "title": "09:00"},
                                           {"id": "10", "title": "10:00",
                                            "description": "Com café"}]}]}}}),
        ),
        (
            "reaction",
            json!({"messaging_product": "whatsapp", "recipient_type": "individual",
                   "to": CUSTOMER, "type": "reaction",
                   "reaction": {"message_id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQz", "emoji": "👍"}}),
        ),
    ]
}

#[tokio::test]
async fn the_senders_bodies_are_accepted_and_recorded() {
    let fake = started().await;
    let mut wamids = Vec::new();
    for (kind, body) in sender_bodies() {
        let answer = send(&fake, &body).await;
        assert_eq!(answer.status, 200, "{kind}: {:#}", answer.body);
        assert_eq!(answer.body["messaging_product"], "whatsapp", "{kind}");
        assert_eq!(
            answer.body["contacts"],
            json!([{"input": CUSTOMER, "wa_id": "5511987654321"}]),
            "{kind}"
        );
        let wamid = answer.body["messages"][0]["id"]
            .as_str()
            .expect("a message id")
            .to_owned();
        assert!(wamid.starts_with("wamid."), "{kind}: {wamid}");
        let status = &answer.body["messages"][0]["message_status"];
        if body["type"] == "template" {
            assert_eq!(status, "accepted", "{kind}");
        } else {
            assert!(status.is_null(), "{kind}");
        }
        assert_meta_schema("MessageResponsePayload", &answer.body);
        wamids.push(wamid);
    }
    let mut unique = wamids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), wamids.len(), "wamids are unique");

    let read = json!({"messaging_product": "whatsapp", "status": "read",
                      "message_id": "wamid.INBOUND1"});
    let answer = send(&fake, &read).await;
    assert_eq!(
        (answer.status, answer.body),
        (200, json!({"success": true}))
    );
    let typing = json!({"messaging_product": "whatsapp", "status": "read",
                        "message_id": "wamid.INBOUND2", "typing_indicator": {"type": "text"}});
    assert_eq!(send(&fake, &typing).await.status, 200);

    assert_eq!(fake.violations(), Vec::<String>::new());
    let sent = fake.sent();
    assert_eq!(sent.len(), sender_bodies().len());
    for ((kind, body), (message, wamid)) in sender_bodies().iter().zip(sent.iter().zip(&wamids)) {
        assert_eq!(message.phone_number_id, NUMBER, "{kind}");
        assert_eq!(message.to, CUSTOMER, "{kind}");
        assert_eq!(&message.body, body, "{kind}");
        assert_eq!(&message.wamid, wamid, "{kind}");
    }
    assert_eq!(
        fake.mark_read(),
        vec![
            (NUMBER.to_owned(), "wamid.INBOUND1".to_owned()),
            (NUMBER.to_owned(), "wamid.INBOUND2".to_owned())
        ]
    );
    let requests = fake.requests();
    assert_eq!(requests.len(), sender_bodies().len() + 2);
    assert!(requests
        .iter()
        .all(|r| r.method == "POST" && r.status == 200));
    assert_eq!(requests[0].path, format!("/v23.0/{NUMBER}/messages"));
    assert_eq!(requests[0].body, sender_bodies()[0].1);
}

#[test]
fn the_senders_bodies_validate_against_the_patched_document() {
    let Some(spec) = meta_send_validator() else {
        return;
    };
    let read = (
        "mark-as-read",
        json!({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.INBOUND1"}),
    );
    for (kind, body) in sender_bodies().into_iter().chain([read]) {
        assert_eq!(
            spec.validate_request(META_SEND_PATH, "post", &body),
            Ok(()),
            "{kind}"
        );
    }
}

#[tokio::test]
async fn broken_bodies_are_rejected_with_a_violation() {
    let fake = started().await;
    let mut cases = vec![(
        "text without body",
        json!({"messaging_product": "whatsapp", "to": CUSTOMER, "type": "text",
               "text": {"preview_url": true}}),
        "/text: required: ",
    )];
    if validating() {
        cases.extend([
            (
                "unknown type",
                json!({"messaging_product": "whatsapp", "to": CUSTOMER, "type": "hologram",
                       "hologram": {"body": "hi"}}),
                "/type: enum: ",
            ),
            (
                "four reply buttons",
                json!({"messaging_product": "whatsapp", "to": CUSTOMER, "type": "interactive",
                       "interactive": {"type": "button", "body": {"text": "Pick"},
                                       "action": {"buttons": (1..=4).map(|i| json!(
                                           {"type": "reply",
                                            "reply": {"id": format!("b{i}"),
                                                      "title": format!("B{i}")}}))
                                           .collect::<Vec<_>>()}}}),
                "/interactive/action/buttons: maxItems: ",
            ),
            (
                "media with both id and link",
                json!({"messaging_product": "whatsapp", "to": CUSTOMER, "type": "image",
                       "image": {"id": "1", "link": "https://example.com/a.jpg"}}),
                "/image: oneOf: ",
            ),
            (
                "location with string coordinates",
                json!({"messaging_product": "whatsapp", "to": CUSTOMER, "type": "location",
                       "location": {"latitude": "-23.5", "longitude": "-46.6"}}),
                "/location/latitude: type: ",
            ),
            (
                "no recipient",
                json!({"messaging_product": "whatsapp", "type": "text", "text": {"body": "hi"}}),
                "(root): required: ",
            ),
            (
                "mark-as-read without message_id",
                json!({"messaging_product": "whatsapp", "status": "read"}),
                "(root): required: \"message_id\"",
            ),
        ]);
    }
    for (kind, body, expected) in &cases {
        let before = fake.violations().len();
        let answer = send(&fake, body).await;
        assert_eq!(answer.status, 400, "{kind}: {:#}", answer.body);
        assert_eq!(answer.body["error"]["code"], 100, "{kind}");
        assert_eq!(
            answer.body["error"]["message"], "(#100) Invalid parameter",
            "{kind}"
        );
        assert_eq!(
            answer.body["error"]["error_data"]["messaging_product"], "whatsapp",
            "{kind}"
        );
        let violations = fake.violations();
        let new = &violations[before..];
        assert!(!new.is_empty(), "{kind}: no violation recorded");
        let prefix = format!("POST /v23.0/{NUMBER}/messages: {expected}");
        assert!(
            new.iter().any(|v| v.starts_with(&prefix)),
            "{kind}: expected a violation starting {prefix:?}, got {new:#?}"
        );
        let details = answer.body["error"]["error_data"]["details"]
            .as_str()
            .expect("details");
        assert!(details.contains(expected.trim_end()), "{kind}: {details}");
        assert_meta_schema("GraphAPIError", &answer.body);
    }
    // A body that is not JSON at all.
    let token = fake.config().access_token;
    let response = reqwest::Client::new()
        .post(messages_url(&fake, NUMBER))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 400);
    assert!(fake
        .violations()
        .last()
        .is_some_and(|v| v.contains("(root): json: invalid JSON body")));

    assert!(fake.sent().is_empty());
    assert!(fake.mark_read().is_empty());
    assert!(fake.requests().iter().all(|r| r.status == 400));
    // The reference checks are documented.
    assert!(REFERENCE_CHECKS
        .iter()
        .any(|c| c.rule.contains("text.body")));
}

#[tokio::test]
async fn a_text_over_4096_characters_is_rejected_and_4096_accepted() {
    let fake = started().await;
    let limit = "ã".repeat(4096);
    assert_eq!(send(&fake, &text_to(CUSTOMER, &limit)).await.status, 200);
    let over = format!("{limit}!");
    assert_eq!(send(&fake, &text_to(CUSTOMER, &over)).await.status, 400);
    assert_eq!(fake.sent().len(), 1);
    assert_eq!(fake.violations().len(), 1, "{:?}", fake.violations());
}

#[tokio::test]
async fn a_wrong_or_missing_token_is_a_401_with_code_190() {
    let fake = started().await;
    let url = messages_url(&fake, NUMBER);
    for token in [None, Some("expired-token")] {
        let answer = post_as(token, &url, &text_to(CUSTOMER, "hi")).await;
        assert_eq!(answer.status, 401, "{token:?}");
        assert_eq!(answer.body["error"]["code"], 190, "{token:?}");
        assert_eq!(answer.body["error"]["type"], "OAuthException", "{token:?}");
        assert!(answer.body["error"]["fbtrace_id"].is_string(), "{token:?}");
        assert_meta_schema("GraphAPIError", &answer.body);
    }
    assert!(fake.sent().is_empty());
    // Unauthenticated requests are no send attempts of the business.
    assert_eq!(fake.max_rate(NUMBER, Duration::from_secs(60)), 0);
    assert_eq!(fake.requests().len(), 2);
    assert!(
        fake.violations().is_empty(),
        "a token problem is not a body violation"
    );
}

#[tokio::test]
async fn a_wrong_path_version_or_method_is_a_violation() {
    let fake = started().await;
    let token = fake.config().access_token;
    let body = text_to(CUSTOMER, "hi");
    let base = fake.base_url();
    for url in [
        format!("{base}/v22.0/{NUMBER}/messages"),
        format!("{base}/{NUMBER}/messages"),
        format!("{base}/v23.0/{NUMBER}/message"),
    ] {
        let answer = post_as(Some(&token), &url, &body).await;
        assert_eq!(answer.status, 400, "{url}");
        assert!(answer.body["error"]["code"].is_i64(), "{url}");
    }
    let response = reqwest::Client::new()
        .get(messages_url(&fake, NUMBER))
        .bearer_auth(&token)
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 400);
    let violations = fake.violations();
    assert_eq!(violations.len(), 4, "{violations:#?}");
    assert!(violations[0].contains("\"v22.0\" is not the configured Graph API version"));
    assert!(violations[3].starts_with("GET "), "{violations:#?}");
    assert!(fake.sent().is_empty());
}

#[tokio::test]
async fn each_queued_error_comes_back_in_metas_shape() {
    let fake = started().await;
    let errors = [
        (GraphError::rate_limit_hit(), 130_429, 429),
        (GraphError::pair_rate_limit_hit(), 131_056, 400),
        (GraphError::re_engagement(), 131_047, 400),
        (GraphError::undeliverable(), 131_026, 400),
        (GraphError::marketing_opt_out(), 131_050, 400),
        (GraphError::temporarily_blocked(), 368, 403),
        (GraphError::template_param_count_mismatch(), 132_000, 400),
        (GraphError::template_does_not_exist(), 132_001, 404),
        (GraphError::template_text_too_long(), 132_005, 400),
        (GraphError::template_format_policy_violated(), 132_007, 400),
        (GraphError::template_param_format_mismatch(), 132_012, 400),
        (GraphError::template_paused(), 132_015, 400),
        (GraphError::template_disabled(), 132_016, 400),
        (GraphError::access_token_expired(), 190, 401),
    ];
    assert_eq!(errors.len(), KNOWN_ERRORS.len());
    for (error, code, status) in errors {
        fake.fail_next(Some(NUMBER), error.clone());
        let answer = send(&fake, &text_to(CUSTOMER, "hi")).await;
        assert_eq!(answer.status, status, "{code}");
        let GraphError::Code { title, message, .. } = &error else {
            panic!("{code}: a coded error");
        };
        let e = &answer.body["error"];
        assert_eq!(e["code"], code);
        assert_eq!(e["message"], format!("(#{code}) {title}"));
        assert_eq!(e["type"], "OAuthException");
        assert_eq!(
            e["error_data"],
            json!({"messaging_product": "whatsapp", "details": message}),
            "{code}"
        );
        assert!(
            e.get("error_subcode").is_none(),
            "{code}: deprecated since v16.0"
        );
        assert!(e["fbtrace_id"].as_str().is_some_and(|t| !t.is_empty()));
        assert_meta_schema("GraphAPIError", &answer.body);
    }
    assert!(fake.sent().is_empty(), "failed sends are not sent");
    assert_eq!(fake.queued_errors(), 0);
    assert_eq!(send(&fake, &text_to(CUSTOMER, "hi")).await.status, 200);
    assert_eq!(fake.sent().len(), 1);
    assert!(fake.violations().is_empty());
}

#[tokio::test]
async fn queued_errors_apply_per_number_in_order_and_only_to_valid_sends() {
    let fake = started().await;
    fake.fail_next(Some(NUMBER), GraphError::re_engagement());
    fake.fail_next(None, GraphError::ServerError(503));
    fake.fail_next(
        None,
        GraphError::Code {
            http_status: 400,
            code: 130_429,
            subcode: Some(2_494_055),
            title: "Rate limit hit".to_owned(),
            message: "custom".to_owned(),
        },
    );

    // A mark-as-read and an invalid body do not consume queued errors.
    let read = json!({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.A"});
    assert_eq!(send(&fake, &read).await.status, 200);
    let no_body = json!({"messaging_product": "whatsapp", "to": CUSTOMER, "type": "text",
                         "text": {}});
    assert_eq!(send(&fake, &no_body).await.status, 400);
    assert_eq!(fake.queued_errors(), 3);

    // The other number gets the first error queued for any number.
    let answer = send_from(&fake, OTHER_NUMBER, &text_to(CUSTOMER, "a")).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.body["error"]["code"], 2);
    assert_eq!(answer.body["error"]["is_transient"], true);
    // NUMBER gets its own first.
    let answer = send(&fake, &text_to(CUSTOMER, "b")).await;
    assert_eq!(answer.body["error"]["code"], 131_047);
    let answer = send(&fake, &text_to(CUSTOMER, "c")).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body["error"]["error_subcode"], 2_494_055);
    assert_eq!(answer.body["error"]["error_data"]["details"], "custom");
    let answer = send(&fake, &text_to(CUSTOMER, "d")).await;
    assert_eq!(answer.status, 200);
    let sent = fake.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body["text"]["body"], "d");
}

#[tokio::test]
async fn a_timeout_holds_the_request_and_sends_nothing() {
    let fake = started().await;
    fake.fail_next(None, GraphError::Timeout(Duration::from_millis(600)));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(150))
        .build()
        .expect("client");
    let started_at = Instant::now();
    let error = client
        .post(messages_url(&fake, NUMBER))
        .bearer_auth(fake.config().access_token)
        .json(&text_to(CUSTOMER, "hi"))
        .send()
        .await
        .expect_err("the client times out");
    assert!(error.is_timeout(), "{error}");
    assert!(started_at.elapsed() < Duration::from_millis(550));
    // The retry goes through; the held request never produced a message.
    assert_eq!(send(&fake, &text_to(CUSTOMER, "hi")).await.status, 200);
    assert_eq!(fake.sent().len(), 1);
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![504, 200]);
    // Both attempts count for throttling.
    assert_eq!(fake.max_rate(NUMBER, Duration::from_secs(10)), 2);

    // A client that waits sees the 504.
    fake.fail_next(None, GraphError::Timeout(Duration::from_millis(50)));
    let answer = send(&fake, &text_to(CUSTOMER, "hi")).await;
    assert_eq!(answer.status, 504);
    assert_eq!(answer.body["error"]["code"], 2);
}

#[tokio::test]
async fn send_rates_are_counted_per_number_and_per_pair() {
    let fake = started().await;
    let other = "+5511912345678";
    // A burst: 3 to CUSTOMER, 2 to another customer, from NUMBER; 1 from OTHER_NUMBER.
    for to in [CUSTOMER, other, CUSTOMER, other, CUSTOMER] {
        assert_eq!(send(&fake, &text_to(to, "x")).await.status, 200);
    }
    assert_eq!(
        send_from(&fake, OTHER_NUMBER, &text_to(CUSTOMER, "x"))
            .await
            .status,
        200
    );
    let minute = Duration::from_secs(60);
    assert_eq!(fake.max_rate(NUMBER, minute), 5);
    assert_eq!(fake.max_rate(OTHER_NUMBER, minute), 1);
    assert_eq!(fake.max_rate("unknown", minute), 0);
    assert_eq!(fake.max_pair_rate(NUMBER, CUSTOMER, minute), 3);
    // Recipients are compared by digits.
    assert_eq!(fake.max_pair_rate(NUMBER, "55 (11) 91234-5678", minute), 2);
    assert_eq!(fake.max_pair_rate(OTHER_NUMBER, CUSTOMER, minute), 1);

    // Paced sends: one every 300 ms never put two in a 250 ms window.
    let paced = "+5511900000000";
    for _ in 0..3 {
        assert_eq!(send(&fake, &text_to(paced, "y")).await.status, 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        fake.max_pair_rate(NUMBER, paced, Duration::from_millis(250)),
        1
    );
    assert_eq!(fake.max_pair_rate(NUMBER, paced, Duration::from_secs(2)), 3);

    // Rejected sends count as attempts too; mark-as-read does not.
    let rejected = json!({"messaging_product": "whatsapp", "to": paced, "type": "text",
                          "text": {}});
    assert_eq!(send(&fake, &rejected).await.status, 400);
    let read = json!({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.B"});
    assert_eq!(send(&fake, &read).await.status, 200);
    assert_eq!(
        fake.max_pair_rate(NUMBER, paced, Duration::from_secs(60)),
        4
    );
}

#[tokio::test]
async fn latency_is_waited_out() {
    let fake = GraphFake::start(GraphConfig {
        latency: Duration::from_millis(120),
        ..GraphConfig::default()
    })
    .await;
    let started_at = Instant::now();
    assert_eq!(send(&fake, &text_to(CUSTOMER, "hi")).await.status, 200);
    assert!(started_at.elapsed() >= Duration::from_millis(120));
}

#[tokio::test]
async fn a_delayed_answer_comes_after_the_message_was_sent() {
    let fake = GraphFake::start(GraphConfig {
        answer_delay: Duration::from_millis(300),
        ..GraphConfig::default()
    })
    .await;
    let url = format!("{}/v23.0/{NUMBER}/messages", fake.base_url());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let gave_up = client
        .post(&url)
        .bearer_auth(fake.config().access_token)
        .json(&text_to(CUSTOMER, "hi"))
        .send()
        .await;
    assert!(gave_up.unwrap_err().is_timeout());
    // The client gave up, but the message went out all the same.
    assert_eq!(fake.sent().len(), 1);
}

#[tokio::test]
async fn a_custom_version_and_token_are_honoured() {
    let fake = GraphFake::start(GraphConfig {
        access_token: "EAAJB-custom".to_owned(),
        version: "v24.0".to_owned(),
        latency: Duration::ZERO,
        answer_delay: Duration::ZERO,
    })
    .await;
    let url = format!("{}/v24.0/{NUMBER}/messages", fake.base_url());
    let answer = post_as(Some("EAAJB-custom"), &url, &text_to(CUSTOMER, "hi")).await;
    assert_eq!(answer.status, 200);
    let url = format!("{}/v23.0/{NUMBER}/messages", fake.base_url());
    let answer = post_as(Some("EAAJB-custom"), &url, &text_to(CUSTOMER, "hi")).await;
    assert_eq!(answer.status, 400);
}
