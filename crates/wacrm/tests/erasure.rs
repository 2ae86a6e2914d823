//! Erasure end to end, through the real binary: a contact's phone and every body they sent are
//! gone from the store, the dead letters, the embedded log, the CRM (the HubSpot fake) and the
//! logs, while another contact is untouched; Kafka's compacted contacts topic gets a tombstone
//! for each of their keys, then the `contact.erased.v1` event, and once the broker has
//! compacted (tansu does when it starts) no record there holds their phone; an erasure cut by a
//! crash while a
//! CRM is down resumes when the service comes back; Meta's late retry of an erased message
//! does not bring it back, and a new message from the person does.
//!
//! Embedded bus on SQLite, and Kafka (tansu) on PostgreSQL when `WACRM_TEST_POSTGRES_URL` is
//! set (on SQLite otherwise).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{contact_wa_id, text_webhook, Bus, Service};
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use wacrm_testkit::hubspot::{FakeConfig, Fault, HubSpotFake};

/// The erased contact (webhooks 0, 25, 50) and the one kept (1, 26, 51).
const ERASED: [usize; 3] = [0, 25, 50];
const KEPT: [usize; 3] = [1, 26, 51];

fn body_of(i: usize) -> String {
    format!("mensagem {i}")
}

/// A status webhook wacrm cannot read (`deleted` is no state): a dead letter that holds the
/// recipient's phone.
fn odd_status(wa_id: &str) -> Vec<u8> {
    format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{
        "messaging_product":"whatsapp","metadata":{{"display_phone_number":"1","phone_number_id":"106540352242922"}},
        "statuses":[{{"id":"wamid.odd","status":"deleted","timestamp":"1750000000","recipient_id":"{wa_id}"}}]}}}}]}}]}}"#
    )
    .into_bytes()
}

async fn service_with_hubspot(bus: Bus, store_url: Option<String>, fake: &HubSpotFake) -> Service {
    let mut env = vec![
        ("WACRM_CRM__CONNECTIONS__MAIN__KIND", "hubspot".to_owned()),
        (
            "WACRM_CRM__CONNECTIONS__MAIN__TOKEN",
            FakeConfig::default().token,
        ),
        ("WACRM_CRM__CONNECTIONS__MAIN__BASE_URL", fake.base_url()),
        ("WACRM_LOG", "info".to_owned()),
    ];
    if let Some(url) = store_url {
        env.push(("WACRM_STORE__URL", url));
    }
    let service = Service::new(bus).with_env(&env);
    let out = service
        .command()
        .args(["crm", "setup", "hubspot", "--connection", "main"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    service
}

async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every row of every table of a store or log as text, for searching: on PostgreSQL each row
/// cast to text, on SQLite each column cast to text.
async fn all_text(url: &str) -> String {
    let db = Database::connect(url).await.unwrap();
    let backend = db.get_database_backend();
    let tables_sql = match backend {
        DbBackend::Postgres => {
            "SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public'"
        }
        _ => "SELECT name FROM sqlite_master WHERE type = 'table'",
    };
    let tables: Vec<String> = db
        .query_all(Statement::from_string(backend, tables_sql))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.try_get::<String>("", "name").unwrap())
        .collect();
    let mut out = String::new();
    for table in tables {
        let sql = match backend {
            DbBackend::Postgres => format!("SELECT t::text AS row FROM \"{table}\" t"),
            _ => {
                let columns: Vec<String> = db
                    .query_all(Statement::from_string(
                        backend,
                        format!("SELECT name FROM pragma_table_info('{table}')"),
                    ))
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|r| r.try_get::<String>("", "name").unwrap())
                    .collect();
                let joined: Vec<String> = columns
                    .iter()
                    .map(|c| format!("coalesce(CAST(\"{c}\" AS TEXT), '')"))
                    .collect();
                format!(
                    "SELECT {} AS row FROM \"{table}\"",
                    joined.join(" || '|' || ")
                )
            }
        };
        for row in db
            .query_all(Statement::from_string(backend, sql))
            .await
            .unwrap()
        {
            out.push_str(&table);
            out.push(':');
            out.push_str(&row.try_get::<String>("", "row").unwrap_or_default());
            out.push('\n');
        }
    }
    out
}

/// The needles of the erased contact found in `text`.
fn traces_in(text: &str, needles: &[String]) -> Vec<String> {
    needles
        .iter()
        .filter(|n| text.contains(n.as_str()))
        .cloned()
        .collect()
}

/// The records of `topic` from the beginning as (key, value or `None` for a tombstone).
fn kafka_records(bootstrap: &str, topic: &str) -> Vec<(String, Option<Vec<u8>>)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("erasure-check-{}", uuid_like()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let mut idle = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while idle < 5 && Instant::now() < deadline {
        match consumer.poll(Duration::from_secs(1)) {
            Some(Ok(m)) => {
                idle = 0;
                out.push((
                    String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                    m.payload().map(<[u8]>::to_vec),
                ));
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => idle += 1,
        }
    }
    out
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

async fn erasure_reaches_everywhere(bus: Bus, postgres: Option<String>) {
    let fake = HubSpotFake::start(FakeConfig::default()).await;
    let store_url = postgres.clone();
    let mut service = service_with_hubspot(bus, store_url.clone(), &fake).await;
    let name = service.bus.name();
    let key = service.admin_key();
    let agent = service
        .create_key(&["--name", "Ana", "--role", "agent", "--all-numbers"])
        .unwrap();
    let limited_dpo = service
        .create_key(&[
            "--name",
            "Dora",
            "--role",
            "dpo",
            "--number",
            "106540352242922",
        ])
        .unwrap();
    service.start().await;

    let erased_wa = contact_wa_id(0);
    let kept_wa = contact_wa_id(1);
    for i in ERASED.iter().chain(&KEPT) {
        assert_eq!(service.post_webhook(text_webhook(*i).1).await, 200);
    }
    assert_eq!(service.post_webhook(odd_status(&erased_wa)).await, 200);
    eventually(
        "six messages on HubSpot",
        Duration::from_secs(90),
        || async { fake.communication_count() >= 6 },
    )
    .await;
    eventually("the dead letter", Duration::from_secs(30), || async {
        let (_, dead) = service.get_json("/v1/dead-letters", &key).await;
        dead.as_array().is_some_and(|d| !d.is_empty())
    })
    .await;
    // The CRM's consumer and the store's run apart: HubSpot can hold the messages before the
    // store has the contact.
    eventually(
        "the contact in the store",
        Duration::from_secs(30),
        || async {
            let (_, found) = service
                .get_json(&format!("/v1/contacts?wa_id={erased_wa}"), &key)
                .await;
            found.as_array().is_some_and(|f| f.len() == 1)
        },
    )
    .await;
    let (_, found) = service
        .get_json(&format!("/v1/contacts?wa_id={erased_wa}"), &key)
        .await;
    let contact_id = found[0]["id"].as_str().unwrap().to_owned();

    // Refused, and nothing filed: no such contact, a key without `contacts:erase`, a key
    // limited to business numbers (an erasure reaches every number).
    for (who, id, status) in [
        (&key, "no-such-contact", 404),
        (&agent, contact_id.as_str(), 403),
        (&limited_dpo, contact_id.as_str(), 403),
    ] {
        let refused = service
            .client
            .post(service.url(&format!("/v1/contacts/{id}/erase")))
            .bearer_auth(who)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status().as_u16(), status, "{name}: {id}");
    }
    let (_, still) = service
        .get_json(&format!("/v1/contacts?wa_id={erased_wa}"), &key)
        .await;
    assert_eq!(
        still.as_array().unwrap().len(),
        1,
        "{name}: a refused erasure erased"
    );

    // A crash mid-erasure: the CRM is down, the service dies, comes back, and finishes it.
    fake.inject(Fault::ServerErrorRate(100));
    let response = service
        .client
        .post(service.url(&format!("/v1/contacts/{contact_id}/erase")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202, "{name}");
    let filed: serde_json::Value = response.json().await.unwrap();
    let erasure_id = filed["id"].as_str().unwrap().to_owned();
    eventually("the store step", Duration::from_secs(30), || async {
        let (_, e) = service
            .get_json(&format!("/v1/erasures/{erasure_id}"), &key)
            .await;
        e["steps"]["store"]["state"] == "done" && e["steps"]["crm:main"]["state"] == "pending"
    })
    .await;
    service.kill();
    fake.reset_faults();
    service.start().await;
    eventually("the erasure to finish", Duration::from_secs(90), || async {
        let (_, e) = service
            .get_json(&format!("/v1/erasures/{erasure_id}"), &key)
            .await;
        e["state"] == "finished"
    })
    .await;
    let (_, finished) = service
        .get_json(&format!("/v1/erasures/{erasure_id}"), &key)
        .await;
    for step in ["store", "dead_letters", "bus", "crm:main"] {
        assert_eq!(
            finished["steps"][step]["state"], "done",
            "{name}: {finished}"
        );
    }

    let mut needles: Vec<String> = ERASED.iter().map(|i| body_of(*i)).collect();
    needles.push(erased_wa.clone());
    // Nothing of the erased contact anywhere.
    let store_url = store_url.unwrap_or_else(|| {
        format!(
            "sqlite://{}?mode=ro",
            service.path().join("store.db").display()
        )
    });
    let store = all_text(&store_url).await;
    assert_eq!(
        traces_in(&store, &needles),
        Vec::<String>::new(),
        "{name}: store"
    );
    for i in KEPT {
        assert!(
            store.contains(&body_of(i)),
            "{name}: the kept contact's message {i}"
        );
    }
    for needle in &needles {
        assert!(!fake.holds(needle), "{name}: HubSpot still holds {needle}");
    }
    for i in KEPT {
        assert!(fake.holds(&body_of(i)), "{name}: HubSpot lost message {i}");
    }
    let (_, kept) = service
        .get_json(&format!("/v1/contacts?wa_id={kept_wa}"), &key)
        .await;
    assert_eq!(kept.as_array().unwrap().len(), 1, "{name}");
    let (_, gone) = service
        .get_json(&format!("/v1/contacts?wa_id={erased_wa}"), &key)
        .await;
    assert_eq!(gone.as_array().unwrap().len(), 0, "{name}");
    match &mut service.bus {
        Bus::Embedded => {
            let log = all_text(&format!(
                "sqlite://{}?mode=ro",
                service.path().join("bus.db").display()
            ))
            .await;
            assert_eq!(
                traces_in(&log, &needles),
                Vec::<String>::new(),
                "embedded log"
            );
            assert!(
                log.contains(&body_of(KEPT[0])),
                "the kept contact's records"
            );
            assert!(log.contains("wacrm.contact.erased.v1") || log.contains(&contact_id));
        }
        Bus::Kafka(broker) => {
            let contacts = wacrm_bus::Topics::default().contacts;
            let records = kafka_records(&broker.bootstrap(), &contacts);
            // Contact records are keyed by contact id: the erasure's tombstone, then its event.
            let tombstone = records
                .iter()
                .position(|(k, v)| k == &contact_id && v.is_none())
                .expect("no tombstone for the erased contact's key on the contacts topic");
            let erased_event = records
                .iter()
                .rposition(|(k, v)| k == &contact_id && v.is_some())
                .expect("no contact.erased.v1 on the contacts topic");
            assert!(
                tombstone < erased_event,
                "the event must outlive compaction"
            );
            assert!(
                records.iter().any(|(k, v)| k == &contact_id
                    && v.as_ref().is_some_and(|v| {
                        String::from_utf8_lossy(v).contains(erased_wa.as_str())
                    })),
                "before compaction the contact's own records are there (else this shows nothing)"
            );
            // The broker compacts: tansu does when it starts (then every ten minutes).
            broker.stop();
            broker.restart();
            let compacted = kafka_records(&broker.bootstrap(), &contacts);
            let mut left = Vec::new();
            for (k, v) in &compacted {
                let text = format!(
                    "{k} {}",
                    v.as_deref()
                        .map(String::from_utf8_lossy)
                        .unwrap_or_default()
                );
                left.extend(traces_in(&text, &needles));
            }
            assert_eq!(left, Vec::<String>::new(), "the compacted contacts topic");
            let of_contact: Vec<_> = compacted.iter().filter(|(k, _)| k == &contact_id).collect();
            assert_eq!(of_contact.len(), 1, "compaction kept one record of the key");
            assert!(
                of_contact[0]
                    .1
                    .as_deref()
                    .is_some_and(|v| String::from_utf8_lossy(v).contains(erasure_id.as_str())),
                "the erasure's event is what is left of the contact: {:?}",
                of_contact[0].1.as_deref().map(String::from_utf8_lossy)
            );
            assert!(
                compacted.len() < records.len(),
                "nothing was compacted ({} records before and after)",
                records.len()
            );
        }
        Bus::SharedKafka(_) => unreachable!(),
    }
    assert_eq!(
        traces_in(&service.log(), &needles),
        Vec::<String>::new(),
        "{name}: the service's log"
    );

    // Meta retries an erased message days later: it stays erased, here and in the CRM.
    let comms_before = fake.communication_count();
    assert_eq!(service.post_webhook(text_webhook(ERASED[0]).1).await, 200);
    // A message from the kept contact after it: once it is stored, the retry before it was
    // handled (one partition per conversation is not one for both: wait for the CRM too).
    assert_eq!(service.post_webhook(text_webhook(76).1).await, 200);
    eventually(
        "the later message on HubSpot",
        Duration::from_secs(60),
        || async { fake.holds(&body_of(76)) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, gone) = service
        .get_json(&format!("/v1/contacts?wa_id={erased_wa}"), &key)
        .await;
    assert_eq!(
        gone.as_array().unwrap().len(),
        0,
        "{name}: a late retry brought the contact back"
    );
    assert!(
        !fake.holds(&body_of(ERASED[0])),
        "{name}: a late retry reached the CRM"
    );
    assert_eq!(fake.communication_count(), comms_before + 1, "{name}");

    // The person writes again: a new contact.
    let now = chrono::Utc::now().timestamp();
    let fresh = serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "De volta"}, "wa_id": erased_wa}],
            "messages": [{"from": erased_wa, "id": "wamid.erasure.back", "timestamp": now.to_string(),
                          "type": "text", "text": {"body": "voltei"}}]
        }}]}]
    });
    assert_eq!(
        service
            .post_webhook(serde_json::to_vec(&fresh).unwrap())
            .await,
        200
    );
    eventually("the new message", Duration::from_secs(60), || async {
        let (_, back) = service
            .get_json(&format!("/v1/contacts?wa_id={erased_wa}"), &key)
            .await;
        back.as_array().is_some_and(|b| b.len() == 1)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_on_the_embedded_bus_and_sqlite() {
    erasure_reaches_everywhere(Bus::Embedded, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_on_kafka_and_postgresql() {
    let Some(broker) = common::broker::Broker::start() else {
        assert!(
            std::env::var_os("WACRM_REQUIRE_KAFKA").is_none(),
            "WACRM_REQUIRE_KAFKA is set but no broker could be started"
        );
        return;
    };
    let postgres = wacrm_testkit::postgres::fresh_database().await;
    erasure_reaches_everywhere(Bus::Kafka(broker), postgres).await;
}

/// `wacrm erase --phone` from the command line, any spelling, with the service stopped: the
/// store, the dead letters and the bus are erased, the audit log names the person by hash only,
/// and a second run finds nothing more to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_from_the_command_line() {
    let mut service = Service::new(Bus::Embedded);
    let key = service.admin_key();
    service.start().await;
    let erased_wa = contact_wa_id(0);
    for i in ERASED.iter().chain(&KEPT) {
        assert_eq!(service.post_webhook(text_webhook(*i).1).await, 200);
    }
    eventually("both contacts stored", Duration::from_secs(30), || async {
        let mut stored = 0;
        for wa in [&erased_wa, &contact_wa_id(1)] {
            let (_, c) = service
                .get_json(&format!("/v1/contacts?wa_id={wa}"), &key)
                .await;
            stored += c.as_array().map_or(0, Vec::len);
        }
        stored == 2
    })
    .await;
    service.terminate();
    let out = service
        .command()
        .args(["erase", "--phone", "+55 11 98700-0000"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("finished"), "{stdout}");
    let mut needles: Vec<String> = ERASED.iter().map(|i| body_of(*i)).collect();
    needles.push(erased_wa.clone());
    let store = all_text(&format!(
        "sqlite://{}?mode=ro",
        service.path().join("store.db").display()
    ))
    .await;
    assert_eq!(traces_in(&store, &needles), Vec::<String>::new(), "store");
    let log = all_text(&format!(
        "sqlite://{}?mode=ro",
        service.path().join("bus.db").display()
    ))
    .await;
    assert_eq!(
        traces_in(&log, &needles),
        Vec::<String>::new(),
        "embedded log"
    );
    assert!(log.contains(&body_of(KEPT[0])));
    // Not even in the files' bytes: freed pages are zeroed and the write-ahead log copied back.
    for file in ["store.db", "store.db-wal", "bus.db", "bus.db-wal"] {
        let Ok(bytes) = std::fs::read(service.path().join(file)) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(
            traces_in(&text, &needles),
            Vec::<String>::new(),
            "{file}'s bytes"
        );
    }
    // The audit log has the erasure, by keyed hash.
    assert!(store.contains("contacts.erase"), "the erasure is audited");
    // Again: nothing left, nothing new to do.
    let again = service
        .command()
        .args(["erase", "--phone", "5511987000000"])
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}
