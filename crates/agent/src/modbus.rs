//! Modbus polling: decoding registers into values (every type and word order of SPEC §10), and
//! one [`Bus`] per configured bus that reads its meters with a per-request timeout and retries.
//! A failure is kept to its meter (and a broken connection to its bus): the caller polls the
//! buses concurrently, so a silent meter or a dead bus never holds up the others.

use crate::config::{BusConfig, BusKind, Function, MeterConfig, Parity, ValueType, WordOrder};
use std::time::Duration;
use tokio_modbus::Slave;
use tokio_modbus::client::{Context, Reader};

/// Why a meter could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    #[error("cannot open the bus: {0}")]
    Connect(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("Modbus exception: {0}")]
    Exception(String),
    #[error("transport error: {0}")]
    Transport(String),
    #[error("expected {expected} registers, got {got}")]
    Short { expected: u16, got: usize },
}

/// Turns the registers read for a value of type `ty` into a number (before scaling).
/// `words` must hold exactly `ty.words()` registers.
pub fn decode(words: &[u16], ty: ValueType, order: WordOrder) -> Result<f64, ReadError> {
    let n = usize::from(ty.words());
    if words.len() != n {
        return Err(ReadError::Short { expected: ty.words(), got: words.len() });
    }
    // Most significant word first, whatever the device's order.
    let mut ordered = [0u16; 4];
    for (i, w) in words.iter().enumerate() {
        let at = match order {
            WordOrder::Big => i,
            WordOrder::Little => n - 1 - i,
        };
        ordered[at] = *w;
    }
    let wide = ordered[..n].iter().fold(0u64, |acc, w| (acc << 16) | u64::from(*w));
    Ok(match ty {
        ValueType::U16 | ValueType::U32 | ValueType::U64 => wide as f64,
        ValueType::I16 => f64::from(wide as u16 as i16),
        ValueType::I32 => f64::from(wide as u32 as i32),
        ValueType::F32 => f64::from(f32::from_bits(wide as u32)),
        ValueType::F64 => f64::from_bits(wide),
    })
}

/// The registers that represent `value` (for test servers and `scan` round trips).
pub fn encode(value: f64, ty: ValueType, order: WordOrder) -> Vec<u16> {
    let wide: u64 = match ty {
        ValueType::U16 => u64::from(value as u16),
        ValueType::I16 => u64::from(value as i16 as u16),
        ValueType::U32 => u64::from(value as u32),
        ValueType::I32 => u64::from(value as i32 as u32),
        ValueType::U64 => value as u64,
        ValueType::F32 => u64::from((value as f32).to_bits()),
        ValueType::F64 => value.to_bits(),
    };
    let n = usize::from(ty.words());
    let mut words: Vec<u16> = (0..n).map(|i| (wide >> (16 * (n - 1 - i))) as u16).collect();
    if order == WordOrder::Little {
        words.reverse();
    }
    words
}

/// One bus: its settings and, while it works, its open connection.
pub struct Bus {
    pub config: BusConfig,
    ctx: Option<Context>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus").field("config", &self.config).field("connected", &self.ctx.is_some()).finish()
    }
}

impl Bus {
    pub fn new(config: BusConfig) -> Self {
        Self { config, ctx: None }
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.timeout_ms)
    }

    /// Opens the bus. A free function of the settings, not a method: a `&Bus` held across an
    /// await would make the poll future need `Bus: Sync`, which tokio-modbus's context is not.
    async fn connect(c: &BusConfig) -> Result<Context, ReadError> {
        let timeout = Duration::from_millis(c.timeout_ms);
        match c.kind {
            BusKind::Tcp => {
                let host = c.host.clone().unwrap_or_default();
                let port = c.port.unwrap_or(502);
                let connect = async {
                    let stream = tokio::net::TcpStream::connect((host.as_str(), port))
                        .await
                        .map_err(|e| ReadError::Connect(format!("{host}:{port}: {e}")))?;
                    let _ = stream.set_nodelay(true);
                    Ok(tokio_modbus::client::tcp::attach(stream))
                };
                tokio::time::timeout(timeout, connect).await.map_err(|_| {
                    ReadError::Connect(format!("{host}:{port}: no connection within {timeout:?}"))
                })?
            }
            BusKind::Rtu => {
                let device = c.device.clone().unwrap_or_default();
                let builder = tokio_serial::new(device.to_string_lossy(), c.baud)
                    .parity(match c.parity {
                        Parity::None => tokio_serial::Parity::None,
                        Parity::Even => tokio_serial::Parity::Even,
                        Parity::Odd => tokio_serial::Parity::Odd,
                    })
                    .stop_bits(if c.stop_bits == 2 {
                        tokio_serial::StopBits::Two
                    } else {
                        tokio_serial::StopBits::One
                    })
                    .data_bits(tokio_serial::DataBits::Eight);
                let port = tokio_serial::SerialStream::open(&builder)
                    .map_err(|e| ReadError::Connect(format!("{}: {e}", device.display())))?;
                Ok(tokio_modbus::client::rtu::attach(port))
            }
        }
    }

    /// One request, within the timeout. On TCP a timeout or transport error drops the
    /// connection, so that a late answer is not taken for the answer to the next request; a
    /// serial line has no connection to renew (the RTU client checks that an answer's slave and
    /// function match its request), so only a transport error reopens it.
    async fn request(&mut self, meter: &MeterConfig) -> Result<Vec<u16>, ReadError> {
        if self.ctx.is_none() {
            self.ctx = Some(Self::connect(&self.config).await?);
        }
        let timeout = self.timeout();
        let Some(ctx) = self.ctx.as_mut() else { return Err(ReadError::Connect("not connected".into())) };
        tokio_modbus::slave::SlaveContext::set_slave(ctx, Slave(meter.slave));
        let count = meter.value_type.words();
        let call = async {
            match meter.function {
                Function::Holding => ctx.read_holding_registers(meter.register, count).await,
                Function::Input => ctx.read_input_registers(meter.register, count).await,
            }
        };
        match tokio::time::timeout(timeout, call).await {
            Err(_) => {
                if self.config.kind == BusKind::Tcp {
                    self.ctx = None;
                }
                Err(ReadError::Timeout(timeout))
            }
            Ok(Err(e)) => {
                self.ctx = None;
                Err(ReadError::Transport(e.to_string()))
            }
            Ok(Ok(Err(exception))) => Err(ReadError::Exception(exception.to_string())),
            Ok(Ok(Ok(words))) => Ok(words),
        }
    }

    /// Reads `meter` (scaled), trying `retries` more times after a failure.
    pub async fn read(&mut self, meter: &MeterConfig) -> Result<f64, ReadError> {
        let mut last = ReadError::Connect("not tried".into());
        for attempt in 0..=self.config.retries {
            if attempt > 0 {
                // A short pause lets a busy RS-485 line settle before the retry.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            match self.request(meter).await {
                Ok(words) => {
                    let raw = decode(&words, meter.value_type, meter.word_order)?;
                    return Ok(raw * meter.scale);
                }
                Err(e @ ReadError::Exception(_)) => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_in_both_word_orders() {
        let cases = [
            (ValueType::U16, 65_535.0),
            (ValueType::I16, -12_345.0),
            (ValueType::U32, 4_000_000_000.0),
            (ValueType::I32, -2_000_000_000.0),
            (ValueType::U64, 9_007_199_254_740_993.0_f64.floor()),
            (ValueType::F32, 1234.5),
            (ValueType::F64, -0.000_123_456_789),
        ];
        for (ty, v) in cases {
            for order in [WordOrder::Big, WordOrder::Little] {
                let words = encode(v, ty, order);
                assert_eq!(decode(&words, ty, order).unwrap(), v, "{ty:?} {order:?}");
            }
        }
    }

    #[test]
    fn word_order_is_the_order_of_the_16_bit_words() {
        assert_eq!(decode(&[0x0001, 0x0002], ValueType::U32, WordOrder::Big).unwrap(), 65_538.0);
        assert_eq!(decode(&[0x0002, 0x0001], ValueType::U32, WordOrder::Little).unwrap(), 65_538.0);
        assert!(decode(&[1], ValueType::U32, WordOrder::Big).is_err());
    }
}
