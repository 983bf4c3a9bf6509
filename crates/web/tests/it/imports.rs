//! CSV import from the browser: a row-by-row report, all rows or none, audited.

use crate::support::TestApp;
use std::fmt::Write as _;
use tds_domain::Role;
use tds_testkit::{TestDb, per_backend};

async fn a_csv_import_reports_every_bad_row_and_writes_nothing_until_all_are_good(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.user("edu@example.com", Some((t.id, Role::Editor))).await;
    let c = app.login("edu@example.com").await;
    c.get("/import").await;

    let bad = "mac,code,name\naa:00:00:00:00:01,GW-1,Um\nnot-a-mac,GW-2,Dois\naa:00:00:00:00:03,,Três\n";
    let page = c.upload("/import/gateways", bad).await;
    assert_eq!(page.status, 422);
    assert!(page.text_of("import-result").unwrap().contains("2 linhas"), "{}", page.body);
    let report = page.text_of("import-report").unwrap();
    assert!(report.contains("MAC inválido") && report.contains("Campo obrigatório"), "{report}");
    assert_eq!(
        app.store.gateways().list(t.id, &Default::default(), tds_store::Page::default()).await.unwrap().total,
        0
    );

    let good = "mac,code,name\naa:00:00:00:00:01,GW-1,Um\naa:00:00:00:00:02,GW-2,Dois\n";
    c.get("/import").await;
    let page = c.upload("/import/gateways", good).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.text_of("import-result").unwrap().contains("2 registros"));
    assert_eq!(
        app.store.gateways().list(t.id, &Default::default(), tds_store::Page::default()).await.unwrap().total,
        2
    );

    // The database's refusals are rows of the report too (here: MAC already registered).
    c.get("/import").await;
    let page = c.upload("/import/gateways", "aa:00:00:00:00:02,GW-9,Nove\n").await;
    assert_eq!(page.status, 422);
    assert!(page.text_of("import-report").unwrap().contains("aa:00:00:00:00:02"), "{}", page.body);

    let devices = "gateway_mac,code,name,type,medium,kind,unit,slave_id,register\n\
                   aa:00:00:00:00:01,D01,Água fria,MEDIDOR,water,counter,m3,1,100\n\
                   aa:00:00:00:00:02,T01,Temperatura,SENSOR,other,gauge,°C,,\n";
    c.get("/import").await;
    let page = c.upload("/import/devices", devices).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(app.store.devices().list(t.id).await.unwrap().len(), 2);

    c.get("/import").await;
    let page = c.upload("/import/devices", "").await;
    assert_eq!(page.text_of("import-error").unwrap(), "O arquivo não tem linhas de dados.");

    let audit = app.store.audit().list(t.id, &Default::default(), tds_store::Page::default()).await.unwrap();
    let actions: Vec<_> = audit.items.iter().map(|e| e.action.as_str()).collect();
    assert!(actions.contains(&"gateway.import") && actions.contains(&"device.import"), "{actions:?}");

    // Viewers cannot import.
    app.user("vera@example.com", Some((t.id, Role::Viewer))).await;
    let v = app.login("vera@example.com").await;
    assert_eq!(v.get("/import").await.status, 403);
    v.get("/").await;
    assert_eq!(v.upload("/import/gateways", "aa:00:00:00:00:07,GW-7,Sete\n").await.status, 403);
}

async fn every_asset_the_login_page_needs_is_served_by_the_binary(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let c = app.client();
    let page = c.get("/login").await;
    let mut assets: Vec<String> = page
        .body
        .match_indices("/assets/")
        .map(|(i, _)| page.body[i..].split('"').next().unwrap().to_owned())
        .collect();
    assert!(assets.len() >= 5, "{assets:?}");
    // The icon font is referenced from the icons stylesheet, relative to it.
    let css = c
        .http
        .get(format!("{}/assets/vendor/bootstrap-icons.min.css", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let font = css.split("url(\"").nth(1).unwrap().split(['?', '"']).next().unwrap();
    assets.push(format!("/assets/vendor/{font}"));
    for a in &assets {
        let r = c.http.get(format!("{}{a}", app.base)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{a}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
        let expected = if a.ends_with(".css") {
            "text/css"
        } else if a.ends_with(".svg") {
            "image/svg+xml"
        } else if a.ends_with(".js") {
            "javascript"
        } else {
            "font/woff"
        };
        assert!(ct.contains(expected), "{a}: {ct}");
        let etag = r.headers()["etag"].clone();
        let again =
            c.http.get(format!("{}{a}", app.base)).header("if-none-match", etag).send().await.unwrap();
        assert_eq!(again.status(), 304, "{a} revalidates");
    }
    assert!(!page.body.contains("http://") && !page.body.contains("https://"), "no external URL in the page");
    assert_eq!(c.http.get(format!("{}/assets/nope.js", app.base)).send().await.unwrap().status(), 404);
}

async fn a_factory_manifest_pre_registers_its_gateways_with_their_certificates(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.user("adm@example.com", Some((t.id, Role::Admin))).await;
    // What `tds cert batch` records: certificates for MACs no tenant has registered yet.
    let mac = tds_domain::Mac::parse("aa:bb:cc:00:00:42").unwrap();
    let issued = app.pki.files.ca.issue_device(mac, tds_pki::DeviceKeyKind::EcdsaP256, 365).unwrap();
    let record = tds_store::certificates::NewCertificate {
        mac,
        serial: issued.serial_hex.clone(),
        fingerprint_sha256: issued.fingerprint_sha256.clone(),
        pem: issued.cert_pem.clone(),
        key_algorithm: issued.key_algorithm.clone(),
        issued_at: issued.not_before,
        expires_at: issued.not_after,
    };
    app.store.certificates().staff_record_factory(&[record]).await.unwrap();
    let c = app.login("adm@example.com").await;
    c.get("/import").await;
    let forged = "mac,serial_number,cert_serial,expires_at\naa:bb:cc:00:00:42,SN-42,00ff00ff,2036-01-01\n";
    let page = c.upload("/import/gateways", forged).await;
    assert_eq!(page.status, 422);
    assert!(page.text_of("import-report").unwrap().contains("factory batch"), "{}", page.body);
    let manifest = format!(
        "mac,serial_number,cert_serial,expires_at\naa:bb:cc:00:00:42,SN-42,{},2027-01-01\n",
        issued.serial_hex
    );
    c.get("/import").await;
    let page = c.upload("/import/gateways", &manifest).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let g = app.store.gateways().by_mac(t.id, mac).await.unwrap();
    assert_eq!(g.code.as_str(), "SN-42");
    assert_eq!(g.status, tds_domain::GatewayStatus::PreRegistered);
    let certs = c.get("/certificates").await;
    assert!(certs.has(&issued.serial_hex), "the factory certificate now belongs to the tenant");
}

/// Records a factory certificate for `mac`, as `tds cert batch` does; returns its serial.
async fn factory_certificate(app: &TestApp, mac: tds_domain::Mac) -> String {
    let issued = app.pki.files.ca.issue_device(mac, tds_pki::DeviceKeyKind::EcdsaP256, 365).unwrap();
    let record = tds_store::certificates::NewCertificate {
        mac,
        serial: issued.serial_hex.clone(),
        fingerprint_sha256: issued.fingerprint_sha256.clone(),
        pem: issued.cert_pem.clone(),
        key_algorithm: issued.key_algorithm.clone(),
        issued_at: issued.not_before,
        expires_at: issued.not_after,
    };
    app.store.certificates().staff_record_factory(&[record]).await.unwrap();
    issued.serial_hex
}

/// Hardening finding 5: tenant B's editor knows a MAC that the factory batched (for tenant A) and
/// registers it with a plain gateway file. The gateway is created, but without the batch's
/// certificate: B sees no certificate and cannot issue itself a bundle from it. Staff importing
/// the same kind of file do link it.
async fn an_editor_importing_a_batched_mac_without_its_manifest_gets_no_certificate(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let b = app.tenant("B").await;
    app.user("edu@example.com", Some((b.id, Role::Editor))).await;
    let mac = tds_domain::Mac::parse("aa:bb:cc:00:00:42").unwrap();
    let serial = factory_certificate(&app, mac).await;
    let c = app.login("edu@example.com").await;
    c.get("/import").await;
    let page = c.upload("/import/gateways", "mac,code,name\naa:bb:cc:00:00:42,MINE,Meu\n").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let g = app.store.gateways().by_mac(b.id, mac).await.unwrap();
    assert!(app.store.certificates().for_gateway(b.id, g.id).await.unwrap().is_empty());
    let cert = app.store.certificates().staff_by_serial(&serial).await.unwrap();
    assert_eq!((cert.tenant_id, cert.gateway_id), (None, None), "the batch's certificate stays unlinked");

    let staff = app.tenant("S").await;
    app.user_with("ops@example.com", Some((staff.id, Role::Admin)), true).await;
    let other = tds_domain::Mac::parse("aa:bb:cc:00:00:43").unwrap();
    let other_serial = factory_certificate(&app, other).await;
    let ops = app.login("ops@example.com").await;
    ops.get("/import").await;
    let page = ops.upload("/import/gateways", "aa:bb:cc:00:00:43,OPS,Ops\n").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let cert = app.store.certificates().staff_by_serial(&other_serial).await.unwrap();
    assert_eq!(cert.tenant_id, Some(staff.id), "staff link the factory certificate of the MAC");
}

/// Hardening finding 12: a file over the row bound (5,000 data rows by default) or the byte bound
/// (2 MiB) is refused with a clear message, and nothing is written.
async fn an_import_over_the_row_or_byte_bound_is_refused_with_a_clear_message(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.user("edu@example.com", Some((t.id, Role::Editor))).await;
    let c = app.login("edu@example.com").await;
    let mut rows = String::from("mac,code,name\n");
    for i in 0..5_001 {
        writeln!(rows, "02:00:00:00:{:02x}:{:02x},GW-{i},G", i / 256, i % 256).unwrap();
    }
    c.get("/import").await;
    let page = c.upload("/import/gateways", &rows).await;
    assert_eq!(page.status, 422);
    let error = page.text_of("import-error").unwrap();
    assert!(error.contains("5000 linhas") || error.contains("5.000 linhas"), "{error}");

    // The token goes in the form, as a browser sends it: the CSRF check must read a form past
    // axum's 2 MB default for multipart (it used to, and refused this upload as a forgery: 403).
    let big = format!("mac,code,name\n#{}\n", "x".repeat(2 * 1024 * 1024));
    c.get("/import").await;
    let form = reqwest::multipart::Form::new()
        .text("_csrf", c.csrf())
        .part("file", reqwest::multipart::Part::text(big).file_name("import.csv"));
    let resp = c.http.post(format!("{}/import/devices", c.base)).multipart(form).send().await.unwrap();
    assert_eq!(resp.status(), 422);
    let body = resp.text().await.unwrap();
    assert!(body.contains("O arquivo passa de 2 MiB"), "{body}");
    assert_eq!(
        app.store.gateways().list(t.id, &Default::default(), tds_store::Page::default()).await.unwrap().total,
        0
    );
}

/// A file at the row bound (5,000 gateways, then 5,000 devices on them) is imported whole, with
/// its report, on both databases: the checks are set-based, the inserts multi-row.
async fn an_import_at_the_row_bound_is_written_whole(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.store
        .tenants()
        .staff_set_limits(
            t.id,
            tds_store::tenants::TenantLimits { max_gateways: 5_000, max_devices: 5_000, max_users: 5 },
        )
        .await
        .unwrap();
    app.user("edu@example.com", Some((t.id, Role::Editor))).await;
    let c = app.login("edu@example.com").await;
    let mac = |i: usize| format!("02:00:00:00:{:02x}:{:02x}", i / 256, i % 256);
    let mut gateways = String::from("mac,code,name\n");
    let mut devices = String::from("gateway_mac,code,name,type,medium,kind,unit\n");
    for i in 0..5_000 {
        writeln!(gateways, "{},GW-{i},Gateway {i}", mac(i)).unwrap();
        writeln!(devices, "{},T01,Temperatura {i},SENSOR,other,gauge,°C", mac(i)).unwrap();
    }
    c.get("/import").await;
    let page = c.upload("/import/gateways", &gateways).await;
    assert_eq!(page.status, 200, "{}", page.text_of("import-result").unwrap_or_default());
    c.get("/import").await;
    let page = c.upload("/import/devices", &devices).await;
    assert_eq!(page.status, 200, "{}", page.text_of("import-result").unwrap_or_default());
    assert_eq!(app.store.devices().list(t.id).await.unwrap().len(), 5_000);
    let last = app.store.gateways().by_mac(t.id, tds_domain::Mac::parse(&mac(4_999)).unwrap()).await.unwrap();
    assert_eq!(last.code.as_str(), "GW-4999");
}

per_backend!(
    a_factory_manifest_pre_registers_its_gateways_with_their_certificates,
    an_editor_importing_a_batched_mac_without_its_manifest_gets_no_certificate,
    an_import_over_the_row_or_byte_bound_is_refused_with_a_clear_message,
    an_import_at_the_row_bound_is_written_whole,
    a_csv_import_reports_every_bad_row_and_writes_nothing_until_all_are_good,
    every_asset_the_login_page_needs_is_served_by_the_binary,
);
