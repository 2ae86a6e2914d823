//! The Zoho CRM fake, driven over HTTP with reqwest as a CRM adapter would drive Zoho.

use serde_json::{json, Value};
use wacrm_testkit::openapi::specs_dir;
use wacrm_testkit::zoho::{FakeConfig, ZohoFake, SPEC_PATCHES};

struct Answer {
    status: u16,
    text: String,
    body: Value,
}

fn validating() -> bool {
    specs_dir().is_some()
}

/// `POST /oauth/v2/token` with a form body.
async fn token_call(fake: &ZohoFake, form: &[(&str, &str)]) -> Answer {
    let response = reqwest::Client::new()
        .post(format!("{}/oauth/v2/token", fake.base_url()))
        .form(form)
        .send()
        .await
        .expect("the fake answers");
    read(response).await
}

async fn read(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let text = response.text().await.expect("a readable body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text.clone()))
    };
    Answer { status, text, body }
}

/// A fresh access token for the fake's configured credentials.
async fn token(fake: &ZohoFake) -> String {
    let config = fake.config();
    let answer = token_call(
        fake,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &config.client_id),
            ("client_secret", &config.client_secret),
            ("refresh_token", &config.refresh_token),
        ],
    )
    .await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    answer.body["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned()
}

async fn send_as(
    fake: &ZohoFake,
    authorization: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", fake.base_url()));
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    read(request.send().await.expect("the fake answers")).await
}

/// A client holding one access token.
struct Api<'a> {
    fake: &'a ZohoFake,
    token: String,
}

impl<'a> Api<'a> {
    async fn new(fake: &'a ZohoFake) -> Api<'a> {
        Api {
            fake,
            token: token(fake).await,
        }
    }

    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        let authorization = format!("Zoho-oauthtoken {}", self.token);
        send_as(self.fake, Some(&authorization), method, path, body).await
    }

    async fn get(&self, path: &str) -> Answer {
        self.send("GET", path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.send("POST", path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> Answer {
        self.send("PUT", path, Some(body)).await
    }

    async fn coql(&self, query: &str) -> Answer {
        self.post("/crm/v8/coql", json!({ "select_query": query }))
            .await
    }

    /// Creates the unique `WhatsApp ID` field; returns its API name.
    async fn whatsapp_field(&self) -> String {
        let answer = self
            .post(
                "/crm/v8/settings/fields?module=Contacts",
                json!({"fields": [{
                    "field_label": "WhatsApp ID", "data_type": "text", "length": 64,
                    "unique": {"casesensitive": "false"}
                }]}),
            )
            .await;
        assert_eq!(answer.status, 201, "{:#}", answer.body);
        self.fake
            .field_api_name("WhatsApp ID")
            .expect("the field exists")
    }

    async fn upsert(&self, data: Value) -> Answer {
        self.post(
            "/crm/v8/Contacts/upsert",
            json!({"data": data, "duplicate_check_fields": ["WhatsApp_ID"]}),
        )
        .await
    }
}

fn note_body(parent: &str, content: &str) -> Value {
    json!({
        "Note_Title": "WhatsApp",
        "Note_Content": content,
        "Parent_Id": {"module": {"api_name": "Contacts"}, "id": parent}
    })
}

#[tokio::test]
async fn the_token_endpoint_grants_tokens_and_api_calls_need_one() {
    let fake = ZohoFake::start(FakeConfig::default()).await;
    let config = fake.config();
    assert_eq!(config, FakeConfig::default());
    assert_eq!(config.client_id, "zoho-client-1");
    let grant = [
        ("grant_type", "refresh_token"),
        ("client_id", "zoho-client-1"),
        ("client_secret", "zoho-secret-0123"),
        ("refresh_token", "1000.refresh.0123"),
    ];
    let answer = token_call(&fake, &grant).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["api_domain"], json!(fake.base_url()));
    assert_eq!(answer.body["token_type"], json!("Bearer"));
    assert_eq!(answer.body["expires_in"], json!(3600));
    assert!(
        answer.body.get("refresh_token").is_none(),
        "Zoho does not rotate"
    );
    let first = answer.body["access_token"].as_str().unwrap().to_owned();
    let second = token(&fake).await;
    assert_ne!(first, second);

    // Wrong credentials.
    let mut wrong = grant;
    wrong[2].1 = "nope";
    let answer = token_call(&fake, &wrong).await;
    assert_eq!(
        (answer.status, answer.body.clone()),
        (400, json!({"error": "invalid_client"}))
    );
    let mut wrong = grant;
    wrong[3].1 = "1000.revoked";
    let answer = token_call(&fake, &wrong).await;
    assert_eq!(
        (answer.status, answer.body.clone()),
        (400, json!({"error": "invalid_code"}))
    );
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    // The parameters may also come in the query string, as Zoho's examples write them.
    let url = format!(
        "{}/oauth/v2/token?grant_type=refresh_token&client_id=zoho-client-1&client_secret=\
         zoho-secret-0123&refresh_token=1000.refresh.0123",
        fake.base_url()
    );
    let answer = read(reqwest::Client::new().post(url).send().await.unwrap()).await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    assert_eq!(fake.token_requests(), 5);

    // Both tokens work; none, a foreign one, or the wrong scheme is a 401.
    let fields = "/crm/v8/settings/fields?module=Contacts";
    for token in [&first, &second] {
        let answer = send_as(
            &fake,
            Some(&format!("Zoho-oauthtoken {token}")),
            "GET",
            fields,
            None,
        )
        .await;
        assert_eq!(answer.status, 200);
    }
    let invalid = json!({"code": "INVALID_TOKEN", "details": {}, "message": "invalid oauth token", "status": "error"});
    for authorization in [None, Some("Zoho-oauthtoken 1000.made.up")] {
        let answer = send_as(&fake, authorization, "GET", fields, None).await;
        assert_eq!(answer.status, 401);
        assert_eq!(answer.body, invalid);
    }
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    let answer = send_as(&fake, Some(&format!("Bearer {first}")), "GET", fields, None).await;
    assert_eq!(answer.status, 401);
    assert_eq!(fake.violations().len(), 1);
    assert!(fake.violations()[0].contains("Zoho-oauthtoken"));

    // Expired tokens are refused until a new one is fetched.
    fake.expire_tokens();
    let answer = send_as(
        &fake,
        Some(&format!("Zoho-oauthtoken {second}")),
        "GET",
        fields,
        None,
    )
    .await;
    assert_eq!((answer.status, answer.body), (401, invalid));
    let third = token(&fake).await;
    let answer = send_as(
        &fake,
        Some(&format!("Zoho-oauthtoken {third}")),
        "GET",
        fields,
        None,
    )
    .await;
    assert_eq!(answer.status, 200);

    // Only authenticated API calls cost credits; the token endpoint is not recorded.
    assert_eq!(fake.credits_used(), 3);
    assert_eq!(fake.token_requests(), 6);
    let requests = fake.requests();
    assert_eq!(requests.len(), 7);
    assert!(requests.iter().all(|r| r.path == "/crm/v8/settings/fields"));
    assert_eq!(
        requests[0].query,
        vec![("module".to_owned(), "Contacts".to_owned())]
    );
    let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 401, 401, 401, 401, 200]);
    fake.clear_requests();
    assert!(fake.requests().is_empty());
    assert_eq!(fake.credits_used(), 3);

    // Another grant, or a missing parameter, is the client's mistake.
    let answer = token_call(
        &fake,
        &[("grant_type", "authorization_code"), ("code", "x")],
    )
    .await;
    assert_eq!(answer.body, json!({"error": "unsupported_grant_type"}));
    let answer = token_call(&fake, &[("grant_type", "refresh_token")]).await;
    assert_eq!(answer.body, json!({"error": "invalid_client"}));
    assert_eq!(fake.violations().len(), 5, "{:?}", fake.violations());
}

#[tokio::test]
async fn fields_are_listed_and_created_with_derived_api_names() {
    let fake = ZohoFake::start(FakeConfig::default()).await;
    let api = Api::new(&fake).await;
    let list = api.get("/crm/v8/settings/fields?module=Contacts").await;
    assert_eq!(list.status, 200);
    let fields = list.body["fields"].as_array().unwrap().clone();
    let field = |name: &str| {
        fields
            .iter()
            .find(|f| f["api_name"] == json!(name))
            .unwrap_or_else(|| panic!("no {name}"))
            .clone()
    };
    for name in ["Last_Name", "First_Name", "Phone", "Mobile", "Email"] {
        let f = field(name);
        assert_eq!(f["custom_field"], json!(false), "{name}");
        assert!(
            f["field_label"].is_string() && f["data_type"].is_string(),
            "{name}"
        );
        assert_eq!(f["unique"], json!({}), "{name}");
        assert!(f["id"].as_str().unwrap().len() >= 18, "{name}");
    }
    assert_eq!(field("Last_Name")["system_mandatory"], json!(true));
    assert_eq!(field("Phone")["data_type"], json!("phone"));
    assert_eq!(field("Phone")["system_mandatory"], json!(false));
    assert_eq!(fake.field_api_name("Mobile").as_deref(), Some("Mobile"));
    assert_eq!(fake.field_api_name("WhatsApp ID"), None);

    let created = api
        .post(
            "/crm/v8/settings/fields?module=Contacts",
            json!({"fields": [{
                "field_label": "WhatsApp ID", "data_type": "text", "length": 64,
                "unique": {"casesensitive": "false"}
            }]}),
        )
        .await;
    assert_eq!(created.status, 201, "{:#}", created.body);
    let item = &created.body["fields"][0];
    assert_eq!(item["code"], json!("SUCCESS"));
    assert_eq!(item["message"], json!("field created"));
    assert_eq!(item["status"], json!("success"));
    let id = item["details"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        fake.field_api_name("WhatsApp ID").as_deref(),
        Some("WhatsApp_ID")
    );

    let list = api.get("/crm/v8/settings/fields?module=Contacts").await;
    let wa = list.body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["api_name"] == json!("WhatsApp_ID"))
        .unwrap()
        .clone();
    assert_eq!(wa["id"], json!(id));
    assert_eq!(wa["field_label"], json!("WhatsApp ID"));
    assert_eq!(wa["custom_field"], json!(true));
    assert_eq!(wa["data_type"], json!("text"));
    assert_eq!(wa["length"], json!(64));
    assert_eq!(wa["unique"], json!({"casesensitive": "false"}));

    // The same label again (any case), or a label with the same API name, is a duplicate; a
    // mixed batch is a 207.
    let again = api
        .post(
            "/crm/v8/settings/fields?module=Contacts",
            json!({"fields": [{"field_label": "whatsapp id", "data_type": "text"}]}),
        )
        .await;
    assert_eq!(again.status, 400, "{:#}", again.body);
    assert_eq!(again.body["fields"][0]["code"], json!("DUPLICATE_DATA"));
    assert_eq!(again.body["fields"][0]["status"], json!("error"));
    assert_eq!(
        again.body["fields"][0]["details"]["api_name"],
        json!("field_label")
    );
    let mixed = api
        .post(
            "/crm/v8/settings/fields?module=Contacts",
            json!({"fields": [
                {"field_label": "WhatsApp-ID", "data_type": "text"},
                {"field_label": "WhatsApp Name", "data_type": "text"},
                {"field_label": "Broken", "data_type": "picklist"},
                {"data_type": "text"}
            ]}),
        )
        .await;
    assert_eq!(mixed.status, 207, "{:#}", mixed.body);
    let codes: Vec<&Value> = mixed.body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["code"])
        .collect();
    assert_eq!(
        codes,
        [
            &json!("DUPLICATE_DATA"),
            &json!("SUCCESS"),
            &json!("INVALID_DATA"),
            &json!("MANDATORY_NOT_FOUND")
        ]
    );
    assert_eq!(
        fake.field_api_name("WhatsApp Name").as_deref(),
        Some("WhatsApp_Name")
    );
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());

    // Another module, or none, is not what the fake holds.
    for path in [
        "/crm/v8/settings/fields?module=Leads",
        "/crm/v8/settings/fields",
    ] {
        assert_eq!(api.get(path).await.status, 400, "{path}");
    }
    assert_eq!(fake.violations().len(), 2, "{:?}", fake.violations());
}

#[tokio::test]
async fn coql_compares_stored_text_exactly() {
    let fake = ZohoFake::start(FakeConfig::default()).await;
    let api = Api::new(&fake).await;
    api.whatsapp_field().await;
    let maria = fake.insert_contact(&[
        ("Last_Name", "Souza"),
        ("First_Name", "Maria"),
        ("Phone", "+55 (11) 98765-4321"),
    ]);
    let joao = fake.insert_contact(&[
        ("Last_Name", "Lima"),
        ("Mobile", "5511912345678"),
        ("WhatsApp_ID", "5511912345678"),
        ("Email", ""),
    ]);
    assert_eq!(
        fake.requests().len(),
        1,
        "insert_contact is not an API call"
    );
    assert_eq!(fake.credits_used(), 1);
    assert_eq!(fake.contacts().len(), 2);
    assert!(!fake.contacts()[1].fields.contains_key("Email"));

    // The digits are not the stored text: nothing matches, 204 with an empty body.
    let answer = api
        .coql(
            "select id, WhatsApp_ID, Phone, Mobile from Contacts where WhatsApp_ID in \
             ('5511987654321') or Phone in ('5511987654321', '+5511987654321') or Mobile in \
             ('5511987654321') limit 200",
        )
        .await;
    assert_eq!(answer.status, 204);
    assert_eq!(answer.text, "");

    // The exact text matches.
    let answer = api
        .coql(
            "select id, WhatsApp_ID, Phone, Mobile from Contacts where WhatsApp_ID in \
             ('5511987654321', '5511912345678') or Phone in ('+55 (11) 98765-4321') or Mobile \
             in ('x') limit 200",
        )
        .await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    assert_eq!(
        answer.body,
        json!({
            "data": [
                {"id": maria, "WhatsApp_ID": null, "Phone": "+55 (11) 98765-4321", "Mobile": null},
                {"id": joao, "WhatsApp_ID": "5511912345678", "Phone": null, "Mobile": "5511912345678"}
            ],
            "info": {"count": 2, "more_records": false}
        })
    );

    // `=`, `and`, parentheses; `id` is always answered; `limit` pages with `more_records`.
    let answer = api
        .coql("select Last_Name from Contacts where (Phone = '+55 (11) 98765-4321' and Last_Name = 'Souza')")
        .await;
    assert_eq!(
        answer.body["data"],
        json!([{"id": maria, "Last_Name": "Souza"}])
    );
    let answer = api
        .coql("select id from Contacts where Last_Name in ('Souza', 'Lima') limit 1")
        .await;
    assert_eq!(answer.body["data"], json!([{"id": maria}]));
    assert_eq!(
        answer.body["info"],
        json!({"count": 1, "more_records": true})
    );
    let answer = api
        .coql("select id from Contacts where Last_Name in ('Souza', 'Lima') limit 1 offset 1")
        .await;
    assert_eq!(answer.body["data"], json!([{"id": joao}]));
    assert_eq!(answer.body["info"]["more_records"], json!(false));
    // Case matters for COQL's exact comparison.
    assert_eq!(
        api.coql("select id from Contacts where Last_Name = 'souza'")
            .await
            .status,
        204
    );
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());

    // At most 100 values per `in`; only the shapes the fake understands.
    let values: Vec<String> = (0..101).map(|n| format!("'55119{n:08}'")).collect();
    let hundred_one = format!(
        "select id from Contacts where Phone in ({})",
        values.join(", ")
    );
    let hundred = format!(
        "select id from Contacts where Phone in ({})",
        values[..100].join(", ")
    );
    assert_eq!(api.coql(&hundred).await.status, 204);
    let refused = [
        hundred_one.as_str(),
        "select id from Contacts where Phone like '%4321'",
        "select id from Contacts",
        "select id from Leads where Phone = '1'",
        "select id, Nickname from Contacts where Phone = '1'",
        "select id from Contacts where Nickname = '1'",
        "select id from Contacts where Phone = '1' limit 5000",
        "select id from Contacts where Phone = '1' order by id",
    ];
    for query in refused {
        let before = fake.violations().len();
        let answer = api.coql(query).await;
        assert_eq!(answer.status, 400, "{query}");
        assert_eq!(
            answer.body,
            json!({"code": "INVALID_DATA", "details": {}, "message": "invalid data", "status": "error"})
        );
        assert_eq!(fake.violations().len(), before + 1, "{query}");
    }
    assert!(
        fake.violations()[0].contains("at most 100"),
        "{:?}",
        fake.violations()
    );
}

#[tokio::test]
async fn upsert_inserts_then_updates_by_whatsapp_id() {
    let fake = ZohoFake::start(FakeConfig::default()).await;
    let api = Api::new(&fake).await;
    api.whatsapp_field().await;

    let answer = api
        .upsert(json!([
            {"Last_Name": "Souza", "WhatsApp_ID": "5511987654321", "Mobile": "+5511987654321"},
            {"Last_Name": "Lima", "WhatsApp_ID": "5511912345678"}
        ]))
        .await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    let items = answer.body["data"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2);
    for item in &items {
        assert_eq!(item["code"], json!("SUCCESS"));
        assert_eq!(item["action"], json!("insert"));
        assert_eq!(item["duplicate_field"], Value::Null);
        assert_eq!(item["message"], json!("record added"));
        assert_eq!(item["status"], json!("success"));
        let created = item["details"]["Created_Time"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(created).is_ok() && created.ends_with("+00:00"),
            "{created}"
        );
        assert_eq!(item["details"]["Created_By"]["name"], json!("Fake Admin"));
    }
    let souza = items[0]["details"]["id"].as_str().unwrap().to_owned();
    let lima = items[1]["details"]["id"].as_str().unwrap().to_owned();
    assert!(souza.len() == 19 && souza.bytes().all(|b| b.is_ascii_digit()));
    let contacts = fake.contacts();
    assert_eq!(contacts.len(), 2);
    assert_eq!(contacts[0].id, souza);
    assert_eq!(contacts[0].fields["Mobile"], json!("+5511987654321"));

    // The same WhatsApp ID updates the contact, whatever else changes.
    let answer = api
        .upsert(json!([
            {"WhatsApp_ID": "5511912345678", "First_Name": "João"},
            {"Last_Name": "Nova", "WhatsApp_ID": "5521999990000"}
        ]))
        .await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    assert_eq!(answer.body["data"][0]["action"], json!("update"));
    assert_eq!(
        answer.body["data"][0]["duplicate_field"],
        json!("WhatsApp_ID")
    );
    assert_eq!(answer.body["data"][0]["message"], json!("record updated"));
    assert_eq!(answer.body["data"][0]["details"]["id"], json!(lima));
    assert_eq!(answer.body["data"][1]["action"], json!("insert"));
    let contacts = fake.contacts();
    assert_eq!(contacts.len(), 3);
    assert_eq!(contacts[1].fields["First_Name"], json!("João"));
    assert_eq!(contacts[1].fields["Last_Name"], json!("Lima"));

    // A hand-made contact with the WhatsApp ID in another case is matched (the field is not
    // case-sensitive).
    let hand = fake.insert_contact(&[("Last_Name", "Hand"), ("WhatsApp_ID", "ABC")]);
    let answer = api
        .upsert(json!([{"WhatsApp_ID": "abc", "Phone": "1"}]))
        .await;
    assert_eq!(answer.body["data"][0]["details"]["id"], json!(hand));

    // Per-item errors: no Last_Name on insert, an unknown field, a unique value another
    // contact holds (matching on Email instead), a value of the wrong type; the others pass.
    let answer = api
        .post(
            "/crm/v8/Contacts/upsert",
            json!({
                "data": [
                    {"WhatsApp_ID": "5531900000000", "First_Name": "Sem Sobrenome"},
                    {"Last_Name": "X", "WhatsApp_ID": "5531900000001", "Nickname": "x"},
                    {"Last_Name": "Y", "Email": "y@example.com", "WhatsApp_ID": "5511987654321"},
                    {"Last_Name": "Z", "Phone": 5_511_987_654_321_u64},
                    {"Last_Name": "Ok", "Email": "ok@example.com"}
                ],
                "duplicate_check_fields": ["Email"]
            }),
        )
        .await;
    assert_eq!(answer.status, 207, "{:#}", answer.body);
    let items = answer.body["data"].as_array().unwrap();
    assert_eq!(items[0]["code"], json!("MANDATORY_NOT_FOUND"));
    assert_eq!(items[0]["details"]["api_name"], json!("Last_Name"));
    assert_eq!(items[0]["status"], json!("error"));
    assert_eq!(items[1]["code"], json!("INVALID_DATA"));
    assert_eq!(items[1]["details"]["api_name"], json!("Nickname"));
    assert_eq!(
        items[1]["details"]["json_path"],
        json!("$.data[1].Nickname")
    );
    assert_eq!(items[2]["code"], json!("DUPLICATE_DATA"));
    assert_eq!(items[2]["details"]["api_name"], json!("WhatsApp_ID"));
    assert_eq!(items[2]["details"]["duplicate_record"]["id"], json!(souza));
    assert_eq!(items[3]["code"], json!("INVALID_DATA"));
    assert_eq!(items[3]["details"]["expected_data_type"], json!("phone"));
    assert_eq!(items[4]["code"], json!("SUCCESS"));
    assert_eq!(items[4]["action"], json!("insert"));
    assert_eq!(fake.contacts().len(), 5);
    // All failed: 400 with the per-item array.
    let answer = api.upsert(json!([{"First_Name": "x"}])).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body["data"][0]["code"], json!("MANDATORY_NOT_FOUND"));
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());

    // PUT updates by id; an unknown id, or a unique value another holds, fails that item.
    let answer = api
        .put(
            "/crm/v8/Contacts",
            json!({"data": [
                {"id": souza, "Phone": "+55 11 98765-4321", "Mobile": null},
                {"id": "7300111000999999999", "Phone": "1"},
                {"id": lima, "WhatsApp_ID": "5511987654321"},
                {"Phone": "2"}
            ]}),
        )
        .await;
    assert_eq!(answer.status, 207, "{:#}", answer.body);
    let items = answer.body["data"].as_array().unwrap();
    assert_eq!(items[0]["code"], json!("SUCCESS"));
    assert_eq!(items[0]["message"], json!("record updated"));
    assert!(items[0].get("action").is_none());
    assert_eq!(items[1]["code"], json!("INVALID_DATA"));
    assert_eq!(items[1]["details"]["api_name"], json!("id"));
    assert_eq!(items[2]["code"], json!("DUPLICATE_DATA"));
    assert_eq!(items[3]["code"], json!("MANDATORY_NOT_FOUND"));
    let updated = fake.contacts().into_iter().find(|c| c.id == souza).unwrap();
    assert_eq!(updated.fields["Phone"], json!("+55 11 98765-4321"));
    assert!(!updated.fields.contains_key("Mobile"));
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());

    // More than 100 records, or matching on a field that is not unique, is the adapter's
    // mistake.
    let many: Vec<Value> = (0..101)
        .map(|n| json!({"Last_Name": "Many", "WhatsApp_ID": format!("55{n}")}))
        .collect();
    assert_eq!(api.upsert(Value::Array(many)).await.status, 400);
    let answer = api
        .post(
            "/crm/v8/Contacts/upsert",
            json!({"data": [{"Last_Name": "P", "Phone": "1"}], "duplicate_check_fields": ["Phone"]}),
        )
        .await;
    assert_eq!(answer.status, 400);
    assert_eq!(fake.violations().len(), 2, "{:?}", fake.violations());
    assert_eq!(fake.contacts().len(), 5);
}

#[tokio::test]
async fn notes_are_created_listed_and_updated() {
    let fake = ZohoFake::start(FakeConfig::default()).await;
    let api = Api::new(&fake).await;
    let maria = fake.insert_contact(&[("First_Name", "Maria"), ("Last_Name", "Souza")]);
    let joao = fake.insert_contact(&[("Last_Name", "Lima")]);

    let list = "/crm/v8/Notes?fields=Note_Content,Parent_Id&sort_by=Created_Time&sort_order=desc&per_page=200&page=1";
    let empty = api.get(list).await;
    assert_eq!((empty.status, empty.text.as_str()), (204, ""));

    let answer = api
        .post(
            "/crm/v8/Notes",
            json!({"data": [note_body(&maria, "in: oi (wamid.1)"), note_body(&joao, "in: olá (wamid.2)")]}),
        )
        .await;
    assert_eq!(answer.status, 201, "{:#}", answer.body);
    let first = answer.body["data"][0]["details"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = answer.body["data"][1]["details"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(answer.body["data"][0]["message"], json!("record added"));
    assert_eq!(answer.body["data"][0]["code"], json!("SUCCESS"));
    assert!(answer.body["data"][0]["details"]["Modified_Time"].is_string());
    let third = api
        .post(
            "/crm/v8/Notes",
            json!({"data": [{"Note_Content": "out: tudo bem? (wamid.3)",
                             "Parent_Id": {"module": {"api_name": "Contacts", "id": "7300111000000002179"}, "id": maria}}]}),
        )
        .await;
    assert_eq!(third.status, 201, "{:#}", third.body);
    let third = third.body["data"][0]["details"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let notes = fake.notes();
    assert_eq!(notes.len(), 3);
    assert_eq!(notes[0].id, first);
    assert_eq!(notes[0].parent_id, maria);
    assert_eq!(notes[0].title, "WhatsApp");
    assert_eq!(notes[0].content, "in: oi (wamid.1)");
    assert_eq!(notes[2].title, "");

    // Newest first (ties in Created_Time broken by id), only `id` and the fields asked for.
    let answer = api.get(list).await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    let data = answer.body["data"].as_array().unwrap();
    let ids: Vec<&Value> = data.iter().map(|n| &n["id"]).collect();
    assert_eq!(ids, [&json!(third), &json!(second), &json!(first)]);
    assert_eq!(
        data[2],
        json!({
            "id": first,
            "Note_Content": "in: oi (wamid.1)",
            "Parent_Id": {"module": {"api_name": "Contacts", "id": "7300111000000002179"}, "name": "Maria Souza", "id": maria}
        })
    );
    assert_eq!(
        answer.body["info"],
        json!({"page": 1, "per_page": 200, "count": 3, "sort_by": "Created_Time", "sort_order": "desc", "more_records": false})
    );
    // Pages.
    let page = |n: u32| {
        format!("/crm/v8/Notes?fields=Note_Title,Created_Time&sort_by=id&sort_order=asc&per_page=2&page={n}")
    };
    let answer = api.get(&page(1)).await;
    assert_eq!(answer.body["data"].as_array().unwrap().len(), 2);
    assert_eq!(answer.body["data"][0]["id"], json!(first));
    assert_eq!(answer.body["data"][0]["Note_Title"], json!("WhatsApp"));
    assert!(answer.body["data"][0]["Created_Time"].is_string());
    assert!(answer.body["data"][0].get("Note_Content").is_none());
    assert_eq!(answer.body["info"]["more_records"], json!(true));
    let answer = api.get(&page(2)).await;
    assert_eq!(answer.body["data"][0]["id"], json!(third));
    assert_eq!(answer.body["data"][0]["Note_Title"], Value::Null);
    assert_eq!(answer.body["info"]["more_records"], json!(false));
    assert_eq!(api.get(&page(3)).await.status, 204);
    // By ids.
    let answer = api
        .get(&format!(
            "/crm/v8/Notes?ids={first},{third},7300111000999999999&fields=Note_Content,Parent_Id"
        ))
        .await;
    assert_eq!(answer.status, 200);
    let ids: Vec<&Value> = answer.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| &n["id"])
        .collect();
    assert_eq!(ids, [&json!(third), &json!(first)]);
    assert_eq!(
        api.get("/crm/v8/Notes?ids=7300111000999999999&fields=Note_Content")
            .await
            .status,
        204
    );

    // Per-item errors: a parent that does not exist, another module, no text, no parent.
    let answer = api
        .post(
            "/crm/v8/Notes",
            json!({"data": [
                note_body("7300111000999999999", "x"),
                {"Note_Content": "x", "Parent_Id": {"module": {"api_name": "Leads"}, "id": maria}},
                {"Note_Title": "", "Parent_Id": {"module": {"api_name": "Contacts"}, "id": maria}},
                {"Note_Content": "x"},
                note_body(&joao, "ok")
            ]}),
        )
        .await;
    assert_eq!(answer.status, 207, "{:#}", answer.body);
    let codes: Vec<&Value> = answer.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["code"])
        .collect();
    assert_eq!(
        codes,
        [
            &json!("INVALID_DATA"),
            &json!("INVALID_DATA"),
            &json!("EXPECTED_FIELD_MISSING"),
            &json!("MANDATORY_NOT_FOUND"),
            &json!("SUCCESS")
        ]
    );
    assert_eq!(
        answer.body["data"][0]["details"]["api_name"],
        json!("Parent_Id")
    );
    assert_eq!(fake.notes().len(), 4);

    // PUT rewrites a note by id.
    let answer = api
        .put(
            "/crm/v8/Notes",
            json!({"data": [
                {"id": first, "Note_Content": "in: oi (wamid.1) [read]"},
                {"id": "7300111000999999999", "Note_Content": "x"},
                {"id": second}
            ]}),
        )
        .await;
    assert_eq!(answer.status, 207, "{:#}", answer.body);
    assert_eq!(answer.body["data"][0]["code"], json!("SUCCESS"));
    assert_eq!(answer.body["data"][0]["message"], json!("record updated"));
    assert_eq!(answer.body["data"][0]["details"]["id"], json!(first));
    assert_eq!(answer.body["data"][1]["code"], json!("INVALID_DATA"));
    assert_eq!(
        answer.body["data"][2]["code"],
        json!("EXPECTED_FIELD_MISSING")
    );
    assert_eq!(fake.notes()[0].content, "in: oi (wamid.1) [read]");
    assert_eq!(fake.notes()[0].title, "WhatsApp");
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    assert_eq!(fake.credits_used(), fake.requests().len() as u64);
}

#[tokio::test]
async fn off_spec_requests_are_violations_and_patched_defects_are_not() {
    let fake = ZohoFake::start(FakeConfig::default()).await;
    let api = Api::new(&fake).await;
    api.whatsapp_field().await;
    let maria = fake.insert_contact(&[("Last_Name", "Souza")]);

    // What Zoho documents, in each patched defect's place, is accepted.
    let accepted = [
        // note-requires-every-property, parent-module-requires-id
        ("POST", "/crm/v8/Notes", Some(json!({"data": [note_body(&maria, "x")]})), 201),
        ("PUT", "/crm/v8/Notes", Some(json!({"data": [{"id": "7300111000999999999", "Note_Content": "x"}]})), 400),
        // fields-schema-requires-75-properties
        (
            "POST",
            "/crm/v8/settings/fields?module=Contacts",
            Some(json!({"fields": [{"field_label": "Profile Name", "data_type": "text"}]})),
            201,
        ),
        // get-notes-requires-ids
        ("GET", "/crm/v8/Notes?fields=Note_Content,Parent_Id&sort_by=Created_Time&sort_order=desc&per_page=200&page=1", None, 200),
    ];
    for (method, path, body, status) in accepted {
        let answer = api.send(method, path, body).await;
        assert_eq!(answer.status, status, "{method} {path}: {:#}", answer.body);
    }
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    assert_eq!(
        SPEC_PATCHES.iter().map(|p| p.name).collect::<Vec<_>>(),
        [
            "note-requires-every-property",
            "parent-module-requires-id",
            "fields-schema-requires-75-properties",
            "get-notes-requires-ids",
            "servers-wrong-host",
            "templated-path-clash",
            "error-message-enums"
        ]
    );

    // Off the documents (schema) or off Zoho's prose (the fake's own checks).
    let mut refused: Vec<(&str, String, Option<Value>)> = vec![
        ("POST", "/crm/v8/Notes".into(), Some(json!({"data": []}))),
        (
            "POST",
            "/crm/v8/Notes".into(),
            Some(json!({"Note_Content": "x"})),
        ),
        (
            "PUT",
            "/crm/v8/Contacts".into(),
            Some(json!({"records": []})),
        ),
        (
            "POST",
            "/crm/v8/Contacts/upsert".into(),
            Some(json!({"duplicate_check_fields": ["WhatsApp_ID"]})),
        ),
        (
            "POST",
            "/crm/v8/coql".into(),
            Some(json!({"select_query": "select id from Contacts where"})),
        ),
        (
            "GET",
            "/crm/v8/Notes?fields=Note_Content&per_page=500".into(),
            None,
        ),
        (
            "GET",
            "/crm/v8/Notes?fields=Note_Content&page=11".into(),
            None,
        ),
        (
            "GET",
            "/crm/v8/Notes?fields=Note_Content&sort_by=Note_Title".into(),
            None,
        ),
        ("GET", "/crm/v8/Notes?fields=Wamid".into(), None),
        (
            "GET",
            "/crm/v8/Notes?fields=Note_Content&ids=abc".into(),
            None,
        ),
        ("POST", "/crm/v8/coql".into(), None),
    ];
    if validating() {
        refused.extend([
            ("POST", "/crm/v8/Notes".into(), Some(json!({"data": [{"Note_Content": 5, "Parent_Id": {"module": {"api_name": "Contacts"}, "id": maria}}]}))),
            ("POST", "/crm/v8/Notes".into(), Some(json!({"data": [{"Note_Content": "x", "Parent_Id": maria}]}))),
            ("POST", "/crm/v8/Notes".into(), Some(json!({"data": [{"Note_Content": "x", "Parent_Id": {"id": maria, "module": {"id": "1"}}}]}))),
            ("POST", "/crm/v8/Contacts/upsert".into(), Some(json!({"data": {"Last_Name": "x"}}))),
            ("POST", "/crm/v8/Contacts/upsert".into(), Some(json!({"data": [{"id": 1}]}))),
            ("POST", "/crm/v8/Contacts/upsert".into(), Some(json!({"data": [{"Last_Name": "x"}], "duplicate_check_fields": "WhatsApp_ID"}))),
            ("POST", "/crm/v8/coql".into(), Some(json!({"query": "select id from Contacts where id = '1'"}))),
            ("POST", "/crm/v8/settings/fields?module=Contacts".into(), Some(json!({"fields": [{"field_label": 7, "data_type": "text"}]}))),
            ("POST", "/crm/v8/settings/fields?module=Contacts".into(), Some(json!({"field_label": "x"}))),
            ("GET", "/crm/v8/Notes?per_page=10".into(), None),
            ("GET", "/crm/v8/Notes?fields=Note_Content&limit=10".into(), None),
            ("GET", "/crm/v8/settings/fields?module=Contacts&type=everything".into(), None),
            ("POST", "/crm/v8/Contacts/upsert?trigger=workflow".into(), Some(json!({"data": [{"Last_Name": "x"}]}))),
        ]);
    }
    let invalid = json!({"code": "INVALID_DATA", "details": {}, "message": "invalid data", "status": "error"});
    for (method, path, body) in &refused {
        let before = fake.violations().len();
        let answer = api.send(method, path, body.clone()).await;
        assert_eq!(
            answer.status, 400,
            "{method} {path} {body:?}: {:#}",
            answer.body
        );
        assert_eq!(answer.body, invalid, "{method} {path}");
        assert!(
            fake.violations().len() > before,
            "{method} {path} {body:?} was not recorded"
        );
    }
    // A body that is not JSON.
    let answer = reqwest::Client::new()
        .post(format!("{}/crm/v8/Notes", fake.base_url()))
        .header("authorization", format!("Zoho-oauthtoken {}", api.token))
        .body("data=1")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let recorded = fake.requests().last().unwrap().clone();
    assert_eq!(recorded.body, json!("data=1"));

    // Endpoints the fake does not implement: 404 INVALID_URL_PATTERN and a violation.
    for (method, path) in [
        ("GET", "/crm/v8/Contacts/search?phone=5511987654321"),
        ("POST", "/crm/v8/Leads/upsert"),
        ("GET", &format!("/crm/v8/Notes/{maria}") as &str),
        ("DELETE", &format!("/crm/v8/Notes/{maria}") as &str),
        ("GET", "/crm/v2/Contacts"),
        ("GET", "/oauth/v2/token"),
    ] {
        let before = fake.violations().len();
        let answer = api.send(method, path, None).await;
        assert_eq!(answer.status, 404, "{method} {path}");
        assert_eq!(answer.body["code"], json!("INVALID_URL_PATTERN"));
        assert_eq!(fake.violations().len(), before + 1, "{method} {path}");
        assert!(fake.violations()[before].contains("does not implement"));
    }

    // Nothing was written by a rejected request.
    assert_eq!(fake.contacts().len(), 1);
    assert_eq!(fake.notes().len(), 1);
    let fields = api.get("/crm/v8/settings/fields?module=Contacts").await;
    let custom = fields.body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["custom_field"] == json!(true))
        .count();
    assert_eq!(custom, 2);
    // Every /crm/v8 call was charged, the rejected ones too; other paths were not.
    let api_calls = fake
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/crm/v8/"))
        .count() as u64;
    assert_eq!(fake.credits_used(), api_calls);
}

#[tokio::test]
async fn contacts_and_notes_are_deleted_by_ids() {
    let fake = ZohoFake::start(FakeConfig::default()).await;
    let api = Api::new(&fake).await;
    let maria = fake.insert_contact(&[("Last_Name", "Souza"), ("Mobile", "+5511987654321")]);
    let joao = fake.insert_contact(&[("Last_Name", "Lima")]);
    let answer = api
        .post(
            "/crm/v8/Notes",
            json!({"data": [note_body(&maria, "in: segredo (wamid.1)"), note_body(&joao, "in: outro (wamid.2)")]}),
        )
        .await;
    assert_eq!(answer.status, 201, "{:#}", answer.body);
    let note = answer.body["data"][0]["details"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(fake.holds("segredo") && fake.holds("987654321"));

    // Deleted ids answer SUCCESS, unknown ones (a second delete) INVALID_DATA, in order.
    let deleted = api
        .send(
            "DELETE",
            &format!("/crm/v8/Notes?ids={note},1234567890123456789"),
            None,
        )
        .await;
    assert_eq!(deleted.status, 200, "{:#}", deleted.body);
    assert_eq!(deleted.body["data"][0]["code"], json!("SUCCESS"));
    assert_eq!(deleted.body["data"][0]["details"]["id"], json!(note));
    assert_eq!(deleted.body["data"][1]["code"], json!("INVALID_DATA"));
    assert!(!fake.holds("segredo"));
    let deleted = api
        .send("DELETE", &format!("/crm/v8/Contacts?ids={maria}"), None)
        .await;
    assert_eq!(
        deleted.body["data"][0]["code"],
        json!("SUCCESS"),
        "{:#}",
        deleted.body
    );
    let again = api
        .send("DELETE", &format!("/crm/v8/Contacts?ids={maria}"), None)
        .await;
    assert_eq!(again.body["data"][0]["code"], json!("INVALID_DATA"));
    assert!(!fake.holds("987654321"));
    assert_eq!(fake.contacts().len(), 1);
    assert_eq!(fake.notes().len(), 1);

    // No ids, more than 100, or an unknown parameter: off the documented contract.
    let before = fake.violations().len();
    let many: Vec<String> = (0..101)
        .map(|i| format!("{}", 1_000_000_000_000_000_000u64 + i))
        .collect();
    for path in [
        "/crm/v8/Contacts".to_owned(),
        format!("/crm/v8/Contacts?ids={}", many.join(",")),
    ] {
        assert_eq!(api.send("DELETE", &path, None).await.status, 400, "{path}");
    }
    if validating() {
        let bad = api
            .send(
                "DELETE",
                &format!("/crm/v8/Notes?ids={joao}&cascade=true"),
                None,
            )
            .await;
        assert_eq!(bad.status, 400);
        assert_eq!(
            fake.violations().len(),
            before + 3,
            "{:?}",
            fake.violations()
        );
    }
    assert_eq!(fake.contacts().len(), 1);
}
