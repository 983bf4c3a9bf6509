//! Certificates from the web: issue and download a bundle, sign an uploaded CSR, revoke with a
//! reason (the CRL is re-issued at once), the lists for admins and staff, and who may do what.

use crate::support::TestApp;
use std::io::Read;
use tds_domain::Role;
use tds_store::certificates::CertificateStatus;
use tds_testkit::{TestDb, fixtures, per_backend};

async fn post_raw(c: &crate::support::Client, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    let mut form: Vec<(&str, String)> = fields.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    form.push(("_csrf", c.csrf()));
    c.http.post(format!("{}{path}", c.base)).form(&form).send().await.unwrap()
}

async fn an_admin_issues_a_bundle_and_the_key_is_only_in_it(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.user("adm@example.com", Some((t.id, Role::Admin))).await;
    let g = fixtures::gateway(&app.store, t.id, "aa:bb:cc:00:00:01", "GW1").await;
    let c = app.login("adm@example.com").await;
    let page = c.get(&format!("/gateways/{}", g.id)).await;
    assert!(page.has("id=\"issue-form\"") && page.has("id=\"no-certificate\""));

    let resp = post_raw(&c, &format!("/gateways/{}/certificate", g.id), &[("key", "ecdsa-p256")]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/zip");
    assert!(resp.headers()["content-disposition"].to_str().unwrap().contains("aa-bb-cc-00-00-01.zip"));
    let bytes = resp.bytes().await.unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let mut key = String::new();
    zip.by_name("client.key").unwrap().read_to_string(&mut key).unwrap();
    assert!(key.contains("PRIVATE KEY"));
    let mut cert = String::new();
    zip.by_name("client.crt").unwrap().read_to_string(&mut cert).unwrap();
    let stored = app.store.certificates().for_gateway(t.id, g.id).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].pem.trim(), cert.trim());
    assert!(!stored[0].pem.contains("PRIVATE"), "the server keeps no key");

    // A second one needs "replace"; then the first is superseded.
    let refused = c.get(&format!("/gateways/{}", g.id)).await;
    let _ = refused;
    let resp = post_raw(&c, &format!("/gateways/{}/certificate", g.id), &[("key", "rsa2048")]).await;
    assert_eq!(resp.status(), 422);
    assert!(resp.text().await.unwrap().contains("já tem um certificado ativo"));
    let crl_before = crl_number(&app).await;
    let resp =
        post_raw(&c, &format!("/gateways/{}/certificate", g.id), &[("key", "rsa2048"), ("replace", "on")])
            .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(crl_number(&app).await, crl_before + 1, "the superseded certificate is on a new CRL at once");
    let all = app.store.certificates().for_gateway(t.id, g.id).await.unwrap();
    assert_eq!(all.iter().filter(|c| c.status == CertificateStatus::Active).count(), 1);
    assert_eq!(all.iter().filter(|c| c.status == CertificateStatus::Superseded).count(), 1);

    let list = c.get("/certificates?status=expiring").await;
    assert_eq!(list.text_of("cert-total").as_deref(), Some("1"), "{}", list.body);
    assert!(list.has("id=\"expiry-horizon\""));
    let list = c.get("/certificates?status=superseded").await;
    assert_eq!(list.text_of("cert-total").as_deref(), Some("1"));
    let audit = app.store.audit().list(t.id, &Default::default(), tds_store::Page::default()).await.unwrap();
    assert_eq!(audit.items.iter().filter(|e| e.action == "cert.issue").count(), 2);

    // A first certificate asked with "replace" revokes nothing: no new CRL is signed for it.
    let g2 = fixtures::gateway(&app.store, t.id, "aa:bb:cc:00:00:02", "GW2").await;
    let crl_before = crl_number(&app).await;
    let resp = post_raw(
        &c,
        &format!("/gateways/{}/certificate", g2.id),
        &[("key", "ecdsa-p256"), ("replace", "on")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(app.store.certificates().for_gateway(t.id, g2.id).await.unwrap().len(), 1);
    assert_eq!(crl_number(&app).await, crl_before, "no CRL for a certificate that replaced none");
}

/// The number of the stored CRL (0 when none was issued yet).
async fn crl_number(app: &TestApp) -> i64 {
    app.store.certificates().crl().await.unwrap().map_or(0, |c| c.number)
}

async fn revoking_from_the_page_records_the_reason_and_reissues_the_crl(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.user("adm@example.com", Some((t.id, Role::Admin))).await;
    let g = fixtures::gateway(&app.store, t.id, "aa:bb:cc:00:00:01", "GW1").await;
    let bundle = app.pki.issue(&app.store, &g, tds_pki::DeviceKeyKind::EcdsaP256, false).await.unwrap();
    let before = app.pki.current_crl(&app.store).await.unwrap();
    let cert = app.store.certificates().for_gateway(t.id, g.id).await.unwrap().pop().unwrap();
    let c = app.login("adm@example.com").await;
    let page = c.get(&format!("/certificates/{}", cert.id)).await;
    assert!(page.has("id=\"revoke-form\""));
    let page = c
        .post(
            &format!("/certificates/{}/revoke", cert.id),
            &[("reason", "key_compromise"), ("notes", "stolen from the field")],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.text_of("revocation").unwrap().contains("stolen from the field"));
    let revoked = app.store.certificates().staff_revoked().await.unwrap();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].serial, bundle.certificate.serial_hex);
    assert_eq!(revoked[0].reason, "key_compromise");
    let after = app.store.certificates().crl().await.unwrap().unwrap();
    assert_eq!(after.number, before.number + 1, "a new CRL at once");
    let (_, crl) = x509_parser::parse_x509_crl(&after.der).unwrap();
    let parsed: Vec<String> = crl
        .iter_revoked_certificates()
        .map(|r| hex::encode(r.raw_serial()).trim_start_matches('0').to_owned())
        .collect();
    assert!(parsed.contains(&bundle.certificate.serial_hex), "{parsed:?}");
    let audit = app.store.audit().list(t.id, &Default::default(), tds_store::Page::default()).await.unwrap();
    assert!(audit.items.iter().any(|e| e.action == "cert.revoke" && e.detail.contains("key_compromise")));
}

async fn an_uploaded_csr_is_signed_only_for_its_own_gateway(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.user("adm@example.com", Some((t.id, Role::Admin))).await;
    let g = fixtures::gateway(&app.store, t.id, "aa:bb:cc:00:00:01", "GW1").await;
    let c = app.login("adm@example.com").await;
    c.get(&format!("/gateways/{}", g.id)).await;
    let upload = |csr: String| {
        let form = reqwest::multipart::Form::new()
            .text("_csrf", c.csrf())
            .part("csr_file", reqwest::multipart::Part::text(csr).file_name("gw.csr"));
        c.http.post(format!("{}/gateways/{}/certificate/csr", app.base, g.id)).multipart(form).send()
    };
    let wrong = upload(csr_for("aa:bb:cc:00:00:99")).await.unwrap();
    assert_eq!(wrong.status(), 422);
    assert!(wrong.text().await.unwrap().contains("CSR recusado"));
    let garbage = upload("not a csr".into()).await.unwrap();
    assert_eq!(garbage.status(), 422);
    let ok = upload(csr_for("AA:BB:CC:00:00:01")).await.unwrap();
    assert_eq!(ok.status(), 200);
    let pem = ok.text().await.unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    let info = tds_pki::parse_certificate(&pem).unwrap();
    assert_eq!(info.subject_cn.as_deref(), Some("aa:bb:cc:00:00:01"));
}

fn csr_for(cn: &str) -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    params.serialize_request(&key).unwrap().pem().unwrap()
}

async fn only_admins_handle_certificates_and_only_their_own(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let a = app.tenant("A").await;
    let b = app.tenant("B").await;
    app.user("edu@example.com", Some((a.id, Role::Editor))).await;
    app.user("eve@example.com", Some((b.id, Role::Admin))).await;
    app.user_with("ops@tds.example", None, true).await;
    let g = fixtures::gateway(&app.store, a.id, "aa:bb:cc:00:00:01", "GW1").await;
    app.pki.issue(&app.store, &g, tds_pki::DeviceKeyKind::EcdsaP256, false).await.unwrap();
    let cert = app.store.certificates().for_gateway(a.id, g.id).await.unwrap().pop().unwrap();

    let edu = app.login("edu@example.com").await;
    assert_eq!(edu.get("/certificates").await.status, 403);
    let page = edu.get(&format!("/gateways/{}", g.id)).await;
    assert!(!page.has("id=\"issue-form\""));
    assert_eq!(
        post_raw(&edu, &format!("/gateways/{}/certificate", g.id), &[("replace", "on")]).await.status(),
        403
    );
    assert_eq!(
        post_raw(&edu, &format!("/certificates/{}/revoke", cert.id), &[("reason", "unspecified")])
            .await
            .status(),
        403
    );

    let eve = app.login("eve@example.com").await;
    assert_eq!(eve.get(&format!("/certificates/{}", cert.id)).await.status, 404);
    eve.get("/").await;
    assert_eq!(
        post_raw(&eve, &format!("/certificates/{}/revoke", cert.id), &[("reason", "unspecified")])
            .await
            .status(),
        404
    );
    assert_eq!(
        post_raw(&eve, &format!("/gateways/{}/certificate", g.id), &[("replace", "on")]).await.status(),
        404
    );
    assert!(!eve.get("/certificates").await.has("aa:bb:cc:00:00:01"));
    assert!(app.store.certificates().staff_revoked().await.unwrap().is_empty());

    let ops = app.login("ops@tds.example").await;
    assert!(ops.get("/staff/certificates").await.has("aa:bb:cc:00:00:01"), "staff see the whole fleet");
}

per_backend!(
    an_admin_issues_a_bundle_and_the_key_is_only_in_it,
    revoking_from_the_page_records_the_reason_and_reissues_the_crl,
    an_uploaded_csr_is_signed_only_for_its_own_gateway,
    only_admins_handle_certificates_and_only_their_own,
);
