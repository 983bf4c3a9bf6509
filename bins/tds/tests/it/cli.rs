//! Administration commands, run as the real binary against both databases.

use crate::support::{Tds, text};
use tds_domain::{Email, Role};
use tds_store::Page;
use tds_store::gateways::GatewayFilter;
use tds_testkit::{TestDb, per_backend};

async fn tenants_are_created_and_listed(db: TestDb) {
    let tds = Tds::new(Some(&db.url));
    let out = tds.ok(&[
        "tenant",
        "create",
        "--name",
        "Águas do Porto",
        "--cnpj",
        "11.222.333/0001-81",
        "--timezone",
        "America/Manaus",
    ]);
    assert!(out.contains("created tenant"), "{out}");
    let list = tds.ok(&["tenant", "list"]);
    assert!(
        list.contains("Águas do Porto")
            && list.contains("11.222.333/0001-81")
            && list.contains("America/Manaus"),
        "{list}"
    );

    let bad = tds.run(&["tenant", "create", "--name", "X", "--cnpj", "11.222.333/0001-82"], "");
    assert!(!bad.status.success() && text(&bad.stderr).contains("check digits"), "{}", text(&bad.stderr));
    let dup = tds.run(&["tenant", "create", "--name", "ÁGUAS DO PORTO"], "");
    assert!(!dup.status.success(), "names are unique ignoring case");
    let tz = tds.run(&["tenant", "create", "--name", "Y", "--timezone", "Brasilia"], "");
    assert!(text(&tz.stderr).contains("IANA"), "{}", text(&tz.stderr));
}

async fn a_user_is_created_with_the_password_from_stdin(db: TestDb) {
    let tds = Tds::new(Some(&db.url));
    tds.ok(&["tenant", "create", "--name", "Acme"]);
    let out = tds.run(
        &["user", "create", "--email", "Ana@Acme.com.br", "--tenant", "acme", "--role", "admin"],
        "correct horse battery\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    let creds = db.store.users().credentials(&Email::parse("ana@acme.com.br").unwrap()).await.unwrap();
    let hash = creds.password_hash.unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let tenant = db.store.tenants().staff_by_name("Acme").await.unwrap();
    assert_eq!(db.store.memberships().role(tenant.id, creds.user.id).await.unwrap(), Some(Role::Admin));

    let short = tds.run(
        &["user", "create", "--email", "b@acme.com.br", "--tenant", "Acme", "--role", "viewer"],
        "short\n",
    );
    assert!(
        !short.status.success() && text(&short.stderr).contains("at least 10"),
        "{}",
        text(&short.stderr)
    );
    let role = tds.run(
        &["user", "create", "--email", "c@acme.com.br", "--tenant", "Acme", "--role", "owner"],
        "long enough password\n",
    );
    assert!(text(&role.stderr).contains("admin, editor, viewer"), "{}", text(&role.stderr));
}

async fn a_gateway_import_with_one_bad_mac_reports_that_row_and_imports_nothing(db: TestDb) {
    let tds = Tds::new(Some(&db.url));
    tds.ok(&["tenant", "create", "--name", "Acme"]);
    let csv = tds.file(
        "gateways.csv",
        "mac,code,name,model,serial_number,device_id\n\
         AA:BB:CC:00:00:01,gw-01,Bloco A,DCU-8210,SN1,dev1\n\
         AA:BB:CC:00:00:0Z,gw-02,Bloco B\n\
         aa-bb-cc-00-00-03,gw-03,Bloco C\n",
    );
    let out = tds.run(&["gateway", "import", "--tenant", "Acme", csv.to_str().unwrap()], "");
    let stdout = text(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.contains("line 3: ERROR invalid MAC address \"AA:BB:CC:00:00:0Z\""), "{stdout}");
    assert!(stdout.contains("line 2: ok") && stdout.contains("line 4: ok"), "{stdout}");
    assert!(text(&out.stderr).contains("nothing was imported"), "{}", text(&out.stderr));
    let tenant = db.store.tenants().staff_by_name("Acme").await.unwrap();
    let gateways =
        db.store.gateways().list(tenant.id, &GatewayFilter::default(), Page::default()).await.unwrap();
    assert_eq!(gateways.total, 0, "nothing may be imported when a row is bad");

    // Fixed file: all rows imported, pre-registered, normalised.
    let fixed = tds.file(
        "fixed.csv",
        "AA:BB:CC:00:00:01,gw-01,Bloco A,DCU-8210,SN1,dev1\naa-bb-cc-00-00-03,gw-03,Bloco C\n",
    );
    let out = tds.ok(&["gateway", "import", "--tenant", "Acme", fixed.to_str().unwrap()]);
    assert!(out.contains("imported 2 gateways"), "{out}");
    let gateways =
        db.store.gateways().list(tenant.id, &GatewayFilter::default(), Page::default()).await.unwrap();
    let first = &gateways.items[0];
    assert_eq!(
        (first.mac.to_string().as_str(), first.code.as_str(), first.model.as_deref()),
        ("aa:bb:cc:00:00:01", "GW-01", Some("DCU-8210"))
    );

    // Importing again: every row is refused by the store (MAC and code taken), nothing changes.
    let again = tds.run(&["gateway", "import", "--tenant", "Acme", fixed.to_str().unwrap()], "");
    assert!(!again.status.success());
    assert!(
        text(&again.stdout).contains("line 1: ERROR MAC aa:bb:cc:00:00:01 is already registered"),
        "{}",
        text(&again.stdout)
    );
}

async fn devices_are_imported_onto_the_tenants_gateways(db: TestDb) {
    let tds = Tds::new(Some(&db.url));
    tds.ok(&["tenant", "create", "--name", "Acme"]);
    tds.ok(&["tenant", "create", "--name", "Other"]);
    let gws = tds.file("g.csv", "aa:bb:cc:00:00:01,GW1,Bloco A\n");
    tds.ok(&["gateway", "import", "--tenant", "Acme", gws.to_str().unwrap()]);
    let other = tds.file("o.csv", "aa:bb:cc:00:00:09,GW9,Alheio\n");
    tds.ok(&["gateway", "import", "--tenant", "Other", other.to_str().unwrap()]);

    let bad = tds.file(
        "bad.csv",
        "gateway_mac,code,name,type,medium,kind,unit,slave_id,register\n\
         aa:bb:cc:00:00:01,D01,Energia geral,MEDIDOR,energy,counter,kWh,1,40001\n\
         aa:bb:cc:00:00:01,D02,Água,MEDIDOR,water,counter,m3\n\
         aa:bb:cc:00:00:09,D03,Não é meu,SENSOR,other,gauge,°C\n\
         aa:bb:cc:00:00:01,D04,Temp,SENSOR,other,gauge,°C,300,1\n",
    );
    let out = tds.run(&["device", "import", "--tenant", "Acme", bad.to_str().unwrap()], "");
    let stdout = text(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.contains("line 3: ERROR Modbus slave id is required"), "{stdout}");
    assert!(
        stdout.contains("line 4: ERROR no gateway with MAC aa:bb:cc:00:00:09 in this tenant"),
        "{stdout}"
    );
    assert!(stdout.contains("line 5: ERROR Modbus slave id 300 is out of range"), "{stdout}");
    let acme = db.store.tenants().staff_by_name("Acme").await.unwrap();
    assert!(db.store.devices().list(acme.id).await.unwrap().is_empty());

    let good = tds.file(
        "good.csv",
        "aa:bb:cc:00:00:01,D01,Energia geral,MEDIDOR,energy,counter,kWh,1,40001\n\
         aa:bb:cc:00:00:01,d02,Água,meter,agua,counter,m3,2,1\n\
         aa:bb:cc:00:00:01,D03,Temperatura,SENSOR,other,gauge,degC\n",
    );
    let out = tds.ok(&["device", "import", "--tenant", "Acme", good.to_str().unwrap()]);
    assert!(out.contains("imported 3 devices"), "{out}");
    let devices = db.store.devices().list(acme.id).await.unwrap();
    let summary: Vec<_> =
        devices.iter().map(|d| (d.code.as_str().to_owned(), d.unit.as_str().to_owned())).collect();
    assert_eq!(
        summary,
        vec![("D01".into(), "kWh".into()), ("D02".into(), "m³".into()), ("D03".into(), "°C".into())]
    );
}

/// `tds token create` prints a secret that authenticates as the token; `list` shows it without
/// the secret; `revoke` ends it at once; an expiry day is the tenant's whole day.
async fn api_tokens_are_created_listed_and_revoked(db: TestDb) {
    let tds = Tds::new(Some(&db.url));
    tds.ok(&["tenant", "create", "--name", "Acme", "--timezone", "America/Sao_Paulo"]);
    let secret = tds.ok(&["token", "create", "--tenant", "Acme", "--name", "erp", "--role", "viewer"]);
    let secret = secret.trim();
    assert!(secret.starts_with("tds_") && secret.len() == 68, "{secret}");
    let now = chrono::Utc::now();
    let token = db.store.api_tokens().authenticate(&tds_web::api_token::hash(secret), now).await.unwrap();
    assert_eq!((token.name.as_str(), token.role), ("erp", tds_domain::Role::Viewer));

    tds.ok(&[
        "token",
        "create",
        "--tenant",
        "Acme",
        "--name",
        "bi",
        "--role",
        "editor",
        "--expires",
        "2031-01-31",
    ]);
    let acme = db.store.tenants().staff_by_name("Acme").await.unwrap();
    let bi = db.store.api_tokens().by_name(acme.id, "bi").await.unwrap();
    assert_eq!(bi.expires_at.unwrap().to_rfc3339(), "2031-02-01T03:00:00+00:00", "through the local day");
    let dup = tds.run(&["token", "create", "--tenant", "Acme", "--name", "erp", "--role", "admin"], "");
    assert!(!dup.status.success() && text(&dup.stderr).contains("already exists"), "{}", text(&dup.stderr));
    let bad = tds.run(&["token", "create", "--tenant", "Acme", "--name", "x", "--role", "owner"], "");
    assert!(!bad.status.success());

    let list = tds.ok(&["token", "list", "--tenant", "Acme"]);
    assert!(list.contains("erp") && list.contains("bi") && list.contains("active"), "{list}");
    assert!(!list.contains(&secret[12..]), "the secret is never listed");
    tds.ok(&["token", "revoke", "--tenant", "Acme", "--name", "erp"]);
    assert!(db.store.api_tokens().authenticate(&tds_web::api_token::hash(secret), now).await.is_err());
    assert!(tds.ok(&["token", "list"]).contains("revoked"));

    // A staff token: no tenant, no role, its own scheme; listed with the others; revoked by name.
    let staff = tds.ok(&["token", "create", "--staff", "--name", "ops", "--expires", "2031-01-31"]);
    let staff = staff.trim();
    assert!(staff.starts_with("tds_staff_") && staff.len() == 74, "{staff}");
    let k = db.store.staff_tokens().staff_authenticate(&tds_web::api_token::hash(staff), now).await.unwrap();
    assert_eq!(
        (k.name.as_str(), k.expires_at.unwrap().to_rfc3339().as_str()),
        ("ops", "2031-02-01T00:00:00+00:00")
    );
    assert!(
        !tds.run(&["token", "create", "--staff", "--tenant", "Acme", "--name", "x"], "").status.success(),
        "one kind or the other"
    );
    assert!(
        !tds.run(&["token", "create", "--name", "x"], "").status.success(),
        "a tenant token needs its tenant"
    );
    assert!(tds.ok(&["token", "list"]).contains("(staff)"));
    tds.ok(&["token", "revoke", "--staff", "--name", "ops"]);
    assert!(db.store.staff_tokens().staff_authenticate(&tds_web::api_token::hash(staff), now).await.is_err());
}

per_backend!(
    api_tokens_are_created_listed_and_revoked,
    tenants_are_created_and_listed,
    a_user_is_created_with_the_password_from_stdin,
    a_gateway_import_with_one_bad_mac_reports_that_row_and_imports_nothing,
    devices_are_imported_onto_the_tenants_gateways,
);
