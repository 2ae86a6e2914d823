//! The Pipedrive fake, driven over HTTP with reqwest as a CRM adapter would drive Pipedrive.

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use wacrm_testkit::openapi::{spec_path, specs_dir, SpecValidator};
use wacrm_testkit::pipedrive::{FakeConfig, PipedriveFake, SPEC_PATCHES};

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }
}

async fn send_as(
    fake: &PipedriveFake,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let client = reqwest::Client::new();
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
    let mut request = client.request(method, format!("{}{path}", fake.base_url()));
    if let Some(token) = token {
        request = request.header("x-api-token", token);
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

async fn send(fake: &PipedriveFake, method: &str, path: &str, body: Option<Value>) -> Answer {
    let token = fake.config().token;
    send_as(fake, Some(&token), method, path, body).await
}

async fn get(fake: &PipedriveFake, path: &str) -> Answer {
    send(fake, "GET", path, None).await
}

async fn post(fake: &PipedriveFake, path: &str, body: Value) -> Answer {
    send(fake, "POST", path, Some(body)).await
}

/// Creates a varchar person field; returns its key.
async fn create_field(fake: &PipedriveFake, name: &str) -> String {
    let answer = post(
        fake,
        "/api/v1/personFields",
        json!({"name": name, "field_type": "varchar", "add_visible_flag": false}),
    )
    .await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    answer.body["data"]["key"]
        .as_str()
        .expect("a key")
        .to_owned()
}

/// Creates a person; returns its id.
async fn create_person(fake: &PipedriveFake, body: Value) -> i64 {
    let answer = post(fake, "/api/v2/persons", body).await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    answer.body["data"]["id"].as_i64().expect("an id")
}

/// The specs are present (so request validation is on).
fn validating() -> bool {
    specs_dir().is_some()
}

fn ids(body: &Value) -> Vec<i64> {
    body["data"]
        .as_array()
        .map(|items| items.iter().filter_map(|i| i["id"].as_i64()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_401() {
    let fake = PipedriveFake::start(FakeConfig::default()).await;
    for token in [None, Some("wrong-token")] {
        let answer = send_as(&fake, token, "GET", "/api/v1/users/me", None).await;
        assert_eq!(answer.status, 401);
        assert_eq!(
            answer.body,
            json!({"success": false, "error": "unauthorized access", "errorCode": 401})
        );
    }
    // The token in the query string is not accepted either.
    let token = fake.config().token;
    let path = format!("/api/v1/users/me?api_token={token}");
    assert_eq!(send_as(&fake, None, "GET", &path, None).await.status, 401);
    assert_eq!(fake.tokens_spent(), 0);
    assert!(fake.violations().is_empty());
    assert_eq!(fake.requests().len(), 3);
    assert_eq!(fake.max_requests_in_any_window(Duration::from_secs(2)), 0);

    let me = get(&fake, "/api/v1/users/me").await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["success"], json!(true));
    assert_eq!(me.body["data"]["id"], json!(4242));
    assert_eq!(
        me.body["data"]["access"][0],
        json!({"app": "sales", "admin": true})
    );
    assert_eq!(me.body["data"]["timezone_name"], json!("UTC"));
    assert!(me.body["data"]["company_domain"].is_string());
}

#[tokio::test]
async fn person_fields_are_listed_created_and_read() {
    let fake = PipedriveFake::start(FakeConfig::default()).await;
    let key = create_field(&fake, "WhatsApp ID").await;
    assert_eq!(key.len(), 40);
    assert!(key.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(fake.person_field_key("WhatsApp ID"), Some(key.clone()));
    assert_eq!(fake.person_field_key("Phone"), None);

    let list = get(&fake, "/api/v1/personFields?start=0&limit=500").await;
    assert_eq!(list.status, 200);
    let fields = list.body["data"].as_array().expect("fields");
    for system in ["name", "phone", "email"] {
        let field = fields
            .iter()
            .find(|f| f["key"] == json!(system))
            .unwrap_or_else(|| panic!("no {system} field"));
        assert_eq!(field["edit_flag"], json!(false));
    }
    let ours = fields
        .iter()
        .find(|f| f["key"] == json!(key))
        .expect("ours");
    assert_eq!(ours["edit_flag"], json!(true));
    assert_eq!(ours["active_flag"], json!(true));
    assert_eq!(ours["searchable_flag"], json!(false));
    assert_eq!(ours["field_type"], json!("varchar"));
    assert_eq!(
        list.body["additional_data"]["pagination"],
        json!({"start": 0, "limit": 500, "more_items_in_collection": false})
    );

    let page = get(&fake, "/api/v1/personFields?limit=2").await;
    assert_eq!(page.body["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        page.body["additional_data"]["pagination"],
        json!({"start": 0, "limit": 2, "more_items_in_collection": true, "next_start": 2})
    );

    let id = ours["id"].as_i64().expect("an id");
    let one = get(&fake, &format!("/api/v1/personFields/{id}")).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.body["data"]["key"], json!(key));
    let missing = get(&fake, "/api/v1/personFields/999999").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["success"], json!(false));
    assert_eq!(missing.body["error"], json!("Entity was not found"));
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[tokio::test]
async fn persons_are_created_listed_by_cursor_and_filtered() {
    let fake = PipedriveFake::start(FakeConfig::default()).await;
    let wa = create_field(&fake, "WhatsApp ID").await;
    let other = create_field(&fake, "Source").await;
    let hand_made = fake.insert_person("Ana Hand", "+55 11 91234-5678");

    // The patched defects: `name` without `title`, string labels, `custom_fields`.
    let maria = post(
        &fake,
        "/api/v2/persons",
        json!({
            "name": "Maria Silva",
            "phones": [{"value": "+5511987654321", "label": "mobile", "primary": true}],
            "emails": [{"value": "maria@example.com", "label": "work"}],
            "custom_fields": {wa.clone(): "5511987654321"}
        }),
    )
    .await;
    assert_eq!(maria.status, 200, "{:#}", maria.body);
    let data = &maria.body["data"];
    assert_eq!(data["name"], json!("Maria Silva"));
    assert_eq!(
        data["phones"],
        json!([{"value": "+5511987654321", "label": "mobile", "primary": true}])
    );
    assert_eq!(data["custom_fields"][&wa], json!("5511987654321"));
    assert_eq!(data["custom_fields"][&other], Value::Null);
    assert_eq!(data["is_deleted"], json!(false));
    assert_eq!(data["owner_id"], json!(4242));
    let update_time = data["update_time"].as_str().expect("update_time");
    assert!(chrono::DateTime::parse_from_rfc3339(update_time).is_ok());
    assert!(update_time.ends_with('Z'));
    let maria_id = data["id"].as_i64().expect("an id");

    let since = chrono::Utc::now() - chrono::Duration::seconds(1);
    let mut later = Vec::new();
    for n in 0..4 {
        later.push(
            create_person(
                &fake,
                json!({"name": format!("Later {n}"), "phones": [{"value": format!("+100{n}")}]}),
            )
            .await,
        );
    }
    assert_eq!(fake.persons().len(), 6);
    let stored = fake
        .persons()
        .into_iter()
        .find(|p| p.id == later[0])
        .expect("stored");
    assert_eq!(stored.phones, ["+1000"]);

    // Cursor pagination over everything, two at a time.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            Some(c) => format!("/api/v2/persons?limit=2&cursor={c}"),
            None => "/api/v2/persons?limit=2".to_owned(),
        };
        let page = get(&fake, &path).await;
        assert_eq!(page.status, 200, "{:#}", page.body);
        seen.extend(ids(&page.body));
        match page.body["additional_data"]["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => {
                assert_eq!(page.body["additional_data"]["next_cursor"], Value::Null);
                break;
            }
        }
    }
    let mut all = vec![hand_made, maria_id];
    all.extend(&later);
    assert_eq!(seen, all);

    // updated_since (inclusive) and descending order.
    let since = since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let recent = get(
        &fake,
        &format!("/api/v2/persons?updated_since={since}&sort_by=update_time&sort_direction=desc"),
    )
    .await;
    let recent_ids = ids(&recent.body);
    assert!(recent_ids.starts_with(&[later[3], later[2], later[1], later[0]]));
    let future = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let none = get(&fake, &format!("/api/v2/persons?updated_since={future}")).await;
    assert_eq!(none.body["data"], json!([]));
    assert_eq!(none.body["additional_data"]["next_cursor"], Value::Null);

    // ids and the custom_fields filter.
    let filtered = get(
        &fake,
        &format!("/api/v2/persons?ids={maria_id},{hand_made},999&custom_fields={wa}"),
    )
    .await;
    assert_eq!(ids(&filtered.body), [hand_made, maria_id]);
    for person in filtered.body["data"].as_array().expect("persons") {
        let keys: Vec<&String> = person["custom_fields"]
            .as_object()
            .expect("custom_fields")
            .keys()
            .collect();
        assert_eq!(keys, [&wa]);
    }
    assert_eq!(
        filtered.body["data"][1]["custom_fields"][&wa],
        json!("5511987654321")
    );
    assert_eq!(
        filtered.body["data"][0]["phones"][0],
        json!({"value": "+55 11 91234-5678", "label": "work", "primary": true})
    );
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[tokio::test]
async fn patch_replaces_phones_and_merges_custom_fields() {
    let fake = PipedriveFake::start(FakeConfig::default()).await;
    let wa = create_field(&fake, "WhatsApp ID").await;
    let source = create_field(&fake, "Source").await;
    let id = create_person(
        &fake,
        json!({"name": "Maria", "phones": [{"value": "+1 555", "label": "work"}],
               "custom_fields": {source.clone(): "import"}}),
    )
    .await;
    let before = fake.persons()[0].update_time;
    let patched = send(
        &fake,
        "PATCH",
        &format!("/api/v2/persons/{id}"),
        Some(json!({
            "phones": [
                {"value": "+1 555", "label": "work", "primary": false},
                {"value": "+5511987654321", "label": "whatsapp", "primary": true}
            ],
            "custom_fields": {wa.clone(): "5511987654321"}
        })),
    )
    .await;
    assert_eq!(patched.status, 200, "{:#}", patched.body);
    assert_eq!(patched.body["data"]["name"], json!("Maria"));
    let person = &fake.persons()[0];
    assert_eq!(person.phones, ["+1 555", "+5511987654321"]);
    assert_eq!(person.custom_fields[&wa], json!("5511987654321"));
    assert_eq!(person.custom_fields[&source], json!("import"));
    assert!(person.update_time > before);

    let missing = send(
        &fake,
        "PATCH",
        "/api/v2/persons/999999",
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!(missing.status, 404);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[tokio::test]
async fn notes_are_created_listed_read_and_updated() {
    let fake = PipedriveFake::start(FakeConfig::default()).await;
    let person = fake.insert_person("Maria", "+5511987654321");
    let other = fake.insert_person("Joao", "+5511900000000");

    let empty = get(&fake, &format!("/api/v1/notes?person_id={person}")).await;
    assert_eq!(empty.status, 200);
    assert_eq!(empty.body["data"], Value::Null);

    let mut notes = Vec::new();
    for n in 0..3 {
        let answer = post(
            &fake,
            "/api/v1/notes",
            json!({"content": format!("<p>batch {n}</p>"), "person_id": person,
                   "add_time": format!("2025-01-0{} 10:00:00", n + 1)}),
        )
        .await;
        assert_eq!(answer.status, 200, "{:#}", answer.body);
        assert_eq!(answer.body["data"]["user_id"], json!(4242));
        assert_eq!(answer.body["data"]["person_id"], json!(person));
        assert_eq!(answer.body["data"]["active_flag"], json!(true));
        assert_eq!(answer.body["data"]["deal_id"], Value::Null);
        notes.push(answer.body["data"]["id"].as_i64().expect("an id"));
    }
    let elsewhere = post(
        &fake,
        "/api/v1/notes",
        json!({"content": "<p>other</p>", "person_id": other, "user_id": 4242,
               "pinned_to_person_flag": 1}),
    )
    .await;
    assert_eq!(elsewhere.status, 200, "{:#}", elsewhere.body);
    assert_eq!(elsewhere.body["data"]["pinned_to_person_flag"], json!(true));
    let add_time = elsewhere.body["data"]["add_time"]
        .as_str()
        .expect("add_time");
    assert!(chrono::NaiveDateTime::parse_from_str(add_time, "%Y-%m-%d %H:%M:%S").is_ok());

    let first = get(
        &fake,
        &format!("/api/v1/notes?person_id={person}&user_id=4242&sort=id%20DESC&limit=2"),
    )
    .await;
    assert_eq!(first.status, 200, "{:#}", first.body);
    assert_eq!(ids(&first.body), [notes[2], notes[1]]);
    assert_eq!(
        first.body["additional_data"]["pagination"],
        json!({"start": 0, "limit": 2, "more_items_in_collection": true, "next_start": 2})
    );
    let second = get(
        &fake,
        &format!("/api/v1/notes?person_id={person}&user_id=4242&sort=id%20DESC&limit=2&start=2"),
    )
    .await;
    assert_eq!(ids(&second.body), [notes[0]]);
    assert_eq!(
        second.body["additional_data"]["pagination"]["more_items_in_collection"],
        json!(false)
    );
    let by_time = get(&fake, "/api/v1/notes?sort=add_time%20ASC,id%20DESC").await;
    assert_eq!(by_time.body["data"][0]["content"], json!("<p>batch 0</p>"));
    assert_eq!(ids(&by_time.body).len(), 4);
    let nobody = get(&fake, "/api/v1/notes?user_id=1").await;
    assert_eq!(nobody.body["data"], Value::Null);

    let one = get(&fake, &format!("/api/v1/notes/{}", notes[1])).await;
    assert_eq!(one.body["data"]["content"], json!("<p>batch 1</p>"));
    assert_eq!(one.body["data"]["add_time"], json!("2025-01-02 10:00:00"));

    let put = send(
        &fake,
        "PUT",
        &format!("/api/v1/notes/{}", notes[1]),
        Some(json!({"content": "<p>batch 1, read</p>"})),
    )
    .await;
    assert_eq!(put.status, 200, "{:#}", put.body);
    assert_eq!(put.body["data"]["content"], json!("<p>batch 1, read</p>"));
    assert_eq!(put.body["data"]["add_time"], json!("2025-01-02 10:00:00"));
    let stored = fake
        .notes()
        .into_iter()
        .find(|n| n.id == notes[1])
        .expect("stored");
    assert_eq!(stored.content, "<p>batch 1, read</p>");
    assert_eq!(stored.person_id, Some(person));
    assert_eq!(stored.user_id, 4242);

    assert_eq!(get(&fake, "/api/v1/notes/999999").await.status, 404);
    let orphan = post(
        &fake,
        "/api/v1/notes",
        json!({"content": "x", "person_id": 999_999}),
    )
    .await;
    assert_eq!(orphan.status, 404);
    assert_eq!(fake.notes().len(), 4);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[tokio::test]
async fn requests_off_the_spec_are_violations_and_400() {
    // Many requests in a row: a burst limit out of the way.
    let fake = PipedriveFake::start(FakeConfig {
        requests_per_2s: 1000,
        ..FakeConfig::default()
    })
    .await;
    let wa = create_field(&fake, "WhatsApp ID").await;
    let person = fake.insert_person("Maria", "+5511987654321");
    let cases = [
        (
            "POST",
            "/api/v2/persons".to_owned(),
            json!({"name": "x", "phones": "+5511987654321"}),
        ),
        (
            "POST",
            "/api/v2/persons".to_owned(),
            json!({"name": "x", "custom_fields": {"0123456789abcdef0123456789abcdef01234567": "1"}}),
        ),
        (
            "POST",
            "/api/v2/persons".to_owned(),
            json!({"name": "x", "custom_fields": {"phone": "1"}}),
        ),
        (
            "POST",
            "/api/v2/persons".to_owned(),
            json!({"name": "x", "custom_fields": {wa.clone(): 5_511_987_654_321_i64}}),
        ),
        ("POST", "/api/v2/persons".to_owned(), json!({"title": "x"})),
        (
            "POST",
            "/api/v2/persons".to_owned(),
            json!({"name": "x", "phones": [{"value": "1", "primary": true}, {"value": "2", "primary": true}]}),
        ),
        (
            "PATCH",
            format!("/api/v2/persons/{person}"),
            json!({"phones": [{"value": "1", "primary": "yes"}]}),
        ),
        (
            "POST",
            "/api/v1/notes".to_owned(),
            json!({"content": "<p>x</p>"}),
        ),
        (
            "POST",
            "/api/v1/notes".to_owned(),
            json!({"person_id": person}),
        ),
        (
            "POST",
            "/api/v1/notes".to_owned(),
            json!({"content": "x", "person_id": person, "deal_id": 1}),
        ),
        (
            "POST",
            "/api/v1/notes".to_owned(),
            json!({"content": "x", "person_id": person, "add_time": "2025-01-01T10:00:00Z"}),
        ),
    ];
    for (n, (method, path, body)) in cases.iter().enumerate() {
        let answer = send(&fake, method, path, Some(body.clone())).await;
        assert_eq!(answer.status, 400, "case {n}: {body}: {:#}", answer.body);
        assert_eq!(answer.body["success"], json!(false), "case {n}");
        assert!(answer.body["error"].is_string(), "case {n}");
        assert_eq!(answer.body["data"], Value::Null, "case {n}");
        assert!(
            fake.violations().len() > n,
            "case {n} was not recorded: {:?}",
            fake.violations()
        );
    }
    let mut queries = vec![
        "/api/v2/persons?limit=501",
        "/api/v2/persons?updated_since=yesterday",
        "/api/v2/persons?sort_by=name",
        "/api/v2/persons?cursor=not-a-cursor",
        "/api/v2/persons?custom_fields=a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p",
        "/api/v1/notes?sort=title%20DESC",
        "/api/v1/notes?limit=1000",
    ];
    // What only the documents say (without them the fake does not validate requests).
    let mut schema_cases = 0;
    if validating() {
        queries.push("/api/v1/notes?person_id=abc");
        queries.push("/api/v1/users/me?api_token=pd-test-token-0123");
        let answer = post(
            &fake,
            "/api/v1/personFields",
            json!({"name": "x", "field_type": "whatsapp"}),
        )
        .await;
        assert_eq!(answer.status, 400, "{:#}", answer.body);
        assert!(fake.violations().len() > cases.len());
        schema_cases += 1;
    }
    for path in &queries {
        let before = fake.violations().len();
        let answer = get(&fake, path).await;
        assert_eq!(answer.status, 400, "{path}: {:#}", answer.body);
        assert!(fake.violations().len() > before, "{path} was not recorded");
    }
    let before = fake.violations().len();
    let unknown = get(&fake, "/api/v2/persons/search?term=5511&fields=phone").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body["success"], json!(false));
    assert_eq!(fake.violations().len(), before + 1);
    assert!(
        fake.violations()[before].contains("does not implement"),
        "{:?}",
        fake.violations()
    );
    // Nothing was written by a rejected request.
    assert_eq!(fake.persons().len(), 1);
    assert!(fake.notes().is_empty());
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count(),
        cases.len() + queries.len() + schema_cases
    );
    let recorded = &fake.requests()[1];
    assert_eq!(recorded.method, "POST");
    assert_eq!(recorded.path, "/api/v2/persons");
    assert_eq!(recorded.body, cases[0].2);

    // The same fake accepts the bodies Pipedrive documents, in the patched defects' places.
    let before = fake.violations().len();
    create_person(
        &fake,
        json!({"name": "Ok", "phones": [{"value": "+1", "label": "mobile"}],
               "emails": [{"value": "ok@example.com", "label": "home"}],
               "custom_fields": {wa.clone(): "1"}}),
    )
    .await;
    assert_eq!(fake.violations().len(), before, "{:?}", fake.violations());
}

#[tokio::test]
async fn the_burst_limit_answers_429_and_counts_requests_sent_at_zero() {
    let fake = PipedriveFake::start(FakeConfig {
        requests_per_2s: 5,
        ..FakeConfig::default()
    })
    .await;
    let mut answers = Vec::new();
    for _ in 0..8 {
        answers.push(get(&fake, "/api/v1/users/me").await);
    }
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    for (n, answer) in answers.iter().enumerate() {
        assert_eq!(answer.header("x-ratelimit-limit"), "5");
        let remaining: usize = answer
            .header("x-ratelimit-remaining")
            .parse()
            .expect("a number");
        assert_eq!(remaining, 4_usize.saturating_sub(n));
        let reset: u64 = answer.header("x-ratelimit-reset").parse().expect("seconds");
        assert!((1..=2).contains(&reset), "reset {reset}");
        assert!(answer
            .headers
            .contains_key("x-daily-ratelimit-token-remaining"));
    }
    assert_eq!(answers[7].body["success"], json!(false));
    assert_eq!(fake.burst_violations(), 3);
    assert_eq!(fake.max_requests_in_any_window(Duration::from_secs(2)), 8);
    // Rejected requests cost nothing.
    assert_eq!(fake.tokens_spent(), 5 * 2);

    // A client that waits out the window is admitted again.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(get(&fake, "/api/v1/users/me").await.status, 200);
    assert_eq!(fake.burst_violations(), 3);
}

#[tokio::test]
async fn a_spent_daily_budget_answers_429_with_zero_remaining() {
    let fake = PipedriveFake::start(FakeConfig {
        daily_tokens: 30,
        ..FakeConfig::default()
    })
    .await;
    let first = get(&fake, "/api/v1/personFields").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-daily-ratelimit-token-limit"), "30");
    assert_eq!(first.header("x-daily-ratelimit-token-remaining"), "10");
    // Admitted while budget is left, charged in full.
    let second = get(&fake, "/api/v1/personFields").await;
    assert_eq!(second.status, 200);
    assert_eq!(second.header("x-daily-ratelimit-token-remaining"), "0");
    assert_eq!(fake.tokens_spent(), 40);
    for path in ["/api/v1/users/me", "/api/v2/persons", "/api/v1/notes/1"] {
        let answer = get(&fake, path).await;
        assert_eq!(answer.status, 429, "{path}");
        assert_eq!(answer.header("x-daily-ratelimit-token-remaining"), "0");
        assert_eq!(
            answer.body,
            json!({"success": false, "error": "Request over limit"})
        );
    }
    assert_eq!(fake.tokens_spent(), 40);
    assert_eq!(fake.burst_violations(), 0);
    assert!(fake.violations().is_empty());
}

/// `x-token-cost` of an operation, read straight from the document.
fn documented_cost(spec: &SpecValidator, path: &str, method: &str) -> u64 {
    let pointer = format!("/paths/{}/{method}/x-token-cost", path.replace('/', "~1"));
    spec.document()
        .pointer(&pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no x-token-cost for {method} {path}"))
}

#[tokio::test]
async fn each_operation_costs_its_documented_tokens() {
    let (Some(v1), Some(v2)) = (
        spec_path("pipedrive/openapi-v1.yaml"),
        spec_path("pipedrive/openapi-v2.yaml"),
    ) else {
        return;
    };
    let v1 = SpecValidator::load(v1).expect("v1 loads");
    let v2 = SpecValidator::load(v2).expect("v2 loads");
    let fake = PipedriveFake::start(FakeConfig::default()).await;
    let person = fake.insert_person("Maria", "+5511987654321");
    assert_eq!(
        fake.tokens_spent(),
        0,
        "a person made in the UI costs nothing"
    );
    assert!(fake.requests().is_empty());
    let calls: Vec<(&SpecValidator, &str, &str, String, Option<Value>)> = vec![
        (&v1, "get", "/users/me", "/api/v1/users/me".to_owned(), None),
        (
            &v1,
            "get",
            "/personFields",
            "/api/v1/personFields".to_owned(),
            None,
        ),
        (
            &v1,
            "post",
            "/personFields",
            "/api/v1/personFields".to_owned(),
            Some(json!({"name": "WhatsApp ID", "field_type": "varchar"})),
        ),
        (
            &v1,
            "get",
            "/personFields/{id}",
            "/api/v1/personFields/1".to_owned(),
            None,
        ),
        (&v2, "get", "/persons", "/api/v2/persons".to_owned(), None),
        (
            &v2,
            "post",
            "/persons",
            "/api/v2/persons".to_owned(),
            Some(json!({"name": "Jo"})),
        ),
        (
            &v2,
            "patch",
            "/persons/{id}",
            format!("/api/v2/persons/{person}"),
            Some(json!({"name": "Maria S"})),
        ),
        (
            &v1,
            "post",
            "/notes",
            "/api/v1/notes".to_owned(),
            Some(json!({"content": "<p>x</p>", "person_id": person})),
        ),
        (&v1, "get", "/notes", "/api/v1/notes".to_owned(), None),
        (
            &v1,
            "get",
            "/notes/{id}",
            "/api/v1/notes/1".to_owned(),
            None,
        ),
        (
            &v1,
            "put",
            "/notes/{id}",
            "/api/v1/notes/1".to_owned(),
            Some(json!({"content": "y"})),
        ),
    ];
    for (spec, method, template, path, body) in calls {
        let before = fake.tokens_spent();
        let answer = send(&fake, method, &path, body).await;
        assert_eq!(answer.status, 200, "{method} {path}: {:#}", answer.body);
        let cost = documented_cost(spec, template, method);
        assert_eq!(fake.tokens_spent() - before, cost, "{method} {template}");
        let remaining: u64 = answer
            .header("x-daily-ratelimit-token-remaining")
            .parse()
            .expect("a number");
        assert_eq!(remaining, 30_000 - fake.tokens_spent());
    }
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    let names: Vec<&str> = SPEC_PATCHES.iter().map(|p| p.name).collect();
    assert_eq!(
        names,
        [
            "person-create-requires-title",
            "person-labels-typed-boolean",
            "person-request-lacks-custom-fields"
        ]
    );
}

#[tokio::test]
async fn persons_and_notes_are_deleted_once() {
    let fake = PipedriveFake::start(FakeConfig::default()).await;
    let person = fake.insert_person("Maria", "+5511987654321");
    let other = fake.insert_person("Joao", "+5511900000000");
    let mut notes = Vec::new();
    for (on, text) in [(person, "<p>segredo</p>"), (other, "<p>outro</p>")] {
        let answer = post(
            &fake,
            "/api/v1/notes",
            json!({"content": text, "person_id": on}),
        )
        .await;
        assert_eq!(answer.status, 200, "{:#}", answer.body);
        notes.push(answer.body["data"]["id"].as_i64().expect("an id"));
    }
    assert!(fake.holds("segredo") && fake.holds("987654321"));

    let deleted = send(
        &fake,
        "DELETE",
        &format!("/api/v1/notes/{}", notes[0]),
        None,
    )
    .await;
    assert_eq!(deleted.status, 200, "{:#}", deleted.body);
    assert_eq!(deleted.body, json!({"success": true, "data": true}));
    let again = send(
        &fake,
        "DELETE",
        &format!("/api/v1/notes/{}", notes[0]),
        None,
    )
    .await;
    assert_eq!(again.status, 404);
    assert!(!fake.holds("segredo"));

    let deleted = send(&fake, "DELETE", &format!("/api/v2/persons/{person}"), None).await;
    assert_eq!(deleted.status, 200, "{:#}", deleted.body);
    assert_eq!(deleted.body["data"]["id"], json!(person));
    let again = send(&fake, "DELETE", &format!("/api/v2/persons/{person}"), None).await;
    assert_eq!(again.status, 404);
    assert_eq!(again.body["success"], json!(false));
    assert!(!fake.holds("987654321"));
    // The other person and their note are untouched.
    assert_eq!(fake.persons().len(), 1);
    assert_eq!(fake.notes().len(), 1);
    assert_eq!(fake.notes()[0].person_id, Some(other));

    // A path id that is not an integer is off the documents.
    let bad = send(&fake, "DELETE", "/api/v2/persons/abc", None).await;
    assert_eq!(bad.status, 400);
    assert!(fake
        .violations()
        .iter()
        .any(|v| v.starts_with("DELETE /api/v2/persons/abc")));
    if validating() {
        // Deletes cost what the documents say (v2 persons 3, v1 notes 6).
        let before = fake.tokens_spent();
        let _ = send(&fake, "DELETE", &format!("/api/v2/persons/{other}"), None).await;
        let _ = send(
            &fake,
            "DELETE",
            &format!("/api/v1/notes/{}", notes[1]),
            None,
        )
        .await;
        assert_eq!(fake.tokens_spent() - before, 9);
    }
}
