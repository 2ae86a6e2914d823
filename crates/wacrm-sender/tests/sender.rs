//! The sender against the Graph API fake (which validates every body against Meta's document):
//! every content type, every error classification, throttling, duplicates and interrupted sends.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use wacrm_bus::config::EmbeddedConfig;
use wacrm_bus::embedded::EmbeddedBus;
use wacrm_bus::runner::{Handler, HandlerError};
use wacrm_bus::{EventBus, Topics};
use wacrm_core::message::Sender as Employee;
use wacrm_core::outbound::{
    FailureKind, Interactive, ListRow, ListSection, MediaRef, OutboundContent, ReadRequest,
    ReplyButton, SendRequest, TemplateComponent, TemplateComponentKind, TemplateParameter,
};
use wacrm_core::{BusinessNumber, ContactIdentity, Event, EventPayload};
use wacrm_sender::Sender;
use wacrm_store::outbound::{self as requests, state};
use wacrm_store::{Db, StoreConfig};
use wacrm_testkit::graph::{GraphConfig, GraphError, GraphFake, KNOWN_ERRORS};
use wacrm_whatsapp::{SendHealth, WhatsAppConfig};

const NUMBER: &str = "106540352242922";

struct Harness {
    fake: GraphFake,
    sender: Sender,
    bus: Arc<dyn EventBus>,
    db: Db,
    health: Arc<SendHealth>,
    _dir: tempfile::TempDir,
}

fn config(fake: &GraphFake) -> WhatsAppConfig {
    WhatsAppConfig {
        access_token: Some(fake.config().access_token),
        graph_base_url: fake.base_url(),
        graph_version: fake.config().version,
        request_timeout_ms: 2_000,
        retry_base_ms: 10,
        max_retry_ms: 3_000,
        messages_per_second: 1000,
        pair_period_ms: 10,
        pair_burst: 45,
        ..WhatsAppConfig::default()
    }
}

async fn harness_with(tune: impl FnOnce(&mut WhatsAppConfig)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let fake = GraphFake::start(GraphConfig::default()).await;
    let bus: Arc<dyn EventBus> = Arc::new(
        EmbeddedBus::open(&EmbeddedConfig {
            path: dir.path().join("bus.db"),
            max_batch: 1024,
        })
        .unwrap(),
    );
    let db = wacrm_store::connect(&StoreConfig {
        url: format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display()),
        max_connections: 4,
        ..Default::default()
    })
    .await
    .unwrap();
    wacrm_store::migrate(&db).await.unwrap();
    let mut whatsapp = config(&fake);
    tune(&mut whatsapp);
    let health = Arc::new(SendHealth::default());
    let sender = Sender::new(
        whatsapp,
        db.clone(),
        bus.clone(),
        Topics::default(),
        "/test".into(),
        health.clone(),
        CancellationToken::new(),
    )
    .unwrap();
    Harness {
        fake,
        sender,
        bus,
        db,
        health,
        _dir: dir,
    }
}

async fn harness() -> Harness {
    harness_with(|_| {}).await
}

fn request(n: usize, to: &str, content: OutboundContent) -> SendRequest {
    SendRequest {
        request_id: format!("req-{n}-{}", uuid::Uuid::new_v4()),
        business: BusinessNumber::new(NUMBER),
        to: to.into(),
        contact: ContactIdentity::from_webhook(Some(to), None),
        content,
        category: None,
        reply_to: None,
        sent_by: Employee {
            key_id: "key1".into(),
            name: "Bruno Agent".into(),
        },
        requested_at: Utc::now(),
    }
}

fn text(body: &str) -> OutboundContent {
    OutboundContent::Text {
        body: body.into(),
        preview_url: false,
    }
}

fn link(url: &str, caption: Option<&str>) -> MediaRef {
    MediaRef {
        id: None,
        link: Some(url.into()),
        caption: caption.map(str::to_owned),
    }
}

impl Harness {
    /// Hands the requests to the sender as one batch; the events it published.
    async fn send(&mut self, requests: &[SendRequest]) -> Vec<Event> {
        let events: Vec<Event> = requests
            .iter()
            .map(|r| Event::send_requested(r.clone()).unwrap())
            .collect();
        self.handle(&events).await
    }

    async fn handle(&mut self, events: &[Event]) -> Vec<Event> {
        let mut sub = self
            .bus
            .subscribe(
                &format!("probe-{}", uuid::Uuid::new_v4()),
                &[Topics::default().conversations, Topics::default().contacts],
            )
            .await
            .unwrap();
        // Skip what earlier calls published.
        let before = sub.poll(100_000, Duration::from_millis(50)).await.unwrap();
        let records = wacrm_testkit::bus::records(events).unwrap();
        let handled = self.sender.handle(&records).await.unwrap();
        assert!(handled.dead_letters.is_empty(), "{handled:?}");
        let after = sub.poll(100_000, Duration::from_millis(100)).await.unwrap();
        after
            .iter()
            .filter(|r| {
                !before
                    .iter()
                    .any(|b| b.offset == r.offset && b.topic == r.topic)
            })
            .map(|r| wacrm_bus::cloudevents::decode_event(r).unwrap())
            .collect()
    }

    async fn state(&self, request: &SendRequest) -> String {
        requests::get(&self.db, &request.request_id)
            .await
            .unwrap()
            .unwrap()
            .state
    }
}

#[tokio::test]
async fn every_content_type_is_sent_with_a_body_meta_accepts() {
    let mut h = harness().await;
    let contents = vec![
        text("Olá! Seu pedido saiu. https://example.com/rastreio"),
        OutboundContent::Text {
            body: "Veja: https://example.com".into(),
            preview_url: true,
        },
        OutboundContent::Template {
            name: "order_update".into(),
            language: "pt_BR".into(),
            components: vec![
                TemplateComponent {
                    kind: TemplateComponentKind::Header,
                    sub_type: None,
                    index: None,
                    parameters: vec![TemplateParameter::Image {
                        image: link("https://example.com/h.jpg", None),
                    }],
                },
                TemplateComponent {
                    kind: TemplateComponentKind::Body,
                    sub_type: None,
                    index: None,
                    parameters: vec![
                        TemplateParameter::Text {
                            text: "Maria".into(),
                            parameter_name: None,
                        },
                        TemplateParameter::Currency {
                            fallback_value: "R$ 10,00".into(),
                            code: "BRL".into(),
                            amount_1000: 10_000,
                            parameter_name: None,
                        },
                        TemplateParameter::DateTime {
                            fallback_value: "amanhã às 10h".into(),
                            parameter_name: None,
                        },
                    ],
                },
                TemplateComponent {
                    kind: TemplateComponentKind::Button,
                    sub_type: Some("quick_reply".into()),
                    index: Some(0),
                    parameters: vec![TemplateParameter::Payload {
                        payload: "TRACK".into(),
                    }],
                },
            ],
        },
        OutboundContent::Template {
            name: "hello".into(),
            language: "pt_BR".into(),
            components: vec![],
        },
        OutboundContent::Image {
            media: link("https://example.com/a.jpg", Some("Catálogo")),
        },
        OutboundContent::Image {
            media: MediaRef {
                id: Some("1234567890".into()),
                link: None,
                caption: None,
            },
        },
        OutboundContent::Audio {
            media: link("https://example.com/a.ogg", None),
        },
        OutboundContent::Video {
            media: link("https://example.com/a.mp4", Some("Como usar")),
        },
        OutboundContent::Document {
            media: link("https://example.com/nota.pdf", Some("Nota fiscal")),
            filename: Some("nota.pdf".into()),
        },
        OutboundContent::Sticker {
            media: link("https://example.com/s.webp", None),
        },
        OutboundContent::Interactive {
            interactive: Interactive::Buttons {
                body: "Confirma a entrega?".into(),
                header: Some("Entrega".into()),
                footer: Some("Loja".into()),
                buttons: vec![
                    ReplyButton {
                        id: "yes".into(),
                        title: "Sim".into(),
                    },
                    ReplyButton {
                        id: "no".into(),
                        title: "Não".into(),
                    },
                ],
            },
        },
        OutboundContent::Interactive {
            interactive: Interactive::List {
                body: "Escolha um horário".into(),
                header: None,
                footer: None,
                button: "Horários".into(),
                sections: vec![ListSection {
                    title: Some("Amanhã".into()),
                    rows: vec![ListRow {
                        id: "am".into(),
                        title: "Manhã".into(),
                        description: Some("8h às 12h".into()),
                    }],
                }],
            },
        },
        OutboundContent::Reaction {
            message_id: "wamid.in.1".into(),
            emoji: "👍".into(),
        },
    ];
    let mut batch: Vec<SendRequest> = contents
        .into_iter()
        .enumerate()
        .map(|(i, c)| request(i, &format!("55119{:08}", i), c))
        .collect();
    batch[0].reply_to = Some("wamid.in.1".into());
    let events = h.send(&batch).await;
    assert_eq!(h.fake.violations(), Vec::<String>::new());
    assert_eq!(h.fake.sent().len(), batch.len());
    let sent: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.payload {
            EventPayload::MessageSent(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), batch.len());
    for m in &sent {
        assert_eq!(m.sent_by.as_ref().unwrap().name, "Bruno Agent");
        assert!(h.fake.sent().iter().any(|s| s.wamid == m.wamid));
    }
    for r in &batch {
        assert_eq!(h.state(r).await, state::SENT);
    }
    let first = h
        .fake
        .sent()
        .into_iter()
        .find(|s| s.to == batch[0].to)
        .unwrap();
    assert_eq!(first.body["context"]["message_id"], "wamid.in.1");
}

#[tokio::test]
async fn rate_limits_and_transient_errors_are_retried_until_sent() {
    let mut h = harness_with(|c| c.request_timeout_ms = 300).await;
    for (i, error) in [
        GraphError::rate_limit_hit(),
        GraphError::pair_rate_limit_hit(),
        GraphError::ServerError(503),
        GraphError::ServerError(500),
    ]
    .into_iter()
    .enumerate()
    {
        h.fake.fail_next(Some(NUMBER), error.clone());
        let r = request(i, &format!("551198888{i:04}"), text("oi"));
        let events = h.send(std::slice::from_ref(&r)).await;
        assert_eq!(h.state(&r).await, state::SENT, "{error:?}");
        assert!(
            matches!(
                events[..],
                [Event {
                    payload: EventPayload::MessageSent(_),
                    ..
                }]
            ),
            "{error:?}: {events:?}"
        );
        let row = requests::get(&h.db, &r.request_id).await.unwrap().unwrap();
        assert_eq!(row.attempts, 2, "{error:?}");
    }
    assert_eq!(h.fake.queued_errors(), 0);
}

/// Meta has no idempotency key for sends: an outcome nobody can know is never a second call.
#[tokio::test]
async fn a_timeout_after_the_request_left_is_unknown_and_not_sent_again() {
    let mut h = harness_with(|c| c.request_timeout_ms = 300).await;
    h.fake.fail_next(
        Some(NUMBER),
        GraphError::Timeout(Duration::from_millis(600)),
    );
    let r = request(0, "5511988880000", text("oi"));
    let events = h.send(std::slice::from_ref(&r)).await;
    assert_eq!(h.state(&r).await, state::UNKNOWN);
    let row = requests::get(&h.db, &r.request_id).await.unwrap().unwrap();
    assert_eq!(row.attempts, 1, "one call, never repeated");
    assert!(row.reason.unwrap().contains("may or may not"));
    assert!(matches!(
        &events[..],
        [Event { payload: EventPayload::SendFailed(f), .. }] if f.kind == FailureKind::Unknown
    ));
    // The command delivered again only republishes the outcome.
    let again = h.send(std::slice::from_ref(&r)).await;
    assert!(matches!(
        &again[..],
        [Event {
            payload: EventPayload::SendFailed(_),
            ..
        }]
    ));
    let calls = h
        .fake
        .requests()
        .iter()
        .filter(|q| q.path.ends_with("/messages"))
        .count();
    assert_eq!(calls, 1, "{calls} calls reached WhatsApp");
}

#[tokio::test]
async fn permanent_errors_fail_the_request_once_with_metas_code() {
    let mut h = harness().await;
    let permanent = [
        131_047, 131_026, 368, 132_000, 132_001, 132_005, 132_007, 132_015,
    ];
    for (i, code) in permanent.into_iter().enumerate() {
        h.fake
            .fail_next(Some(NUMBER), GraphError::known(code).unwrap());
        let r = request(i, &format!("551197777{i:04}"), text("oi"));
        let requests_before = h.fake.requests().len();
        let events = h.send(std::slice::from_ref(&r)).await;
        assert_eq!(
            h.fake.requests().len(),
            requests_before + 1,
            "{code}: not retried"
        );
        assert_eq!(h.state(&r).await, state::FAILED, "{code}");
        let [Event {
            payload: EventPayload::SendFailed(failure),
            ..
        }] = &events[..]
        else {
            panic!("{code}: {events:?}")
        };
        assert_eq!(failure.kind, FailureKind::Failed);
        assert_eq!(failure.errors[0].code, code);
    }
    // Every code the fake knows is classified (none falls through to a retry loop by accident).
    for known in KNOWN_ERRORS {
        let d = wacrm_whatsapp::graph::classify(known.code, known.http_status);
        let expected_retry = matches!(known.code, 130_429 | 131_056);
        assert_eq!(d.is_retryable(), expected_retry, "{}", known.code);
    }
}

#[tokio::test]
async fn error_131050_fails_the_send_and_records_the_opt_out() {
    let mut h = harness().await;
    h.fake
        .fail_next(Some(NUMBER), GraphError::marketing_opt_out());
    let r = request(1, "5511966660001", text("promo"));
    let events = h.send(std::slice::from_ref(&r)).await;
    assert_eq!(h.state(&r).await, state::FAILED);
    assert!(events
        .iter()
        .any(|e| matches!(&e.payload, EventPayload::SendFailed(f) if f.errors[0].code == 131_050)));
    let opt_out = events
        .iter()
        .find_map(|e| match &e.payload {
            EventPayload::PreferenceChanged(p) => Some(p),
            _ => None,
        })
        .expect("an opt-out event");
    assert_eq!(opt_out.value, "stop");
    assert_eq!(opt_out.category, "marketing_messages");
}

#[tokio::test]
async fn a_rejected_token_marks_the_number_unhealthy_until_a_send_works() {
    let mut h = harness().await;
    h.fake
        .fail_next(Some(NUMBER), GraphError::access_token_expired());
    let r = request(1, "5511955550001", text("oi"));
    h.send(std::slice::from_ref(&r)).await;
    assert_eq!(h.state(&r).await, state::FAILED);
    let failing = h.health.failing();
    assert_eq!(failing.len(), 1);
    assert_eq!(failing[0].0, NUMBER);
    let r2 = request(2, "5511955550001", text("oi de novo"));
    h.send(std::slice::from_ref(&r2)).await;
    assert_eq!(h.state(&r2).await, state::SENT);
    assert!(h.health.failing().is_empty());
}

#[tokio::test]
async fn retries_give_up_after_max_retry_and_report_the_failure() {
    let mut h = harness_with(|c| c.max_retry_ms = 200).await;
    for _ in 0..50 {
        h.fake.fail_next(Some(NUMBER), GraphError::rate_limit_hit());
    }
    let r = request(1, "5511944440001", text("oi"));
    let started = Instant::now();
    let events = h.send(std::slice::from_ref(&r)).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(h.state(&r).await, state::FAILED);
    let row = requests::get(&h.db, &r.request_id).await.unwrap().unwrap();
    assert!(row.reason.unwrap().contains("gave up"));
    assert!(matches!(&events[0].payload, EventPayload::SendFailed(_)));
}

/// On Kafka a member that does not poll for `max.poll.interval.ms` is put out of its group:
/// a wait that would take the batch past its budget parks it instead (the runner pauses and
/// keeps polling), and the retries carry on where they stopped when the batch comes again.
#[tokio::test]
async fn a_long_retry_wait_parks_the_batch_instead_of_blocking_the_handler() {
    let h = harness_with(|c| {
        c.retry_base_ms = 400;
        c.max_retry_ms = 60_000;
    })
    .await;
    let budget = Duration::from_secs(1);
    let mut sender = h.sender.with_batch_budget(budget);
    for _ in 0..3 {
        h.fake.fail_next(Some(NUMBER), GraphError::rate_limit_hit());
    }
    let r = request(1, "5511944440002", text("oi"));
    let records =
        wacrm_testkit::bus::records(&[Event::send_requested(r.clone()).unwrap()]).unwrap();
    let mut parks = Vec::new();
    let outcome = loop {
        let started = Instant::now();
        let outcome = sender.handle(&records).await;
        // The budget, the jitter of one retry wait and one fast call at most.
        assert!(
            started.elapsed() < budget + Duration::from_millis(800),
            "the handler blocked for {:?}",
            started.elapsed()
        );
        match outcome {
            Err(HandlerError::Park { wait, .. }) => {
                // Handed back while it waits: nothing is `sending`.
                let row = requests::get(&h.db, &r.request_id).await.unwrap().unwrap();
                assert_eq!(row.state, state::ACCEPTED);
                parks.push(wait);
                assert!(parks.len() <= 3, "parked for ever: {parks:?}");
                tokio::time::sleep(wait).await;
            }
            other => break other,
        }
    };
    outcome.unwrap();
    assert!(!parks.is_empty(), "never parked");
    // The backoff went on across the parks (400 ms × 2^tries): the last wait is the longest.
    assert!(
        *parks.last().unwrap() >= Duration::from_millis(1_600),
        "{parks:?}"
    );
    let row = requests::get(&h.db, &r.request_id).await.unwrap().unwrap();
    assert_eq!(row.state, state::SENT);
    assert_eq!(h.fake.sent().len(), 1, "sent once");
    assert_eq!(h.fake.queued_errors(), 0);
}

#[tokio::test]
async fn a_command_delivered_twice_is_sent_once_and_its_outcome_republished() {
    let mut h = harness().await;
    let r = request(1, "5511933330001", text("uma vez só"));
    let twice = vec![r.clone(), r.clone()];
    let first = h.send(&twice).await;
    let again = h.send(std::slice::from_ref(&r)).await;
    assert_eq!(h.fake.sent().len(), 1);
    let ids: Vec<_> = first.iter().chain(&again).map(|e| e.id).collect();
    assert!(ids.len() >= 2);
    assert!(ids.iter().all(|id| *id == ids[0]), "same event each time");
}

#[tokio::test]
async fn a_send_interrupted_mid_call_is_reported_unknown_and_not_sent_again() {
    let mut h = harness().await;
    let r = request(1, "5511922220001", text("talvez"));
    // A previous process claimed it and died before recording the answer.
    claimed_elsewhere(&h, &r, "a-previous-process").await;
    let events = h.send(std::slice::from_ref(&r)).await;
    assert!(h.fake.sent().is_empty());
    assert_eq!(h.state(&r).await, state::UNKNOWN);
    assert!(matches!(
        &events[0].payload,
        EventPayload::SendFailed(f) if f.kind == FailureKind::Unknown
    ));
}

/// Writes the request's row and claims it as `instance` (another process's sender).
async fn claimed_elsewhere(h: &Harness, r: &SendRequest, instance: &str) {
    requests::create(
        &h.db,
        requests::NewRequest {
            request_id: r.request_id.clone(),
            key_id: "key1".into(),
            idempotency_key: None,
            request_hash: String::new(),
            kind: "send",
            phone_number_id: NUMBER.into(),
            contact_id: None,
            command: json!({}),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        requests::claim(&h.db, &r.request_id, instance, Duration::from_secs(60))
            .await
            .unwrap(),
        requests::Claim::Claimed
    );
}

/// A consumer that lost its partition mid-send (a rebalance while its call was on the wire)
/// is alive and finishing the request: the instance handed the same command waits for its
/// outcome and publishes it, and never calls WhatsApp itself nor reports the send `unknown`.
#[tokio::test]
async fn a_request_another_live_instance_is_sending_is_waited_for_then_reported() {
    let h = harness().await;
    let r = request(1, "5511922220002", text("em andamento"));
    wacrm_store::instances::register(&h.db, "instance-b")
        .await
        .unwrap();
    claimed_elsewhere(&h, &r, "instance-b").await;
    let records =
        wacrm_testkit::bus::records(&[Event::send_requested(r.clone()).unwrap()]).unwrap();
    let mut sender = h.sender.with_instance("instance-a");
    match sender.handle(&records).await {
        Err(HandlerError::Park { .. }) => {}
        other => panic!("expected to wait for instance-b, got {other:?}"),
    }
    assert_eq!(
        requests::get(&h.db, &r.request_id)
            .await
            .unwrap()
            .unwrap()
            .state,
        state::SENDING
    );
    // instance-b's call comes back.
    requests::finish_sent(&h.db, &r.request_id, "wamid.from-b")
        .await
        .unwrap();
    sender.handle(&records).await.unwrap();
    assert!(h.fake.sent().is_empty(), "sent by instance-a too");
    let row = requests::get(&h.db, &r.request_id).await.unwrap().unwrap();
    assert_eq!(row.state, state::SENT);
    assert_eq!(row.wamid.as_deref(), Some("wamid.from-b"));
}

/// A claim stays in the hands of a live instance only as long as one send can take; older, the
/// instance left it behind (its store write failed after the call): `unknown`, as after a
/// crash. And a claim of an instance no longer seen alive is `unknown` at once.
#[tokio::test]
async fn a_claim_left_behind_by_a_live_instance_or_held_by_a_gone_one_is_unknown() {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let h = harness().await;
    wacrm_store::instances::register(&h.db, "instance-b")
        .await
        .unwrap();
    let stale = request(1, "5511922220003", text("esquecido"));
    claimed_elsewhere(&h, &stale, "instance-b").await;
    wacrm_store::entities::outbound_request::Entity::update_many()
        .col_expr(
            wacrm_store::entities::outbound_request::Column::UpdatedAt,
            sea_orm::sea_query::Expr::value(Utc::now() - chrono::Duration::minutes(10)),
        )
        .filter(wacrm_store::entities::outbound_request::Column::RequestId.eq(&stale.request_id))
        .exec(&h.db)
        .await
        .unwrap();
    let gone = request(2, "5511922220004", text("sumiu"));
    claimed_elsewhere(&h, &gone, "instance-c").await;
    let mut sender = h.sender.with_instance("instance-a");
    let records = wacrm_testkit::bus::records(&[
        Event::send_requested(stale.clone()).unwrap(),
        Event::send_requested(gone.clone()).unwrap(),
    ])
    .unwrap();
    sender.handle(&records).await.unwrap();
    assert!(h.fake.sent().is_empty());
    for r in [&stale, &gone] {
        let row = requests::get(&h.db, &r.request_id).await.unwrap().unwrap();
        assert_eq!(row.state, state::UNKNOWN, "{}", r.request_id);
    }
}

#[tokio::test]
async fn throughput_per_number_is_never_exceeded() {
    let mut h = harness_with(|c| c.messages_per_second = 20).await;
    let batch: Vec<_> = (0..45)
        .map(|i| request(i, &format!("551191111{i:04}"), text("oi")))
        .collect();
    let started = Instant::now();
    h.send(&batch).await;
    assert_eq!(h.fake.sent().len(), 45);
    assert!(h.fake.max_rate(NUMBER, Duration::from_secs(1)) <= 20);
    assert!(started.elapsed() >= Duration::from_secs(2));
}

#[tokio::test]
async fn one_recipient_gets_a_burst_then_one_message_per_period() {
    let period = Duration::from_millis(250);
    let mut h = harness_with(|c| {
        c.pair_period_ms = 250;
        c.pair_burst = 2;
    })
    .await;
    let to = "5511900000001";
    let batch: Vec<_> = (0..8)
        .map(|i| request(i, to, text(&format!("{i}"))))
        .collect();
    let started = Instant::now();
    h.send(&batch).await;
    let sent = h.fake.sent();
    assert_eq!(sent.len(), 8);
    // In order, since one conversation is sent sequentially.
    let bodies: Vec<_> = sent
        .iter()
        .map(|s| s.body["text"]["body"].clone())
        .collect();
    assert_eq!(
        bodies,
        (0..8).map(|i| json!(i.to_string())).collect::<Vec<_>>()
    );
    assert!(started.elapsed() >= period * 5, "{:?}", started.elapsed());
    assert!(h.fake.max_pair_rate(NUMBER, to, period * 4) <= 2 + 4);
}

#[tokio::test]
async fn mark_as_read_reaches_whatsapp() {
    let mut h = harness().await;
    let read = ReadRequest {
        request_id: "read-1".into(),
        business: BusinessNumber::new(NUMBER),
        wamid: "wamid.in.7".into(),
        contact: ContactIdentity::from_webhook(Some("5511900000007"), None),
        sent_by: Employee {
            key_id: "key1".into(),
            name: "Bruno Agent".into(),
        },
        requested_at: Utc::now(),
    };
    h.handle(&[Event::read_requested(read).unwrap()]).await;
    assert_eq!(
        h.fake.mark_read(),
        vec![(NUMBER.to_owned(), "wamid.in.7".to_owned())]
    );
    let row = requests::get(&h.db, "read-1").await.unwrap().unwrap();
    assert_eq!(row.state, state::SENT);
    assert_eq!(h.fake.violations(), Vec::<String>::new());
}
