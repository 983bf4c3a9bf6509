//! Certificate renewal in the pages: "renew now" on a gateway page (server key and CSR), the
//! gateway's renewal log, the campaign's figures, never-used and revoked certificates on the
//! certificates page, pausing and resuming a tenant's campaign (its admin, or staff), and who may
//! do none of it.

use crate::support::TestApp;
use tds_domain::Role;
use tds_domain::renewal::{CertUpdate, RenewalState};
use tds_store::certificates::CertificateStatus;
use tds_testkit::{TestDb, fixtures, per_backend};

async fn post_status(c: &crate::support::Client, path: &str, fields: &[(&str, &str)]) -> u16 {
    let mut form: Vec<(&str, String)> = fields.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    form.push(("_csrf", c.csrf()));
    let resp = c.no_redirect().post(format!("{}{path}", c.base)).header("origin", &c.base).form(&form);
    resp.send().await.unwrap().status().as_u16()
}

async fn an_admin_renews_from_the_gateway_page_and_follows_it_there_and_on_the_certificates_page(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.user("adm@example.com", Some((t.id, Role::Admin))).await;
    let g1 = fixtures::gateway(&app.store, t.id, "aa:bb:cc:00:00:01", "GW1").await;
    let g2 = fixtures::gateway(&app.store, t.id, "aa:bb:cc:00:00:02", "GW2").await;
    app.pki.issue(&app.store, &g1, tds_pki::DeviceKeyKind::EcdsaP256, false).await.unwrap();
    app.pki.issue(&app.store, &g2, tds_pki::DeviceKeyKind::Rsa2048, false).await.unwrap();
    let c = app.login("adm@example.com").await;

    let page = c.get(&format!("/gateways/{}", g1.id)).await;
    assert!(page.has("id=\"renew-form\"") && page.has("id=\"no-renewal-log\""), "{}", page.body);
    let page = c.post(&format!("/gateways/{}/certificate/renew", g1.id), &[("mode", "server_key")]).await;
    assert_eq!((page.status, page.path()), (200, format!("/gateways/{}", g1.id)));
    assert!(page.has("Renovação iniciada"), "the notice: {}", page.body);
    assert!(page.has("id=\"renewal-open\"") && !page.has("id=\"renew-form\""));
    assert!(page.has("id=\"renewal-log\"") && page.has("Certificado emitido"), "{}", page.body);

    let renewal = app.store.renewals().for_gateway(t.id, g1.id, 5).await.unwrap().remove(0);
    assert_eq!(renewal.state, RenewalState::Issued);
    assert!(renewal.manual);
    let certs = app.store.certificates().for_gateway(t.id, g1.id).await.unwrap();
    let new = certs.iter().find(|c| Some(c.id) == renewal.new_certificate_id).unwrap();
    assert_eq!(new.status, CertificateStatus::Active, "both connect during the hand-over");
    assert_eq!(new.key_algorithm, "ECDSA-P256", "a renewal keeps the key type");
    assert_eq!(new.renewal_state.as_deref(), Some("issued"));
    let topic = format!("tds_new/gateway/{}/cert_update", g1.mac);
    let offer = app.store.renewals().staff_pending(g1.mac, &topic).await.unwrap().unwrap();
    let CertUpdate::Certificate { new_cert, new_key: Some(_), .. } =
        serde_json::from_str::<CertUpdate>(&offer.payload).unwrap()
    else {
        panic!("{}", offer.payload)
    };
    assert_eq!(new_cert.trim(), new.pem.trim());

    // A second one while the first is open is refused, and nothing changes.
    assert_eq!(post_status(&c, &format!("/gateways/{}/certificate/renew", g1.id), &[]).await, 409);
    let page = c.post(&format!("/gateways/{}/certificate/renew", g1.id), &[]).await;
    assert!(page.has("id=\"cert-refused\"") && page.has("já está em curso"), "{}", page.body);
    assert_eq!(app.store.renewals().for_gateway(t.id, g1.id, 5).await.unwrap().len(), 1);

    // CSR mode: the gateway is asked for a CSR, no certificate is issued yet.
    let page = c.post(&format!("/gateways/{}/certificate/renew", g2.id), &[("mode", "csr")]).await;
    assert_eq!(page.status, 200);
    let r2 = app.store.renewals().for_gateway(t.id, g2.id, 5).await.unwrap().remove(0);
    assert_eq!((r2.state, r2.new_certificate_id), (RenewalState::Offered, None));
    let topic = format!("tds_new/gateway/{}/cert_update", g2.mac);
    let offer = app.store.renewals().staff_pending(g2.mac, &topic).await.unwrap().unwrap();
    assert_eq!(
        serde_json::from_str::<CertUpdate>(&offer.payload).unwrap(),
        CertUpdate::CsrRequired { csr_required: true }
    );
    assert_eq!(
        post_status(&c, &format!("/gateways/{}/certificate/renew", g2.id), &[("mode", "x")]).await,
        400
    );

    // The certificates page counts them by state; one certificate used, the rest never.
    let used = &certs.iter().find(|c| Some(c.id) == renewal.old_certificate_id).unwrap().serial;
    app.store.certificates().mark_used(used, chrono::Utc::now()).await.unwrap();
    let list = c.get("/certificates").await;
    let figure = |name: &str| {
        let at = list.body.find(&format!("data-figure=\"{name}\">")).unwrap() + name.len() + 15;
        list.body[at..].split('<').next().unwrap().to_owned()
    };
    assert_eq!(figure("in_flight"), "2", "{}", list.body);
    assert_eq!(
        (figure("issued"), figure("offered"), figure("csr_received")),
        ("1".into(), "1".into(), "0".into())
    );
    assert_eq!(figure("started_today"), "2");
    assert_eq!(figure("backlog"), "0", "certificates being renewed are not in the backlog");
    assert!(list.has("id=\"horizon-chart\""));
    assert_eq!(list.text_of("never-used-count").as_deref().map(str::trim), Some("Nunca usado: 2"));
    let never = c.get("/certificates?status=never_used").await;
    assert_eq!(never.text_of("cert-total").as_deref(), Some("2"), "{}", never.body);
    assert!(!never.has(used.as_str()));

    let audit = app.store.audit().list(t.id, &Default::default(), tds_store::Page::default()).await.unwrap();
    assert_eq!(audit.items.iter().filter(|e| e.action == "cert.renew").count(), 2);
}

async fn revoked_certificates_show_their_reason(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.user("adm@example.com", Some((t.id, Role::Admin))).await;
    let g = fixtures::gateway(&app.store, t.id, "aa:bb:cc:00:00:01", "GW1").await;
    app.pki.issue(&app.store, &g, tds_pki::DeviceKeyKind::EcdsaP256, false).await.unwrap();
    let cert = app.store.certificates().for_gateway(t.id, g.id).await.unwrap().pop().unwrap();
    app.pki.revoke(&app.store, t.id, cert.id, tds_pki::RevocationReason::KeyCompromise, None).await.unwrap();
    let c = app.login("adm@example.com").await;
    let list = c.get("/certificates").await;
    assert_eq!(list.text_of("revoked-count").as_deref().map(str::trim), Some("Revogado: 1"), "{}", list.body);
    let revoked = c.get("/certificates?status=revoked").await;
    assert!(revoked.has("<span class=\"revocation-reason\">Chave comprometida</span>"), "{}", revoked.body);
    // Not renewable any more: no button on the gateway page.
    assert!(!c.get(&format!("/gateways/{}", g.id)).await.has("id=\"renew-form\""));
}

async fn the_tenant_admin_and_staff_pause_and_resume_the_campaign(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("Acme").await;
    let other = app.tenant("Other").await;
    app.user("adm@example.com", Some((t.id, Role::Admin))).await;
    app.user_with("ops@tds.example", None, true).await;
    let c = app.login("adm@example.com").await;

    let page = c.get("/certificates").await;
    assert_eq!(page.text_of("campaign-state").as_deref(), Some("Em andamento"));
    let page = c.post("/certificates/campaign", &[("action", "pause")]).await;
    assert_eq!((page.status, page.path()), (200, "/certificates".to_owned()));
    assert_eq!(page.text_of("campaign-state").as_deref(), Some("Pausada"), "{}", page.body);
    assert!(page.has("id=\"campaign-resume\""));
    assert!(app.store.renewals().is_paused(t.id).await.unwrap());
    assert!(!app.store.renewals().is_paused(other.id).await.unwrap(), "only the admin's tenant");
    assert_eq!(post_status(&c, "/certificates/campaign", &[("action", "stop")]).await, 400);
    c.post("/certificates/campaign", &[("action", "resume")]).await;
    assert!(!app.store.renewals().is_paused(t.id).await.unwrap());

    // Staff: any tenant, from the fleet's certificates page.
    let ops = app.login("ops@tds.example").await;
    let page = ops.get("/staff/certificates").await;
    assert!(page.has("id=\"renewal-campaign\"") && page.has("id=\"no-campaigns\""), "{}", page.body);
    let page =
        ops.post(&format!("/staff/tenants/{}/renewal-campaign", other.id), &[("action", "pause")]).await;
    assert_eq!((page.status, page.path()), (200, "/staff/certificates".to_owned()));
    assert!(page.has(&format!("data-tenant=\"{}\"", other.id)) && page.has("Pausada"), "{}", page.body);
    assert!(app.store.renewals().is_paused(other.id).await.unwrap());
    assert_eq!(
        post_status(&ops, "/staff/tenants/999999/renewal-campaign", &[("action", "pause")]).await,
        404
    );

    let audit = |tenant| {
        let store = app.store.clone();
        async move {
            store.audit().list(tenant, &Default::default(), tds_store::Page::default()).await.unwrap().items
        }
    };
    let mine: Vec<String> = audit(t.id).await.into_iter().map(|e| e.action).collect();
    assert!(mine.contains(&"cert.campaign_paused".into()) && mine.contains(&"cert.campaign_resumed".into()));
    let theirs = audit(other.id).await;
    assert!(theirs.iter().any(|e| e.action == "cert.campaign_paused" && e.actor == "ops@tds.example"));
}

async fn viewers_editors_and_other_tenants_cannot_renew_or_pause(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let a = app.tenant("A").await;
    let b = app.tenant("B").await;
    app.user("vic@example.com", Some((a.id, Role::Viewer))).await;
    app.user("edu@example.com", Some((a.id, Role::Editor))).await;
    app.user("eve@example.com", Some((b.id, Role::Admin))).await;
    let g = fixtures::gateway(&app.store, a.id, "aa:bb:cc:00:00:01", "GW1").await;
    app.pki.issue(&app.store, &g, tds_pki::DeviceKeyKind::EcdsaP256, false).await.unwrap();
    let renew = format!("/gateways/{}/certificate/renew", g.id);

    for who in ["vic@example.com", "edu@example.com"] {
        let c = app.login(who).await;
        let page = c.get(&format!("/gateways/{}", g.id)).await;
        assert!(!page.has("id=\"renew-form\""), "{who}");
        assert!(page.has("id=\"no-renewal-log\""), "{who} sees the log section");
        assert_eq!(post_status(&c, &renew, &[("mode", "csr")]).await, 403, "{who}");
        assert_eq!(post_status(&c, "/certificates/campaign", &[("action", "pause")]).await, 403, "{who}");
        assert_eq!(
            post_status(&c, &format!("/staff/tenants/{}/renewal-campaign", a.id), &[("action", "pause")])
                .await,
            404,
            "{who}"
        );
    }
    let eve = app.login("eve@example.com").await;
    assert_eq!(post_status(&eve, &renew, &[]).await, 404);
    assert_eq!(
        post_status(&eve, &format!("/staff/tenants/{}/renewal-campaign", a.id), &[("action", "pause")]).await,
        404
    );
    assert!(app.store.renewals().for_gateway(a.id, g.id, 5).await.unwrap().is_empty());
    assert!(!app.store.renewals().is_paused(a.id).await.unwrap());
}

per_backend!(
    an_admin_renews_from_the_gateway_page_and_follows_it_there_and_on_the_certificates_page,
    revoked_certificates_show_their_reason,
    the_tenant_admin_and_staff_pause_and_resume_the_campaign,
    viewers_editors_and_other_tenants_cannot_renew_or_pause,
);
