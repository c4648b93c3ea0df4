//! The live feed over a real socket: each caller sees only the tenants it may, a foreign
//! origin may not ride the session cookie, and revoking access ends the feed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};

use crate::api::{ApiConfig, ApiState};
use crate::auth::{Role, TenantId};
use crate::crypto::MasterKey;
use crate::events::{EventBus, LocalBus, SyncEvent};
use crate::secret::Secret;
use crate::store::StoreSettings;
use crate::store::testing::Harness;

fn t(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

fn started(tenant: &str, job: &str) -> SyncEvent {
    SyncEvent::SyncStarted {
        tenant: tenant.into(),
        connector: "sf".into(),
        job_id: job.into(),
        trigger: "manual".into(),
        node: "n1".into(),
        attempt: 1,
        at_ms: 1,
    }
}

async fn serve(state: ApiState) -> SocketAddr {
    let app = state.into_api().router;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(
    addr: SocketAddr,
    query: &str,
    headers: &[(&str, String)],
) -> Result<Socket, tungstenite::Error> {
    let mut req = format!("ws://{addr}/api/v1/ws/sync-monitor{query}")
        .into_client_request()
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            v.parse().expect("header value"),
        );
    }
    tokio_tungstenite::connect_async(req).await.map(|(s, _)| s)
}

/// The next event's JSON, skipping pings; `None` when the server closed the feed.
async fn next_json(ws: &mut Socket) -> Option<Value> {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(WsMessage::Text(t))) => return Some(serde_json::from_str(&t).unwrap()),
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("a message in time")
}

fn status_of(e: tungstenite::Error) -> u16 {
    match e {
        tungstenite::Error::Http(r) => r.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

#[tokio::test]
async fn the_feed_shows_each_caller_only_its_tenants_and_ends_when_access_does() {
    let h = Harness::sqlite(MasterKey::generate(1), StoreSettings::default()).await;
    let s = h.store.clone();
    s.create_tenant(&t("acme"), "Acme").await.unwrap();
    s.create_tenant(&t("globex"), "Globex").await.unwrap();
    let bus = Arc::new(LocalBus::default());
    let addr = serve(ApiState::new(s.clone(), ApiConfig::default()).with_events(bus.clone())).await;

    let acme_token = s
        .create_api_token(&t("acme"), Role::Viewer, "feed", 3_600_000, None)
        .await
        .unwrap();
    let bearer = format!("Bearer {}", acme_token.token.expose());
    let mut acme = connect(addr, "", &[("authorization", bearer.clone())])
        .await
        .expect("viewer connects");

    // No credentials: 401 before any upgrade; another tenant named: 404.
    assert_eq!(status_of(connect(addr, "", &[]).await.unwrap_err()), 401);
    assert_eq!(
        status_of(
            connect(addr, "?tenant=globex", &[("authorization", bearer.clone())])
                .await
                .unwrap_err()
        ),
        404
    );

    // A platform admin by session cookie sees everything; from another origin it is refused.
    s.create_user(
        "root@hub.example",
        &Secret::new("a long platform password".into()),
        true,
    )
    .await
    .unwrap();
    let session = s
        .login(
            "root@hub.example",
            &Secret::new("a long platform password".into()),
            "127.0.0.1",
        )
        .await
        .unwrap();
    let cookie = format!(
        "{}={}",
        crate::auth::cookie::session_cookie_name(false),
        session.token.expose()
    );
    let foreign = connect(
        addr,
        "",
        &[
            ("cookie", cookie.clone()),
            ("origin", "https://evil.example".into()),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(status_of(foreign), 403);
    let mut platform = connect(
        addr,
        "",
        &[
            ("cookie", cookie.clone()),
            ("origin", format!("http://{addr}")),
        ],
    )
    .await
    .expect("same-origin console connects");

    // Wait until both feeds are subscribed (the upgrade completes before the task runs).
    tokio::time::timeout(Duration::from_secs(10), async {
        while bus.receiver_count() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("both feeds subscribed");

    bus.publish(started("globex", "g1"));
    bus.publish(started("acme", "a1"));
    let first = next_json(&mut acme).await.expect("acme's event");
    assert_eq!(first["type"], "sync_started");
    assert_eq!(first["tenant"], "acme");
    assert_eq!(first["job_id"], "a1");
    assert_eq!(next_json(&mut platform).await.unwrap()["job_id"], "g1");
    assert_eq!(next_json(&mut platform).await.unwrap()["job_id"], "a1");

    // Revoking the token ends its feed at the next check.
    s.revoke_api_token(&t("acme"), &acme_token.info.id)
        .await
        .unwrap();
    assert!(next_json(&mut acme).await.is_none(), "the feed closed");
    // The platform admin's carries on.
    bus.publish(started("acme", "a2"));
    assert_eq!(next_json(&mut platform).await.unwrap()["job_id"], "a2");
    h.cleanup().await;
}
