//! Consent records through the API: recorded, shown, kept as history; the keyword opt-out
//! recorded as a consent decision; the marketing opt-in rule; scopes, business numbers and
//! the audit.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::Utc;
use http::StatusCode;
use serde_json::{json, Value};
use wacrm_core::contact::IdentityKey;
use wacrm_core::outbound::TemplateCategory;
use wacrm_core::E164;
use wacrm_store::keys::Role;
use wacrm_testkit::webhooks;

use common::*;

const NUMBER_A: &str = "106540352242922";
const NUMBER_B: &str = "106540352240000";

async fn harness_with_policy(requires_opt_in: bool) -> Harness {
    let mut whatsapp = sending();
    for number in [NUMBER_A, NUMBER_B] {
        whatsapp.numbers.insert(
            number.into(),
            wacrm_whatsapp::config::NumberConfig::default(),
        );
    }
    whatsapp
        .templates
        .insert("order_update".into(), TemplateCategory::Utility);
    whatsapp
        .templates
        .insert("black_friday".into(), TemplateCategory::Marketing);
    whatsapp.marketing_requires_opt_in = requires_opt_in;
    harness_full(None, Some(SECRET), whatsapp).await
}

/// An inbound text from `from` to `number`, `ago` before now, projected; the contact's id.
async fn inbound_to(
    h: &Harness,
    number: &str,
    from: &str,
    wamid: &str,
    body: &str,
    ago: chrono::Duration,
) -> String {
    let ts = (Utc::now() - ago).timestamp();
    let (status, _) = call(
        &h.app,
        signed(webhooks::text(number, from, wamid, body, ts)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    h.project().await;
    contact_id(h, from).await
}

async fn contact_id(h: &Harness, phone: &str) -> String {
    let key = IdentityKey::Phone(E164::parse(phone).unwrap());
    let found = wacrm_store::queries::find_contacts(&h.db, &[key], None)
        .await
        .unwrap();
    found[0].id.clone()
}

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap()
}

fn consent(purpose: &str, granted: bool) -> Value {
    json!({"purpose": purpose, "granted": granted, "channel": "web_form",
           "source": "https://loja.example/newsletter"})
}

fn template_to(from: &str, to: &str, name: &str) -> Value {
    json!({"from": from, "to": to, "type": "template", "name": name, "language": "pt_BR"})
}

async fn get_json(h: &Harness, path: &str, key: &str) -> Value {
    let (status, body) = h.get(path, Some(key)).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    parse(&body)
}

#[tokio::test]
async fn consent_is_recorded_shown_on_the_contact_and_kept_as_history() {
    let h = harness_with_policy(false).await;
    let id = inbound_to(
        &h,
        NUMBER_A,
        "5511955550001",
        "wamid.c.1",
        "oi",
        chrono::Duration::minutes(5),
    )
    .await;
    let dpo = h.key("Dora DPO", Role::Dpo, None).await;
    let path = format!("/v1/contacts/{id}/consent");

    let yesterday = Utc::now() - chrono::Duration::days(1);
    let mut opt_in = consent("marketing", true);
    opt_in["at"] = json!(yesterday.to_rfc3339());
    let (status, body) = h.post_json(&path, &dpo, &opt_in, &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let recorded = parse(&body);
    assert_eq!(recorded["record"]["purpose"], "marketing");
    assert_eq!(recorded["record"]["granted"], true);
    assert_eq!(recorded["record"]["channel"], "web_form");
    assert_eq!(
        recorded["record"]["source"],
        "https://loja.example/newsletter"
    );
    assert_eq!(recorded["record"]["recorded_by"], "Dora DPO");
    assert!(recorded["record"]["key_id"].is_string());
    assert!(
        recorded["record"]["phone_number_id"].is_null(),
        "every number"
    );
    assert_eq!(recorded["current"].as_array().unwrap().len(), 1);

    // Visible on the contact.
    let contact = get_json(&h, &format!("/v1/contacts/{id}"), &dpo).await;
    assert_eq!(contact["id"], id.as_str());
    assert!(contact["identities"].is_array(), "{contact}");
    assert_eq!(contact["consent"][0]["purpose"], "marketing");
    assert_eq!(contact["consent"][0]["granted"], true);

    // Another purpose, then withdrawing marketing: the history keeps every decision.
    let (status, body) = h
        .post_json(&path, &dpo, &consent("custom:loyalty_club", true), &[])
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut withdraw = consent("marketing", false);
    withdraw["channel"] = json!("phone");
    withdraw["source"] = json!("call centre, ticket 4711");
    let (status, body) = h.post_json(&path, &dpo, &withdraw, &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let summary = get_json(&h, &path, &dpo).await;
    let history = summary["history"].as_array().unwrap();
    assert_eq!(history.len(), 3, "{summary:#}");
    assert_eq!(history[0]["granted"], true, "oldest first: {summary:#}");
    let current = summary["current"].as_array().unwrap();
    let marketing: Vec<&Value> = current
        .iter()
        .filter(|c| c["purpose"] == "marketing")
        .collect();
    assert_eq!(marketing.len(), 1);
    assert_eq!(marketing[0]["granted"], false);
    assert_eq!(marketing[0]["channel"], "phone");
    let contact = get_json(&h, &format!("/v1/contacts/{id}"), &dpo).await;
    assert_eq!(
        contact["consent"].as_array().unwrap().len(),
        2,
        "{contact:#}"
    );

    // A backdated opt-in older than the withdrawal does not bring marketing back.
    let mut old = consent("marketing", true);
    old["at"] = json!((Utc::now() - chrono::Duration::days(30)).to_rfc3339());
    h.post_json(&path, &dpo, &old, &[]).await;
    let summary = get_json(&h, &path, &dpo).await;
    let marketing = summary["current"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["purpose"] == "marketing")
        .unwrap()
        .clone();
    assert_eq!(marketing["granted"], false, "{summary:#}");
    assert_eq!(summary["history"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn a_bad_consent_is_refused_with_the_reason() {
    let h = harness_with_policy(false).await;
    let id = inbound_to(
        &h,
        NUMBER_A,
        "5511955550002",
        "wamid.c.2",
        "oi",
        chrono::Duration::minutes(5),
    )
    .await;
    let dpo = h.key("Dora DPO", Role::Dpo, None).await;
    let path = format!("/v1/contacts/{id}/consent");
    let mut future = consent("marketing", true);
    future["at"] = json!((Utc::now() + chrono::Duration::hours(2)).to_rfc3339());
    let mut no_source = consent("marketing", true);
    no_source["source"] = json!("  ");
    let mut fax = consent("marketing", true);
    fax["channel"] = json!("fax");
    let mut letters = consent("marketing", true);
    letters["phone_number_id"] = json!("not-digits");
    for (body, says) in [
        (consent("Marketing", true), "unknown purpose"),
        (consent("custom:Not A Slug", true), "custom purpose"),
        (fax, "unknown channel"),
        (no_source, "source"),
        (future, "future"),
        (letters, "digits"),
    ] {
        let (status, text) = h.post_json(&path, &dpo, &body, &[]).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {text}");
        assert!(text.contains(says), "{says}: {text}");
    }
    let mut unknown = consent("marketing", true);
    unknown["phone_number_id"] = json!("999");
    let (status, text) = h.post_json(&path, &dpo, &unknown, &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
    assert_eq!(parse(&text)["reason"], "unknown_number");
    let (status, _) = h
        .post_json(&path, &dpo, &json!({"purpose": "marketing"}), &[])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = h
        .post_json(
            "/v1/contacts/no-such-contact/consent",
            &dpo,
            &consent("marketing", true),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let summary = get_json(&h, &path, &dpo).await;
    assert!(summary["history"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn with_the_rule_on_marketing_needs_a_current_opt_in() {
    let h = harness_with_policy(true).await;
    let agent = h.key("Bruno Agent", Role::Agent, None).await;
    let dpo = h.key("Dora DPO", Role::Dpo, None).await;
    let id = inbound_to(
        &h,
        NUMBER_A,
        "5511955550003",
        "wamid.c.3",
        "oi",
        chrono::Duration::minutes(5),
    )
    .await;

    // No opt-in: refused in words; utility templates and service messages still go.
    for name in ["black_friday", "not_configured_so_marketing"] {
        let (status, body) = h
            .post_json(
                "/v1/messages",
                &agent,
                &template_to(NUMBER_A, "5511955550003", name),
                &[],
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {body}");
        let refused = parse(&body);
        assert_eq!(refused["reason"], "no_opt_in");
        assert!(
            refused["error"].as_str().unwrap().contains("opt-in"),
            "{body}"
        );
    }
    let (status, _) = h
        .post_json(
            "/v1/messages",
            &agent,
            &template_to(NUMBER_A, "5511955550003", "order_update"),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // A stranger has no consent at all.
    let (status, body) = h
        .post_json(
            "/v1/messages",
            &agent,
            &template_to(NUMBER_A, "5511955559999", "black_friday"),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // Opted in: accepted.
    let path = format!("/v1/contacts/{id}/consent");
    let (status, _) = h
        .post_json(&path, &dpo, &consent("marketing", true), &[])
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = h
        .post_json(
            "/v1/messages",
            &agent,
            &template_to(NUMBER_A, "5511955550003", "black_friday"),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // An opt-in for another purpose is not one for marketing (checked above: only marketing).
    // Opted out after opting in: refused again.
    let (status, _) = h
        .post_json(&path, &dpo, &consent("marketing", false), &[])
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = h
        .post_json(
            "/v1/messages",
            &agent,
            &template_to(NUMBER_A, "5511955550003", "black_friday"),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(parse(&body)["reason"], "opted_out");
    assert!(body.contains("withdrew consent"), "{body}");

    // Every refusal was audited as the send's outcome (like the opt-out refusal).
    let admin = h.admin().await;
    let audit = get_json(&h, "/v1/audit?action=messages.send", &admin).await;
    let rejected = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "rejected")
        .count();
    assert_eq!(rejected, 4, "{audit:#}");
}

#[tokio::test]
async fn without_the_rule_no_opt_in_is_needed_but_a_recorded_opt_out_refuses() {
    let h = harness_with_policy(false).await;
    let agent = h.key("Bruno Agent", Role::Agent, None).await;
    let dpo = h.key("Dora DPO", Role::Dpo, None).await;
    let id = inbound_to(
        &h,
        NUMBER_A,
        "5511955550004",
        "wamid.c.4",
        "oi",
        chrono::Duration::minutes(5),
    )
    .await;
    let (status, body) = h
        .post_json(
            "/v1/messages",
            &agent,
            &template_to(NUMBER_A, "5511955550004", "black_friday"),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "today's behaviour: {body}");
    let (status, _) = h
        .post_json(
            &format!("/v1/contacts/{id}/consent"),
            &dpo,
            &consent("marketing", false),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = h
        .post_json(
            "/v1/messages",
            &agent,
            &template_to(NUMBER_A, "5511955550004", "black_friday"),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(parse(&body)["reason"], "opted_out");
}

#[tokio::test]
async fn the_stop_keyword_is_recorded_as_an_opt_out_on_its_number() {
    let h = harness_with_policy(true).await;
    let agent = h.key("Bruno Agent", Role::Agent, None).await;
    let auditor = h.key("Aud", Role::Auditor, None).await;
    let phone = "5511955550005";
    let id = inbound_to(
        &h,
        NUMBER_A,
        phone,
        "wamid.k.stop",
        "PARAR",
        chrono::Duration::minutes(5),
    )
    .await;
    let summary = get_json(&h, &format!("/v1/contacts/{id}/consent"), &auditor).await;
    let history = summary["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{summary:#}");
    let stop = &history[0];
    assert_eq!(stop["purpose"], "marketing");
    assert_eq!(stop["granted"], false);
    assert_eq!(stop["channel"], "whatsapp");
    assert_eq!(stop["source"], "keyword");
    assert_eq!(stop["recorded_by"], "contact");
    assert!(stop["key_id"].is_null());
    assert_eq!(stop["phone_number_id"], NUMBER_A);

    // The start keyword is the contact's own opt-in, on that number only.
    inbound_to(
        &h,
        NUMBER_A,
        phone,
        "wamid.k.start",
        "voltar",
        chrono::Duration::minutes(1),
    )
    .await;
    let summary = get_json(&h, &format!("/v1/contacts/{id}/consent"), &auditor).await;
    assert_eq!(
        summary["history"].as_array().unwrap().len(),
        2,
        "{summary:#}"
    );
    assert_eq!(summary["current"][0]["granted"], true, "{summary:#}");
    let (status, body) = h
        .post_json(
            "/v1/messages",
            &agent,
            &template_to(NUMBER_A, phone, "black_friday"),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = h
        .post_json(
            "/v1/messages",
            &agent,
            &template_to(NUMBER_B, phone, "black_friday"),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(parse(&body)["reason"], "no_opt_in");

    // Projecting the same events again (a replay) records nothing twice.
    let mut again =
        wacrm_store::projection::Projection::new(h.db.clone(), wacrm_bus::Topics::default());
    replay_into(&h, &mut again).await;
    let summary = get_json(&h, &format!("/v1/contacts/{id}/consent"), &auditor).await;
    assert_eq!(summary["history"].as_array().unwrap().len(), 2);
}

/// Every record on the bus so far, through `projection` (a consumer group of its own).
async fn replay_into(h: &Harness, projection: &mut wacrm_store::projection::Projection) {
    use wacrm_bus::runner::Handler;
    let topics = wacrm_bus::Topics::default();
    let mut sub = h
        .bus
        .subscribe(
            &format!("replay-{}", uuid_like()),
            &wacrm_store::projection::Projection::topics(&topics),
        )
        .await
        .unwrap();
    let records = sub
        .poll(10_000, std::time::Duration::from_millis(200))
        .await
        .unwrap();
    projection.handle(&records).await.unwrap();
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// The consent rows as SQLite holds them, each value `quote()`d.
async fn raw_consent_rows(db: &wacrm_store::Db) -> Vec<String> {
    use sea_orm::{ConnectionTrait, Statement};
    let backend = db.get_database_backend();
    let columns = "quote(id) || '|' || quote(contact_id) || '|' || quote(purpose) || '|' || \
                   quote(granted) || '|' || quote(channel) || '|' || quote(source) || '|' || \
                   quote(recorded_by) || '|' || quote(key_id) || '|' || \
                   quote(phone_number_id) || '|' || quote(at) || '|' || quote(recorded_at)";
    db.query_all(Statement::from_string(
        backend,
        format!("SELECT {columns} AS row FROM consent_records ORDER BY 1"),
    ))
    .await
    .unwrap()
    .into_iter()
    .map(|r| r.try_get::<String>("", "row").unwrap())
    .collect()
}

#[tokio::test]
async fn the_projections_own_connection_records_what_the_pool_records() {
    let h = harness_with_policy(false).await;
    inbound_to(
        &h,
        NUMBER_A,
        "5511955550006",
        "wamid.p.1",
        "STOP",
        chrono::Duration::minutes(3),
    )
    .await;
    inbound_to(
        &h,
        NUMBER_A,
        "5511955550006",
        "wamid.p.2",
        "start",
        chrono::Duration::minutes(2),
    )
    .await;
    let now = Utc::now().timestamp();
    let (status, _) = call(
        &h.app,
        signed(webhooks::status(
            NUMBER_B,
            "5511955550006",
            "wamid.out.p",
            "failed",
            now,
            Some(131_050),
        )),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    h.project().await;
    let own = raw_consent_rows(&h.db).await;
    assert_eq!(own.len(), 3, "{own:#?}");
    assert!(own
        .iter()
        .any(|r| r.contains("'whatsapp_error_131050'") && r.contains("'whatsapp'")));

    let pooled = harness_with_policy(false).await;
    let mut projection = wacrm_store::projection::Projection::through_pool(
        pooled.db.clone(),
        wacrm_bus::Topics::default(),
    );
    assert!(!projection.has_own_connection());
    replay_into(&h, &mut projection).await;
    assert_eq!(raw_consent_rows(&pooled.db).await, own);
}

#[tokio::test]
async fn scopes_and_business_numbers_hold_for_consent() {
    let h = harness_with_policy(false).await;
    let id = inbound_to(
        &h,
        NUMBER_A,
        "5511955550007",
        "wamid.s.1",
        "oi",
        chrono::Duration::minutes(5),
    )
    .await;
    let path = format!("/v1/contacts/{id}/consent");
    let agent = h.key("Bruno Agent", Role::Agent, None).await;
    let auditor = h.key("Aud", Role::Auditor, None).await;
    let admin = h.admin().await;

    // Agents and auditors read consent but never record it.
    for key in [&agent, &auditor] {
        let (status, body) = h
            .post_json(&path, key, &consent("marketing", true), &[])
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(body.contains("consent:write"), "{body}");
        assert_eq!(h.get(&path, Some(key)).await.0, StatusCode::OK);
    }
    // Admins record; one decision limited to number B, one business-wide.
    let mut on_b = consent("marketing", true);
    on_b["phone_number_id"] = json!(NUMBER_B);
    assert_eq!(
        h.post_json(&path, &admin, &on_b, &[]).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        h.post_json(&path, &admin, &consent("surveys", false), &[])
            .await
            .0,
        StatusCode::CREATED
    );

    // A DPO of number A: must name its number, never another; sees only A's and the
    // business-wide decisions.
    let dpo_a = h.key("Dora A", Role::Dpo, Some(&[NUMBER_A])).await;
    let (status, body) = h
        .post_json(&path, &dpo_a, &consent("marketing", true), &[])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = h.post_json(&path, &dpo_a, &on_b, &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let mut on_a = consent("marketing", false);
    on_a["phone_number_id"] = json!(NUMBER_A);
    let (status, body) = h.post_json(&path, &dpo_a, &on_a, &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let summary = get_json(&h, &path, &dpo_a).await;
    let seen: Vec<&str> = summary["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["phone_number_id"].as_str().unwrap_or("all"))
        .collect();
    assert_eq!(seen.len(), 2, "{summary:#}");
    assert!(!seen.contains(&NUMBER_B), "{summary:#}");
    let contact = get_json(&h, &format!("/v1/contacts/{id}"), &dpo_a).await;
    assert!(!contact.to_string().contains(NUMBER_B), "{contact:#}");
    // A key of number B never saw the contact: 404, as for any read.
    let dpo_b = h.key("Dora B", Role::Dpo, Some(&[NUMBER_B])).await;
    assert_eq!(h.get(&path, Some(&dpo_b)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        h.post_json(&path, &dpo_b, &on_b, &[]).await.0,
        StatusCode::NOT_FOUND
    );
    let everything = get_json(&h, &path, &admin).await;
    assert_eq!(everything["history"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_consent_write_is_audited_before_it_is_made() {
    use sea_orm::ConnectionTrait;
    let h = harness_with_policy(false).await;
    let id = inbound_to(
        &h,
        NUMBER_A,
        "5511955550008",
        "wamid.a.1",
        "oi",
        chrono::Duration::minutes(5),
    )
    .await;
    let path = format!("/v1/contacts/{id}/consent");
    let dpo = h.key("Dora DPO", Role::Dpo, None).await;
    let (status, _) = h
        .post_json(&path, &dpo, &consent("marketing", true), &[])
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let admin = h.admin().await;
    let audit = get_json(&h, "/v1/audit?action=consent.record", &admin).await;
    let entries = audit.as_array().unwrap();
    let outcomes: Vec<&str> = entries
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["intent", "ok"], "{audit:#}");
    for e in entries {
        assert_eq!(e["contact_id"], id.as_str());
        assert_eq!(e["actor"], "Dora DPO");
        assert_eq!(e["target"], "marketing");
        assert_eq!(e["detail"]["granted"], true);
        assert_eq!(e["detail"]["channel"], "web_form");
        assert!(
            !e.to_string().contains("loja.example"),
            "no source in the log: {e}"
        );
    }
    // Refusals are audited too.
    let agent = h.key("Bruno Agent", Role::Agent, None).await;
    h.post_json(&path, &agent, &consent("marketing", true), &[])
        .await;
    let audit = get_json(&h, "/v1/audit?action=consent.record", &admin).await;
    assert_eq!(
        audit.as_array().unwrap().last().unwrap()["outcome"],
        "denied"
    );
    // Reads are audited.
    h.get(&path, Some(&dpo)).await;
    let reads = get_json(&h, "/v1/audit?action=consent.read", &admin).await;
    assert_eq!(reads.as_array().unwrap().len(), 1);

    // A write that cannot be audited is not made.
    h.db.execute_unprepared(
        "CREATE TRIGGER audit_read_only BEFORE INSERT ON audit_log \
         BEGIN SELECT RAISE(ABORT, 'read-only'); END",
    )
    .await
    .unwrap();
    let (status, body) = h
        .post_json(&path, &dpo, &consent("marketing", false), &[])
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let history = wacrm_store::consent::history(&h.db, &id, None)
        .await
        .unwrap();
    assert_eq!(history.len(), 1, "nothing recorded");
}

#[tokio::test]
async fn decisions_recorded_before_a_merge_stay_with_the_person() {
    use sea_orm::{ActiveValue::Set, EntityTrait};
    let h = harness_with_policy(true).await;
    let id = inbound_to(
        &h,
        NUMBER_A,
        "5511955550009",
        "wamid.m.1",
        "oi",
        chrono::Duration::minutes(5),
    )
    .await;
    // An earlier contact of the same person (their old number), merged into this one.
    let now = Utc::now();
    wacrm_store::entities::contact::Entity::insert(wacrm_store::entities::contact::ActiveModel {
        id: Set("old-contact".into()),
        display_name: Set(None),
        username: Set(None),
        merged_into: Set(Some(id.clone())),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_without_returning(&h.db)
    .await
    .unwrap();
    wacrm_store::consent::record(
        &h.db,
        wacrm_store::consent::NewConsent {
            contact_id: "old-contact".into(),
            purpose: "marketing".into(),
            granted: true,
            channel: "paper".into(),
            source: "ficha de cadastro".into(),
            recorded_by: "Dora".into(),
            key_id: None,
            phone_number_id: None,
            at: now - chrono::Duration::days(3),
        },
    )
    .await
    .unwrap();
    let auditor = h.key("Aud", Role::Auditor, None).await;
    // Asked by either id, the person's decisions are the same.
    for asked in [id.as_str(), "old-contact"] {
        let summary = get_json(&h, &format!("/v1/contacts/{asked}/consent"), &auditor).await;
        assert_eq!(
            summary["history"][0]["channel"], "paper",
            "{asked}: {summary:#}"
        );
    }
    let agent = h.key("Bruno Agent", Role::Agent, None).await;
    let (status, body) = h
        .post_json(
            "/v1/messages",
            &agent,
            &template_to(NUMBER_A, "5511955550009", "black_friday"),
            &[],
        )
        .await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "the opt-in holds after the merge: {body}"
    );
}

#[tokio::test]
async fn the_consent_routes_are_documented_in_openapi() {
    let h = harness_with_policy(false).await;
    let key = h.admin().await;
    let doc = get_json(&h, "/openapi.json", &key).await;
    let consent = &doc["paths"]["/v1/contacts/{id}/consent"];
    assert!(consent["post"].is_object(), "{consent}");
    assert!(consent["get"].is_object(), "{consent}");
    assert!(doc["paths"]["/v1/contacts/{id}/export"]["get"].is_object());
    for name in [
        "RecordConsent",
        "ConsentRecorded",
        "ConsentSummary",
        "ConsentView",
        "ContactDetail",
    ] {
        assert!(doc["components"]["schemas"][name].is_object(), "{name}");
    }
    // Every reference resolves.
    let text = doc.to_string();
    for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = part.split('"').next().unwrap();
        assert!(doc["components"]["schemas"][name].is_object(), "{name}");
    }
}
