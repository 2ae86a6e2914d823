//! The HubSpot fake, driven over HTTP with reqwest as a CRM adapter would drive HubSpot.

use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use wacrm_testkit::hubspot::{
    FakeConfig, Fault, HubSpotFake, COMMUNICATION_TO_CONTACT, CONTACT_TO_COMMUNICATION,
    CONTACT_TO_NOTE, NOTE_TO_CONTACT,
};
use wacrm_testkit::openapi::{spec_path, specs_dir, SpecValidator};

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

async fn send_as(
    fake: &HubSpotFake,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let client = reqwest::Client::new();
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
    let mut request = client.request(method, format!("{}{path}", fake.base_url()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the fake answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("a readable body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Answer {
        status,
        headers,
        body,
    }
}

async fn send(fake: &HubSpotFake, method: &str, path: &str, body: Option<Value>) -> Answer {
    let token = fake.config().token;
    send_as(fake, Some(&token), method, path, body).await
}

async fn post(fake: &HubSpotFake, path: &str, body: Value) -> Answer {
    send(fake, "POST", path, Some(body)).await
}

/// The specs are present (so request validation is on).
fn validating() -> bool {
    specs_dir().is_some()
}

/// Validates an answer against a component schema of a HubSpot document, when present.
fn assert_schema(file: &str, schema: &str, body: &Value) {
    let Some(path) = spec_path(&format!("hubspot/{file}")) else {
        return;
    };
    let spec = SpecValidator::load(path).expect("HubSpot document loads");
    assert_eq!(spec.validate(schema, body), Ok(()), "{schema}: {body:#}");
}

fn upsert(inputs: Vec<Value>) -> Value {
    json!({ "inputs": inputs })
}

fn wa(id: &str, props: Value) -> Value {
    json!({"id": id, "idProperty": "whatsapp_id", "properties": props})
}

fn search(filter_groups: Value) -> Value {
    json!({
        "filterGroups": filter_groups,
        "sorts": [],
        "properties": ["firstname", "phone", "mobilephone", "whatsapp_id"],
        "limit": 100,
        "after": "",
    })
}

fn eq(property: &str, value: &str) -> Value {
    json!({"filters": [{"propertyName": property, "operator": "EQ", "value": value}]})
}

async fn create_unique_property(fake: &HubSpotFake, name: &str) {
    let answer = post(
        fake,
        "/crm/v3/properties/contacts",
        json!({
            "name": name,
            "label": "WhatsApp ID",
            "type": "string",
            "fieldType": "text",
            "groupName": "contactinformation",
            "hasUniqueValue": true,
        }),
    )
    .await;
    assert_eq!(answer.status, 201, "{:#}", answer.body);
}

async fn started() -> HubSpotFake {
    HubSpotFake::start(FakeConfig::default()).await
}

#[tokio::test]
async fn upsert_creates_then_updates_and_never_duplicates() {
    let fake = started().await;
    create_unique_property(&fake, "whatsapp_id").await;

    let first = post(
        &fake,
        "/crm/v3/objects/contacts/batch/upsert",
        upsert(vec![wa(
            "5511987654321",
            json!({"firstname": "Ana", "phone": "+55 11 98765-4321"}),
        )]),
    )
    .await;
    assert_eq!(first.status, 200, "{:#}", first.body);
    let created = &first.body["results"][0];
    assert_eq!(created["new"], true);
    assert_eq!(created["archived"], false);
    assert_eq!(created["properties"]["whatsapp_id"], "5511987654321");
    assert_schema(
        "contacts-v3.json",
        "BatchResponseSimplePublicUpsertObject",
        &first.body,
    );
    let id = created["id"].as_str().unwrap().to_owned();

    let second = post(
        &fake,
        "/crm/v3/objects/contacts/batch/upsert",
        upsert(vec![wa("5511987654321", json!({"firstname": "Ana Maria"}))]),
    )
    .await;
    assert_eq!(second.status, 200, "{:#}", second.body);
    assert_eq!(second.body["results"][0]["new"], false);
    assert_eq!(second.body["results"][0]["id"], id.as_str());
    assert_schema(
        "contacts-v3.json",
        "BatchResponseSimplePublicUpsertObject",
        &second.body,
    );

    let contacts = fake.contacts();
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0].id, id);
    assert_eq!(contacts[0].properties["firstname"], "Ana Maria");
    assert_eq!(contacts[0].properties["phone"], "+55 11 98765-4321");
    assert!(contacts[0].updated_at >= contacts[0].created_at);

    // The same unique value twice in one batch: HubSpot rejects the whole batch.
    let duplicate = post(
        &fake,
        "/crm/v3/objects/contacts/batch/upsert",
        upsert(vec![
            wa("5511900000001", json!({"firstname": "A"})),
            wa("5511900000001", json!({"firstname": "B"})),
        ]),
    )
    .await;
    assert_eq!(duplicate.status, 400);
    assert_eq!(duplicate.body["category"], "VALIDATION_ERROR");
    assert_eq!(
        duplicate.body["message"],
        "Duplicate IDs found in batch input: [5511900000001]. IDs must be unique"
    );
    assert_eq!(duplicate.body["context"]["ids"], json!(["5511900000001"]));
    assert_eq!(fake.contacts().len(), 1);

    // A second contact can never take a unique value another contact holds.
    let other = fake.insert_contact(&[("email", "ana@example.com"), ("firstname", "Ana")]);
    let conflict = post(
        &fake,
        "/crm/v3/objects/contacts/batch/upsert",
        upsert(vec![wa(
            "5511911112222",
            json!({"email": "ANA@example.com"}),
        )]),
    )
    .await;
    assert_eq!(conflict.status, 409, "{:#}", conflict.body);
    assert_eq!(conflict.body["category"], "CONFLICT");
    assert_eq!(
        conflict.body["message"],
        format!("Contact already exists. Existing ID: {other}")
    );
    assert_eq!(fake.contacts().len(), 2);

    // Upserting by email finds the contact whatever the case.
    let by_email = post(
        &fake,
        "/crm/v3/objects/contacts/batch/upsert",
        upsert(vec![json!({
            "id": "ANA@EXAMPLE.COM", "idProperty": "email", "properties": {"lastname": "Silva"}
        })]),
    )
    .await;
    assert_eq!(by_email.status, 200, "{:#}", by_email.body);
    assert_eq!(by_email.body["results"][0]["id"], other.as_str());
    assert_eq!(by_email.body["results"][0]["new"], false);
    assert_eq!(fake.contacts().len(), 2);
    let ana = fake.contacts().into_iter().find(|c| c.id == other).unwrap();
    assert_eq!(ana.properties["email"], "ana@example.com");
    assert_eq!(ana.properties["lastname"], "Silva");
    if validating() {
        assert_eq!(fake.violations(), Vec::<String>::new());
    }
}

#[tokio::test]
async fn upsert_needs_a_unique_id_property_and_at_most_100_inputs() {
    let fake = started().await;
    let not_created = post(
        &fake,
        "/crm/v3/objects/contacts/batch/upsert",
        upsert(vec![wa("1", json!({}))]),
    )
    .await;
    assert_eq!(not_created.status, 400, "{:#}", not_created.body);
    assert!(not_created.body["message"]
        .as_str()
        .unwrap()
        .contains("PROPERTY_DOESNT_EXIST"));

    let non_unique = post(
        &fake,
        "/crm/v3/objects/contacts/batch/upsert",
        upsert(vec![
            json!({"id": "Ana", "idProperty": "firstname", "properties": {}}),
        ]),
    )
    .await;
    assert_eq!(non_unique.status, 400);
    assert!(non_unique.body["message"]
        .as_str()
        .unwrap()
        .starts_with("Unable to perform update/upsert by non-unique 0-1 property firstname"));

    let not_an_email = post(
        &fake,
        "/crm/v3/objects/contacts/batch/upsert",
        upsert(vec![
            json!({"id": "ana", "idProperty": "email", "properties": {}}),
        ]),
    )
    .await;
    assert_eq!(not_an_email.status, 400);
    assert!(not_an_email.body["message"]
        .as_str()
        .unwrap()
        .contains("INVALID_EMAIL"));

    create_unique_property(&fake, "whatsapp_id").await;
    let too_many: Vec<Value> = (0..101)
        .map(|i| wa(&format!("55119000{i:05}"), json!({})))
        .collect();
    let answer = post(
        &fake,
        "/crm/v3/objects/contacts/batch/upsert",
        upsert(too_many),
    )
    .await;
    assert_eq!(answer.status, 400);
    assert!(answer.body["message"]
        .as_str()
        .unwrap()
        .contains("maximum number of inputs supported in a batch is 100"));

    let read_only = post(
        &fake,
        "/crm/v3/objects/contacts/batch/upsert",
        upsert(vec![wa(
            "5511",
            json!({"hs_searchable_calculated_phone_number": "5511"}),
        )]),
    )
    .await;
    assert_eq!(read_only.status, 400);
    assert!(read_only.body["message"]
        .as_str()
        .unwrap()
        .contains("READ_ONLY_VALUE"));
    assert!(fake.contacts().is_empty());
}

#[tokio::test]
async fn batch_read_by_id_and_by_unique_property() {
    let fake = started().await;
    create_unique_property(&fake, "whatsapp_id").await;
    let id = fake.insert_contact(&[("whatsapp_id", "5511987654321"), ("firstname", "Ana")]);

    let by_id = post(
        &fake,
        "/crm/v3/objects/contacts/batch/read",
        json!({
            "inputs": [{"id": id}],
            "properties": ["firstname", "lastname"],
            "propertiesWithHistory": ["firstname"],
        }),
    )
    .await;
    assert_eq!(by_id.status, 200, "{:#}", by_id.body);
    let contact = &by_id.body["results"][0];
    assert_eq!(contact["properties"]["firstname"], "Ana");
    // HubSpot answers a requested property without a value with null.
    assert_eq!(contact["properties"]["lastname"], Value::Null);
    assert_eq!(
        contact["propertiesWithHistory"]["firstname"][0]["value"],
        "Ana"
    );

    let by_unique = post(
        &fake,
        "/crm/v3/objects/contacts/batch/read",
        json!({
            "inputs": [{"id": "5511987654321"}, {"id": "5500000000000"}],
            "idProperty": "whatsapp_id",
            "properties": ["firstname"],
            "propertiesWithHistory": [],
        }),
    )
    .await;
    assert_eq!(by_unique.status, 207, "{:#}", by_unique.body);
    assert_eq!(by_unique.body["results"][0]["id"], id.as_str());
    assert_eq!(by_unique.body["numErrors"], 1);
    assert_eq!(by_unique.body["errors"][0]["category"], "OBJECT_NOT_FOUND");
    assert_eq!(
        by_unique.body["errors"][0]["context"]["ids"],
        json!(["5500000000000"])
    );
    assert_schema(
        "contacts-v3.json",
        "BatchResponseSimplePublicObjectWithErrors",
        &by_unique.body,
    );
}

#[tokio::test]
async fn a_body_violating_the_spec_is_a_400_and_a_violation() {
    if !validating() {
        return;
    }
    let fake = started().await;
    create_unique_property(&fake, "whatsapp_id").await;
    // Every property value must be a string.
    let answer = post(
        &fake,
        "/crm/v3/objects/contacts/batch/upsert",
        upsert(vec![wa("5511", json!({"age": 5}))]),
    )
    .await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body["status"], "error");
    assert_eq!(answer.body["category"], "VALIDATION_ERROR");
    let violations = fake.violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].starts_with(
            "POST /crm/v3/objects/contacts/batch/upsert: /inputs/0/properties/age: type: "
        ),
        "{violations:?}"
    );

    // A search body without `sorts` and `after`.
    let answer = post(
        &fake,
        "/crm/v3/objects/contacts/search",
        json!({"filterGroups": [], "properties": [], "limit": 10}),
    )
    .await;
    assert_eq!(answer.status, 400);
    let violations = fake.violations();
    assert!(
        violations
            .iter()
            .any(|v| v.contains("/search: (root): required: ") && v.contains("after")),
        "{violations:?}"
    );

    // A communication created without `associations`.
    let answer = post(
        &fake,
        "/crm/v3/objects/communications/batch/create",
        json!({"inputs": [{"properties": {"hs_timestamp": "0"}}]}),
    )
    .await;
    assert_eq!(answer.status, 400);
    assert!(fake
        .violations()
        .iter()
        .any(|v| v.contains("/inputs/0: required: ") || v.contains("associations")));

    // Query parameters of GET operations are checked too.
    let answer = send(&fake, "GET", "/crm/v3/owners?limit=many", None).await;
    assert_eq!(answer.status, 400);
    assert!(fake.violations().iter().any(|v| v.contains("?limit: type")));
    assert!(fake.contacts().is_empty());
}

#[tokio::test]
async fn phone_search_compares_typed_text_but_calculated_digits() {
    // Seven searches in well under a second: lift the per-second search limit.
    let fake = HubSpotFake::start(FakeConfig {
        search_requests_per_s: 100,
        ..FakeConfig::default()
    })
    .await;
    let typed = fake.insert_contact(&[("firstname", "Ana"), ("phone", "+55 (11) 98765-4321")]);
    let compact = fake.insert_contact(&[("firstname", "Bia"), ("phone", "+5511987654321")]);
    let mobile =
        fake.insert_contact(&[("firstname", "Caio"), ("mobilephone", "+55 11 98765 4321")]);
    let national = fake.insert_contact(&[("firstname", "Duda"), ("phone", "011 98765-4321")]);
    let ids = |answer: &Answer| -> Vec<String> {
        answer.body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let path = "/crm/v3/objects/contacts/search";

    // EQ on `phone` compares the text as typed.
    let answer = post(&fake, path, search(json!([eq("phone", "+5511987654321")]))).await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    assert_eq!(ids(&answer), vec![compact.clone()]);
    assert_eq!(answer.body["total"], 1);
    let answer = post(
        &fake,
        path,
        search(json!([eq("phone", "+55 (11) 98765-4321")])),
    )
    .await;
    assert_eq!(ids(&answer), vec![typed.clone()]);

    // The calculated properties hold digits without the country code…
    let answer = post(
        &fake,
        path,
        search(json!([eq(
            "hs_searchable_calculated_phone_number",
            "11987654321"
        )])),
    )
    .await;
    assert_eq!(
        ids(&answer),
        vec![typed.clone(), compact.clone(), national.clone()]
    );
    // …and with it, when the number was typed with one.
    let answer = post(
        &fake,
        path,
        search(json!([
            eq(
                "hs_searchable_calculated_international_phone_number",
                "5511987654321"
            ),
            eq(
                "hs_searchable_calculated_international_mobile_number",
                "5511987654321"
            ),
        ])),
    )
    .await;
    assert_eq!(
        ids(&answer),
        vec![typed.clone(), compact.clone(), mobile.clone()]
    );
    assert_schema(
        "contacts-v3.json",
        "CollectionResponseWithTotalSimplePublicObject",
        &json!({"total": answer.body["total"], "results": []}),
    );

    let contact = fake
        .contacts()
        .into_iter()
        .find(|c| c.id == mobile)
        .unwrap();
    assert_eq!(
        contact.properties["hs_searchable_calculated_mobile_number"],
        "11987654321"
    );
    assert!(!contact
        .properties
        .contains_key("hs_searchable_calculated_phone_number"));

    // IN, HAS_PROPERTY, and filters ANDed within a group.
    let answer = post(
        &fake,
        path,
        search(json!([{"filters": [
            {"propertyName": "firstname", "operator": "IN", "values": ["ana", "caio"]},
            {"propertyName": "phone", "operator": "HAS_PROPERTY"},
        ]}])),
    )
    .await;
    assert_eq!(ids(&answer), vec![typed.clone()]);

    // Paging with `after`.
    let mut body = search(json!([{"filters": [
        {"propertyName": "firstname", "operator": "HAS_PROPERTY"}
    ]}]));
    body["limit"] = json!(3);
    let page1 = post(&fake, path, body.clone()).await;
    assert_eq!(page1.body["total"], 4);
    assert_eq!(ids(&page1).len(), 3);
    let after = page1.body["paging"]["next"]["after"].as_str().unwrap();
    body["after"] = json!(after);
    let page2 = post(&fake, path, body).await;
    assert_eq!(ids(&page2), vec![national.clone()]);
    assert!(page2.body.get("paging").is_none());
    if validating() {
        assert_eq!(fake.violations(), Vec::<String>::new());
    }
}

#[tokio::test]
async fn search_limits_are_hubspots() {
    let fake = HubSpotFake::start(FakeConfig {
        search_requests_per_s: 100,
        ..FakeConfig::default()
    })
    .await;
    let path = "/crm/v3/objects/contacts/search";
    let group = |n: usize| {
        json!({"filters": (0..n)
            .map(|i| json!({"propertyName": "firstname", "operator": "EQ", "value": i.to_string()}))
            .collect::<Vec<_>>()})
    };
    let six_groups = json!((0..6).map(|_| group(1)).collect::<Vec<_>>());
    assert_eq!(post(&fake, path, search(six_groups)).await.status, 400);
    let seven_filters = json!([group(7)]);
    assert_eq!(post(&fake, path, search(seven_filters)).await.status, 400);
    // 4 groups of 5: 20 filters in all, more than 18.
    let twenty = json!((0..4).map(|_| group(5)).collect::<Vec<_>>());
    let answer = post(&fake, path, search(twenty)).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body["category"], "VALIDATION_ERROR");
    // 3 groups of 6: 18 filters, at the limit.
    let eighteen = json!((0..3).map(|_| group(6)).collect::<Vec<_>>());
    assert_eq!(post(&fake, path, search(eighteen)).await.status, 200);
    let mut too_large = search(json!([]));
    too_large["limit"] = json!(201);
    assert_eq!(post(&fake, path, too_large).await.status, 400);
    let mut too_far = search(json!([]));
    too_far["after"] = json!("10000");
    assert_eq!(post(&fake, path, too_far).await.status, 400);
}

#[tokio::test]
async fn rate_limit_answers_hubspots_429_with_headers() {
    let fake = HubSpotFake::start(FakeConfig {
        requests_per_10s: 3,
        search_requests_per_s: 2,
        ..FakeConfig::default()
    })
    .await;
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let answer = send(&fake, "GET", "/crm/v3/owners", None).await;
        assert_eq!(answer.status, 200, "{:#}", answer.body);
        let header = |name: &str| {
            answer
                .headers
                .get(name)
                .unwrap_or_else(|| panic!("no {name}"))
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(header("X-HubSpot-RateLimit-Max"), "3");
        assert_eq!(header("X-HubSpot-RateLimit-Interval-Milliseconds"), "10000");
        assert_eq!(header("X-HubSpot-RateLimit-Daily"), "500000");
        assert!(answer
            .headers
            .contains_key("X-HubSpot-RateLimit-Daily-Remaining"));
        assert!(answer.headers.contains_key("X-HubSpot-Correlation-Id"));
        remaining.push(header("X-HubSpot-RateLimit-Remaining"));
    }
    assert_eq!(remaining, ["2", "1", "0"]);

    let limited = send(&fake, "GET", "/crm/v3/owners", None).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.body["status"], "error");
    assert_eq!(
        limited.body["message"],
        "You have reached your ten_secondly_rolling limit."
    );
    assert_eq!(limited.body["errorType"], "RATE_LIMIT");
    assert_eq!(limited.body["policyName"], "TEN_SECONDLY_ROLLING");
    assert!(limited.body["correlationId"].as_str().is_some());
    assert_eq!(limited.headers["X-HubSpot-RateLimit-Remaining"], "0");
    assert!(limited.headers.get("Retry-After").is_none());

    // Search has its own per-second limit and does not use the ten-second window.
    for _ in 0..2 {
        let answer = post(&fake, "/crm/v3/objects/contacts/search", search(json!([]))).await;
        assert_eq!(answer.status, 200, "{:#}", answer.body);
    }
    let answer = post(&fake, "/crm/v3/objects/contacts/search", search(json!([]))).await;
    assert_eq!(answer.status, 429);
    assert_eq!(answer.body["policyName"], "SECONDLY");
    assert_eq!(
        answer.body["message"],
        "You have reached your secondly limit."
    );

    assert_eq!(fake.max_requests_in_any_window(Duration::from_secs(10)), 7);
    assert_eq!(fake.count("GET", "/crm/v3/owners"), 4);
    assert_eq!(fake.count("post", "/crm/v3/objects/contacts/search"), 3);
}

#[tokio::test]
async fn the_daily_limit_answers_429_daily() {
    let fake = HubSpotFake::start(FakeConfig {
        daily_limit: Some(2),
        ..FakeConfig::default()
    })
    .await;
    let first = send(&fake, "GET", "/crm/v3/owners", None).await;
    assert_eq!(first.headers["X-HubSpot-RateLimit-Daily"], "2");
    assert_eq!(first.headers["X-HubSpot-RateLimit-Daily-Remaining"], "1");
    assert_eq!(send(&fake, "GET", "/crm/v3/owners", None).await.status, 200);
    let answer = send(&fake, "GET", "/crm/v3/owners", None).await;
    assert_eq!(answer.status, 429);
    assert_eq!(answer.body["policyName"], "DAILY");
    assert_eq!(answer.body["message"], "You have reached your daily limit.");
}

#[tokio::test]
async fn requests_without_the_token_are_401() {
    let fake = started().await;
    for token in [None, Some("wrong")] {
        let answer = send_as(&fake, token, "GET", "/crm/v3/owners", None).await;
        assert_eq!(answer.status, 401);
        assert_eq!(answer.body["status"], "error");
        assert_eq!(answer.body["category"], "INVALID_AUTHENTICATION");
        assert!(answer.body["message"]
            .as_str()
            .unwrap()
            .starts_with("Authentication credentials not found."));
        assert!(answer.body["correlationId"].as_str().is_some());
    }
    assert_eq!(fake.requests().len(), 2);
    assert_eq!(fake.max_requests_in_any_window(Duration::from_secs(10)), 0);
}

#[tokio::test]
async fn injected_faults_play_in_order_before_normal_handling() {
    let fake = started().await;
    fake.inject(Fault::ServerErrors(3));
    fake.inject(Fault::RateLimited {
        count: 2,
        retry_after_secs: 7,
        policy: "TEN_SECONDLY_ROLLING",
    });
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let answer = send(&fake, "GET", "/crm/v3/owners", None).await;
        if answer.status >= 500 {
            assert_eq!(answer.body["status"], "error");
            assert!(answer.body["correlationId"].as_str().is_some());
        }
        if answer.status == 429 {
            assert_eq!(answer.headers["Retry-After"], "7");
            assert_eq!(answer.body["policyName"], "TEN_SECONDLY_ROLLING");
            assert_eq!(answer.body["errorType"], "RATE_LIMIT");
        }
        statuses.push(answer.status);
    }
    assert_eq!(statuses, [502, 503, 500, 429, 429, 200]);

    // A validation error for the input whose body contains the text, and only for it.
    create_unique_property(&fake, "whatsapp_id").await;
    fake.inject(Fault::ValidationErrorFor("poison".to_owned()));
    let answer = post(
        &fake,
        "/crm/v3/objects/contacts/batch/upsert",
        upsert(vec![
            wa("5511000000001", json!({"firstname": "fine"})),
            wa("5511000000002", json!({"firstname": "poison pill"})),
        ]),
    )
    .await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body["category"], "VALIDATION_ERROR");
    assert_eq!(answer.body["context"]["inputIndex"], json!(["1"]));
    assert_eq!(answer.body["context"]["ids"], json!(["5511000000002"]));
    assert!(answer.body["message"]
        .as_str()
        .unwrap()
        .contains("\"name\":\"firstname\""));
    let fine = post(
        &fake,
        "/crm/v3/objects/contacts/batch/upsert",
        upsert(vec![wa("5511000000001", json!({"firstname": "fine"}))]),
    )
    .await;
    assert_eq!(fine.status, 200);

    let injected = Duration::from_millis(400);
    fake.inject(Fault::Latency(injected));
    let started_at = Instant::now();
    assert_eq!(send(&fake, "GET", "/crm/v3/owners", None).await.status, 200);
    assert!(started_at.elapsed() >= injected);

    fake.inject(Fault::ServerErrors(5));
    fake.reset_faults();
    let started_at = Instant::now();
    let answer = post(
        &fake,
        "/crm/v3/objects/contacts/batch/upsert",
        upsert(vec![wa("5511000000003", json!({"firstname": "poison"}))]),
    )
    .await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    assert!(started_at.elapsed() < injected);
    assert_eq!(fake.contacts().len(), 2);
}

fn communication(contact: &str, channel: &str, type_id: i64) -> Value {
    json!({
        "properties": {
            "hs_communication_channel_type": channel,
            "hs_communication_logged_from": "CRM",
            "hs_communication_body": "Olá!",
            "hs_timestamp": "2024-03-08T10:00:00.000Z",
        },
        "associations": [{
            "to": {"id": contact},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}],
        }],
    })
}

#[tokio::test]
async fn communications_and_notes_are_created_with_contact_associations() {
    let fake = started().await;
    let contact = fake.insert_contact(&[("firstname", "Ana")]);
    let path = "/crm/v3/objects/communications/batch/create";

    let created = post(
        &fake,
        path,
        json!({"inputs": [communication(&contact, "WHATS_APP", COMMUNICATION_TO_CONTACT)]}),
    )
    .await;
    assert_eq!(created.status, 201, "{:#}", created.body);
    assert_schema(
        "communications-v3.json",
        "BatchResponseSimplePublicObject",
        &created.body,
    );
    let message = created.body["results"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let stored = fake.communications();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].properties["hs_communication_channel_type"],
        "WHATS_APP"
    );
    assert_eq!(
        fake.associations_of("communications", &message)[0].type_id,
        COMMUNICATION_TO_CONTACT
    );
    let of_contact = fake.associations_of("contact", &contact);
    assert_eq!(of_contact.len(), 1);
    assert_eq!(of_contact[0].to_type, "communications");
    assert_eq!(of_contact[0].to_id, message);
    assert_eq!(of_contact[0].type_id, CONTACT_TO_COMMUNICATION);
    assert_eq!(of_contact[0].category, "HUBSPOT_DEFINED");

    for (bad, what) in [
        (
            communication(&contact, "WHATSAPP", COMMUNICATION_TO_CONTACT),
            "INVALID_OPTION",
        ),
        (
            communication(&contact, "WHATS_APP", NOTE_TO_CONTACT),
            "not a",
        ),
        (
            communication("999999", "WHATS_APP", COMMUNICATION_TO_CONTACT),
            "no CONTACT",
        ),
        (
            {
                let mut c = communication(&contact, "WHATS_APP", COMMUNICATION_TO_CONTACT);
                c["properties"]
                    .as_object_mut()
                    .unwrap()
                    .remove("hs_timestamp");
                c
            },
            "hs_timestamp",
        ),
    ] {
        let answer = post(&fake, path, json!({"inputs": [bad]})).await;
        assert_eq!(answer.status, 400, "{what}: {:#}", answer.body);
        assert_eq!(answer.body["category"], "VALIDATION_ERROR");
        assert!(
            answer.body["message"].as_str().unwrap().contains(what),
            "{what}: {:#}",
            answer.body
        );
    }
    assert_eq!(fake.communications().len(), 1);

    let updated = post(
        &fake,
        "/crm/v3/objects/communications/batch/update",
        json!({"inputs": [{"id": message, "properties": {"hs_communication_body": "Olá, Ana!"}}]}),
    )
    .await;
    assert_eq!(updated.status, 200, "{:#}", updated.body);
    assert_eq!(
        fake.communications()[0].properties["hs_communication_body"],
        "Olá, Ana!"
    );
    let missing = post(
        &fake,
        "/crm/v3/objects/communications/batch/update",
        json!({"inputs": [{"id": "424242", "properties": {"hs_communication_body": "x"}}]}),
    )
    .await;
    assert_eq!(missing.status, 207, "{:#}", missing.body);
    assert_eq!(missing.body["errors"][0]["category"], "OBJECT_NOT_FOUND");

    let note = post(
        &fake,
        "/crm/v3/objects/notes/batch/create",
        json!({"inputs": [{
            "properties": {"hs_note_body": "Conversation started", "hs_timestamp": "1709892000000"},
            "associations": [{
                "to": {"id": contact},
                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": NOTE_TO_CONTACT}],
            }],
        }]}),
    )
    .await;
    assert_eq!(note.status, 201, "{:#}", note.body);
    let note_id = note.body["results"][0]["id"].as_str().unwrap();
    assert_eq!(fake.notes().len(), 1);
    assert!(fake
        .associations_of("contacts", &contact)
        .iter()
        .any(|a| a.to_id == note_id && a.type_id == CONTACT_TO_NOTE));
    if validating() {
        assert_eq!(fake.violations(), Vec::<String>::new());
    }
}

#[tokio::test]
async fn associations_v4_link_existing_records_only() {
    let fake = started().await;
    let contact = fake.insert_contact(&[("firstname", "Ana")]);
    let note = post(
        &fake,
        "/crm/v3/objects/notes/batch/create",
        json!({"inputs": [{"properties": {"hs_timestamp": "1709892000000"}, "associations": []}]}),
    )
    .await;
    assert_eq!(note.status, 201, "{:#}", note.body);
    let note = note.body["results"][0]["id"].as_str().unwrap().to_owned();

    let put = send(
        &fake,
        "PUT",
        &format!("/crm/v4/objects/notes/{note}/associations/contacts/{contact}"),
        Some(json!([{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": NOTE_TO_CONTACT}])),
    )
    .await;
    assert_eq!(put.status, 201, "{:#}", put.body);
    assert_schema("associations-v4.json", "LabelsBetweenObjectPair", &put.body);

    let missing = send(
        &fake,
        "PUT",
        &format!("/crm/v4/objects/notes/{note}/associations/contacts/999999"),
        Some(json!([{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": NOTE_TO_CONTACT}])),
    )
    .await;
    assert_eq!(missing.status, 404, "{:#}", missing.body);

    let default = send(
        &fake,
        "PUT",
        &format!("/crm/v4/objects/contact/{contact}/associations/default/note/{note}"),
        None,
    )
    .await;
    assert_eq!(default.status, 200, "{:#}", default.body);
    assert_eq!(
        default.body["results"][0]["associationSpec"]["associationTypeId"],
        CONTACT_TO_NOTE
    );

    let batch = post(
        &fake,
        "/crm/v4/associations/notes/contacts/batch/create",
        json!({"inputs": [{
            "from": {"id": note}, "to": {"id": contact},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": NOTE_TO_CONTACT}],
        }]}),
    )
    .await;
    assert_eq!(batch.status, 201, "{:#}", batch.body);
    assert_schema(
        "associations-v4.json",
        "BatchResponseLabelsBetweenObjectPair",
        &batch.body,
    );

    let listed = send(
        &fake,
        "GET",
        &format!("/crm/v4/objects/contacts/{contact}/associations/notes"),
        None,
    )
    .await;
    assert_eq!(listed.status, 200, "{:#}", listed.body);
    assert_eq!(listed.body["results"][0]["toObjectId"], note.as_str());
    assert_eq!(
        listed.body["results"][0]["associationTypes"][0]["typeId"],
        CONTACT_TO_NOTE
    );
    // Idempotent: three calls, one association each way.
    assert_eq!(fake.associations_of("notes", &note).len(), 1);
    if validating() {
        assert_eq!(fake.violations(), Vec::<String>::new());
    }
}

#[tokio::test]
async fn contact_properties_are_created_once() {
    let fake = started().await;
    let missing = send(
        &fake,
        "GET",
        "/crm/v3/properties/contacts/whatsapp_id",
        None,
    )
    .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["category"], "OBJECT_NOT_FOUND");
    create_unique_property(&fake, "whatsapp_id").await;
    let found = send(
        &fake,
        "GET",
        "/crm/v3/properties/contacts/whatsapp_id",
        None,
    )
    .await;
    assert_eq!(found.status, 200);
    assert_eq!(found.body["hasUniqueValue"], true);
    assert_schema("properties-v3.json", "Property", &found.body);
    let again = post(
        &fake,
        "/crm/v3/properties/contacts",
        json!({
            "name": "whatsapp_id", "label": "WhatsApp ID", "type": "string",
            "fieldType": "text", "groupName": "contactinformation", "hasUniqueValue": true,
        }),
    )
    .await;
    assert_eq!(again.status, 409, "{:#}", again.body);
    let list = send(&fake, "GET", "/crm/v3/properties/contacts", None).await;
    assert!(list.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "hs_searchable_calculated_phone_number"));
    assert_schema(
        "properties-v3.json",
        "CollectionResponsePropertyNoPaging",
        &list.body,
    );
}

#[tokio::test]
async fn owners_and_unknown_operations() {
    let fake = started().await;
    let owner = fake.insert_owner("seller@example.com", "Sal", "Seller");
    let answer = send(
        &fake,
        "GET",
        "/crm/v3/owners?email=seller%40example.com",
        None,
    )
    .await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    assert_eq!(answer.body["results"][0]["id"], owner.as_str());
    assert_schema(
        "owners-v3.json",
        "CollectionResponsePublicOwnerForwardPaging",
        &answer.body,
    );

    let unknown = post(&fake, "/crm/v3/objects/deals/search", json!({})).await;
    assert_eq!(unknown.status, 501);
    assert!(unknown.body["message"]
        .as_str()
        .unwrap()
        .contains("not an operation the fake implements"));
    let recorded = fake.requests();
    assert_eq!(recorded.last().unwrap().status, 501);
    assert_eq!(recorded.last().unwrap().body, json!({}));
    fake.clear_requests();
    assert!(fake.requests().is_empty());
}

/// A communication carrying the custom `wacrm_wamid` property.
fn communication_with_wamid(contact: &str, wamid: &str) -> Value {
    let mut input = communication(contact, "WHATS_APP", COMMUNICATION_TO_CONTACT);
    input["properties"]["wacrm_wamid"] = json!(wamid);
    input["properties"]["hs_communication_body"] = json!(format!("message {wamid}"));
    input
}

async fn create_wamid_property(fake: &HubSpotFake) -> Answer {
    post(
        fake,
        "/crm/v3/properties/communications",
        json!({
            "name": "wacrm_wamid",
            "label": "WhatsApp message id",
            "type": "string",
            "fieldType": "text",
            "groupName": "communicationinformation",
            "hasUniqueValue": true,
        }),
    )
    .await
}

#[tokio::test]
async fn communication_properties_are_kept_like_contact_properties() {
    let fake = started().await;
    let list = send(&fake, "GET", "/crm/v3/properties/communications", None).await;
    assert_eq!(list.status, 200, "{:#}", list.body);
    assert_schema(
        "properties-v3.json",
        "CollectionResponsePropertyNoPaging",
        &list.body,
    );
    let names: Vec<&str> = list.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for builtin in [
        "hs_communication_channel_type",
        "hs_communication_logged_from",
        "hs_communication_body",
        "hs_timestamp",
        "hubspot_owner_id",
        "hs_object_id",
        "hs_createdate",
        "hs_lastmodifieddate",
    ] {
        assert!(names.contains(&builtin), "{builtin} missing from {names:?}");
    }
    // Contact properties are not communication properties.
    assert!(!names.contains(&"email"));

    let channel = send(
        &fake,
        "GET",
        "/crm/v3/properties/communications/hs_communication_channel_type",
        None,
    )
    .await;
    assert_eq!(channel.status, 200, "{:#}", channel.body);
    assert_schema("properties-v3.json", "Property", &channel.body);
    let options: Vec<&str> = channel.body["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["value"].as_str().unwrap())
        .collect();
    assert_eq!(options, ["WHATS_APP", "LINKEDIN_MESSAGE", "SMS"]);

    let missing = send(
        &fake,
        "GET",
        "/crm/v3/properties/communications/wacrm_wamid",
        None,
    )
    .await;
    assert_eq!(missing.status, 404, "{:#}", missing.body);
    assert_eq!(missing.body["category"], "OBJECT_NOT_FOUND");
    assert!(missing.body["message"].as_str().unwrap().contains("0-18"));

    let created = create_wamid_property(&fake).await;
    assert_eq!(created.status, 201, "{:#}", created.body);
    assert_schema("properties-v3.json", "Property", &created.body);
    assert_eq!(created.body["hubspotDefined"], false);
    let found = send(
        &fake,
        "GET",
        "/crm/v3/properties/communications/wacrm_wamid",
        None,
    )
    .await;
    assert_eq!(found.status, 200, "{:#}", found.body);
    assert_eq!(found.body["groupName"], "communicationinformation");
    let again = create_wamid_property(&fake).await;
    assert_eq!(again.status, 409, "{:#}", again.body);
    assert_eq!(again.body["category"], "OBJECT_ALREADY_EXISTS");
    // A communication property is not a contact property.
    let of_contacts = send(
        &fake,
        "GET",
        "/crm/v3/properties/contacts/wacrm_wamid",
        None,
    )
    .await;
    assert_eq!(of_contacts.status, 404);

    // Notes keep no properties.
    let notes = send(&fake, "GET", "/crm/v3/properties/notes", None).await;
    assert_eq!(notes.status, 501, "{:#}", notes.body);
    if validating() {
        assert_eq!(fake.violations(), Vec::<String>::new());
    }
}

#[tokio::test]
async fn communications_accept_only_defined_custom_properties() {
    let fake = started().await;
    let contact = fake.insert_contact(&[("firstname", "Ana")]);
    let create = "/crm/v3/objects/communications/batch/create";

    let unknown = post(
        &fake,
        create,
        json!({"inputs": [communication_with_wamid(&contact, "wamid.0")]}),
    )
    .await;
    assert_eq!(unknown.status, 400, "{:#}", unknown.body);
    assert_eq!(unknown.body["category"], "VALIDATION_ERROR");
    let message = unknown.body["message"].as_str().unwrap();
    assert!(message.contains("PROPERTY_DOESNT_EXIST"), "{message}");
    assert!(message.contains("wacrm_wamid"), "{message}");
    assert!(fake.communications().is_empty());

    assert_eq!(create_wamid_property(&fake).await.status, 201);
    let created = post(
        &fake,
        create,
        json!({"inputs": [communication_with_wamid(&contact, "wamid.0")]}),
    )
    .await;
    assert_eq!(created.status, 201, "{:#}", created.body);
    let id = created.body["results"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        fake.communications()[0].properties["wacrm_wamid"],
        "wamid.0"
    );

    let update = "/crm/v3/objects/communications/batch/update";
    let undefined = post(
        &fake,
        update,
        json!({"inputs": [{"id": id, "properties": {"wacrm_status": "read"}}]}),
    )
    .await;
    assert_eq!(undefined.status, 400, "{:#}", undefined.body);
    assert!(undefined.body["message"]
        .as_str()
        .unwrap()
        .contains("PROPERTY_DOESNT_EXIST"));
    let read_only = post(
        &fake,
        update,
        json!({"inputs": [{"id": id, "properties": {"hs_body_preview": "x"}}]}),
    )
    .await;
    assert_eq!(read_only.status, 400, "{:#}", read_only.body);
    assert!(read_only.body["message"]
        .as_str()
        .unwrap()
        .contains("READ_ONLY_VALUE"));

    // Defined in HubSpot's UI (no request), then writable.
    fake.insert_communication_property("wacrm_status");
    let updated = post(
        &fake,
        update,
        json!({"inputs": [{"id": id, "properties": {"wacrm_status": "read"}}]}),
    )
    .await;
    assert_eq!(updated.status, 200, "{:#}", updated.body);
    assert_schema(
        "communications-v3.json",
        "BatchResponseSimplePublicObject",
        &updated.body,
    );
    assert_eq!(fake.communications()[0].properties["wacrm_status"], "read");
    if validating() {
        assert_eq!(fake.violations(), Vec::<String>::new());
    }
}

#[tokio::test]
async fn communications_are_searched_by_in_with_paging() {
    let fake = HubSpotFake::start(FakeConfig {
        search_requests_per_s: 100,
        ..FakeConfig::default()
    })
    .await;
    let ana = fake.insert_contact(&[("firstname", "Ana")]);
    let bia = fake.insert_contact(&[("firstname", "Bia")]);
    assert_eq!(create_wamid_property(&fake).await.status, 201);
    let inputs: Vec<Value> = (0..5)
        .map(|i| {
            communication_with_wamid(if i % 2 == 0 { &ana } else { &bia }, &format!("wamid.{i}"))
        })
        .collect();
    let created = post(
        &fake,
        "/crm/v3/objects/communications/batch/create",
        json!({ "inputs": inputs }),
    )
    .await;
    assert_eq!(created.status, 201, "{:#}", created.body);
    let path = "/crm/v3/objects/communications/search";
    let wamids = |answer: &Answer| -> Vec<String> {
        answer.body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["properties"]["wacrm_wamid"].as_str().unwrap().to_owned())
            .collect()
    };

    let mut body = json!({
        "filterGroups": [{"filters": [{
            "propertyName": "wacrm_wamid",
            "operator": "IN",
            "values": ["wamid.0", "wamid.2", "wamid.4", "wamid.9"],
        }]}],
        "sorts": [],
        "properties": ["wacrm_wamid", "hs_communication_body"],
        "limit": 2,
        "after": "",
    });
    let page1 = post(&fake, path, body.clone()).await;
    assert_eq!(page1.status, 200, "{:#}", page1.body);
    assert_schema(
        "communications-v3.json",
        "CollectionResponseWithTotalSimplePublicObject",
        &page1.body,
    );
    assert_eq!(page1.body["total"], 3);
    assert_eq!(wamids(&page1), ["wamid.0", "wamid.2"]);
    assert_eq!(
        page1.body["results"][0]["properties"]["hs_communication_body"],
        "message wamid.0"
    );
    let after = page1.body["paging"]["next"]["after"].as_str().unwrap();
    body["after"] = json!(after);
    let page2 = post(&fake, path, body).await;
    assert_eq!(page2.status, 200, "{:#}", page2.body);
    assert_eq!(wamids(&page2), ["wamid.4"]);
    assert!(page2.body.get("paging").is_none());

    // Groups are ORed, filters ANDed; sorting; the defaults when no properties are asked for.
    let answer = post(
        &fake,
        path,
        json!({
            "filterGroups": [
                {"filters": [
                    {"propertyName": "wacrm_wamid", "operator": "EQ", "value": "wamid.1"},
                    {"propertyName": "hs_communication_channel_type", "operator": "EQ", "value": "WHATS_APP"},
                ]},
                {"filters": [{"propertyName": "wacrm_wamid", "operator": "EQ", "value": "wamid.3"}]},
            ],
            "sorts": ["-hs_object_id"],
            "properties": [],
            "limit": 10,
            "after": "",
        }),
    )
    .await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    assert_eq!(answer.body["total"], 2);
    let results = answer.body["results"].as_array().unwrap();
    let ids: Vec<u64> = results
        .iter()
        .map(|r| r["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(ids[0] > ids[1], "{ids:?}");
    let defaults: Vec<&String> = results[0]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(
        defaults,
        ["hs_createdate", "hs_lastmodifieddate", "hs_object_id"]
    );

    // HAS_PROPERTY finds every communication and no contact.
    let all = post(
        &fake,
        path,
        json!({
            "filterGroups": [{"filters": [{"propertyName": "wacrm_wamid", "operator": "HAS_PROPERTY"}]}],
            "sorts": [],
            "properties": ["wacrm_wamid"],
            "limit": 200,
            "after": "",
        }),
    )
    .await;
    assert_eq!(all.body["total"], 5);

    // Only communication properties can be searched, and the limits are those of contacts.
    let contact_property = post(
        &fake,
        path,
        json!({
            "filterGroups": [{"filters": [{"propertyName": "firstname", "operator": "EQ", "value": "Ana"}]}],
            "sorts": [],
            "properties": [],
            "limit": 10,
            "after": "",
        }),
    )
    .await;
    assert_eq!(contact_property.status, 400, "{:#}", contact_property.body);
    assert!(contact_property.body["message"]
        .as_str()
        .unwrap()
        .contains("no communication property \"firstname\""));
    let group = |n: usize| {
        json!({"filters": (0..n)
            .map(|i| json!({"propertyName": "wacrm_wamid", "operator": "EQ", "value": i.to_string()}))
            .collect::<Vec<_>>()})
    };
    let limited = |groups: Value, limit: u64| json!({"filterGroups": groups, "sorts": [], "properties": [], "limit": limit, "after": ""});
    let six_groups = json!((0..6).map(|_| group(1)).collect::<Vec<_>>());
    assert_eq!(post(&fake, path, limited(six_groups, 10)).await.status, 400);
    assert_eq!(
        post(&fake, path, limited(json!([group(7)]), 10))
            .await
            .status,
        400
    );
    let twenty = json!((0..4).map(|_| group(5)).collect::<Vec<_>>());
    assert_eq!(post(&fake, path, limited(twenty, 10)).await.status, 400);
    let eighteen = json!((0..3).map(|_| group(6)).collect::<Vec<_>>());
    assert_eq!(post(&fake, path, limited(eighteen, 10)).await.status, 200);
    assert_eq!(post(&fake, path, limited(json!([]), 201)).await.status, 400);
    if validating() {
        assert_eq!(fake.violations(), Vec::<String>::new());
        // The body is validated against the communications document's search operation.
        let answer = post(
            &fake,
            path,
            json!({"filterGroups": [], "properties": [], "limit": 10}),
        )
        .await;
        assert_eq!(answer.status, 400);
        assert!(
            fake.violations()
                .iter()
                .any(|v| v
                    .starts_with("POST /crm/v3/objects/communications/search: (root): required: ")),
            "{:?}",
            fake.violations()
        );
    }
}

#[tokio::test]
async fn communication_search_shares_the_per_second_search_limit() {
    let fake = HubSpotFake::start(FakeConfig {
        requests_per_10s: 1,
        search_requests_per_s: 2,
        ..FakeConfig::default()
    })
    .await;
    let empty =
        json!({"filterGroups": [], "sorts": [], "properties": [], "limit": 10, "after": ""});
    let contacts = post(&fake, "/crm/v3/objects/contacts/search", empty.clone()).await;
    assert_eq!(contacts.status, 200, "{:#}", contacts.body);
    let path = "/crm/v3/objects/communications/search";
    let first = post(&fake, path, empty.clone()).await;
    assert_eq!(first.status, 200, "{:#}", first.body);
    assert_eq!(first.body["total"], 0);
    let limited = post(&fake, path, empty).await;
    assert_eq!(limited.status, 429, "{:#}", limited.body);
    assert_eq!(limited.body["policyName"], "SECONDLY");
    // The searches did not use the ten-second window.
    assert_eq!(send(&fake, "GET", "/crm/v3/owners", None).await.status, 200);
    let ten_secondly = send(&fake, "GET", "/crm/v3/owners", None).await;
    assert_eq!(ten_secondly.status, 429);
    assert_eq!(ten_secondly.body["policyName"], "TEN_SECONDLY_ROLLING");
}

#[tokio::test]
async fn contacts_batch_update_by_id_or_unique_property() {
    let fake = started().await;
    create_unique_property(&fake, "whatsapp_id").await;
    // Contacts people created by hand, without a WhatsApp id.
    let ana = fake.insert_contact(&[("email", "ana@example.com"), ("firstname", "Ana")]);
    let bia = fake.insert_contact(&[("email", "bia@example.com"), ("phone", "+55 11 91234-5678")]);
    let path = "/crm/v3/objects/contacts/batch/update";
    let contact = |id: &str| fake.contacts().into_iter().find(|c| c.id == id).unwrap();

    let stamped = post(
        &fake,
        path,
        json!({"inputs": [{"id": ana, "properties": {"whatsapp_id": "5511987654321"}}]}),
    )
    .await;
    assert_eq!(stamped.status, 200, "{:#}", stamped.body);
    assert_schema(
        "contacts-v3.json",
        "BatchResponseSimplePublicObject",
        &stamped.body,
    );
    assert_eq!(stamped.body["results"][0]["id"], ana.as_str());
    assert_eq!(
        stamped.body["results"][0]["properties"]["whatsapp_id"],
        "5511987654321"
    );
    assert_eq!(contact(&ana).properties["whatsapp_id"], "5511987654321");
    assert_eq!(contact(&ana).properties["firstname"], "Ana");

    // By a unique property; the calculated phone properties follow a new phone.
    let by_email = post(
        &fake,
        path,
        json!({"inputs": [{
            "id": "BIA@example.com", "idProperty": "email",
            "properties": {"firstname": "Bia", "phone": "+55 11 99999-0000"},
        }]}),
    )
    .await;
    assert_eq!(by_email.status, 200, "{:#}", by_email.body);
    assert_eq!(by_email.body["results"][0]["id"], bia.as_str());
    assert_eq!(contact(&bia).properties["firstname"], "Bia");
    assert_eq!(
        contact(&bia).properties["hs_searchable_calculated_phone_number"],
        "11999990000"
    );

    // Unknown ids are reported; the others are updated.
    let partial = post(
        &fake,
        path,
        json!({"inputs": [
            {"id": ana, "properties": {"lastname": "Silva"}},
            {"id": "999999", "properties": {"lastname": "Nobody"}},
        ]}),
    )
    .await;
    assert_eq!(partial.status, 207, "{:#}", partial.body);
    assert_schema(
        "contacts-v3.json",
        "BatchResponseSimplePublicObjectWithErrors",
        &partial.body,
    );
    assert_eq!(partial.body["numErrors"], 1);
    assert_eq!(partial.body["errors"][0]["category"], "OBJECT_NOT_FOUND");
    assert_eq!(
        partial.body["errors"][0]["context"]["ids"],
        json!(["999999"])
    );
    assert_eq!(contact(&ana).properties["lastname"], "Silva");
    assert_eq!(fake.contacts().len(), 2);

    // Properties are checked as for upsert, and the batch is rejected whole.
    for (properties, what) in [
        (json!({"wacrm_nothing": "x"}), "PROPERTY_DOESNT_EXIST"),
        (json!({"createdate": "0"}), "READ_ONLY_VALUE"),
        (json!({"email": "not an email"}), "INVALID_EMAIL"),
        (json!({"lifecyclestage": "prospect"}), "INVALID_OPTION"),
    ] {
        let answer = post(
            &fake,
            path,
            json!({"inputs": [
                {"id": bia, "properties": {"lastname": "Souza"}},
                {"id": ana, "properties": properties},
            ]}),
        )
        .await;
        assert_eq!(answer.status, 400, "{what}: {:#}", answer.body);
        assert_eq!(answer.body["category"], "VALIDATION_ERROR");
        assert!(
            answer.body["message"].as_str().unwrap().contains(what),
            "{what}: {:#}",
            answer.body
        );
    }
    assert!(!contact(&bia).properties.contains_key("lastname"));

    // A unique value another contact holds.
    let taken = post(
        &fake,
        path,
        json!({"inputs": [{"id": bia, "properties": {"whatsapp_id": "5511987654321"}}]}),
    )
    .await;
    assert_eq!(taken.status, 409, "{:#}", taken.body);
    assert_eq!(
        taken.body["message"],
        format!("Contact already exists. Existing ID: {ana}")
    );
    let non_unique = post(
        &fake,
        path,
        json!({"inputs": [{"id": "Ana", "idProperty": "firstname", "properties": {}}]}),
    )
    .await;
    assert_eq!(non_unique.status, 400);
    assert!(non_unique.body["message"]
        .as_str()
        .unwrap()
        .starts_with("Unable to perform update/upsert by non-unique 0-1 property firstname"));
    let duplicate = post(
        &fake,
        path,
        json!({"inputs": [
            {"id": ana, "properties": {"firstname": "A"}},
            {"id": ana, "properties": {"firstname": "B"}},
        ]}),
    )
    .await;
    assert_eq!(duplicate.status, 400);
    assert_eq!(duplicate.body["context"]["ids"], json!([ana.clone()]));
    let too_many: Vec<Value> = (0..101)
        .map(|_| json!({"id": ana, "properties": {}}))
        .collect();
    let answer = post(&fake, path, json!({ "inputs": too_many })).await;
    assert_eq!(answer.status, 400);
    assert!(answer.body["message"]
        .as_str()
        .unwrap()
        .contains("maximum number of inputs supported in a batch is 100"));
    assert_eq!(contact(&ana).properties["firstname"], "Ana");
    if validating() {
        assert_eq!(fake.violations(), Vec::<String>::new());
        // The document requires `properties` on every input.
        let answer = post(&fake, path, json!({"inputs": [{"id": ana}]})).await;
        assert_eq!(answer.status, 400);
        assert!(fake
            .violations()
            .iter()
            .any(|v| v.starts_with("POST /crm/v3/objects/contacts/batch/update: ")));
    }
}

#[tokio::test]
async fn faults_after_the_write_apply_the_request_and_lose_its_answer() {
    let fake = started().await;
    create_unique_property(&fake, "whatsapp_id").await;
    let path = "/crm/v3/objects/contacts/batch/upsert";

    // Every answer lost: the upserts are applied all the same, the answers cycle 502/503/500.
    fake.inject(Fault::AppliedThenServerErrorRate(100));
    let mut statuses = Vec::new();
    for i in 1..=3 {
        let answer = post(
            &fake,
            path,
            upsert(vec![wa(
                &format!("551100000000{i}"),
                json!({"firstname": "x"}),
            )]),
        )
        .await;
        assert_eq!(answer.body["status"], "error");
        statuses.push(answer.status);
    }
    assert_eq!(statuses, [502, 503, 500]);
    assert_eq!(
        fake.contacts().len(),
        3,
        "applied before the answer was lost"
    );
    assert_eq!(fake.lost_answers(), 3);
    // A request that fails on its own keeps its own answer: nothing was applied.
    let refused = send_as(&fake, Some("wrong-token"), "GET", "/crm/v3/owners", None).await;
    assert_eq!(refused.status, 401);
    assert_eq!(fake.lost_answers(), 3);

    // About half of the answers lost at 50 % (80 requests: within the ten-second limit).
    fake.reset_faults();
    fake.inject(Fault::AppliedThenServerErrorRate(50));
    let mut lost = 0;
    for _ in 0..80 {
        if send(&fake, "GET", "/crm/v3/owners", None).await.status >= 500 {
            lost += 1;
        }
    }
    assert!((20..=60).contains(&lost), "{lost} of 80 lost at 50 %");
    assert_eq!(fake.lost_answers(), 3 + lost);
    fake.reset_faults();

    // The next request is applied, then answered only after the client gave up.
    fake.inject(Fault::AppliedThenDelay(Duration::from_millis(1500)));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started_at = Instant::now();
    let outcome = client
        .post(format!("{}{path}", fake.base_url()))
        .bearer_auth(fake.config().token)
        .json(&upsert(vec![wa(
            "5511000000009",
            json!({"firstname": "late"}),
        )]))
        .send()
        .await;
    assert!(outcome.unwrap_err().is_timeout());
    assert!(started_at.elapsed() < Duration::from_millis(1500));
    assert_eq!(
        fake.contacts().len(),
        4,
        "the write happened before the timeout"
    );
    let recorded = fake.requests();
    assert_eq!(recorded.last().unwrap().status, 200, "recorded as applied");
    // Played once: the next request is answered at once.
    let started_at = Instant::now();
    assert_eq!(send(&fake, "GET", "/crm/v3/owners", None).await.status, 200);
    assert!(started_at.elapsed() < Duration::from_millis(1000));
}

#[tokio::test]
async fn gdpr_delete_and_archive_remove_records_and_their_associations() {
    let fake = started().await;
    let contact = fake.insert_contact(&[("firstname", "Ana"), ("phone", "+55 11 98765-4321")]);
    let other = fake.insert_contact(&[("firstname", "Bia")]);
    let created = post(
        &fake,
        "/crm/v3/objects/communications/batch/create",
        json!({"inputs": [
            communication(&contact, "WHATS_APP", COMMUNICATION_TO_CONTACT),
            communication(&other, "WHATS_APP", COMMUNICATION_TO_CONTACT),
        ]}),
    )
    .await;
    assert_eq!(created.status, 201, "{:#}", created.body);
    let ids: Vec<String> = created.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let of_contact = fake
        .associations_of("contacts", &contact)
        .into_iter()
        .map(|a| a.to_id)
        .collect::<Vec<_>>();
    let (mine, theirs) = if of_contact.contains(&ids[0]) {
        (ids[0].clone(), ids[1].clone())
    } else {
        (ids[1].clone(), ids[0].clone())
    };
    assert!(fake.holds("98765-4321"));

    // Archive: the communication and its associations are gone; an unknown id is no error.
    let path = "/crm/v3/objects/communications/batch/archive";
    let archived = post(
        &fake,
        path,
        json!({"inputs": [{"id": mine}, {"id": "999999"}]}),
    )
    .await;
    assert_eq!(archived.status, 204, "{:#}", archived.body);
    assert_eq!(archived.body, Value::Null);
    assert_eq!(fake.communications().len(), 1);
    assert_eq!(fake.communications()[0].id, theirs);
    assert!(fake.associations_of("contacts", &contact).is_empty());
    assert_eq!(
        post(&fake, path, json!({"inputs": [{"id": mine}]}))
            .await
            .status,
        204
    );

    // GDPR delete by id: the contact is gone, a second one answers 404.
    let path = "/crm/v3/objects/contacts/gdpr-delete";
    let deleted = post(&fake, path, json!({"objectId": contact})).await;
    assert_eq!(deleted.status, 204, "{:#}", deleted.body);
    assert!(!fake.holds("98765-4321"));
    assert_eq!(fake.contacts().len(), 1);
    let again = post(&fake, path, json!({"objectId": contact})).await;
    assert_eq!(again.status, 404);
    assert_eq!(again.body["category"], "OBJECT_NOT_FOUND");

    // By a unique property; a property that is not unique is refused.
    create_unique_property(&fake, "whatsapp_id").await;
    let upserted = post(
        &fake,
        "/crm/v3/objects/contacts/batch/upsert",
        upsert(vec![wa("5511987650000", json!({"firstname": "Caio"}))]),
    )
    .await;
    assert!(upserted.status < 300, "{:#}", upserted.body);
    let refused = post(
        &fake,
        path,
        json!({"objectId": "Caio", "idProperty": "firstname"}),
    )
    .await;
    assert_eq!(refused.status, 400);
    let deleted = post(
        &fake,
        path,
        json!({"objectId": "5511987650000", "idProperty": "whatsapp_id"}),
    )
    .await;
    assert_eq!(deleted.status, 204, "{:#}", deleted.body);
    assert!(!fake.holds("5511987650000"));

    if validating() {
        // The documents require `objectId`, and every archive input's `id`.
        let before = fake.violations().len();
        assert_eq!(
            post(&fake, path, json!({"idProperty": "email"}))
                .await
                .status,
            400
        );
        let archive = "/crm/v3/objects/communications/batch/archive";
        assert_eq!(
            post(&fake, archive, json!({"inputs": [{}]})).await.status,
            400
        );
        let violations = fake.violations();
        assert_eq!(violations.len(), before + 2, "{violations:?}");
        assert!(violations
            .iter()
            .any(|v| v.contains("gdpr-delete") && v.contains("objectId")));
        assert!(violations.iter().any(|v| v.contains("batch/archive")));
    }
    assert_eq!(fake.communications().len(), 1);
}
