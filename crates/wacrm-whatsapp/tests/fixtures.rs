//! Every fixture (built from Meta's webhook schemas, see fixtures/README.md) normalises to the
//! expected events, and nothing in any of them is dropped.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Utc};
use wacrm_core::event::{Event, EventPayload};
use wacrm_core::message::{InteractiveReply, MessageContent};
use wacrm_core::status::DeliveryState;
use wacrm_core::IdentityKey;
use wacrm_whatsapp::normalise::{parse_and_normalise, Normalised};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn received() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

fn parse(name: &str) -> Normalised {
    let n = parse_and_normalise(&fixture(name), received()).unwrap();
    assert!(n.rejected.is_empty(), "{name}: rejected {:?}", n.rejected);
    n
}

fn messages(n: &Normalised) -> Vec<&wacrm_core::Message> {
    n.events
        .iter()
        .filter_map(|e| match &e.payload {
            EventPayload::MessageReceived(m) => Some(m),
            _ => None,
        })
        .collect()
}

fn only_content(name: &str) -> MessageContent {
    let n = parse(name);
    let m = messages(&n);
    assert_eq!(m.len(), 1, "{name}");
    m[0].content.clone()
}

#[test]
fn every_fixture_parses_without_loss() {
    let dir = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let body = std::fs::read(&path).unwrap();
            let raw: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let n = parse_and_normalise(&body, received()).unwrap();
            let items: usize = raw["entry"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|e| e["changes"].as_array().unwrap())
                .map(|c| {
                    ["messages", "statuses", "user_preferences"]
                        .iter()
                        .map(|k| c["value"][k].as_array().map_or(0, Vec::len))
                        .sum::<usize>()
                        + usize::from(c["value"]["errors"].is_array())
                })
                .sum();
            let produced = n
                .events
                .iter()
                .filter(|e| {
                    !matches!(
                        e.payload,
                        EventPayload::ContactUpdated(_) | EventPayload::ContactIdentityChanged(_)
                    )
                })
                .count()
                + n.rejected.len();
            assert_eq!(
                produced,
                items,
                "{}: every item becomes an event or a rejection",
                path.display()
            );
            count += 1;
        }
    }
    assert!(count >= 30, "only {count} fixtures");
}

#[test]
fn text_with_reply_context_and_bsuid() {
    let n = parse("text.json");
    let m = messages(&n)[0];
    assert!(matches!(&m.content, MessageContent::Text { body, .. } if !body.is_empty()));
    assert!(m
        .context
        .as_ref()
        .and_then(|c| c.reply_to.as_ref())
        .is_some());
    assert!(m.timestamp.timestamp() > 1_600_000_000);
    assert!(m.contact.name.is_some());
    let contact = n
        .events
        .iter()
        .find(|e| matches!(e.payload, EventPayload::ContactUpdated(_)))
        .expect("a contact event");
    // Keyed by the contact id, never by the phone: the compacted contacts topic keeps the
    // latest record per key, and an erasure must leave no phone there.
    let identity = contact.payload.contact_identity().unwrap();
    assert_eq!(contact.key, identity.contact_id());
    let digits = identity.value().trim_start_matches('+');
    assert!(!contact.key.contains(digits), "{}", contact.key);
}

#[test]
fn forwarded_referral_and_product_context() {
    let n = parse("text_forwarded.json");
    let ms = messages(&n);
    assert!(ms
        .iter()
        .any(|m| m.context.as_ref().is_some_and(|c| c.forwarded)));
    assert!(ms
        .iter()
        .any(|m| m.context.as_ref().is_some_and(|c| c.frequently_forwarded)));
    let n = parse("text_referral.json");
    let r = messages(&n)[0].referral.clone().unwrap();
    assert!(r.ctwa_clid.is_some() && r.source_url.is_some());
    let n = parse("product_inquiry.json");
    assert!(messages(&n)[0]
        .context
        .as_ref()
        .unwrap()
        .referred_product
        .is_some());
}

#[test]
fn media_types() {
    assert!(
        matches!(only_content("image.json"), MessageContent::Image(m) if m.id.is_some() && m.caption.is_some())
    );
    assert!(matches!(
        only_content("audio_voice.json"),
        MessageContent::Audio { voice: true, .. }
    ));
    assert!(
        matches!(only_content("video.json"), MessageContent::Video(m) if m.mime_type.is_some())
    );
    assert!(matches!(
        only_content("document.json"),
        MessageContent::Document {
            filename: Some(_),
            ..
        }
    ));
    assert!(matches!(
        only_content("sticker_animated.json"),
        MessageContent::Sticker { animated: true, .. }
    ));
}

#[test]
fn location_contacts_and_order() {
    assert!(
        matches!(only_content("location.json"), MessageContent::Location { latitude, longitude, .. } if latitude != 0.0 && longitude != 0.0)
    );
    assert!(
        matches!(only_content("contacts_vcard.json"), MessageContent::Contacts { cards } if !cards.is_empty())
    );
    match only_content("order.json") {
        MessageContent::Order {
            catalog_id, items, ..
        } => {
            assert!(!catalog_id.is_empty());
            assert!(!items.is_empty() && items.iter().all(|i| i.quantity > 0));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn interactive_replies_and_template_button() {
    assert!(matches!(
        only_content("interactive_button_reply.json"),
        MessageContent::Interactive(InteractiveReply::ButtonReply { .. })
    ));
    assert!(matches!(
        only_content("interactive_list_reply.json"),
        MessageContent::Interactive(InteractiveReply::ListReply { .. })
    ));
    match only_content("interactive_nfm_reply.json") {
        MessageContent::Interactive(InteractiveReply::NfmReply { response_json, .. }) => {
            serde_json::from_str::<serde_json::Value>(&response_json).unwrap();
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        only_content("button.json"),
        MessageContent::TemplateButton {
            payload: Some(_),
            ..
        }
    ));
}

#[test]
fn reactions_and_their_removal() {
    assert!(
        matches!(only_content("reaction.json"), MessageContent::Reaction { emoji: Some(e), .. } if e == "\u{1f44d}")
    );
    assert!(matches!(
        only_content("reaction_removed.json"),
        MessageContent::Reaction { emoji: None, .. }
    ));
}

#[test]
fn unknown_and_unsupported_types_are_kept_raw() {
    match only_content("unknown_future_type.json") {
        MessageContent::Unknown { type_name, raw } => {
            assert_eq!(type_name, "hologram");
            assert!(
                raw.get("hologram").is_some(),
                "the raw JSON keeps the unknown object"
            );
        }
        other => panic!("{other:?}"),
    }
    match only_content("unsupported.json") {
        MessageContent::Unsupported { errors, raw } => {
            assert_eq!(errors[0].code, 131051);
            assert!(raw.is_object());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_known_type_in_an_odd_shape_is_kept_not_dropped() {
    let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{
        "messaging_product":"whatsapp","metadata":{"display_phone_number":"1","phone_number_id":"2"},
        "contacts":[{"profile":{"name":"A"},"wa_id":"5511987654321"}],
        "messages":[{"from":"5511987654321","id":"wamid.odd","timestamp":"1700000000","type":"text","text":{"body":42}}]}}]}]}"#;
    let n = parse_and_normalise(body, received()).unwrap();
    assert!(n.rejected.is_empty());
    assert!(
        matches!(&messages(&n)[0].content, MessageContent::Unknown { type_name, .. } if type_name == "text")
    );
}

#[test]
fn statuses_are_read_with_errors_and_pricing() {
    let n = parse("status_failed.json");
    let EventPayload::StatusChanged(s) = &n.events[0].payload else {
        panic!()
    };
    assert_eq!(s.state, DeliveryState::Failed);
    assert_eq!(s.errors[0].code, 131047);
    let n = parse("status_sent.json");
    let EventPayload::StatusChanged(s) = &n.events[0].payload else {
        panic!()
    };
    assert_eq!(s.state, DeliveryState::Sent);
    assert!(s.pricing.is_some());
    let n = parse("statuses_out_of_order.json");
    let states: Vec<_> = n
        .events
        .iter()
        .filter_map(|e| match &e.payload {
            EventPayload::StatusChanged(s) => Some(s.state),
            _ => None,
        })
        .collect();
    assert_eq!(states, vec![DeliveryState::Read, DeliveryState::Delivered]);
}

#[test]
fn batch_of_three_entries_by_two_changes_is_processed_whole() {
    let n = parse("batch_3x2.json");
    assert_eq!(messages(&n).len(), 12);
    let statuses = n
        .events
        .iter()
        .filter(|e| matches!(e.payload, EventPayload::StatusChanged(_)))
        .count();
    assert_eq!(statuses, 6);
    let mut ids: Vec<_> = n.events.iter().map(|e| e.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        n.events.len(),
        "event ids are unique within a batch"
    );
}

#[test]
fn same_webhook_twice_gives_same_event_ids() {
    let a = parse("batch_3x2.json");
    let b = parse_and_normalise(
        &fixture("batch_3x2.json"),
        DateTime::from_timestamp(1_900_000_000, 0).unwrap(),
    )
    .unwrap();
    let ids = |n: &Normalised| n.events.iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(ids(&a), ids(&b));
}

#[test]
fn bsuid_only_contact() {
    let n = parse("bsuid_only.json");
    let m = messages(&n)[0];
    assert_eq!(m.contact.identity.wa_id, None);
    assert_eq!(m.contact.identity.phone, None);
    assert!(matches!(
        m.contact.identity.primary_key(),
        Some(IdentityKey::Bsuid(_))
    ));
    assert!(m.contact.username.is_some());
}

#[test]
fn brazilian_number_with_and_without_ninth_digit_is_one_conversation() {
    let n = parse("number_9th_digit_pair.json");
    let keys: Vec<_> = messages(&n)
        .iter()
        .map(|m| m.conversation_key().unwrap())
        .collect();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], keys[1]);
}

#[test]
fn number_change_links_old_and_new() {
    let n = parse("system_user_changed_number.json");
    let change = n
        .events
        .iter()
        .find_map(|e| match &e.payload {
            EventPayload::ContactIdentityChanged(c) => Some(c),
            _ => None,
        })
        .expect("identity change event");
    assert!(change.old.phone.is_some() && change.new.phone.is_some());
    assert_ne!(change.old.phone, change.new.phone);
    assert!(
        matches!(only_content("system_user_changed_number.json"), MessageContent::System { system_type, new_wa_id: Some(_), .. } if system_type == "user_changed_number")
    );
}

#[test]
fn change_level_errors_and_preferences_become_events() {
    let n = parse("value_errors.json");
    assert!(matches!(&n.events[0].payload, EventPayload::PlatformError(p) if !p.errors.is_empty()));
    let n = parse("user_preferences_stop.json");
    assert!(
        matches!(&n.events[0].payload, EventPayload::PreferenceChanged(p) if p.value == "stop" && p.category == "marketing_messages")
    );
}

#[test]
fn garbage_is_an_error_and_other_products_too() {
    assert!(parse_and_normalise(b"not json", received()).is_err());
    assert!(parse_and_normalise(br#"{"object":"page","entry":[]}"#, received()).is_err());
}

#[test]
fn unhandled_fields_and_broken_items_are_rejected_with_reasons_not_dropped() {
    let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[
        {"field":"message_template_status_update","value":{"event":"APPROVED"}},
        {"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"phone_number_id":"2"},
          "messages":[{"type":"text"}],
          "statuses":[{"id":"wamid.s","status":"deleted","timestamp":"1","recipient_id":"5511987654321"}]}}]}]}"#;
    let n = parse_and_normalise(body, received()).unwrap();
    assert_eq!(n.rejected.len(), 3, "{:?}", n.rejected);
    assert!(n.rejected[0]
        .reason
        .contains("message_template_status_update"));
    assert!(n.events.is_empty());
}

#[test]
fn event_keys_route_a_conversation_to_one_key() {
    let n = parse("batch_3x2.json");
    for e in &n.events {
        if let EventPayload::MessageReceived(m) = &e.payload {
            assert_eq!(e.key, m.conversation_key().unwrap().as_record_key());
        }
    }
    let _: Vec<&Event> = n.events.iter().collect();
}

#[test]
fn calls_become_call_events_with_the_contact_on_the_right_side() {
    use wacrm_core::{Direction, EventPayload};
    let body = wacrm_testkit::webhooks::user_call(
        "106540352242922",
        "5511912120001",
        "wacid.9",
        "connect",
        1_777_600_000,
    );
    let out = wacrm_whatsapp::normalise::parse_and_normalise(&body, chrono::Utc::now()).unwrap();
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    let EventPayload::Call(call) = &out.events[0].payload else {
        panic!("{:?}", out.events)
    };
    assert_eq!(call.direction, Direction::Inbound);
    assert_eq!(call.contact.wa_id.as_deref(), Some("5511912120001"));
    assert_eq!(out.events[0].key, "106540352242922/phone:+5511912120001");

    let mut business: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let call = &mut business["entry"][0]["changes"][0]["value"]["calls"][0];
    call["direction"] = "BUSINESS_INITIATED".into();
    call["from"] = "15550783881".into();
    call["to"] = "5511912120001".into();
    let business = business.to_string();
    let out =
        wacrm_whatsapp::normalise::parse_and_normalise(business.as_bytes(), chrono::Utc::now())
            .unwrap();
    let EventPayload::Call(call) = &out.events[0].payload else {
        panic!("{:?}", out.events)
    };
    assert_eq!(call.direction, Direction::Outbound);
    assert_eq!(call.contact.wa_id.as_deref(), Some("5511912120001"));
}
