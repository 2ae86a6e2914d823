//! CRM connections go through one registry of adapter kinds, through the real binary: `crm
//! setup` reads the kind from configuration, `doctor` checks every connection with its adapter's
//! own check, and an unknown kind is refused naming the known ones.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Bus, Service};
use wacrm_testkit::hubspot::{FakeConfig, HubSpotFake};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_and_doctor_go_through_the_connections_kind() {
    let fake = HubSpotFake::start(FakeConfig::default()).await;
    let service = Service::new(Bus::Embedded).with_env(&[
        ("WACRM_CRM__CONNECTIONS__MAIN__KIND", "hubspot".into()),
        (
            "WACRM_CRM__CONNECTIONS__MAIN__TOKEN",
            FakeConfig::default().token,
        ),
        ("WACRM_CRM__CONNECTIONS__MAIN__BASE_URL", fake.base_url()),
    ]);
    assert!(service
        .command()
        .arg("migrate")
        .output()
        .unwrap()
        .status
        .success());

    // Before setup the doctor finds the properties missing and says what to run.
    let before = service.command().arg("doctor").output().unwrap();
    let text = stdout(&before);
    assert!(!before.status.success(), "{text}");
    assert!(
        text.contains("FAIL crm main:") && text.contains("wacrm crm setup --connection main"),
        "{text}"
    );

    // A kind that is not the connection's is refused; none at all takes the configured one.
    let wrong = service
        .command()
        .args(["crm", "setup", "pipedrive", "--connection", "main"])
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    assert!(stderr(&wrong).contains("\"hubspot\""), "{}", stderr(&wrong));
    let setup = service
        .command()
        .args(["crm", "setup", "--connection", "main"])
        .output()
        .unwrap();
    assert!(setup.status.success(), "{}", stderr(&setup));
    assert!(
        stdout(&setup).contains("main: created contacts.whatsapp_id"),
        "{}",
        stdout(&setup)
    );

    let after = service.command().arg("doctor").output().unwrap();
    let text = stdout(&after);
    assert!(
        text.contains("ok   crm main: contacts.whatsapp_id, communications.wacrm_wamid, communications.wacrm_status"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kind_is_refused_naming_the_known_ones() {
    let service = Service::new(Bus::Embedded)
        .with_env(&[("WACRM_CRM__CONNECTIONS__ODD__KIND", "notacrm".into())]);
    let doctor = service.command().arg("doctor").output().unwrap();
    let text = stdout(&doctor);
    assert!(!doctor.status.success());
    assert!(
        text.contains("FAIL crm odd:")
            && text.contains("notacrm")
            && text.contains("hubspot, kommo, pipedrive, rdstation, salesforce, webhook, zoho"),
        "{text}"
    );
    let serve = service
        .command()
        .args(["crm", "setup", "--connection", "odd"])
        .output()
        .unwrap();
    assert!(!serve.status.success());
    assert!(
        stderr(&serve).contains("known: hubspot"),
        "{}",
        stderr(&serve)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_sink_configured_from_the_environment_receives_signed_events() {
    use wacrm_testkit::sink::{Receiver, ReceiverConfig};
    let receiver = Receiver::start(ReceiverConfig::default()).await;
    let mut service = Service::new(Bus::Embedded).with_env(&[
        ("WACRM_CRM__CONNECTIONS__HOOK__KIND", "webhook".into()),
        ("WACRM_CRM__CONNECTIONS__HOOK__URL", receiver.url()),
        (
            "WACRM_CRM__CONNECTIONS__HOOK__SECRET",
            ReceiverConfig::default().secret,
        ),
        ("WACRM_CRM__CONNECTIONS__HOOK__LINGER_MS", "10".into()),
    ]);
    let doctor = service.command().arg("doctor").output().unwrap();
    assert!(
        stdout(&doctor).contains("ok   crm hook: the receiver took a signed empty batch"),
        "{}",
        stdout(&doctor)
    );
    service.start().await;
    let (wamid, body) = common::text_webhook(3);
    assert_eq!(service.post_webhook(body).await, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !receiver.accepted().contains_key(&wamid) {
        assert!(
            std::time::Instant::now() < deadline,
            "never delivered:\n{}",
            service.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        receiver.violations().is_empty(),
        "{:?}",
        receiver.violations()
    );
    service.terminate();
}

/// Salesforce, RD Station CRM and Kommo connections configured from the environment alone go
/// through the registry of the real binary: `crm setup` and `doctor` reach each fake with the
/// kind's own credentials (client credentials at the token's instance URL; a rotating refresh
/// token kept in the default token file under the service's directory; a long-lived token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salesforce_rd_station_and_kommo_connections_come_from_the_environment() {
    use wacrm_testkit::{kommo, rdstation, salesforce};
    let sf = salesforce::SalesforceFake::start(salesforce::FakeConfig::default()).await;
    let rd = rdstation::RdStationFake::start(rdstation::FakeConfig::default()).await;
    let ko = kommo::KommoFake::start(kommo::FakeConfig::default()).await;
    let (sfc, rdc, koc) = (sf.config(), rd.config(), ko.config());
    let service = Service::new(Bus::Embedded).with_env(&[
        ("WACRM_CRM__CONNECTIONS__SF__KIND", "salesforce".into()),
        ("WACRM_CRM__CONNECTIONS__SF__CLIENT_ID", sfc.client_id),
        (
            "WACRM_CRM__CONNECTIONS__SF__CLIENT_SECRET",
            sfc.client_secret,
        ),
        ("WACRM_CRM__CONNECTIONS__SF__LOGIN_URL", sf.base_url()),
        ("WACRM_CRM__CONNECTIONS__RD__KIND", "rdstation".into()),
        ("WACRM_CRM__CONNECTIONS__RD__CLIENT_ID", rdc.client_id),
        (
            "WACRM_CRM__CONNECTIONS__RD__CLIENT_SECRET",
            rdc.client_secret,
        ),
        (
            "WACRM_CRM__CONNECTIONS__RD__REFRESH_TOKEN",
            rdc.refresh_token,
        ),
        (
            "WACRM_CRM__CONNECTIONS__RD__BASE_URL",
            format!("{}/crm/v2", rd.base_url()),
        ),
        ("WACRM_CRM__CONNECTIONS__RD__TOKEN_URL", rd.token_url()),
        ("WACRM_CRM__CONNECTIONS__KO__KIND", "kommo".into()),
        ("WACRM_CRM__CONNECTIONS__KO__TOKEN", koc.token),
        ("WACRM_CRM__CONNECTIONS__KO__BASE_URL", ko.base_url()),
    ]);
    assert!(service
        .command()
        .arg("migrate")
        .output()
        .unwrap()
        .status
        .success());
    for connection in ["sf", "rd", "ko"] {
        let setup = service
            .command()
            .args(["crm", "setup", "--connection", connection])
            .output()
            .unwrap();
        assert!(
            setup.status.success(),
            "{connection}: {}{}",
            stdout(&setup),
            stderr(&setup)
        );
    }
    let doctor = service.command().arg("doctor").output().unwrap();
    let text = stdout(&doctor);
    for connection in ["sf", "rd", "ko"] {
        assert!(text.contains(&format!("ok   crm {connection}:")), "{text}");
    }
    // RD Station rotated the refresh token: the current one is in the default token file.
    let saved = std::fs::read_to_string(service.path().join("data/crm/rd.oauth.json")).unwrap();
    assert!(saved.contains("refresh_token"), "{saved}");
}
