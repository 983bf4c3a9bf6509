//! The OpenAPI document: every route the API serves is in it and every documented operation is
//! served (probed over HTTP: none answers "no such route"); each operation names its errors and
//! the bearer scheme. The document's validity against the OpenAPI 3.1 schema is checked by an
//! independent validator in `scripts/api-check.sh`.

use super::{Api, token};
use crate::support::TestApp;
use reqwest::Method;
use tds_domain::Role;
use tds_testkit::{TestDb, per_backend};

async fn the_document_and_the_router_agree(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("Acme").await;
    let api = Api::new(&app, &token(&app, t.id, "doc", Role::Admin).await);
    let served = reqwest::get(format!("{}/api/v1/openapi.json", app.base)).await.unwrap();
    assert_eq!(served.status(), 200, "the document is public");
    let doc: serde_json::Value = served.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert_eq!(
        doc,
        serde_json::to_value(tds_web::api::openapi()).unwrap(),
        "the served document is the code's"
    );

    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        assert!(path.starts_with("/api/v1/"), "{path}");
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.contains_key("401") && responses.contains_key("429"),
                "{method} {path} documents its errors"
            );
            // Served: whatever the answer, it is not the router's "no route" (404 with a non-JSON
            // body would be the page fallback; 405 a missing method).
            let concrete =
                path.replace("{mac}", "02:00:00:00:00:99").replace("{code}", "X").replace("{id}", "999999");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let answer = if method == Method::GET && path.ends_with("/events") {
                let r = api
                    .http
                    .get(format!("{}{concrete}", api.base))
                    .bearer_auth(&api.token)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                continue;
            } else {
                api.call(method.clone(), &concrete, None).await
            };
            assert_ne!(answer.status, reqwest::StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            if answer.status == reqwest::StatusCode::NOT_FOUND {
                assert_eq!(
                    answer.code(),
                    "not_found",
                    "{method} {path}: a resource 404, not a missing route"
                );
            }
        }
    }
    // Every documented handler in the source is routed (a handler with a #[utoipa::path] left out
    // of the router would be documented nowhere), and nothing is routed around the document.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let mut annotated = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        annotated += text.matches("#[utoipa::path(").count();
        if !text.contains("OpenApiRouter") {
            assert!(!text.contains(".route("), "routes outside the document");
        }
    }
    assert_eq!(annotated, operations, "every annotated handler is in the document");
    let undocumented = reqwest::get(format!("{}/api/docs", app.base)).await.unwrap();
    assert_eq!(undocumented.status(), 200);
    let html = undocumented.text().await.unwrap();
    assert!(html.contains("/assets/vendor/swagger-ui-bundle.js"));
    let js = reqwest::get(format!("{}/assets/vendor/swagger-ui-bundle.js", app.base)).await.unwrap();
    assert_eq!(js.status(), 200, "Swagger UI is embedded, not from a CDN");
}

per_backend!(the_document_and_the_router_agree);
