//! Every form's validation: each rule of SPEC §1 answers with a message next to its field, in
//! the user's language, and nothing is stored.

use crate::support::TestApp;
use tds_domain::Role;
use tds_testkit::{TestDb, fixtures, per_backend};

fn with(
    base: &[(&'static str, &'static str)],
    over: &[(&'static str, &'static str)],
) -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<_> = base.iter().filter(|(k, _)| !over.iter().any(|(o, _)| o == k)).copied().collect();
    out.extend_from_slice(over);
    out
}

const GATEWAY: &[(&str, &str)] = &[
    ("mac", "aa:bb:cc:00:00:01"),
    ("code", "GW-1"),
    ("name", "Um"),
    ("max_devices", "8"),
    ("expected_interval_s", "300"),
];

async fn the_gateway_form_names_every_wrong_field(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.user("edu@example.com", Some((t.id, Role::Editor))).await;
    fixtures::gateway(&app.store, t.id, "aa:bb:cc:00:00:99", "TAKEN").await;
    let c = app.login("edu@example.com").await;
    c.get("/gateways/new").await;

    // (fields changed, field that must show an error, words of the message)
    let cases: &[(&[(&str, &str)], &str, &str)] = &[
        (&[("mac", "zz:00")], "mac", "MAC inválido"),
        (&[("mac", "aa:bb:cc:00:00:99")], "mac", "já está registrado"),
        (&[("code", "")], "code", "Campo obrigatório"),
        (&[("code", "GW 1!")], "code", "Código inválido"),
        (&[("code", "taken")], "code", "já está em uso"),
        (&[("name", "")], "name", "Campo obrigatório"),
        (&[("max_devices", "99")], "max_devices", "fora do intervalo"),
        (&[("max_devices", "oito")], "max_devices", "não é um número"),
        (&[("expected_interval_s", "0")], "expected_interval_s", "fora do intervalo"),
        (&[("latitude", "-23.5")], "latitude", ""),
        (&[("latitude", "123"), ("longitude", "-46.6")], "latitude", "fora do intervalo"),
    ];
    for (over, field, words) in cases {
        let page = c.post("/gateways/new", &with(GATEWAY, over)).await;
        assert_eq!(page.status, 422, "{over:?}");
        let msg = page
            .text_of(&format!("{field}-error"))
            .unwrap_or_else(|| panic!("no error on {field} for {over:?}: {}", page.body));
        assert!(msg.contains(words), "{over:?}: {msg}");
        assert!(page.has("id=\"form-errors\""));
        // What was typed stays in the form.
        for (k, v) in *over {
            if !v.is_empty() {
                assert!(page.has(&format!("value=\"{v}\"")), "{k} not kept");
            }
        }
    }
    assert_eq!(
        app.store.gateways().list(t.id, &Default::default(), tds_store::Page::default()).await.unwrap().total,
        1
    );
}

const DEVICE: &[(&str, &str)] = &[
    ("code", "D01"),
    ("name", "Medidor"),
    ("device_type", "MEDIDOR"),
    ("medium", "water"),
    ("kind", "counter"),
    ("unit", "m3"),
    ("scale_factor", "1"),
    ("slave_id", "1"),
    ("register", "100"),
    ("mode", "AUTO"),
    ("status", "ATIVO"),
];

async fn the_device_form_names_every_wrong_field(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.user("edu@example.com", Some((t.id, Role::Editor))).await;
    let gw = fixtures::gateway(&app.store, t.id, "aa:bb:cc:00:00:01", "GW").await;
    fixtures::meter(&app.store, t.id, &gw, "TAKEN").await;
    let c = app.login("edu@example.com").await;
    let path = format!("/gateways/{}/devices/new", gw.id);
    c.get(&path).await;

    let cases: &[(&[(&str, &str)], &str, &str)] = &[
        (&[("code", "")], "code", "Campo obrigatório"),
        (&[("code", "TAKEN")], "code", "já está em uso"),
        (&[("slave_id", "")], "slave_id", "Obrigatório para medidores"),
        (&[("register", "")], "register", "Obrigatório para medidores"),
        (&[("slave_id", "300")], "slave_id", "fora do intervalo"),
        (&[("register", "70000")], "register", "fora do intervalo"),
        (&[("unit", "")], "unit", ""),
        (&[("medium", "lava")], "medium", "Valor desconhecido"),
        (&[("scale_factor", "0")], "scale_factor", ""),
        (&[("alarm_daily", "-5")], "alarm_daily", ""),
        (&[("mac", "nope")], "mac", "MAC inválido"),
    ];
    for (over, field, words) in cases {
        let page = c.post(&path, &with(DEVICE, over)).await;
        assert_eq!(page.status, 422, "{over:?}: {}", page.body);
        let msg = page
            .text_of(&format!("{field}-error"))
            .unwrap_or_else(|| panic!("no error on {field} for {over:?}"));
        assert!(msg.contains(words), "{over:?}: {msg}");
    }
    assert_eq!(app.store.devices().list_for_gateway(t.id, gw.id, true).await.unwrap().len(), 1);

    // A full gateway refuses with the reason.
    let small = fixtures::gateway(&app.store, t.id, "aa:bb:cc:00:00:02", "SMALL").await;
    let mut fields = tds_testkit::fixtures::gateway_fields("SMALL");
    fields.max_devices = tds_domain::limits::MaxDevices::new(1).unwrap();
    app.store.gateways().update(t.id, small.id, &fields).await.unwrap();
    fixtures::meter(&app.store, t.id, &small, "D01").await;
    let page =
        c.post(&format!("/gateways/{}/devices/new", small.id), &with(DEVICE, &[("code", "D02")])).await;
    assert_eq!(page.status, 422);
    assert!(page.text_of("form-errors").is_some() && page.has("Limite atingido"), "{}", page.body);
}

async fn messages_follow_the_users_language(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("T").await;
    app.user("edu@example.com", Some((t.id, Role::Editor))).await;
    let c = app.login("edu@example.com").await;
    c.get("/gateways/new").await;
    c.post("/language", &[("lang", "en"), ("back", "/gateways/new")]).await;
    let page = c.post("/gateways/new", &with(GATEWAY, &[("mac", "bad")])).await;
    assert!(page.text_of("mac-error").unwrap().contains("Invalid MAC"), "{}", page.body);
    assert!(page.has("<html lang=\"en\""));
    let user =
        app.store.users().by_email(&tds_domain::Email::parse("edu@example.com").unwrap()).await.unwrap();
    assert_eq!(user.language, "en", "the choice is saved in the profile");
}

per_backend!(
    the_gateway_form_names_every_wrong_field,
    the_device_form_names_every_wrong_field,
    messages_follow_the_users_language,
);
