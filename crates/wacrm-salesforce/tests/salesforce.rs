//! The Salesforce adapter driven by the sync engine against the Salesforce fake, which checks
//! every request against the REST API Developer Guide's documented shapes: the conformance
//! suite, the calls a thousand messages cost, setup and check, an expired session renewed, the
//! token answer's `instance_url`, the JWT bearer grant, several contacts on one WhatsApp id,
//! and the daily allocation.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};
use wacrm_core::{Direction, ErrorClass, Event};
use wacrm_crm::{ConnectionConfig, ContactSync, CrmAdapter, CrmError};
use wacrm_salesforce::{Salesforce, SalesforceConfig};
use wacrm_sync::SyncEngine;
use wacrm_testkit::conformance::{self, same_phone, Canned, Held, Target};
use wacrm_testkit::salesforce::{FakeConfig, SalesforceFake};

const FIELD: &str = "WhatsApp_Id__c";
const OBJECT: &str = "WhatsApp_Message__c";

/// A throwaway RSA key made for this test only (`openssl genrsa -traditional 2048`): the fake
/// checks the assertion's claims, not its signature.
const TEST_KEY: &str = "-----BEGIN RSA PRIVATE KEY-----
MIIEpAIBAAKCAQEAqTOSfKBkJbkShbzRjSLbrdW7JsASSM5B6UC2MtpkKxa7bbFT
JLFCSffDnzXlTtOroU02PSKLSrZMduiBxvL3AMTiDRny7zOl54ODI0nZ7WCAgd8x
RfXwCnHTcmYp02Thzyk7BpxgR0PK5nEkmM5xXG8xP92pMbrMG0vzHz0zWJOQho/w
lxwDIGcdJl0kt75VohjXhwpWo1IdN6aHhVLK6VPa0jvSnSoLiQB/YYgOIKNuSpoY
mrjR89yltQvHiTGFhpQH3l8K7oBii3Kg8QYg1PL7qaWfGVAXmgOMdKxPvCPgU7iC
wjKDLWRqZFFr0LKgiktn9SEdtSJJyHMi90c7LwIDAQABAoIBAAEOUla2xYk6u3Pc
Ns6Trh1KnS1ju3l62Ax1m+17UW63aJoJpkQvWwONKUpgErtINOT/z1vYUFg6BQYk
81Jjh8kYcXS1eb+mad2lA3d/6X1CweqNkwglvcbC6RforVAlbAdX8YdcCHnJYYXI
pPrTJv/1rbABWSH3UXjGI5FJV32xA3VR98Sh1QETCTG/WLpiVVLZsooIIJADdMHC
BmhOrFbR3z9/ICyVEbE39RR4W2TviRNOTbzskrPZci+K+nLHSwGDl4mE4XQDyC1c
qB2jACSxzt7erufAU5+/6K2JGs4u3xORpF/deyDqDugsvAQ0DrR/tAsez95Xhf7I
xyQcWmECgYEA4yfp7wUJ/t8zhjM65oheRhAohtekXSERfCeuMwfDovJLEMrAXUPu
fCW/mmIcRw4rebNXovOFHv7aZYCKYYPeEl1gzPWeRsTNPAM+jO2Weh+UIeXgbQ+/
Dn9lraY4aZCPoUxoVjZ0MROgiE/Uz4Dx6LgG+fUaL+6ClyM75O8Lb1ECgYEAvq/A
PUh2ZBQcQzZk6xtOt9OlllTZZbRQa7m64v3SWbrQagiAC8BbT102sWes9TTwH+Dh
aj56qU3LxiiCp+TwsJ8fy20vkiesxWzEXbAdyzPWDAom+q9KEnHpVrRM4PuV9iWI
ir3oQtTMIccY+Fw5k8vApdEsfaPz/E+bb4yeYn8CgYBsKYdEntuhltpL3nz/ZJOv
POZvPqMvDR3sRmC2P84x+rkvp7ttLXmTd84CTxEz7FVbP8BNATO0DJolls1NnaLS
j9AWCCZzgCZRmyHfrQnn4L2CXpk8lTDeUF80Dl/yNDmQDnfoBUnSTIw2G/0zSSzn
KSl5P/JWPHXGTaqpWgHR4QKBgQCG6lCoy3lAi94HTBgRJIwIkk3JVJVQWUjBP3LU
IeRPqlbFfugh6GJyf7Avyvvbri3rUDAM/NHKsgloVcdDxT7qqFtVkhYjYcDjGnbB
FtetqypZ8GDt41IURNZki0MNt9O9iYbXK1CG4Irhpz2qk44FXRcb+yhwaK07KpP+
U87IPwKBgQCSihZPJLFuwhV4R04Jjl73HXrRt9LG+vFjh/DfIitZRbeZX/SNKvDb
FOdSFd8KUZ/w2Ut+cWxpiT5VnNWj/R4Nr51E9MchigbHMHlq0SR9QxQZ0VS0UNrB
sfosOb9Ab6zf666LsjPFxGJgZVY6Z6DWc4X8Gpvrfm8Muvn5WW9Nyg==
-----END RSA PRIVATE KEY-----";

/// Tokens straight from the fake; API calls to `instance_url` (the fault proxy) when given.
fn config(fake: &SalesforceFake, instance_url: Option<&str>) -> SalesforceConfig {
    let fake_config = fake.config();
    let mut config = SalesforceConfig {
        client_id: fake_config.client_id,
        client_secret: fake_config.client_secret,
        login_url: fake.base_url(),
        instance_url: instance_url.map(str::to_owned),
        requests_per_s: 50,
        limit_backoff_ms: 0,
        ..SalesforceConfig::default()
    };
    config.sync.name = "salesforce".into();
    config
}

struct SalesforceTarget {
    fake: SalesforceFake,
}

fn text(record: &serde_json::Map<String, Value>, field: &str) -> Option<String> {
    record.get(field).and_then(Value::as_str).map(str::to_owned)
}

impl Target for SalesforceTarget {
    fn name(&self) -> &'static str {
        "salesforce"
    }

    fn upstream(&self) -> String {
        self.fake.base_url()
    }

    fn adapter(&self, base_url: &str) -> (ConnectionConfig, Arc<dyn CrmAdapter>) {
        let config = config(&self.fake, Some(base_url));
        (
            config.sync.clone(),
            Arc::new(Salesforce::new(config).unwrap()),
        )
    }

    /// Salesforce answers no 429: the concurrent-request limit is a 403
    /// `REQUEST_LIMIT_EXCEEDED`, with the org's allocation far from spent.
    fn rate_limited(&self) -> Canned {
        Canned::json(
            403,
            &[("sforce-limit-info", "api-usage=500/100000")],
            json!([{"message": "ConcurrentPerOrgLongTxn Limit exceeded.",
                    "errorCode": "REQUEST_LIMIT_EXCEEDED"}]),
        )
    }

    /// The daily allocation spent: the same 403, with the usage at the allocation.
    fn quota_exhausted(&self) -> Option<Canned> {
        Some(Canned::json(
            403,
            &[("sforce-limit-info", "api-usage=100000/100000")],
            json!([{"message": "TotalRequests Limit exceeded.",
                    "errorCode": "REQUEST_LIMIT_EXCEEDED"}]),
        ))
    }

    fn rejected(&self) -> Canned {
        Canned::json(
            400,
            &[],
            json!([{"message": "Body: data value too large", "errorCode": "STRING_TOO_LONG",
                    "fields": ["Body__c"]}]),
        )
    }

    fn messages(&self) -> HashMap<String, Vec<Held>> {
        let mut out: HashMap<String, Vec<Held>> = HashMap::new();
        for record in self.fake.records(OBJECT) {
            if let Some(wamid) = text(&record, "Wamid__c") {
                out.entry(wamid).or_default().push(Held {
                    contact: text(&record, "Contact__c").unwrap_or_default(),
                    status: text(&record, "Status__c"),
                });
            }
        }
        out
    }

    fn contacts_for(&self, whatsapp_id: &str) -> Vec<String> {
        self.fake
            .records("Contact")
            .into_iter()
            .filter(|c| {
                text(c, FIELD).as_deref() == Some(whatsapp_id)
                    || ["Phone", "MobilePhone"]
                        .iter()
                        .any(|f| text(c, f).is_some_and(|p| same_phone(&p, whatsapp_id)))
            })
            .filter_map(|c| text(&c, "Id"))
            .collect()
    }

    fn hand_made_contact(&self, phone: &str, name: &str) -> Option<String> {
        Some(
            self.fake
                .insert_record("Contact", &[("LastName", name), ("Phone", phone)]),
        )
    }

    fn violations(&self) -> Vec<String> {
        self.fake.violations()
    }

    fn holds(&self, text: &str) -> bool {
        self.fake.holds(text)
    }
}

async fn started() -> SalesforceTarget {
    let fake = SalesforceFake::start(FakeConfig::default()).await;
    let adapter = Salesforce::new(config(&fake, None)).unwrap();
    let created = adapter.setup().await.unwrap();
    assert_eq!(created.len(), 11, "{created:?}");
    assert!(
        adapter.setup().await.unwrap().is_empty(),
        "setup is idempotent"
    );
    SalesforceTarget { fake }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_passes_the_conformance_suite() {
    let target = started().await;
    conformance::run(&target).await;
    assert!(target.fake.max_in_flight() <= 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_creates_what_check_looks_for_and_an_expired_session_is_renewed() {
    let fake = SalesforceFake::start(FakeConfig::default()).await;
    let adapter = Salesforce::new(config(&fake, None)).unwrap();
    let missing = adapter.check().await.unwrap_err();
    assert_eq!(missing.class(), ErrorClass::Fatal);
    let missing = missing.to_string();
    assert!(missing.contains("wacrm crm setup"), "{missing}");
    assert!(
        missing.contains("Contact.WhatsApp_Id__c is missing"),
        "{missing}"
    );
    adapter.setup().await.unwrap();
    assert_eq!(
        fake.field_flags("Contact", FIELD),
        Some((true, true, false))
    );
    assert_eq!(
        fake.field_flags(OBJECT, "Wamid__c"),
        Some((true, true, true))
    );
    fake.expire_tokens();
    let ok = adapter.check().await.unwrap();
    assert!(ok.iter().any(|l| l.contains("WhatsApp_Id__c")), "{ok:?}");
    assert!(
        ok.iter()
            .any(|l| l.starts_with("API requests in the last 24 h: ")),
        "{ok:?}"
    );
    assert_eq!(
        fake.token_requests(),
        2,
        "one token, then one after it expired"
    );
    let usage = adapter.api_usage().unwrap();
    assert_eq!(usage.allowed, 100_000);
    // A field removed (or hidden by field-level security) is named.
    fake.remove_field(OBJECT, "Sent_At__c");
    let err = adapter.check().await.unwrap_err().to_string();
    assert!(
        err.contains("WhatsApp_Message__c.Sent_At__c is missing"),
        "{err}"
    );
    // A refused credential stops the connection.
    let mut wrong = config(&fake, None);
    wrong.client_secret = "not-the-secret".into();
    let err = Salesforce::new(wrong).unwrap().check().await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Fatal, "{err}");
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

/// Requests go to the host the token answer names, under the configured version's path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_go_to_the_instance_url_of_the_token_answer() {
    let fake = SalesforceFake::start(FakeConfig::default()).await;
    let port = fake.base_url().rsplit(':').next().unwrap().to_owned();
    let mut config = config(&fake, None);
    config.login_url = format!("http://localhost:{port}");
    let adapter = Salesforce::new(config).unwrap();
    adapter.setup().await.unwrap();
    let hosts = fake.hosts();
    assert!(!hosts.is_empty());
    assert!(
        hosts.iter().all(|h| h == &format!("127.0.0.1:{port}")),
        "{hosts:?}"
    );
    assert!(fake
        .requests()
        .iter()
        .all(|r| r.path.starts_with("/services/data/v62.0/")));
    // Every answer, successes included, carried the org's API use: it is known without a
    // `check` and without an error.
    let usage = adapter
        .api_usage()
        .expect("Sforce-Limit-Info read from a 2xx answer");
    assert_eq!(usage.allowed, 100_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jwt_bearer_grant_is_used_when_a_key_is_configured() {
    let fake = SalesforceFake::start(FakeConfig::default()).await;
    let mut config = config(&fake, None);
    config.client_secret = String::new();
    config.jwt_subject = Some(fake.config().jwt_subject);
    config.jwt_private_key_pem = Some(TEST_KEY.into());
    let adapter = Salesforce::new(config.clone()).unwrap();
    adapter.setup().await.unwrap();
    assert!(adapter.check().await.is_ok());
    assert_eq!(fake.token_requests(), 1);
    let mut no_key = config.clone();
    no_key.jwt_private_key_pem = None;
    assert!(matches!(Salesforce::new(no_key), Err(CrmError::Fatal(_))));
    // The key from a file works the same.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("key.pem");
    std::fs::write(&file, TEST_KEY).unwrap();
    let mut from_file = config.clone();
    from_file.jwt_private_key_pem = None;
    from_file.jwt_private_key_file = Some(file.display().to_string());
    assert!(Salesforce::new(from_file).unwrap().check().await.is_ok());
    config.jwt_subject = Some("someone-else@example.com".into());
    let err = Salesforce::new(config).unwrap().check().await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Fatal, "{err}");
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

fn contact(wa: &str) -> ContactSync {
    ContactSync {
        contact_key: format!("phone:+{wa}"),
        whatsapp_id: wa.into(),
        phone: None,
        profile_name: Some("Ana Lima".into()),
        phone_number_id: "106540352242922".into(),
    }
}

/// Several contacts holding one WhatsApp id are refused naming them, never guessed between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_contacts_on_one_whatsapp_id_are_refused_with_their_ids() {
    let target = started().await;
    let fake = &target.fake;
    let a = fake.insert_record("Contact", &[("LastName", "A"), (FIELD, "5511977000001")]);
    let b = fake.insert_record("Contact", &[("LastName", "B"), (FIELD, "5511977000001")]);
    let adapter = Salesforce::new(config(fake, None)).unwrap();
    let results = adapter
        .upsert_contacts(&[contact("5511977000001"), contact("5511977000002")])
        .await
        .unwrap();
    match &results[0] {
        Err(CrmError::Invalid(m)) => assert!(m.contains(&a) && m.contains(&b), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(results[1].is_ok());
    // A salesperson's typed name is never overwritten: the known contact is not written.
    let named = fake.insert_record(
        "Contact",
        &[("LastName", "Typed By Sales"), (FIELD, "5511977000003")],
    );
    let mut c = contact("5511977000003");
    c.profile_name = Some("Someone Else".into());
    assert_eq!(
        adapter.upsert_contacts(&[c]).await.unwrap()[0],
        Ok(named.clone())
    );
    let stored = fake
        .records("Contact")
        .into_iter()
        .find(|r| text(r, "Id") == Some(named.clone()))
        .unwrap();
    assert_eq!(text(&stored, "LastName").as_deref(), Some("Typed By Sales"));
    // A contact who changed number gets the new WhatsApp id.
    adapter
        .update_whatsapp_ids(&[(named.clone(), "5511977000004".into())])
        .await
        .unwrap();
    let stored = fake
        .records("Contact")
        .into_iter()
        .find(|r| text(r, "Id") == Some(named.clone()))
        .unwrap();
    assert_eq!(text(&stored, FIELD).as_deref(), Some("5511977000004"));
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

/// Once the org's allocation is spent, the adapter parks the connection instead of spinning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_allocation_parks_the_connection() {
    let target = started().await;
    let fake = &target.fake;
    fake.set_api_used(fake.config().daily_api_requests);
    let adapter = Salesforce::new(config(fake, None)).unwrap();
    let err = adapter
        .upsert_contacts(&[contact("5511977000009")])
        .await
        .unwrap_err();
    assert!(matches!(err, CrmError::QuotaExhausted { .. }), "{err:?}");
    assert_eq!(adapter.api_usage().map(|u| u.spent()), Some(true));
}

fn message(i: usize, contact: usize) -> Event {
    conformance::text_message(
        &format!("wamid.sf{i}"),
        &format!("5511988{contact:06}"),
        &format!("Cliente Numero{contact}"),
        1_780_000_000 + i as i64,
        Direction::Inbound,
        &format!("mensagem {i}"),
    )
}

/// 200 records a call: a batch costs one query by WhatsApp id, the phone queries, one contact
/// upsert and five message upserts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_from_a_hundred_contacts_in_a_handful_of_calls() {
    let target = started().await;
    let fake = &target.fake;
    let (db, _dir) = conformance::temp_store().await;
    let (sync, adapter) = target.adapter(&fake.base_url());
    let mut engine = SyncEngine::new(sync, adapter, db);
    fake.clear_requests();
    let events: Vec<Event> = (0..1000).map(|i| message(i, i % 100)).collect();
    assert_eq!(conformance::sync_batch(&mut engine, &events).await, vec![]);
    let requests = fake.requests();
    let count = |f: &dyn Fn(&wacrm_testkit::salesforce::FakeRequest) -> bool| {
        requests.iter().filter(|r| f(r)).count()
    };
    let by_id = count(&|r| {
        r.path.ends_with("/query")
            && r.query
                .iter()
                .any(|(_, q)| q.starts_with("SELECT Id, WhatsApp_Id__c"))
    });
    let by_phone = count(&|r| {
        r.path.ends_with("/query") && r.query.iter().any(|(_, q)| q.contains("Phone IN"))
    });
    let contact_upserts = count(&|r| {
        r.path
            .ends_with("/composite/sobjects/Contact/WhatsApp_Id__c")
    });
    let message_upserts = count(&|r| {
        r.path
            .ends_with("/composite/sobjects/WhatsApp_Message__c/Wamid__c")
    });
    eprintln!(
        "Salesforce calls for 1,000 messages from 100 new contacts: {} ({by_id} SOQL by \
         WhatsApp id, {by_phone} SOQL by phone, {contact_upserts} contact upsert, \
         {message_upserts} message upserts, others {}); busiest second {}; most in flight {}",
        requests.len(),
        requests.len() - by_id - by_phone - contact_upserts - message_upserts,
        fake.busiest_second(),
        fake.max_in_flight(),
    );
    assert_eq!(fake.records("Contact").len(), 100);
    let held = target.messages();
    assert_eq!(held.len(), 1000);
    assert!(held.values().all(|v| v.len() == 1));
    assert!(requests.len() <= 16, "{} calls", requests.len());
    assert!(fake.busiest_second() <= 50);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

/// Requests in flight at once never exceed `max_concurrent_requests`, however many callers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_are_bounded() {
    let fake = SalesforceFake::start(FakeConfig {
        latency_ms: 40,
        max_concurrent_requests: 4,
        ..FakeConfig::default()
    })
    .await;
    let setup = Salesforce::new(config(&fake, None)).unwrap();
    setup.setup().await.unwrap();
    let mut bounded = config(&fake, None);
    bounded.max_concurrent_requests = 4;
    bounded.requests_per_s = 1000;
    let adapter = Arc::new(Salesforce::new(bounded).unwrap());
    let calls: Vec<_> = (0..24)
        .map(|i| {
            let adapter = Arc::clone(&adapter);
            tokio::spawn(async move { adapter.find_messages(&[format!("wamid.c{i}")]).await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), vec![]);
    }
    let most = fake.max_in_flight();
    assert!((2..=4).contains(&most), "{most} in flight at once");
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

/// The fake's deletes, as the REST API Developer Guide documents them: a record delete answers
/// 204 and then `ENTITY_IS_DELETED`; sObject Collections delete answers per id, in order; a
/// parameter the resource does not take is a violation.
#[tokio::test]
async fn the_fake_deletes_as_the_rest_api_documents() {
    let fake = SalesforceFake::start(FakeConfig::default()).await;
    let fake_config = fake.config();
    let client = reqwest::Client::new();
    let token: Value = client
        .post(format!("{}/services/oauth2/token", fake.base_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", fake_config.client_id.as_str()),
            ("client_secret", fake_config.client_secret.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let delete = |path: String| {
        client
            .delete(format!("{}/services/data/v62.0{path}", fake.base_url()))
            .bearer_auth(&token)
            .send()
    };
    let maria = fake.insert_record(
        "Contact",
        &[("LastName", "Souza"), ("Phone", "+5511987654321")],
    );
    let joao = fake.insert_record("Contact", &[("LastName", "Lima")]);
    assert!(fake.holds("987654321"));

    let answer = delete(format!("/sobjects/Contact/{maria}")).await.unwrap();
    assert_eq!(answer.status(), 204);
    assert!(!fake.holds("987654321"));
    let answer = delete(format!("/sobjects/Contact/{maria}")).await.unwrap();
    assert_eq!(answer.status(), 404);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body[0]["errorCode"], "ENTITY_IS_DELETED");
    let answer = delete("/sobjects/Contact/003000000000000AAA".into())
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body[0]["errorCode"], "NOT_FOUND");

    let answer = delete(format!(
        "/composite/sobjects?ids={joao},not-an-id,{maria}&allOrNone=false"
    ))
    .await
    .unwrap();
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body[0]["success"], true, "{body:#}");
    assert_eq!(body[0]["id"], json!(joao));
    assert_eq!(body[1]["errors"][0]["statusCode"], "MALFORMED_ID");
    assert_eq!(body[2]["errors"][0]["statusCode"], "ENTITY_IS_DELETED");
    assert!(fake.records("Contact").is_empty());
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());

    let answer = delete(format!("/composite/sobjects?ids={joao}&cascade=true"))
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let answer = delete(format!(
        "/composite/sobjects?ids={}",
        vec![joao.as_str(); 201].join(",")
    ))
    .await
    .unwrap();
    assert_eq!(answer.status(), 400);
    assert_eq!(fake.violations().len(), 2, "{:?}", fake.violations());
}
