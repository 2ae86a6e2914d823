//! The conformance suite every CRM adapter runs against its fake: the sync engine drives the
//! adapter through a [`FaultProxy`] in front of the fake, scenario by scenario, and what the
//! CRM holds afterwards is checked — no second person, no second note, nothing lost.
//!
//! An adapter's test implements [`Target`] (how to build the adapter for a base URL, what its
//! CRM's fault answers look like, and how to read what the fake holds) and calls [`run`]:
//!
//! - a plain batch: every message once, on its contact's one record;
//! - a crash between the CRM's write and the ledger, on a contact create and on a message
//!   create (the answer lost after the write; the engine restarted);
//! - ambiguous failures: 5xx before the CRM did anything;
//! - a 429 storm in the CRM's own words;
//! - the daily quota used up: the engine parks, and resumes when it resets;
//! - a partial batch failure: one input refused as invalid is dead-lettered, the rest synced;
//! - statuses in any order: the furthest state wins;
//! - hand-made contacts (a salesperson's, found by phone): linked, not duplicated;
//! - erasure (LGPD/GDPR): a contact synced through the engine is erased through the adapter —
//!   after a 429, a 5xx and a delete whose answer was lost — and the CRM holds none of its
//!   messages' bodies (nor, when the CRM can delete, its phone), while another contact is
//!   untouched; erasing again answers `NotFound` or `Erased`.
//!
//! Each scenario uses contacts of its own, so one fake serves the whole suite. A target with
//! at-least-once delivery (the webhook sink) is checked for "at least once" where others are
//! checked for "exactly once"; a CRM without contacts of its own skips the hand-made scenario.

pub mod proxy;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use wacrm_bus::runner::{Handler, HandlerError};
use wacrm_core::{
    BusinessNumber, ContactIdentity, ContactProfile, DeliveryState, Direction, Event, Message,
    MessageContent, StatusUpdate,
};
use wacrm_crm::{ConnectionConfig, ContactErasure, CrmAdapter, Erasure};
use wacrm_sync::SyncEngine;

pub use proxy::{Canned, Fault, FaultProxy};

/// How many copies of an event the CRM may end up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Exactly one (a CRM: one person, one note per message).
    ExactlyOnce,
    /// At least one; the receiver drops repeats by id (the webhook sink).
    AtLeastOnce,
}

/// A message as the CRM holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The CRM id of the contact it is on.
    pub contact: String,
    /// Its delivery status, when the CRM keeps one (`read`, `delivered`, …).
    pub status: Option<String>,
}

/// An adapter under test, with its fake.
pub trait Target: Send + Sync {
    /// The kind's name, for messages.
    fn name(&self) -> &'static str;
    /// Exactly once, or at least once.
    fn delivery(&self) -> Delivery {
        Delivery::ExactlyOnce
    }
    /// The fake's base URL (the proxy forwards to it).
    fn upstream(&self) -> String;
    /// The adapter, sending to `base_url` (the proxy), and its engine configuration. Called
    /// again after a simulated crash: state must come from the CRM, not the adapter's memory.
    fn adapter(&self, base_url: &str) -> (ConnectionConfig, Arc<dyn CrmAdapter>);
    /// The CRM's 429 answer (with its retry headers, a short wait).
    fn rate_limited(&self) -> Canned;
    /// The CRM's answer once its daily quota is used up, if it has one.
    fn quota_exhausted(&self) -> Option<Canned>;
    /// The CRM's refusal of an invalid input (a 4xx validation error).
    fn rejected(&self) -> Canned;
    /// Every logged message, by wamid, one entry per copy.
    fn messages(&self) -> HashMap<String, Vec<Held>>;
    /// The CRM's contacts holding this WhatsApp id or phone (digits, `5511…`), by CRM id.
    fn contacts_for(&self, whatsapp_id: &str) -> Vec<String>;
    /// Creates a contact by hand, as a salesperson would, with this phone as they typed it;
    /// returns its CRM id. `None` when the CRM has no contacts of its own.
    fn hand_made_contact(&self, phone: &str, name: &str) -> Option<String>;
    /// Requests the fake refused as not matching the vendor's spec.
    fn violations(&self) -> Vec<String>;
    /// Whether anything the fake holds — contacts, messages, notes, tasks, deliveries —
    /// contains this text (a message body, a phone's digits): what erasure must remove.
    fn holds(&self, text: &str) -> bool;
}

/// One scenario's engine, store and proxy.
struct Run<'a, T: Target> {
    target: &'a T,
    proxy: FaultProxy,
    db: wacrm_store::Db,
    engine: SyncEngine,
    _dir: tempfile::TempDir,
}

impl<'a, T: Target> Run<'a, T> {
    async fn new(target: &'a T) -> Run<'a, T> {
        let proxy = FaultProxy::start(&target.upstream()).await;
        let (db, dir) = temp_store().await;
        let engine = engine(target, &proxy, db.clone());
        Run {
            target,
            proxy,
            db,
            engine,
            _dir: dir,
        }
    }

    /// The process dies and comes back: a new adapter and engine on the same store.
    fn restart(&mut self) {
        self.engine = engine(self.target, &self.proxy, self.db.clone());
    }

    /// One attempt at a batch, as the runner makes it.
    async fn attempt(&mut self, events: &[Event]) -> Result<Vec<(usize, String)>, HandlerError> {
        let records = must(crate::bus::records(events), "records");
        self.engine
            .handle(&records)
            .await
            .map(|handled| handled.dead_letters)
    }

    /// Attempts a batch until the engine takes it (retrying as the runner would); its dead
    /// letters.
    async fn sync(&mut self, events: &[Event]) -> Vec<(usize, String)> {
        sync_batch(&mut self.engine, events).await
    }
}

/// A migrated SQLite store in a temporary directory (kept while the directory lives).
pub async fn temp_store() -> (wacrm_store::Db, tempfile::TempDir) {
    let dir = must(tempfile::tempdir(), "temporary directory");
    let db = must(
        wacrm_store::connect(&wacrm_store::StoreConfig {
            url: format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display()),
            max_connections: 2,
            ..Default::default()
        })
        .await,
        "store",
    );
    must(wacrm_store::migrate(&db).await, "migrations");
    (db, dir)
}

/// Hands `events` to the engine until it takes them, retrying as the runner would; their dead
/// letters.
pub async fn sync_batch(engine: &mut SyncEngine, events: &[Event]) -> Vec<(usize, String)> {
    let records = must(crate::bus::records(events), "records");
    let mut last = None;
    for _ in 0..40 {
        match engine.handle(&records).await {
            Ok(handled) => return handled.dead_letters,
            Err(e) => {
                last = Some(e.to_string());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    panic!("the batch never synced; last error: {last:?}");
}

/// What notes hold (`(CRM contact id, note text)` each), as [`Target::messages`] answers: for
/// CRMs whose messages are notes written with [`wacrm_crm::transcript`].
pub fn held_in_notes(
    notes: impl IntoIterator<Item = (String, String)>,
) -> HashMap<String, Vec<Held>> {
    let mut out: HashMap<String, Vec<Held>> = HashMap::new();
    for (contact, content) in notes {
        for wamid in wacrm_crm::transcript::wamids_in(&content) {
            out.entry(wamid.clone()).or_default().push(Held {
                contact: contact.clone(),
                status: wacrm_crm::transcript::status_in(&content, &wamid),
            });
        }
    }
    out
}

/// An inbound (or outbound) text message from WhatsApp id `from`, named `name`, at unix
/// second `at`.
pub fn text_message(
    wamid: &str,
    from: &str,
    name: &str,
    at: i64,
    direction: Direction,
    body: &str,
) -> Event {
    let event = Event::message(Message {
        wamid: wamid.to_owned(),
        direction,
        business: BusinessNumber::new("106540352242922"),
        contact: ContactProfile {
            identity: ContactIdentity::from_webhook(Some(from), None),
            name: Some(name.to_owned()),
            username: None,
        },
        timestamp: chrono::DateTime::from_timestamp(at, 0).unwrap_or_default(),
        context: None,
        referral: None,
        content: MessageContent::Text {
            body: body.to_owned(),
            preview_url: false,
        },
        sent_by: None,
    });
    match event {
        Some(e) => e,
        None => panic!("conformance: message {wamid} has no conversation"),
    }
}

fn engine<T: Target>(target: &T, proxy: &FaultProxy, db: wacrm_store::Db) -> SyncEngine {
    let (mut config, adapter) = target.adapter(&proxy.base_url());
    if config.name.is_empty() {
        config.name = "conformance".into();
    }
    // The fakes index at once: reconcile pending rows at the next attempt.
    config.reconcile_after_ms = 0;
    SyncEngine::new(config, adapter, db)
}

fn must<T, E: std::fmt::Display>(result: Result<T, E>, what: &str) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("conformance: {what}: {e}"),
    }
}

/// The WhatsApp id of contact `n` of scenario `scenario` (a São Paulo mobile whose number
/// before the 9th digit began with 8).
pub fn wa_id(scenario: usize, n: usize) -> String {
    format!("551198{}{:06}", scenario % 10, n)
}

/// Whether a phone as someone typed it (`+55 11 8700-0000`) is this WhatsApp id's number,
/// with or without Brazil's 9th digit: for [`Target::contacts_for`].
pub fn same_phone(typed: &str, whatsapp_id: &str) -> bool {
    let digits: String = typed.chars().filter(char::is_ascii_digit).collect();
    let without_ninth = match (whatsapp_id.len(), whatsapp_id.get(4..5)) {
        (13, Some("9")) if whatsapp_id.starts_with("55") => {
            format!("{}{}", &whatsapp_id[..4], &whatsapp_id[5..])
        }
        _ => whatsapp_id.to_owned(),
    };
    !digits.is_empty() && (digits == whatsapp_id || digits == without_ninth)
}

fn time(i: usize) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_780_000_000 + i as i64, 0).unwrap_or_default()
}

/// Message `i` of a scenario, from (or to) its contact `n`.
fn message(scenario: usize, i: usize, n: usize, direction: Direction, body: &str) -> Event {
    text_message(
        &format!("wamid.conf{scenario}.{i}"),
        &wa_id(scenario, n),
        &format!("Cliente {scenario} {n}"),
        time(i).timestamp(),
        direction,
        body,
    )
}

fn status(scenario: usize, i: usize, n: usize, state: DeliveryState, at: usize) -> Event {
    status_update(
        &format!("wamid.conf{scenario}.{i}"),
        &wa_id(scenario, n),
        state,
        time(10_000 + at).timestamp(),
    )
}

/// A delivery status of message `wamid` sent to WhatsApp id `to`, at unix second `at`.
pub fn status_update(wamid: &str, to: &str, state: DeliveryState, at: i64) -> Event {
    let event = Event::status(StatusUpdate {
        wamid: wamid.to_owned(),
        state,
        timestamp: chrono::DateTime::from_timestamp(at, 0).unwrap_or_default(),
        business: BusinessNumber::new("106540352242922"),
        recipient: ContactIdentity::from_webhook(Some(to), None),
        errors: vec![],
        pricing: None,
        conversation: None,
    });
    match event {
        Some(e) => e,
        None => panic!("conformance: the status of {wamid} has no conversation"),
    }
}

fn messages(scenario: usize, count: usize, contacts: usize) -> Vec<Event> {
    (0..count)
        .map(|i| {
            message(
                scenario,
                i,
                i % contacts,
                Direction::Inbound,
                &format!("mensagem {i}"),
            )
        })
        .collect()
}

/// What a scenario found wrong.
fn check_held<T: Target>(
    target: &T,
    scenario: &str,
    number: usize,
    count: usize,
    contacts: usize,
    except: &[usize],
) {
    let held = target.messages();
    let exactly = target.delivery() == Delivery::ExactlyOnce;
    let mut wrong = Vec::new();
    for i in (0..count).filter(|i| !except.contains(i)) {
        let wamid = format!("wamid.conf{number}.{i}");
        let copies = held.get(&wamid).map(Vec::len).unwrap_or(0);
        if copies == 0 || (exactly && copies > 1) {
            wrong.push(format!("{wamid}: {copies} copies"));
        }
    }
    for n in 0..contacts {
        let found = target.contacts_for(&wa_id(number, n));
        if found.is_empty() || (exactly && found.len() > 1) {
            wrong.push(format!(
                "contact {}: {} records",
                wa_id(number, n),
                found.len()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} / {scenario}: {} wrong:\n{}",
        target.name(),
        wrong.len(),
        wrong.join("\n")
    );
    let violations = target.violations();
    assert!(
        violations.is_empty(),
        "{} / {scenario}: requests off the vendor's spec: {violations:?}",
        target.name()
    );
}

/// Runs every scenario; panics naming the first property broken.
pub async fn run<T: Target>(target: &T) {
    let timed = |scenario: &str, started: std::time::Instant| {
        eprintln!("{} / {scenario}: {:.1?}", target.name(), started.elapsed());
    };
    let started = std::time::Instant::now();
    plain(target).await;
    timed("plain", started);
    let started = std::time::Instant::now();
    crash_between_write_and_ledger(target).await;
    timed("crash between write and ledger", started);
    let started = std::time::Instant::now();
    ambiguous_server_errors(target).await;
    timed("ambiguous server errors", started);
    let started = std::time::Instant::now();
    rate_limit_storm(target).await;
    timed("429 storm", started);
    let started = std::time::Instant::now();
    daily_quota(target).await;
    timed("daily quota", started);
    let started = std::time::Instant::now();
    partial_batch_failure(target).await;
    timed("partial batch failure", started);
    let started = std::time::Instant::now();
    statuses_in_any_order(target).await;
    timed("statuses in any order", started);
    let started = std::time::Instant::now();
    hand_made_contacts(target).await;
    timed("hand-made contacts", started);
    let started = std::time::Instant::now();
    erasure(target).await;
    timed("erasure", started);
}

/// 60 messages from 6 contacts: each message once, each contact once, every message on its
/// contact.
pub async fn plain<T: Target>(target: &T) {
    let mut run = Run::new(target).await;
    let events = messages(0, 60, 6);
    assert_eq!(
        run.sync(&events).await,
        vec![],
        "{}: dead letters",
        target.name()
    );
    // The same batch again (a redelivery after a rebalance) changes nothing.
    assert_eq!(
        run.sync(&events).await,
        vec![],
        "{}: dead letters",
        target.name()
    );
    check_held(target, "plain", 0, 60, 6, &[]);
    let held = target.messages();
    for i in 0..60 {
        let on = &held[&format!("wamid.conf0.{i}")][0].contact;
        let contact = target.contacts_for(&wa_id(0, i % 6));
        assert!(
            contact.contains(on),
            "{}: message {i} is on {on}, not on its contact {contact:?}",
            target.name()
        );
    }
}

/// The CRM applies a create and the answer is lost (as when the process dies right after the
/// write, before the ledger says `synced`); the engine restarts and retries. First on new
/// contacts (the contact create is the first write), then on known contacts (the message
/// create is).
pub async fn crash_between_write_and_ledger<T: Target>(target: &T) {
    let mut run = Run::new(target).await;
    let first = messages(1, 20, 4);
    run.proxy.inject(Fault::AnswerLost(1));
    // An adapter may resend an idempotent write itself (an upsert on a unique field); a
    // create's lost answer fails the attempt. Either way, what counts is what the CRM holds.
    let _ = run.attempt(&first).await;
    run.restart();
    assert_eq!(run.sync(&first).await, vec![], "{}", target.name());
    let second: Vec<Event> = (20..40)
        .map(|i| message(1, i, i % 4, Direction::Inbound, &format!("mensagem {i}")))
        .collect();
    run.proxy.inject(Fault::AnswerLost(1));
    let _ = run.attempt(&second).await;
    run.restart();
    assert_eq!(run.sync(&second).await, vec![], "{}", target.name());
    check_held(target, "crash between write and ledger", 1, 40, 4, &[]);
}

/// 5xx answers before the CRM did anything, on every kind of call.
pub async fn ambiguous_server_errors<T: Target>(target: &T) {
    let mut run = Run::new(target).await;
    run.proxy.inject(Fault::ServerErrors(3));
    let events = messages(2, 30, 3);
    assert_eq!(run.sync(&events).await, vec![], "{}", target.name());
    run.proxy.inject(Fault::AnswerLost(2));
    let more: Vec<Event> = (30..50)
        .map(|i| message(2, i, i % 3, Direction::Inbound, &format!("mensagem {i}")))
        .collect();
    assert_eq!(run.sync(&more).await, vec![], "{}", target.name());
    check_held(target, "ambiguous server errors", 2, 50, 3, &[]);
}

/// Twelve 429s in a row, in the CRM's own words.
pub async fn rate_limit_storm<T: Target>(target: &T) {
    let mut run = Run::new(target).await;
    run.proxy
        .inject(Fault::RateLimited(12, target.rate_limited()));
    let events = messages(3, 40, 4);
    assert_eq!(run.sync(&events).await, vec![], "{}", target.name());
    check_held(target, "429 storm", 3, 40, 4, &[]);
}

/// The daily quota is used up: the engine parks the connection (nothing dead-lettered, nothing
/// lost) and syncs once it resets.
pub async fn daily_quota<T: Target>(target: &T) {
    let Some(quota) = target.quota_exhausted() else {
        return;
    };
    let mut run = Run::new(target).await;
    run.proxy.inject(Fault::QuotaExhausted(quota));
    let events = messages(4, 20, 2);
    match run.attempt(&events).await {
        Err(HandlerError::Park { .. }) => {}
        other => panic!(
            "{}: a used-up daily quota should park the connection, got {other:?}",
            target.name()
        ),
    }
    run.proxy.reset();
    assert_eq!(run.sync(&events).await, vec![], "{}", target.name());
    check_held(target, "daily quota", 4, 20, 2, &[]);
}

/// One input the CRM refuses as invalid: it alone is dead-lettered.
pub async fn partial_batch_failure<T: Target>(target: &T) {
    let mut run = Run::new(target).await;
    let mut events = messages(5, 30, 3);
    events[17] = message(5, 17, 17 % 3, Direction::Inbound, "poison-input-17");
    run.proxy
        .inject(Fault::Reject("poison-input-17".into(), target.rejected()));
    let dead = run.sync(&events).await;
    assert_eq!(
        dead.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![17],
        "{}: {dead:?}",
        target.name()
    );
    run.proxy.reset();
    check_held(target, "partial batch failure", 5, 30, 3, &[17]);
}

/// An outbound message's statuses arrive read, then delivered, then sent: the CRM ends at
/// `read`, on the same message.
pub async fn statuses_in_any_order<T: Target>(target: &T) {
    let mut run = Run::new(target).await;
    let sent = message(6, 0, 0, Direction::Outbound, "seu pedido saiu");
    assert_eq!(run.sync(&[sent]).await, vec![], "{}", target.name());
    for (at, state) in [
        DeliveryState::Read,
        DeliveryState::Delivered,
        DeliveryState::Sent,
    ]
    .into_iter()
    .enumerate()
    {
        let event = status(6, 0, 0, state, at);
        assert_eq!(run.sync(&[event]).await, vec![], "{}", target.name());
    }
    check_held(target, "statuses in any order", 6, 1, 1, &[]);
    let held = target.messages();
    let copies = &held["wamid.conf6.0"];
    assert!(
        copies.iter().all(|h| h.status.as_deref() == Some("read")),
        "{}: statuses in any order should end at read: {copies:?}",
        target.name()
    );
}

/// A salesperson created the contact by hand, typing the phone without the country code's
/// plus and without Brazil's 9th digit: the first WhatsApp message links to it instead of
/// creating a second person.
pub async fn hand_made_contacts<T: Target>(target: &T) {
    let whatsapp_id = wa_id(7, 0);
    // 55 11 9 8XXXXXXX → typed as "+55 11 8XXX-XXXX" (the old 8-digit mobile number).
    let local = &whatsapp_id[5..];
    let typed = format!("+55 11 {}-{}", &local[..4], &local[4..]);
    let Some(id) = target.hand_made_contact(&typed, "Maria Souza") else {
        return;
    };
    let mut run = Run::new(target).await;
    let events = messages(7, 5, 1);
    assert_eq!(run.sync(&events).await, vec![], "{}", target.name());
    let held = target.messages();
    for i in 0..5 {
        let on = &held[&format!("wamid.conf7.{i}")][0].contact;
        assert_eq!(
            on,
            &id,
            "{}: a hand-made contact was not linked: message {i} went to {on}",
            target.name()
        );
    }
    let found = target.contacts_for(&whatsapp_id);
    assert_eq!(
        found,
        vec![id],
        "{}: the hand-made contact was duplicated",
        target.name()
    );
}

/// The body of erasure-scenario message `i`: a text no other scenario writes.
fn secret_body(i: usize) -> String {
    format!("segredo-{i}-do-cliente")
}

/// What wacrm's link table and ledger know of contact `n` of scenario `number`, as the
/// erasure engine hands it to the adapter: the contact key, the CRM contact (unless
/// `linked` is false: found by its WhatsApp id), and the CRM objects of its messages.
async fn erasure_of(
    db: &wacrm_store::Db,
    connection: &str,
    number: usize,
    n: usize,
    wamids: &[String],
    linked: bool,
) -> ContactErasure {
    let whatsapp_id = wa_id(number, n);
    let contact_key = ContactIdentity::from_webhook(Some(&whatsapp_id), None)
        .keys()
        .first()
        .map(ToString::to_string)
        .unwrap_or_default();
    let links = must(
        wacrm_store::sync::links(db, connection, std::slice::from_ref(&contact_key)).await,
        "links",
    );
    let crm_contact_id = links.get(&contact_key).cloned();
    assert!(
        crm_contact_id.is_some(),
        "conformance: contact {whatsapp_id} was synced but is not linked"
    );
    let ledger = must(
        wacrm_store::sync::ledger(db, connection, wamids).await,
        "ledger",
    );
    let mut message_crm_ids: Vec<String> = Vec::new();
    for wamid in wamids {
        if let Some(id) = ledger.get(wamid).and_then(|e| e.crm_id.clone()) {
            if !message_crm_ids.contains(&id) {
                message_crm_ids.push(id);
            }
        }
    }
    ContactErasure {
        contact_key,
        crm_contact_id: crm_contact_id.filter(|_| linked),
        whatsapp_id,
        message_crm_ids,
    }
}

/// Erasure: three contacts write; contact 0 is erased by its link, contact 2 by its WhatsApp
/// id alone (no link known), contact 1 is a bystander. The first erasure meets a 429, a 5xx
/// and a write whose answer is lost after the CRM applied it (so a delete is repeated and
/// finds nothing). Afterwards the CRM holds no body of 0 or 2 — nor their phones and records
/// when it deletes through its API (`Erased`); a CRM that cannot must say what a person does
/// (`Manual`) — and all of 1. Erasing again answers `NotFound` or `Erased` (or the same manual
/// step).
pub async fn erasure<T: Target>(target: &T) {
    const NUMBER: usize = 8;
    let name = target.name();
    let mut run = Run::new(target).await;
    let events: Vec<Event> = (0..18)
        .map(|i| message(NUMBER, i, i % 3, Direction::Inbound, &secret_body(i)))
        .collect();
    assert_eq!(
        run.sync(&events).await,
        vec![],
        "{name}: erasure: dead letters"
    );
    for i in 0..18 {
        assert!(
            target.holds(&secret_body(i)),
            "{name}: erasure: the CRM should hold message {i} before the erasure (is `holds` \
             looking at what the fake keeps?)"
        );
    }
    let (mut config, _) = target.adapter(&run.proxy.base_url());
    if config.name.is_empty() {
        config.name = "conformance".into();
    }
    let wamids_of = |n: usize| -> Vec<String> {
        (0..18)
            .filter(|i| i % 3 == n)
            .map(|i| format!("wamid.conf{NUMBER}.{i}"))
            .collect()
    };
    let erasures = [
        erasure_of(&run.db, &config.name, NUMBER, 0, &wamids_of(0), true).await,
        erasure_of(&run.db, &config.name, NUMBER, 2, &wamids_of(2), false).await,
    ];
    // A new adapter, as after a restart: what it erases comes from the CRM and the erasure.
    let (_, adapter) = target.adapter(&run.proxy.base_url());
    run.proxy
        .inject(Fault::RateLimited(1, target.rate_limited()));
    run.proxy.inject(Fault::ServerErrors(1));
    run.proxy.inject(Fault::AnswerLost(1));
    let mut outcomes = Vec::new();
    for erasure in &erasures {
        let outcome = adapter.erase_contact(erasure).await;
        match &outcome {
            Ok(Erasure::Erased) => {}
            Ok(Erasure::Manual(steps)) => {
                assert!(!steps.trim().is_empty(), "{name}: an empty manual step");
                assert!(
                    !steps.contains(&erasure.whatsapp_id[2..]),
                    "{name}: the manual step names the phone: {steps}"
                );
            }
            other => panic!(
                "{name}: erasing {} should answer Erased (or Manual), got {other:?}",
                erasure.contact_key
            ),
        }
        outcomes.push(outcome);
    }
    run.proxy.reset();
    let held = target.messages();
    for n in [0, 2] {
        for i in (0..18).filter(|i| i % 3 == n) {
            assert!(
                !target.holds(&secret_body(i)),
                "{name}: erasure: the CRM still holds the body of message {i} of an erased contact"
            );
            assert!(
                !held.contains_key(&format!("wamid.conf{NUMBER}.{i}")),
                "{name}: erasure: the CRM still holds message {i} of an erased contact"
            );
        }
    }
    for (erasure, outcome) in erasures.iter().zip(&outcomes) {
        if matches!(outcome, Ok(Erasure::Erased)) {
            assert_eq!(
                target.contacts_for(&erasure.whatsapp_id),
                Vec::<String>::new(),
                "{name}: erasure: the erased contact {} is still in the CRM",
                erasure.contact_key
            );
            for phone in [&erasure.whatsapp_id[..], &erasure.whatsapp_id[2..]] {
                assert!(
                    !target.holds(phone),
                    "{name}: erasure: the CRM still holds the phone of {}",
                    erasure.contact_key
                );
            }
        }
    }
    // The bystander is untouched.
    for i in (0..18).filter(|i| i % 3 == 1) {
        assert!(
            target.holds(&secret_body(i)),
            "{name}: erasure: the bystander's message {i} is gone"
        );
        let copies = held
            .get(&format!("wamid.conf{NUMBER}.{i}"))
            .map_or(0, Vec::len);
        let exactly = target.delivery() == Delivery::ExactlyOnce;
        assert!(
            copies >= 1 && (!exactly || copies == 1),
            "{name}: erasure: the bystander's message {i} has {copies} copies"
        );
    }
    assert!(
        !target.contacts_for(&wa_id(NUMBER, 1)).is_empty(),
        "{name}: erasure: the bystander's contact is gone"
    );
    // Again (after a crash, or an ambiguous answer): nothing left to erase.
    for (erasure, first) in erasures.iter().zip(&outcomes) {
        let again = adapter.erase_contact(erasure).await;
        let fine = matches!(
            (first, &again),
            (_, Ok(Erasure::NotFound | Erasure::Erased))
                | (Ok(Erasure::Manual(_)), Ok(Erasure::Manual(_)))
        );
        assert!(
            fine,
            "{name}: erasing {} again should answer NotFound or Erased, got {again:?}",
            erasure.contact_key
        );
    }
    let violations = target.violations();
    assert!(
        violations.is_empty(),
        "{name} / erasure: requests off the vendor's spec: {violations:?}"
    );
}
