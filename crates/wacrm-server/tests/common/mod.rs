//! The in-process harness of the HTTP tests: an app over an embedded bus and a SQLite store.
#![allow(clippy::unwrap_used, dead_code, unused_imports)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use http::{Request, StatusCode};
use tower::ServiceExt;
use wacrm_bus::config::EmbeddedConfig;
use wacrm_bus::embedded::EmbeddedBus;
use wacrm_bus::runner::Handler;
use wacrm_bus::{EventBus, Topics};
use wacrm_server::{router, AppState, ServerConfig};
use wacrm_store::keys::{self, NewKey, Role};
use wacrm_store::projection::Projection;
use wacrm_store::{Db, StoreConfig, StoreError};
use wacrm_whatsapp::signature::sign;
use wacrm_whatsapp::{SendHealth, WebhookSecrets, WhatsAppConfig};

pub const SECRET: &str = "test-app-secret";

pub struct Harness {
    pub app: Router,
    pub bus: Arc<dyn EventBus>,
    pub db: Db,
    pub send_health: Arc<SendHealth>,
    _dir: tempfile::TempDir,
}

pub async fn harness_with(bus: Option<Arc<dyn EventBus>>, secret: Option<&str>) -> Harness {
    harness_full(bus, secret, sending()).await
}

/// WhatsApp settings with an access token (sending configured).
pub fn sending() -> WhatsAppConfig {
    WhatsAppConfig {
        access_token: Some("test-token".into()),
        ..WhatsAppConfig::default()
    }
}

pub async fn harness_full(
    bus: Option<Arc<dyn EventBus>>,
    secret: Option<&str>,
    whatsapp: WhatsAppConfig,
) -> Harness {
    harness_served(bus, secret, whatsapp, &ServerConfig::default()).await
}

/// A harness whose router has `server`'s settings.
pub async fn harness_served(
    bus: Option<Arc<dyn EventBus>>,
    secret: Option<&str>,
    whatsapp: WhatsAppConfig,
    server: &ServerConfig,
) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let bus = match bus {
        Some(b) => b,
        None => Arc::new(
            EmbeddedBus::open(&EmbeddedConfig {
                path: dir.path().join("bus.db"),
                max_batch: 1024,
            })
            .unwrap(),
        ),
    };
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("store.db").display()
    );
    let db = wacrm_store::connect(&StoreConfig {
        url,
        max_connections: 4,
        ..Default::default()
    })
    .await
    .unwrap();
    wacrm_store::migrate(&db).await.unwrap();
    let send_health = Arc::new(SendHealth::default());
    let state = Arc::new(AppState {
        bus: bus.clone(),
        topics: Topics::default(),
        audit: Arc::new(wacrm_store::audit::AuditLog::new(db.clone())),
        db: db.clone(),
        secrets: WebhookSecrets::new(secret, None),
        verify_token: Some("verify-me".into()),
        source: "/test".into(),
        publish_timeout: Duration::from_millis(300),
        whatsapp: Arc::new(whatsapp),
        send_health: send_health.clone(),
        consumers: Arc::new(wacrm_bus::supervise::ConsumerRegistry::default()),
        crm_connections: Vec::new(),
    });
    let app = router(state, server);
    Harness {
        app,
        bus,
        db,
        send_health,
        _dir: dir,
    }
}

pub async fn harness() -> Harness {
    harness_with(None, Some(SECRET)).await
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../wacrm-whatsapp/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

pub fn post(body: Vec<u8>, signature: Option<String>) -> Request<Body> {
    let mut req = Request::post("/webhooks/whatsapp").header("content-type", "application/json");
    if let Some(sig) = signature {
        req = req.header("x-hub-signature-256", sig);
    }
    req.body(Body::from(body)).unwrap()
}

pub fn signed(body: Vec<u8>) -> Request<Body> {
    let sig = sign(SECRET.as_bytes(), &body);
    post(body, Some(sig))
}

pub async fn call(app: &Router, req: Request<Body>) -> (StatusCode, String) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

impl Harness {
    /// Runs everything on the bus through the store projection.
    pub async fn project(&self) -> usize {
        let topics = Topics::default();
        let mut sub = self
            .bus
            .subscribe("test-projection", &Projection::topics(&topics))
            .await
            .unwrap();
        let records = sub.poll(10_000, Duration::from_millis(200)).await.unwrap();
        let mut projection = Projection::new(self.db.clone(), topics);
        projection.handle(&records).await.unwrap();
        sub.commit(&records).await.unwrap();
        records.len()
    }

    pub async fn admin(&self) -> String {
        self.key("Ana Admin", Role::Admin, None).await
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> (StatusCode, String) {
        let mut req = Request::get(path);
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        call(&self.app, req.body(Body::empty()).unwrap()).await
    }

    /// A key of `role`, limited to `numbers` when given.
    pub async fn key(&self, name: &str, role: Role, numbers: Option<&[&str]>) -> String {
        self.create_key(NewKey {
            name: name.into(),
            role,
            scopes: None,
            business_numbers: numbers.map(|n| n.iter().map(|s| (*s).to_owned()).collect()),
            expires_at: None,
        })
        .await
        .unwrap()
    }

    /// A key of `role` with exactly `scopes`, or why it was refused.
    pub async fn scoped_key(&self, role: Role, scopes: &[&str]) -> Result<String, StoreError> {
        self.create_key(NewKey {
            name: "Monitor".into(),
            role,
            scopes: Some(scopes.iter().map(|s| (*s).to_owned()).collect()),
            business_numbers: None,
            expires_at: None,
        })
        .await
    }

    async fn create_key(&self, new: NewKey) -> Result<String, StoreError> {
        keys::create(&self.db, new).await.map(|(_, token)| token)
    }

    /// POSTs JSON with a key and extra headers.
    pub async fn post_json(
        &self,
        path: &str,
        key: &str,
        body: &serde_json::Value,
        headers: &[(&str, &str)],
    ) -> (StatusCode, String) {
        let mut req = Request::post(path)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {key}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        call(&self.app, req.body(Body::from(body.to_string())).unwrap()).await
    }
}
