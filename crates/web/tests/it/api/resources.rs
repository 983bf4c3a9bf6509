//! Every resource through a token: gateways and devices (create, page, read, change, archive,
//! decommission), readings as JSON pages and CSV, consumption, certificates, imports, dead
//! letters; validation and conflicts answer with the JSON error and its field; every write is
//! audited as the token.

use super::{Api, token};
use crate::support::TestApp;
use chrono::{DateTime, TimeZone as _, Utc};
use reqwest::StatusCode;
use serde_json::json;
use tds_domain::Role;
use tds_store::readings::NewReading;
use tds_testkit::{TestDb, per_backend};

async fn an_integrator_manages_gateways_and_devices(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("Acme").await;
    let api = Api::new(&app, &token(&app, t.id, "erp", Role::Editor).await);

    let tenant = api.get("/api/v1/tenant").await;
    assert_eq!(tenant.status, StatusCode::OK, "{}", tenant.text);
    assert_eq!(tenant.json()["name"], "Acme");
    assert_eq!(tenant.json()["role"], "editor");
    assert_eq!(tenant.json()["usage"]["gateways"], 0);

    for (mac, code) in
        [("02:00:00:00:00:03", "GW-C"), ("02:00:00:00:00:01", "GW-A"), ("02:00:00:00:00:02", "GW-B")]
    {
        let created = api.post("/api/v1/gateways", json!({"mac": mac, "code": code, "name": format!("Gateway {code}"), "expected_interval_s": 60})).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        assert_eq!(created.json()["mac"], mac);
        assert_eq!(created.json()["status"], "pre_registered");
        assert_eq!(created.json()["connection"], "never_connected");
    }
    // Keyset pages in MAC order.
    let first = api.get("/api/v1/gateways?limit=2").await.json();
    let macs: Vec<_> =
        first["items"].as_array().unwrap().iter().map(|g| g["mac"].as_str().unwrap().to_owned()).collect();
    assert_eq!(macs, ["02:00:00:00:00:01", "02:00:00:00:00:02"]);
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let second = api.get(&format!("/api/v1/gateways?limit=2&cursor={cursor}")).await.json();
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert_eq!(second["items"][0]["mac"], "02:00:00:00:00:03");
    assert!(second["next_cursor"].is_null());
    let found = api.get("/api/v1/gateways?q=gw-b").await.json();
    assert_eq!(found["items"].as_array().unwrap().len(), 1);
    let bad = api.get("/api/v1/gateways?cursor=zz").await;
    assert_eq!((bad.status, bad.code().as_str()), (StatusCode::BAD_REQUEST, "invalid_cursor"));
    let bad = api.get("/api/v1/gateways?limit=5000").await;
    assert_eq!((bad.status, bad.code().as_str()), (StatusCode::BAD_REQUEST, "invalid_query"));

    // Refusals name their field, with the domain's message.
    let taken =
        api.post("/api/v1/gateways", json!({"mac": "02:00:00:00:00:01", "code": "GW-Z", "name": "Z"})).await;
    assert_eq!((taken.status, taken.code().as_str()), (StatusCode::CONFLICT, "conflict"), "{}", taken.text);
    assert_eq!(taken.json()["error"]["field"], "mac");
    let bad_mac = api.post("/api/v1/gateways", json!({"mac": "nope", "code": "GW-Z", "name": "Z"})).await;
    assert_eq!((bad_mac.status, bad_mac.code().as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid"));
    assert_eq!(bad_mac.json()["error"]["field"], "mac");
    let unknown = api
        .post(
            "/api/v1/gateways",
            json!({"mac": "02:00:00:00:00:09", "code": "GW-Z", "name": "Z", "colour": "red"}),
        )
        .await;
    assert_eq!(unknown.json()["error"]["field"], "colour", "{}", unknown.text);
    let not_json = api.post_raw("/api/v1/gateways", "application/json", "{").await;
    assert_eq!((not_json.status, not_json.code().as_str()), (StatusCode::BAD_REQUEST, "invalid_body"));
    let form = api.post_raw("/api/v1/gateways", "application/x-www-form-urlencoded", "mac=1").await;
    assert_eq!(form.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let huge = api
        .post_raw(
            "/api/v1/gateways",
            "application/json",
            &format!("{{\"name\": \"{}\"}}", "x".repeat(70_000)),
        )
        .await;
    assert_eq!((huge.status, huge.code().as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "too_large"));
    assert_eq!(app.store.tenants().usage(t.id).await.unwrap().gateways, 3, "nothing refused was stored");

    let changed = api
        .patch(
            "/api/v1/gateways/02:00:00:00:00:01",
            json!({"name": "Portaria", "latitude": -23.5, "longitude": -46.6}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    assert_eq!(
        (changed.json()["name"].clone(), changed.json()["latitude"].clone()),
        (json!("Portaria"), json!(-23.5))
    );
    assert_eq!(changed.json()["code"], "GW-A", "untouched fields stay");
    let fixed = api.patch("/api/v1/gateways/02:00:00:00:00:01", json!({"mac": "02:00:00:00:00:08"})).await;
    assert_eq!(
        (fixed.status, fixed.json()["error"]["field"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("mac"))
    );

    // Devices, by code within their gateway.
    let devices = "/api/v1/gateways/02:00:00:00:00:01/devices";
    let meter = api.post(devices, json!({"code": "M1", "name": "Entrada", "type": "meter", "medium": "water", "kind": "counter", "unit": "m³", "slave_id": 1, "register": 3, "alarm_daily": 12.5})).await;
    assert_eq!(meter.status, StatusCode::CREATED, "{}", meter.text);
    assert_eq!(
        (meter.json()["gateway"].clone(), meter.json()["alarm_daily"].clone()),
        (json!("02:00:00:00:00:01"), json!(12.5))
    );
    let no_modbus = api.post(devices, json!({"code": "M2", "name": "Sem endereço", "type": "meter"})).await;
    assert_eq!(no_modbus.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(no_modbus.json()["error"]["field"], "register", "{}", no_modbus.text);
    let sensor = api.post(devices, json!({"code": "T1", "name": "Temperatura", "type": "sensor", "kind": "gauge", "medium": "other", "unit": "°C"})).await;
    assert_eq!(sensor.status, StatusCode::CREATED, "{}", sensor.text);
    let listed = api.get(&format!("{devices}?limit=1")).await.json();
    assert_eq!(listed["items"][0]["code"], "M1");
    let next = api
        .get(&format!("{devices}?limit=1&cursor={}", listed["next_cursor"].as_str().unwrap()))
        .await
        .json();
    assert_eq!((next["items"][0]["code"].clone(), next["next_cursor"].clone()), (json!("T1"), json!(null)));
    let cleared =
        api.patch(&format!("{devices}/M1"), json!({"alarm_daily": null, "alarm_monthly": 300})).await;
    assert_eq!(cleared.status, StatusCode::OK, "{}", cleared.text);
    assert_eq!(
        (cleared.json()["alarm_daily"].clone(), cleared.json()["alarm_monthly"].clone()),
        (json!(null), json!(300.0))
    );
    assert_eq!(api.delete(&format!("{devices}/T1")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(api.get(&format!("{devices}/T1")).await.status, StatusCode::NOT_FOUND);

    let gone = api.delete("/api/v1/gateways/02:00:00:00:00:03").await;
    assert_eq!((gone.status, gone.json()["status"].clone()), (StatusCode::OK, json!("decommissioned")));
    assert_eq!(api.delete("/api/v1/gateways/02:00:00:00:00:03").await.status, StatusCode::CONFLICT);

    let audit = app.store.audit().list(t.id, &Default::default(), tds_store::Page::default()).await.unwrap();
    assert!(audit.items.iter().all(|e| e.actor == "token erp" && e.user_id.is_none()), "{:?}", audit.items);
    let actions: Vec<_> = audit.items.iter().map(|e| e.action.as_str()).collect();
    for a in [
        "gateway.created",
        "gateway.updated",
        "gateway.decommissioned",
        "device.created",
        "device.updated",
        "device.archived",
    ] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
}

fn at(h: u32, m: u32) -> DateTime<Utc> {
    // 2026-11-10 in UTC; São Paulo is UTC-3.
    Utc.with_ymd_and_hms(2026, 11, 10, h, m, 0).unwrap()
}

async fn readings_and_consumption_come_back_as_json_and_csv(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("Acme").await;
    let g = tds_testkit::fixtures::gateway(&app.store, t.id, "02:00:00:00:00:01", "GW-A").await;
    let m1 = tds_testkit::fixtures::meter(&app.store, t.id, &g, "M1").await;
    let m2 = tds_testkit::fixtures::meter(&app.store, t.id, &g, "M2").await;
    // Every 15 minutes from 09:00 to 16:45 UTC: 32 readings each, counters growing by 1.5 kWh.
    let mut rows = Vec::new();
    for i in 0..32 {
        let time = at(9, 0) + chrono::Duration::minutes(15 * i);
        for d in [&m1, &m2] {
            rows.push(NewReading {
                device_id: d.id,
                time,
                value: 100.0 + 1.5 * i as f64,
                unit: "kWh".into(),
            });
        }
    }
    app.store.readings().insert(t.id, &rows).await.unwrap();
    while app.store.rollups().staff_refresh_dirty(100).await.unwrap() > 0 {}
    let api = Api::new(&app, &token(&app, t.id, "bi", Role::Viewer).await);

    // JSON pages: time order, then device; the cursor continues where the page ended.
    let range = "from=2026-11-10T00:00:00Z&to=2026-11-11T00:00:00Z";
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page =
            api.get(&format!("/api/v1/readings?gateway=02:00:00:00:00:01&{range}&limit=7{cursor}")).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        let page = page.json();
        for r in page["items"].as_array().unwrap() {
            seen.push((
                r["time"].as_str().unwrap().to_owned(),
                r["device"].as_str().unwrap().to_owned(),
                r["value"].as_f64().unwrap(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 64, "every reading once");
    // Device by device, each in time order.
    assert_eq!(seen[0], ("2026-11-10T09:00:00Z".to_owned(), "M1".to_owned(), 100.0));
    assert_eq!(seen[1], ("2026-11-10T09:15:00Z".to_owned(), "M1".to_owned(), 101.5));
    assert!(seen[..32].iter().all(|r| r.1 == "M1") && seen[32..].iter().all(|r| r.1 == "M2"));
    assert!(seen[..32].windows(2).all(|w| w[0].0 < w[1].0) && seen[32..].windows(2).all(|w| w[0].0 < w[1].0));
    let one = api
        .get(&format!("/api/v1/readings?gateway=02:00:00:00:00:01&device=M2&{range}&limit=1000"))
        .await
        .json();
    assert_eq!(one["items"].as_array().unwrap().len(), 32);
    assert!(one["items"].as_array().unwrap().iter().all(|r| r["device"] == "M2" && r["unit"] == "kWh"));
    let tenant_wide = api.get(&format!("/api/v1/readings?{range}&limit=1000")).await.json();
    assert_eq!(tenant_wide["items"].as_array().unwrap().len(), 64);
    let bad = api.get("/api/v1/readings?device=M2").await;
    assert_eq!(
        (bad.status, bad.json()["error"]["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("device"))
    );

    // CSV, read by the csv crate: the whole range, local and UTC times, decimal commas on request.
    let csv_for = |q: String| {
        let api = &api;
        async move {
            let resp = api
                .http
                .get(format!("{}/api/v1/readings?{q}", api.base))
                .bearer_auth(&api.token)
                .header("accept", "text/csv")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
            resp.bytes().await.unwrap().to_vec()
        }
    };
    let body = csv_for(format!("gateway=02:00:00:00:00:01&{range}")).await;
    let mut reader = csv::Reader::from_reader(body.as_slice());
    assert_eq!(
        reader.headers().unwrap(),
        vec!["gateway_mac", "device_code", "time_utc", "time_local", "value", "unit"]
    );
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 64);
    assert_eq!(
        records[2].iter().collect::<Vec<_>>(),
        ["02:00:00:00:00:01", "M1", "2026-11-10T09:30:00Z", "2026-11-10T06:30:00-03:00", "103", "kWh"]
    );
    let body = csv_for(format!("gateway=02:00:00:00:00:01&{range}&delimiter=semicolon&bom=true")).await;
    assert!(body.starts_with("\u{feff}".as_bytes()));
    let mut reader = csv::ReaderBuilder::new().delimiter(b';').from_reader(&body[3..]);
    assert_eq!(&reader.records().nth(1).unwrap().unwrap()[4], "101,5");

    // Consumption: by device per hour and per day, the gateway's total per day, the tenant's month.
    let c = api.get("/api/v1/consumption?scope=device&gateway=02:00:00:00:00:01&device=M1&bucket=day&from=2026-11-10&to=2026-11-10").await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.text);
    let c = c.json();
    assert_eq!(c["timezone"], "America/Sao_Paulo");
    let series = &c["series"][0];
    assert_eq!((series["device"].clone(), series["unit"].clone()), (json!("M1"), json!("kWh")));
    assert_eq!(series["buckets"][0]["local_start"], "2026-11-10T00:00:00");
    assert_eq!(series["buckets"][0]["start"], "2026-11-10T03:00:00Z");
    assert_eq!(series["total"], 46.5, "31 steps of 1.5");
    let hours = api.get("/api/v1/consumption?scope=device&gateway=02:00:00:00:00:01&device=M1&bucket=hour&from=2026-11-10&to=2026-11-10").await.json();
    let hourly: f64 = hours["series"][0]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["consumption"].as_f64().unwrap())
        .sum();
    assert!((hourly - 46.5).abs() < 1e-9, "hours add up to the day: {hourly}");
    let gw = api.get("/api/v1/consumption?scope=gateway&gateway=02:00:00:00:00:01&bucket=month&from=2026-11-01&to=2026-11-30").await.json();
    assert_eq!(
        (gw["series"][0]["devices"].clone(), gw["series"][0]["total"].clone()),
        (json!(2), json!(93.0))
    );
    assert_eq!(gw["series"][0]["buckets"][0]["local_start"], "2026-11-01T00:00:00");
    let week =
        api.get("/api/v1/consumption?scope=tenant&bucket=week&from=2026-11-10&to=2026-11-10").await.json();
    assert_eq!(
        week["series"][0]["buckets"][0]["local_start"], "2026-11-09T00:00:00",
        "the ISO week's Monday"
    );
    let medium =
        api.get("/api/v1/consumption?scope=medium&medium=water&from=2026-11-10&to=2026-11-10").await.json();
    assert!(medium["series"].as_array().unwrap().is_empty(), "the meters count energy");
    let csv = api.get("/api/v1/consumption?scope=gateway&gateway=02:00:00:00:00:01&bucket=day&from=2026-11-10&to=2026-11-10&format=csv&delimiter=semicolon").await;
    let mut reader = csv::ReaderBuilder::new().delimiter(b';').from_reader(csv.text.as_bytes());
    let row = reader.records().next().unwrap().unwrap();
    assert_eq!((&row[4], &row[6]), ("2026-11-10T00:00:00", "93"), "{row:?}");
    // The same figures as the report's files (the reports crate's PDF and workbook).
    let range = "scope=gateway&gateway=02:00:00:00:00:01&bucket=day&from=2026-11-10&to=2026-11-10";
    let pdf = api.get(&format!("/api/v1/consumption?{range}&format=pdf&lang=en")).await;
    assert_eq!(pdf.status, StatusCode::OK);
    assert!(pdf.text.starts_with("%PDF-"), "a PDF");
    let xlsx = api.get(&format!("/api/v1/consumption?{range}&format=xlsx")).await;
    assert_eq!(xlsx.status, StatusCode::OK);
    assert!(xlsx.text.starts_with("PK"), "a workbook is a zip");
    for bad in [
        "scope=planet&from=2026-11-10&to=2026-11-10",
        "scope=tenant&bucket=year&from=2026-11-10&to=2026-11-10",
        "scope=tenant&from=2026-11-10&to=2026-11-01",
        "scope=tenant&from=2026-11-10",
        "scope=device&from=2026-11-10&to=2026-11-10",
        "scope=tenant&from=2026-11-10&to=2026-11-10&format=doc",
    ] {
        let refused = api.get(&format!("/api/v1/consumption?{bad}")).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{bad}: {}", refused.text);
    }
}

async fn certificates_imports_and_dead_letters(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let t = app.tenant("Acme").await;
    let g = tds_testkit::fixtures::gateway(&app.store, t.id, "02:00:00:00:00:01", "GW-A").await;
    let admin = Api::new(&app, &token(&app, t.id, "ops", Role::Admin).await);

    let issued = admin
        .http
        .post(format!("{}/api/v1/gateways/02:00:00:00:00:01/certificate", admin.base))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(issued.status(), StatusCode::CREATED);
    assert_eq!(issued.headers()["content-type"], "application/zip");
    let zip = issued.bytes().await.unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip.to_vec())).unwrap();
    let names: Vec<String> =
        (0..archive.len()).map(|i| archive.by_index(i).unwrap().name().unwrap().to_string()).collect();
    assert!(
        names.iter().any(|n| n.ends_with(".key")) && names.iter().any(|n| n.ends_with(".crt")),
        "{names:?}"
    );
    let again = admin.post("/api/v1/gateways/02:00:00:00:00:01/certificate", json!({})).await;
    assert_eq!(
        (again.status, again.code().as_str()),
        (StatusCode::CONFLICT, "conflict"),
        "one active certificate"
    );
    let bad_key = admin
        .post("/api/v1/gateways/02:00:00:00:00:01/certificate", json!({"key": "dsa", "replace": true}))
        .await;
    assert_eq!(bad_key.json()["error"]["field"], "key");
    let replaced = admin
        .post("/api/v1/gateways/02:00:00:00:00:01/certificate", json!({"key": "ecdsa-p256", "replace": true}))
        .await;
    assert_eq!(replaced.status, StatusCode::CREATED);
    let listed = admin.get("/api/v1/certificates").await.json();
    let statuses: Vec<_> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(statuses, ["superseded", "active"]);
    let active = admin.get("/api/v1/certificates?status=active").await.json();
    assert_eq!(active["items"].as_array().unwrap().len(), 1);
    let csr = admin.post("/api/v1/gateways/02:00:00:00:00:01/certificate/csr", json!({"csr": "-----BEGIN CERTIFICATE REQUEST-----\nnope\n-----END CERTIFICATE REQUEST-----", "replace": true})).await;
    assert_eq!(
        (csr.status, csr.json()["error"]["field"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("csr"))
    );
    let bad_reason = admin
        .post("/api/v1/gateways/02:00:00:00:00:01/certificate/revoke", json!({"reason": "ca_compromise"}))
        .await;
    assert_eq!(bad_reason.status, StatusCode::UNPROCESSABLE_ENTITY);
    let revoked = admin
        .post(
            "/api/v1/gateways/02:00:00:00:00:01/certificate/revoke",
            json!({"reason": "key_compromise", "notes": "lost"}),
        )
        .await;
    assert_eq!(
        (revoked.status, revoked.json()["status"].clone()),
        (StatusCode::OK, json!("revoked")),
        "{}",
        revoked.text
    );
    assert!(app.store.certificates().crl().await.unwrap().is_some(), "the CRL was issued");
    let none_left = admin
        .post("/api/v1/gateways/02:00:00:00:00:01/certificate/revoke", json!({"reason": "key_compromise"}))
        .await;
    assert_eq!(none_left.status, StatusCode::CONFLICT);

    // Imports: all or none, with the report.
    let ok = admin
        .post_raw(
            "/api/v1/imports/gateways",
            "text/csv",
            "mac,code,name\n02:00:00:00:00:0a,GW-10,Dez\n02:00:00:00:00:0b,GW-11,Onze\n",
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!((ok.json()["created"].clone(), ok.json()["rows"][0]["line"].clone()), (json!(2), json!(2)));
    let refused = admin
        .post_raw(
            "/api/v1/imports/gateways",
            "text/csv",
            "mac,code,name\n02:00:00:00:00:0c,GW-12,Doze\nnot-a-mac,GW-13,Treze\n",
        )
        .await;
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "import_refused"),
        "{}",
        refused.text
    );
    let rows = refused.json()["rows"].clone();
    assert_eq!(
        (rows[0]["ok"].clone(), rows[1]["ok"].clone(), rows[1]["line"].clone()),
        (json!(true), json!(false), json!(3))
    );
    assert_eq!(app.store.tenants().usage(t.id).await.unwrap().gateways, 3, "nothing of the refused file");
    let devices = admin.post_raw("/api/v1/imports/devices", "text/csv", "gateway_mac,code,name,type,medium,kind,unit,slave_id,register\n02:00:00:00:00:0a,M1,Agua,meter,water,counter,m³,1,1\n").await;
    assert_eq!(devices.status, StatusCode::OK, "{}", devices.text);

    // Dead letters: listed newest first; a replay after the device exists stores the reading.
    let payload = br#"{"gateway_mac":"02:00:00:00:00:01","timestamp":"2026-11-10T09:00:00Z","leituras":[{"dispositivo_codigo":"M9","valor":43}]}"#;
    let ids = app
        .store
        .rejected()
        .record(&[tds_store::rejected::NewRejected {
            tenant_id: Some(t.id),
            gateway_id: Some(g.id),
            mac: Some(g.mac),
            topic: "tds_new/gateway/02:00:00:00:00:01/telemetria".into(),
            payload: payload.to_vec(),
            payload_size: None,
            reading_index: None,
            reason_code: "unknown_device".into(),
            reason: "no device M9".into(),
            received_at: Utc::now(),
        }])
        .await
        .unwrap();
    let letters = admin.get("/api/v1/dead-letters").await.json();
    assert_eq!(
        (letters["items"][0]["id"].clone(), letters["items"][0]["reason_code"].clone()),
        (json!(ids[0].get()), json!("unknown_device"))
    );
    let mut fields = tds_testkit::fixtures::meter_fields("M9");
    fields.slave_id = Some(tds_domain::SlaveId::new(9).unwrap());
    app.store.devices().create(t.id, g.id, &fields, None).await.unwrap();
    let replay = admin.post(&format!("/api/v1/dead-letters/{}/replay", ids[0]), json!({})).await;
    assert_eq!(replay.status, StatusCode::OK, "{}", replay.text);
    assert_eq!(replay.json()["stored"], 1, "{}", replay.text);
    let actions: Vec<String> = app
        .store
        .audit()
        .list(t.id, &Default::default(), tds_store::Page::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| e.action)
        .collect();
    for a in ["cert.issue", "cert.revoke", "import.gateways", "dead_letter.replayed"] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }
}

per_backend!(
    an_integrator_manages_gateways_and_devices,
    readings_and_consumption_come_back_as_json_and_csv,
    certificates_imports_and_dead_letters
);
