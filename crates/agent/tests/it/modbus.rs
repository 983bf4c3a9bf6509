//! Reading meters from a real Modbus TCP server: every type and word order, holding and input
//! registers, scale; a meter that never answers, one that answers slowly and a bus that is down
//! do not stop the others.

use crate::support::{ALL_TYPES, Behaviour, Meters, sample, serve_tcp, type_name};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tds_gateway::config::{Config, Function, WordOrder};
use tds_gateway::modbus::ReadError;

fn header(extra_buses: &str) -> String {
    format!(
        r#"mac = "02:00:00:00:00:01"
poll_seconds = 1
data_dir = "/tmp/unused"
[mqtt]
host = "localhost"
ca_file = "ca.crt"
cert_file = "client.crt"
key_file = "client.key"
{extra_buses}"#
    )
}

#[tokio::test]
async fn every_type_and_word_order_is_read_from_a_modbus_tcp_server() {
    let mut b = Behaviour::default();
    let mut meters = String::new();
    let mut expected = Vec::new();
    let mut register = 0u16;
    for function in [Function::Holding, Function::Input] {
        for ty in ALL_TYPES {
            for order in [WordOrder::Big, WordOrder::Little] {
                let value = sample(ty, order);
                b.set(function, 7, register, value, ty, order);
                let code = format!("M{register}");
                let f = if function == Function::Holding { "holding" } else { "input" };
                let o = if order == WordOrder::Big { "big" } else { "little" };
                writeln!(
                    meters,
                    "[[meter]]\ncode = \"{code}\"\nbus = \"lan\"\nslave = 7\nregister = {register}\nfunction = \"{f}\"\ntype = \"{}\"\nword_order = \"{o}\"\nscale = 0.5\nunit = \"kWh\"",
                    type_name(ty)
                )
                .unwrap();
                expected.push((code, value * 0.5));
                register += 10;
            }
        }
    }
    let addr = serve_tcp(Meters(Arc::new(Mutex::new(b)))).await;
    let text = header(&format!(
        "[[bus]]\nname = \"lan\"\nkind = \"tcp\"\nhost = \"127.0.0.1\"\nport = {}\n{meters}",
        addr.port()
    ));
    let config = Config::parse(&text, Path::new("t.toml")).unwrap();
    let got = tds_gateway::agent::scan(&config).await;
    assert_eq!(got.len(), expected.len());
    for ((meter, _, result), (code, value)) in got.iter().zip(&expected) {
        assert_eq!(&meter.code, code);
        assert_eq!(
            *result.as_ref().unwrap(),
            *value,
            "{code} ({:?} {:?})",
            meter.value_type,
            meter.word_order
        );
    }
}

#[tokio::test]
async fn a_silent_meter_a_slow_one_and_a_dead_bus_do_not_stop_the_others() {
    use tds_gateway::config::ValueType::U32;
    let mut b = Behaviour::default();
    b.set(Function::Holding, 1, 0, 111.0, U32, WordOrder::Big);
    b.set(Function::Holding, 3, 0, 333.0, U32, WordOrder::Big);
    b.set(Function::Holding, 4, 0, 444.0, U32, WordOrder::Big);
    b.silent.insert(2);
    b.slow.insert(3, Duration::from_millis(150));
    let addr = serve_tcp(Meters(Arc::new(Mutex::new(b)))).await;
    // A port nobody listens on: the whole bus is down.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let meter = |code: &str, bus: &str, slave: u8| {
        format!(
            "[[meter]]\ncode = \"{code}\"\nbus = \"{bus}\"\nslave = {slave}\nregister = 0\ntype = \"u32\"\n"
        )
    };
    let text = header(&format!(
        "[[bus]]\nname = \"lan\"\nkind = \"tcp\"\nhost = \"127.0.0.1\"\nport = {}\ntimeout_ms = 400\nretries = 1\n\
         [[bus]]\nname = \"down\"\nkind = \"tcp\"\nhost = \"127.0.0.1\"\nport = {dead}\ntimeout_ms = 400\nretries = 1\n{}{}{}{}{}",
        addr.port(),
        meter("GOOD1", "lan", 1),
        meter("SILENT", "lan", 2),
        meter("SLOW", "lan", 3),
        meter("GOOD4", "lan", 4),
        meter("LOST", "down", 1),
    ));
    let config = Config::parse(&text, Path::new("t.toml")).unwrap();
    let started = Instant::now();
    let got = tds_gateway::agent::scan(&config).await;
    let elapsed = started.elapsed();
    let by_code = |c: &str| got.iter().find(|(m, _, _)| m.code == c).map(|(_, _, r)| r.clone()).unwrap();
    assert_eq!(by_code("GOOD1").unwrap(), 111.0);
    assert_eq!(by_code("SLOW").unwrap(), 333.0);
    assert_eq!(by_code("GOOD4").unwrap(), 444.0, "the meter after the silent one is read");
    assert!(matches!(by_code("SILENT"), Err(ReadError::Timeout(_))), "{:?}", by_code("SILENT"));
    assert!(matches!(by_code("LOST"), Err(ReadError::Connect(_))), "{:?}", by_code("LOST"));
    // Two tries of 400 ms for the silent meter, plus the slow one: bounded, not stuck.
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
}
