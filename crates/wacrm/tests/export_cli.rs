//! `wacrm export` through the real binary: by phone in any spelling or by id, to a file or to
//! standard output, audited as the command line's user, and nothing of another contact.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Bus, Service};
use wacrm_testkit::webhooks;

const NUMBER: &str = "106540352242922";
const MARIA: &str = "5511966660001";
const JOAO: &str = "5511966660002";

#[tokio::test]
async fn the_command_exports_one_contact_and_is_audited() {
    let mut service = Service::new(Bus::Embedded);
    service.start().await;
    let admin = service.admin_key();
    let now = chrono::Utc::now().timestamp();
    for (who, wamid, body) in [
        (MARIA, "wamid.cli.maria", "pedido da Maria"),
        (JOAO, "wamid.cli.joao", "pedido do João"),
    ] {
        let status = service
            .post_webhook(webhooks::text(NUMBER, who, wamid, body, now - 60))
            .await;
        assert_eq!(status, 200);
    }
    service
        .wait_stored(
            &admin,
            ["wamid.cli.maria".to_owned(), "wamid.cli.joao".to_owned()],
            Duration::from_secs(30),
        )
        .await;

    // By phone, as a person types it — here the old spelling without the 9th digit — to a
    // file, while the service runs.
    let out = service.path().join("maria.json");
    let run = service
        .command()
        .args(["export", "--phone", "+55 (11) 6666-0001", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("1 messages"), "{stderr}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(!service.path().join("maria.json.partial").exists());
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["format"], "wacrm.contact_export");
    assert_eq!(doc["partial"], false);
    assert_eq!(doc["complete"], true);
    assert_eq!(doc["messages"][0]["content"]["body"], "pedido da Maria");
    let maria = doc["contact_id"].as_str().unwrap().to_owned();
    for other in [JOAO, "pedido do João"] {
        assert!(!text.contains(other), "{other} in Maria's export");
    }

    // By id, to standard output: the same contact.
    let run = service
        .command()
        .args(["export", "--contact", &maria])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(doc["contact_id"], maria.as_str());
    // The first export is in the second one's audit entries, as the command line's user.
    let audit = doc["audit"].as_array().unwrap();
    assert!(
        audit.iter().any(|e| e["action"] == "contacts.export"
            && e["key_id"] == "cli"
            && e["outcome"] == "ok"),
        "{audit:#?}"
    );

    // Nobody by that number, or neither flag: an error, and no file.
    let missing = service.path().join("nobody.json");
    let run = service
        .command()
        .args(["export", "--phone", "+55 11 91234-0000", "--out"])
        .arg(&missing)
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("no contact"));
    assert!(!missing.exists());
    let run = service.command().arg("export").output().unwrap();
    assert!(!run.status.success());

    // Both exports are in the audit log: intent, then outcome, about Maria.
    let (status, entries) = service
        .get_json(
            &format!("/v1/audit?action=contacts.export&contact_id={maria}"),
            &admin,
        )
        .await;
    assert_eq!(status, 200);
    let outcomes: Vec<(&str, &str)> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["actor"].as_str().unwrap(), e["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(outcomes.len(), 4, "{entries:#}");
    assert!(outcomes.iter().all(|(actor, _)| actor.starts_with("cli:")));
    assert_eq!(
        outcomes.iter().map(|(_, o)| *o).collect::<Vec<_>>(),
        ["intent", "ok", "intent", "ok"]
    );
    service.terminate();
}
