//! Realistic, correctly signed Cloud API webhooks: every inbound message type, statuses, batches
//! of 1…1,000 updates, many contacts and business numbers.

use serde_json::{json, Value};
use wacrm_whatsapp::signature::sign;

/// What the generated webhooks contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// Text messages only (the common case and the targets' workload).
    Text,
    /// Every message type and statuses, in a fixed rotation.
    All,
}

/// Generates webhook bodies; each update gets a unique wamid.
#[derive(Debug, Clone)]
pub struct Generator {
    /// Updates per webhook (Meta batches up to 1,000).
    pub updates: usize,
    /// Distinct contacts messages come from.
    pub contacts: usize,
    /// Distinct business numbers.
    pub numbers: usize,
    /// What kinds of updates.
    pub mix: Mix,
    /// The Meta app secret to sign with.
    pub secret: String,
    /// A prefix making wamids unique per run.
    pub run: String,
}

/// One generated request.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// The body.
    pub body: Vec<u8>,
    /// Its `X-Hub-Signature-256`.
    pub signature: String,
    /// The wamids of the messages in it (not of statuses).
    pub wamids: Vec<String>,
}

const KINDS: [&str; 13] = [
    "text",
    "image",
    "status_delivered",
    "audio",
    "interactive",
    "status_read",
    "document",
    "location",
    "reaction",
    "video",
    "button",
    "sticker",
    "status_failed",
];

/// The phone number id of business number `n`.
pub fn number_id(n: usize) -> String {
    format!("1065403522{:05}", n)
}

/// The `wa_id` of contact `c`.
pub fn contact_id(c: usize) -> String {
    format!("55119{:08}", 80_000_000 + c)
}

fn media(kind: &str, i: usize) -> Value {
    json!({kind: {"id": format!("{}", 1_000_000 + i), "mime_type": "image/jpeg",
                  "sha256": "ZGVhZGJlZWY=", "caption": format!("foto {i}")}})
}

fn message(kind: &str, i: usize, from: &str, wamid: &str, ts: i64) -> Value {
    let mut m = json!({"from": from, "id": wamid, "timestamp": ts.to_string(), "type": kind});
    let extra = match kind {
        "text" => json!({"text": {"body": format!("Olá, quero saber o preço do produto {i}")}}),
        "image" | "video" | "sticker" => media(kind, i),
        "audio" => {
            json!({"audio": {"id": format!("{}", 2_000_000 + i), "mime_type": "audio/ogg", "voice": true}})
        }
        "document" => {
            json!({"document": {"id": format!("{}", 3_000_000 + i), "filename": "pedido.pdf", "mime_type": "application/pdf"}})
        }
        "location" => {
            json!({"location": {"latitude": -23.5505, "longitude": -46.6333, "name": "Loja Centro"}})
        }
        "reaction" => json!({"reaction": {"message_id": "wamid.bench.previous", "emoji": "👍"}}),
        "interactive" => {
            json!({"interactive": {"type": "button_reply", "button_reply": {"id": "yes", "title": "Sim"}}})
        }
        "button" => json!({"button": {"text": "Quero", "payload": "PROMO"}}),
        _ => json!({}),
    };
    if let (Some(o), Value::Object(e)) = (m.as_object_mut(), extra) {
        o.extend(e);
    }
    m
}

fn status(state: &str, to: &str, wamid: &str, ts: i64) -> Value {
    let mut s =
        json!({"id": wamid, "status": state, "timestamp": ts.to_string(), "recipient_id": to});
    if state == "failed" {
        if let Some(o) = s.as_object_mut() {
            o.insert(
                "errors".into(),
                json!([{"code": 131026, "title": "Message undeliverable", "message": "Message undeliverable",
                        "error_data": {"details": "Message failed to send"}}]),
            );
        }
    }
    s
}

impl Generator {
    /// Webhook number `n` of the run (deterministic).
    pub fn webhook(&self, n: usize) -> Webhook {
        let updates = self.updates.max(1);
        let number = number_id(n % self.numbers.max(1));
        let ts = 1_750_000_000 + n as i64;
        let mut messages = Vec::new();
        let mut statuses = Vec::new();
        let mut contacts = Vec::new();
        let mut wamids = Vec::new();
        for u in 0..updates {
            let i = n * updates + u;
            let from = contact_id(i % self.contacts.max(1));
            let kind = match self.mix {
                Mix::Text => "text",
                Mix::All => KINDS[i % KINDS.len()],
            };
            let wamid = format!("wamid.{}.{i:010}", self.run);
            if let Some(state) = kind.strip_prefix("status_") {
                statuses.push(status(state, &from, &wamid, ts));
            } else {
                if contacts.len() < 50 {
                    contacts.push(json!({"profile": {"name": format!("Cliente {}", i % self.contacts.max(1))}, "wa_id": from}));
                }
                messages.push(message(kind, i, &from, &wamid, ts));
                wamids.push(wamid);
            }
        }
        let mut value = json!({
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": number},
        });
        if let Some(o) = value.as_object_mut() {
            if !messages.is_empty() {
                o.insert("contacts".into(), Value::Array(contacts));
                o.insert("messages".into(), Value::Array(messages));
            }
            if !statuses.is_empty() {
                o.insert("statuses".into(), Value::Array(statuses));
            }
        }
        let body = json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}]
        });
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let signature = sign(self.secret.as_bytes(), &body);
        Webhook {
            body,
            signature,
            wamids,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_generated_update_normalises_without_rejects() {
        let g = Generator {
            updates: 26,
            contacts: 7,
            numbers: 3,
            mix: Mix::All,
            secret: "s".into(),
            run: "t".into(),
        };
        for n in 0..3 {
            let w = g.webhook(n);
            let out = wacrm_whatsapp::normalise::parse_and_normalise(&w.body, chrono::Utc::now())
                .unwrap();
            assert!(out.rejected.is_empty(), "{:?}", out.rejected);
            assert_eq!(w.wamids.len(), 20);
            assert!(out.events.len() >= 26);
        }
    }
}
