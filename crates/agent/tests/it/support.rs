//! A Modbus server for the tests (tokio-modbus's server over TCP or a serial line) whose slaves
//! can be made silent or slow, and helpers to write agent configurations.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tds_gateway::config::{Function, ValueType, WordOrder};
use tokio_modbus::prelude::{ExceptionCode, Request, Response, SlaveRequest};

#[derive(Debug, Default)]
pub struct Behaviour {
    /// (function, slave, address) → register value.
    pub registers: HashMap<(Function, u8, u16), u16>,
    /// Slaves that never answer.
    pub silent: HashSet<u8>,
    /// Slaves that answer after a delay.
    pub slow: HashMap<u8, Duration>,
}

impl Behaviour {
    /// Puts `value` of type `ty` at `register` of `slave`.
    pub fn set(
        &mut self,
        function: Function,
        slave: u8,
        register: u16,
        value: f64,
        ty: ValueType,
        order: WordOrder,
    ) {
        for (i, w) in tds_gateway::modbus::encode(value, ty, order).into_iter().enumerate() {
            self.registers.insert((function, slave, register + i as u16), w);
        }
    }
}

#[derive(Debug, Clone)]
pub struct Meters(pub Arc<Mutex<Behaviour>>);

type Answer = Pin<Box<dyn Future<Output = Result<Option<Response>, ExceptionCode>> + Send>>;

impl tokio_modbus::server::Service for Meters {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Answer;

    fn call(&self, req: Self::Request) -> Self::Future {
        let b = self.0.lock().unwrap();
        if b.silent.contains(&req.slave) {
            // No reply at all, as a meter that is off or has another address.
            return Box::pin(async { Ok(None) });
        }
        let delay = b.slow.get(&req.slave).copied();
        let read = |f: Function, addr: u16, cnt: u16| -> Result<Vec<u16>, ExceptionCode> {
            (addr..addr + cnt)
                .map(|a| {
                    b.registers.get(&(f, req.slave, a)).copied().ok_or(ExceptionCode::IllegalDataAddress)
                })
                .collect()
        };
        let answer = match req.request {
            Request::ReadHoldingRegisters(addr, cnt) => {
                read(Function::Holding, addr, cnt).map(Response::ReadHoldingRegisters)
            }
            Request::ReadInputRegisters(addr, cnt) => {
                read(Function::Input, addr, cnt).map(Response::ReadInputRegisters)
            }
            _ => Err(ExceptionCode::IllegalFunction),
        };
        drop(b);
        Box::pin(async move {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            answer.map(Some)
        })
    }
}

/// Serves `meters` over Modbus TCP on a free local port until the runtime ends.
pub async fn serve_tcp(meters: Meters) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let server = tokio_modbus::server::tcp::Server::new(listener);
        let on_connected = move |stream, _addr| {
            let m = meters.clone();
            async move { Ok(Some((m, stream))) }
        };
        let _ = server.serve(&on_connected, |_e| {}).await;
    });
    addr
}

pub fn type_name(ty: ValueType) -> &'static str {
    match ty {
        ValueType::U16 => "u16",
        ValueType::I16 => "i16",
        ValueType::U32 => "u32",
        ValueType::I32 => "i32",
        ValueType::U64 => "u64",
        ValueType::F32 => "f32",
        ValueType::F64 => "f64",
    }
}

pub const ALL_TYPES: [ValueType; 7] = [
    ValueType::U16,
    ValueType::I16,
    ValueType::U32,
    ValueType::I32,
    ValueType::U64,
    ValueType::F32,
    ValueType::F64,
];

/// A value that exercises the type (sign, high words, fractions).
pub fn sample(ty: ValueType, order: WordOrder) -> f64 {
    let flip = if order == WordOrder::Little { 3.0 } else { 1.0 };
    match ty {
        ValueType::U16 => 60_000.0 + flip,
        ValueType::I16 => -30_000.0 - flip,
        ValueType::U32 => 4_000_000_000.0 + flip,
        ValueType::I32 => -2_000_000_000.0 - flip,
        ValueType::U64 => 1_234_567_890_123.0 + flip,
        ValueType::F32 => 1234.5 * flip,
        ValueType::F64 => -98_765.432_1 * flip,
    }
}
