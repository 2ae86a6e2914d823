//! An integrator's own binary (`examples/custom_adapter.rs`: wacrm's library with a `notebook`
//! adapter kind registered) runs every command and the whole service: `crm setup` and `doctor`
//! know the kind, `serve` syncs a signed webhook's message into the notebook, `/v1/status`
//! names the connection's kind, and SIGTERM stops it cleanly.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{text_webhook, Bus, Service};

/// The example's binary. `cargo test` builds a package's examples with its tests; this test
/// alone (`--test custom_adapter`) needs `cargo build -p wacrm --example custom_adapter` first.
fn example_binary() -> PathBuf {
    // target/<profile>/deps/custom_adapter-<hash> → target/<profile>/examples/custom_adapter
    let deps = std::env::current_exe().unwrap();
    let profile = deps.parent().unwrap().parent().unwrap();
    let binary = profile.join("examples").join("custom_adapter");
    assert!(
        binary.exists(),
        "{} is not built: run `cargo test -p wacrm` (which builds the examples; `--test custom_adapter` alone does not), or `cargo build -p wacrm --example custom_adapter` first",
        binary.display()
    );
    binary
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_integrators_binary_runs_the_whole_service_with_its_own_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let notebook = dir.path().join("notebook.jsonl");
    let mut service = Service::new(Bus::Embedded)
        .with_program(example_binary())
        .with_env(&[
            ("WACRM_CRM__CONNECTIONS__BOOK__KIND", "notebook".into()),
            (
                "WACRM_CRM__CONNECTIONS__BOOK__PATH",
                notebook.display().to_string(),
            ),
            ("WACRM_CRM__CONNECTIONS__BOOK__LINGER_MS", "10".into()),
        ]);

    // Before setup, the doctor runs the notebook's own check and says what is wrong.
    let before = service.command().arg("doctor").output().unwrap();
    assert!(!before.status.success());
    assert!(
        stdout(&before).contains("FAIL crm book:") && stdout(&before).contains("missing"),
        "{}",
        stdout(&before)
    );
    let setup = service
        .command()
        .args(["crm", "setup", "--connection", "book"])
        .output()
        .unwrap();
    assert!(
        setup.status.success(),
        "{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    assert!(
        stdout(&setup).contains("book: created notebook"),
        "{}",
        stdout(&setup)
    );
    let after = service.command().arg("doctor").output().unwrap();
    assert!(
        stdout(&after).contains("ok   crm book: notebook"),
        "{}",
        stdout(&after)
    );
    // The kinds wacrm ships are still there.
    let unknown = service
        .command()
        .env("WACRM_CRM__CONNECTIONS__ODD__KIND", "notacrm")
        .arg("doctor")
        .output()
        .unwrap();
    assert!(
        stdout(&unknown).contains(
            "known: hubspot, kommo, notebook, pipedrive, rdstation, salesforce, webhook, zoho"
        ),
        "{}",
        stdout(&unknown)
    );

    service.start().await;
    let admin = service.admin_key();
    let (wamid, body) = text_webhook(7);
    assert_eq!(service.post_webhook(body).await, 200);
    let deadline = Instant::now() + Duration::from_secs(60);
    let line = loop {
        let text = std::fs::read_to_string(&notebook).unwrap();
        if let Some(line) = text.lines().find(|l| l.contains(&wamid)) {
            break line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "the message never reached the notebook:\n{text}\n{}",
            service.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(line.contains("mensagem 7"), "{line}");
    let (status, body) = service.get_json("/v1/status", &admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["crm_connections"][0]["name"], "book", "{body}");
    assert_eq!(body["crm_connections"][0]["kind"], "notebook", "{body}");
    service.terminate();
}
