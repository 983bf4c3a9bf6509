//! Times a factory batch: `cargo run --release -p tds-pki --example batch_timing -- [COUNT] [rsa4096|ecdsa-p384] [rsa2048|ecdsa-p256] [OUT_DIR]`.
//! With `OUT_DIR`, writes the CA, a CRL revoking the first certificate, and each certificate and
//! bundle there, for inspection with openssl.

use std::error::Error;
use std::time::Instant;
use tds_domain::Mac;
use tds_pki::{BrokerInfo, Ca, CaAlgorithm, CaSubject, DeviceKeyKind, RevocationReason, RevokedEntry};

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let count: u16 = args.next().map_or(Ok(100), |s| s.parse())?;
    let ca_algorithm: CaAlgorithm = args.next().map_or(Ok(CaAlgorithm::default()), |s| s.parse())?;
    let kind: DeviceKeyKind = args.next().map_or(Ok(DeviceKeyKind::default()), |s| s.parse())?;
    let out = args.next();

    let started = Instant::now();
    let ca = Ca::create(&CaSubject::default(), ca_algorithm, 20)?;
    println!("CA {} created in {:.2?}", ca.key_algorithm(), started.elapsed());

    let macs: Vec<Mac> =
        (0..count).map(|i| Mac::from_bytes([0x24, 0x0a, 0xc4, 0, (i >> 8) as u8, i as u8])).collect();
    let started = Instant::now();
    let issued = tds_pki::issue_batch(&ca, &macs, kind, tds_pki::DEFAULT_DEVICE_VALIDITY_DAYS)?;
    let elapsed = started.elapsed();
    println!(
        "{} {} device certificates in {elapsed:.2?} ({:.1} ms each, worker threads: {})",
        issued.len(),
        kind.key_algorithm(),
        elapsed.as_secs_f64() * 1000.0 / f64::from(count.max(1)),
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
    );

    if let Some(dir) = out {
        let dir = std::path::Path::new(&dir);
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("ca.crt"), ca.cert_pem())?;
        let now = chrono::Utc::now();
        if let Some(first) = issued.first() {
            let crl = ca.issue_crl(
                &[RevokedEntry {
                    serial_hex: first.serial_hex.clone(),
                    revoked_at: now,
                    reason: RevocationReason::KeyCompromise,
                }],
                1,
                now,
                now + chrono::TimeDelta::days(7),
            )?;
            std::fs::write(dir.join("crl.pem"), &crl.pem)?;
        }
        for cert in &issued {
            let stem = cert.mac.to_string().replace(':', "-");
            std::fs::write(dir.join(format!("{stem}.crt")), &cert.cert_pem)?;
            let zip = tds_pki::bundle_zip(cert, ca.cert_pem(), &BrokerInfo::new("localhost"))?;
            std::fs::write(dir.join(tds_pki::bundle_file_name(cert.mac)), zip)?;
        }
        println!("wrote {} certificates and bundles to {}", issued.len(), dir.display());
    }
    Ok(())
}
