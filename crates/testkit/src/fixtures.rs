//! Ready-made rows for tests: a tenant, a gateway, a device, a user, with sensible defaults.

use chrono::{DateTime, Duration, Utc};
use tds_domain::limits::ScaleFactor;
use tds_domain::{
    Description, DeviceCode, DeviceMode, DeviceStatus, DeviceType, Email, GatewayCode, Mac, MeasurementKind,
    Medium, ModbusRegister, Name, Role, SlaveId, TenantId, Unit,
};
use tds_store::Store;
use tds_store::devices::{Device, DeviceFields};
use tds_store::gateways::{Gateway, GatewayFields};
use tds_store::tenants::{NewTenant, Tenant};
use tds_store::users::{NewUser, User};

/// `n` instants, in order, within `span` before `now` and not before the start of `now`'s local
/// day in `tz`: a day's consumption taken from readings at them is theirs alone at whatever hour
/// the tests run. (Readings at fixed offsets before `now` fell on the previous local day during
/// each day's first minutes, and the tests that expected today's consumption failed then.)
pub fn instants_today(
    tz: tds_domain::TimeZone,
    now: DateTime<Utc>,
    span: Duration,
    n: i32,
) -> Vec<DateTime<Utc>> {
    let day = tds_domain::buckets::bucket_start(tz, tds_domain::Bucket::Day, now);
    let start = day.max(now - span);
    let step = (now - start) / (n + 1);
    (1..=n).map(|i| start + step * i).collect()
}

pub async fn tenant(store: &Store, name: &str) -> Tenant {
    store
        .tenants()
        .staff_create(&NewTenant::named(Name::parse("name", name).unwrap()))
        .await
        .expect("create tenant")
}

pub fn gateway_fields(code: &str) -> GatewayFields {
    GatewayFields::new(
        GatewayCode::parse(code).unwrap(),
        Name::parse("name", &format!("Gateway {code}")).unwrap(),
    )
}

pub async fn gateway(store: &Store, tenant: TenantId, mac: &str, code: &str) -> Gateway {
    store
        .gateways()
        .create(tenant, Mac::parse(mac).unwrap(), &gateway_fields(code), None)
        .await
        .expect("create gateway")
}

/// An active energy counter in kWh, Modbus slave 1 register 1.
pub fn meter_fields(code: &str) -> DeviceFields {
    DeviceFields {
        code: DeviceCode::parse(code).unwrap(),
        mac: None,
        name: Name::parse("name", &format!("Medidor {code}")).unwrap(),
        description: Description::default(),
        device_type: DeviceType::Meter,
        medium: Medium::Energy,
        kind: MeasurementKind::Counter,
        unit: Unit::parse("kWh").unwrap(),
        scale_factor: ScaleFactor::default(),
        rollover_value: None,
        slave_id: Some(SlaveId::new(1).unwrap()),
        register: Some(ModbusRegister::new(1).unwrap()),
        mode: DeviceMode::Auto,
        status: DeviceStatus::Active,
        alarm_daily: None,
        alarm_monthly: None,
    }
}

pub async fn meter(store: &Store, tenant: TenantId, gateway: &Gateway, code: &str) -> Device {
    store.devices().create(tenant, gateway.id, &meter_fields(code), None).await.expect("create device")
}

pub async fn user(store: &Store, email: &str) -> User {
    store
        .users()
        .create(&NewUser {
            email: Email::parse(email).unwrap(),
            display_name: Name::parse("name", email.split('@').next().unwrap_or("user")).unwrap(),
            password_hash: None,
            language: "pt-BR".into(),
            is_staff: false,
            created_by: None,
        })
        .await
        .expect("create user")
}

pub async fn member(store: &Store, tenant: TenantId, email: &str, role: Role) -> User {
    let u = user(store, email).await;
    store.memberships().add(tenant, u.id, role, None).await.expect("add member");
    u
}
