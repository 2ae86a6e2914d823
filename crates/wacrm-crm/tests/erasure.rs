//! The SDK's erasure: the trait's default answers a manual step, and `unless_gone` tells a
//! delete that found nothing (404/410, a repeat after a lost answer included) from a refusal,
//! whatever class the adapter's classifier gives the 404.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::delete;
use axum::{Json, Router};
use reqwest::Method;
use serde_json::{json, Value};
use wacrm_crm::adapter::{noting_error_answers, unless_gone, with_error_answer};
use wacrm_crm::http::{default_classifier, Auth, Budget, CrmHttp, HttpSettings, Retry, Window};
use wacrm_crm::{
    AdapterLimits, ContactErasure, CrmAdapter, CrmError, Erasure, ItemResult, MessageSync,
    StatusSync,
};

/// The ids the server deleted.
type Deleted = Arc<std::sync::Mutex<Vec<u32>>>;

/// Deletes of `/records/{n}`: `/records/1` is there once (then 404), `/records/2` answers 503
/// after deleting (the answer lost) and 404 after, `/records/3` is refused (422),
/// `/records/4` is gone for good (410).
async fn server() -> String {
    let deleted: Deleted = Arc::default();
    let app = Router::new()
        .route(
            "/records/{id}",
            delete(
                |State(deleted): State<Deleted>,
                 axum::extract::Path(id): axum::extract::Path<u32>| async move {
                    let mut deleted = deleted.lock().unwrap();
                    match id {
                        3 => (
                            StatusCode::UNPROCESSABLE_ENTITY,
                            Json(json!({"message": "refused"})),
                        ),
                        4 => (StatusCode::GONE, Json(json!({"message": "gone"}))),
                        _ if deleted.contains(&id) => {
                            (StatusCode::NOT_FOUND, Json(json!({"message": "not found"})))
                        }
                        2 => {
                            deleted.push(id);
                            (
                                StatusCode::SERVICE_UNAVAILABLE,
                                Json(json!({"message": "lost"})),
                            )
                        }
                        _ => {
                            deleted.push(id);
                            (StatusCode::OK, Json(json!({"deleted": id})))
                        }
                    }
                },
            ),
        )
        .with_state(deleted);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    url
}

/// A client whose classifier makes a 404 `Fatal` (as Zoho's and Salesforce's do for a missing
/// object): `unless_gone` must not care.
fn client(url: String) -> CrmHttp {
    let mut http = CrmHttp::new(
        "erasure",
        HttpSettings {
            base_url: url,
            auth: Auth::None,
            limit: Window::new(1000, Duration::from_secs(1)),
            search_limit: None,
            timeout: Duration::from_secs(5),
        },
        noting_error_answers(Arc::new(|status, headers, body: &Value| match status {
            404 => CrmError::Fatal("no such object".into()),
            _ => default_classifier(status, headers, body),
        })),
    )
    .unwrap();
    http.min_backoff = Duration::from_millis(5);
    http.max_backoff = Duration::from_millis(20);
    http
}

async fn delete_record(http: &CrmHttp, id: u32) -> Result<Value, CrmError> {
    http.send(
        Method::DELETE,
        &format!("/records/{id}"),
        None,
        Budget::General,
        Retry::Safe,
    )
    .await
}

#[tokio::test]
async fn unless_gone_takes_404_and_410_as_done_and_nothing_else() {
    let http = client(server().await);
    assert_eq!(
        unless_gone(delete_record(&http, 1)).await.unwrap(),
        Some(json!({"deleted": 1}))
    );
    // Again: already deleted.
    assert_eq!(unless_gone(delete_record(&http, 1)).await.unwrap(), None);
    // Applied, the answer lost (503), sent again (a safe delete): the repeat finds nothing.
    assert_eq!(unless_gone(delete_record(&http, 2)).await.unwrap(), None);
    assert_eq!(unless_gone(delete_record(&http, 4)).await.unwrap(), None);
    // A refusal stays an error.
    assert!(matches!(
        unless_gone(delete_record(&http, 3)).await,
        Err(CrmError::Invalid(_))
    ));
    // Outside `unless_gone` the classifier's class is unchanged.
    assert!(matches!(
        delete_record(&http, 1).await,
        Err(CrmError::Fatal(_))
    ));
    // `with_error_answer` shows the status and body of the answer that ended the request.
    let (result, answer) = with_error_answer(delete_record(&http, 3)).await;
    assert!(result.is_err());
    assert_eq!(answer, Some((422, json!({"message": "refused"}))));
    let (result, answer) = with_error_answer(delete_record(&http, 5)).await;
    assert!(result.is_ok());
    assert_eq!(answer, None);
}

/// An adapter that implements nothing about erasure.
struct Silent;

#[async_trait]
impl CrmAdapter for Silent {
    fn limits(&self) -> AdapterLimits {
        AdapterLimits {
            contacts_per_batch: 1,
            messages_per_batch: 1,
            statuses_per_batch: 1,
        }
    }
    async fn upsert_contacts(
        &self,
        _: &[wacrm_crm::ContactSync],
    ) -> Result<Vec<ItemResult<String>>, CrmError> {
        Ok(Vec::new())
    }
    async fn log_messages(&self, _: &[MessageSync]) -> Result<Vec<ItemResult<String>>, CrmError> {
        Ok(Vec::new())
    }
    async fn update_statuses(&self, _: &[StatusSync]) -> Result<Vec<ItemResult<()>>, CrmError> {
        Ok(Vec::new())
    }
    async fn find_messages(&self, _: &[String]) -> Result<Vec<(String, String)>, CrmError> {
        Ok(Vec::new())
    }
}

#[tokio::test]
async fn an_adapter_without_erasure_asks_for_a_manual_step() {
    let erasure = ContactErasure {
        contact_key: "phone:+5511987654321".into(),
        crm_contact_id: Some("c-42".into()),
        whatsapp_id: "5511987654321".into(),
        message_crm_ids: vec!["m-1".into()],
    };
    match Silent.erase_contact(&erasure).await.unwrap() {
        Erasure::Manual(steps) => {
            assert!(steps.contains("cannot erase"), "{steps}");
            assert!(steps.contains("c-42"), "{steps}");
        }
        other => panic!("expected a manual step, got {other:?}"),
    }
}
