//! `/api/v1/events`: a token's stream gets its own tenant's readings and gateway status named by
//! MAC and code, never another tenant's; `Last-Event-ID` resumes with the events missed; an id
//! the server cannot resume from gets `resync`; revoking the token ends the stream.

use super::token;
use crate::support::TestApp;
use futures_util::StreamExt as _;
use tds_domain::{LiveEvent, LiveReading, Role};
use tds_testkit::{TestDb, fixtures, per_backend};

/// Reads server-sent events until `n` of them (id, name, data) arrived.
async fn next_events(
    stream: &mut (impl futures_util::Stream<Item = reqwest::Result<axum::body::Bytes>> + Unpin),
    buf: &mut String,
    n: usize,
) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    while out.len() < n {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut id, mut name, mut data) = (String::new(), String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    v.trim().clone_into(&mut id);
                }
                if let Some(v) = line.strip_prefix("event:") {
                    v.trim().clone_into(&mut name);
                }
                if let Some(v) = line.strip_prefix("data:") {
                    v.trim().clone_into(&mut data);
                }
            }
            if !name.is_empty() {
                out.push((id, name, data));
            }
        }
        if out.len() >= n {
            break;
        }
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
            .await
            .expect("an event in time")
            .expect("stream open")
            .unwrap();
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    out
}

async fn open(
    app: &TestApp,
    token: &str,
    last: Option<&str>,
) -> (impl futures_util::Stream<Item = reqwest::Result<axum::body::Bytes>> + Unpin, String) {
    let mut req = reqwest::Client::new().get(format!("{}/api/v1/events", app.base)).bearer_auth(token);
    if let Some(last) = last {
        req = req.header("last-event-id", last);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    (Box::pin(resp.bytes_stream()), String::new())
}

async fn events_stream_resume_and_end(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let (a, b) = (app.tenant("A").await, app.tenant("B").await);
    let ga = fixtures::gateway(&app.store, a.id, "02:00:00:00:00:0a", "GW-A").await;
    let ma = fixtures::meter(&app.store, a.id, &ga, "M1").await;
    let gb = fixtures::gateway(&app.store, b.id, "02:00:00:00:00:0b", "GW-B").await;
    let secret = token(&app, a.id, "scada", Role::Viewer).await;
    let (mut s, mut buf) = open(&app, &secret, None).await;
    // Give the recorder a moment to subscribe, then publish: B's first (must not arrive), then A's.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let time = chrono::DateTime::parse_from_rfc3339("2026-11-10T10:00:00Z").unwrap().to_utc();
    app.events.send(LiveEvent::GatewayStatus { tenant: b.id, gateway: gb.id, online: true }).unwrap();
    app.events
        .send(LiveEvent::Readings {
            tenant: a.id,
            gateway: ga.id,
            readings: vec![LiveReading { device: ma.id, time, value: 42.5 }],
        })
        .unwrap();
    app.events.send(LiveEvent::GatewayStatus { tenant: a.id, gateway: ga.id, online: true }).unwrap();
    let got = next_events(&mut s, &mut buf, 2).await;
    assert_eq!(got[0].1, "readings");
    let data: serde_json::Value = serde_json::from_str(&got[0].2).unwrap();
    assert_eq!(
        data,
        serde_json::json!({"gateway": "02:00:00:00:00:0a", "readings": [{"device": "M1", "time": "2026-11-10T10:00:00Z", "value": 42.5}]})
    );
    assert_eq!(
        (got[1].1.as_str(), got[1].2.as_str()),
        ("gateway", r#"{"gateway":"02:00:00:00:00:0a","online":true}"#)
    );
    drop(s);

    // Two more while disconnected; resuming from the first event's id brings back the three after it.
    app.events.send(LiveEvent::GatewayStatus { tenant: a.id, gateway: ga.id, online: false }).unwrap();
    app.events.send(LiveEvent::GatewayStatus { tenant: b.id, gateway: gb.id, online: false }).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (mut s, mut buf) = open(&app, &secret, Some(&got[0].0)).await;
    let resumed = next_events(&mut s, &mut buf, 2).await;
    assert_eq!(resumed[0].0, got[1].0);
    assert_eq!(
        (resumed[1].1.as_str(), resumed[1].2.as_str()),
        ("gateway", r#"{"gateway":"02:00:00:00:00:0a","online":false}"#)
    );
    drop(s);
    let (mut s, mut buf) = open(&app, &secret, Some("0-1")).await;
    assert_eq!(next_events(&mut s, &mut buf, 1).await[0].1, "resync", "an id from elsewhere");

    // Revoking the token ends the stream within the recheck period.
    let id = app.store.api_tokens().by_name(a.id, "scada").await.unwrap().id;
    app.store.api_tokens().revoke(a.id, id).await.unwrap();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(15), async {
        while let Some(chunk) = s.next().await {
            if chunk.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream ended");
}

per_backend!(events_stream_resume_and_end);
