//! The provisioning bundle handed to whoever flashes a gateway: a ZIP with `ca.crt`, `client.crt`,
//! `client.key`, `nvs.csv` (input of ESP-IDF's `nvs_partition_gen.py`) and a `README.txt` in
//! Brazilian Portuguese and English with the broker address, the client id, the gateway's topics
//! and the NVS flashing steps. A certificate signed from a CSR has no key here and is not bundled.

use crate::device::IssuedCertificate;
use crate::error::{PkiError, Result};
use chrono::{Datelike, Timelike, Utc};
use std::io::{Cursor, Write};
use tds_domain::{Mac, Topic};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// MQTT over TLS (SPEC §2).
pub const DEFAULT_MQTT_TLS_PORT: u16 = 8883;
/// The ESP32 NVS layout the firmware reads (SPEC §3).
pub const NVS_PARTITION: &str = "certs";
pub const NVS_NAMESPACE: &str = "ns_certs";

/// Where the gateway connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub host: String,
    pub port: u16,
}

impl BrokerInfo {
    /// `host` on the MQTT TLS port 8883.
    pub fn new(host: impl Into<String>) -> Self {
        Self { host: host.into(), port: DEFAULT_MQTT_TLS_PORT }
    }
}

/// The bundle's file name: the MAC with `-` separators (`aa-bb-cc-dd-ee-ff.zip`), because `:` is
/// not allowed in Windows file names; `Mac::parse` reads it back.
pub fn bundle_file_name(mac: Mac) -> String {
    format!("{}.zip", mac.to_string().replace(':', "-"))
}

/// `nvs.csv` for `nvs_partition_gen.py`: the three PEM files as NUL-terminated strings in
/// namespace `ns_certs`, paths relative to the unpacked bundle.
pub fn nvs_csv() -> String {
    format!(
        "key,type,encoding,value\n\
         {NVS_NAMESPACE},namespace,,\n\
         ca_crt,file,string,ca.crt\n\
         client_crt,file,string,client.crt\n\
         client_key,file,string,client.key\n"
    )
}

/// The bundle's README (pt-BR, then English).
pub fn readme(issued: &IssuedCertificate, broker: &BrokerInfo) -> String {
    let mac = issued.mac;
    let host = &broker.host;
    let port = broker.port;
    let telemetry = Topic::Telemetry(mac);
    let status = Topic::Status(mac);
    let cert_update = Topic::CertUpdate(mac);
    let cert_csr = Topic::CertCsr(mac);
    let from = issued.not_before.format("%Y-%m-%d");
    let until = issued.not_after.format("%Y-%m-%d");
    let serial = &issued.serial_hex;
    let fingerprint = &issued.fingerprint_sha256;
    let key = &issued.key_algorithm;
    let gen_old = "python $IDF_PATH/components/nvs_flash/nvs_partition_gen/nvs_partition_gen.py generate nvs.csv certs.bin 0x6000";
    let gen_new = "python -m esp_idf_nvs_partition_gen generate nvs.csv certs.bin 0x6000";
    let flash = "python $IDF_PATH/components/partition_table/parttool.py --port /dev/ttyUSB0 write_partition --partition-name=certs --input certs.bin";
    let esptool = "esptool.py --port /dev/ttyUSB0 write_flash 0x<offset> certs.bin";
    format!(
        "TDS — gateway {mac}
==========================================================================

=== Português (Brasil) ===

Este pacote contém a identidade do gateway {mac} na plataforma TDS.

Arquivos
  ca.crt      certificado da CA da plataforma (o gateway o usa para validar o servidor)
  client.crt  certificado do gateway: CN = {mac}, chave {key},
              válido de {from} até {until}, série {serial}
              SHA-256 {fingerprint}
  client.key  chave privada do gateway. MANTENHA EM SEGREDO: não envie por e-mail,
              não guarde em repositório; apague este pacote depois da gravação.
  nvs.csv     tabela para gerar a partição NVS com nvs_partition_gen.py
  README.txt  este arquivo

Conexão MQTT
  Servidor:   {host}, porta {port} (MQTT sobre TLS 1.2+, com certificado de cliente)
  Client ID:  {mac}
  Usuário e senha não são usados: a identidade é o certificado.

Tópicos (o gateway só pode usar os seus)
  publicar  {telemetry}
            leituras, QoS 1
  publicar  {status}
            \"online\" / \"offline\", retido; configure o last will com \"offline\" aqui
  assinar   {cert_update}
            certificado novo na renovação (retido até o gateway confirmar)
  publicar  {cert_csr}
            CSR, quando a plataforma pedir {{\"csr_required\":true}}

Gravação no ESP32 (NVS)
  O firmware lê, na partição \"{NVS_PARTITION}\" (tipo data, subtipo nvs na tabela de partições),
  namespace \"{NVS_NAMESPACE}\", as chaves:
    ca_crt      <- ca.crt
    client_crt  <- client.crt
    client_key  <- client.key
  1. Descompacte este pacote e abra um terminal na pasta, com o ambiente ESP-IDF ativo.
  2. Gere a imagem NVS (o último número é o tamanho da partição certs, por exemplo 0x6000):
       {gen_old}
     ou, nas versões recentes do ESP-IDF:
       {gen_new}
  3. Grave a imagem na partição certs (troque a porta serial se necessário):
       {flash}
     ou, com o offset da partição certs da sua tabela:
       {esptool}
  4. Reinicie o gateway. Ele deve conectar em {host}:{port} e publicar \"online\" em
     {status}.
  5. Apague certs.bin e este pacote.

=== English ===

This bundle holds the identity of gateway {mac} on the TDS platform.

Files
  ca.crt      the platform CA certificate (the gateway uses it to verify the server)
  client.crt  the gateway certificate: CN = {mac}, key {key},
              valid from {from} until {until}, serial {serial}
              SHA-256 {fingerprint}
  client.key  the gateway private key. KEEP IT SECRET: do not e-mail it or commit it;
              delete this bundle once the gateway is flashed.
  nvs.csv     the table nvs_partition_gen.py turns into the NVS partition image
  README.txt  this file

MQTT connection
  Server:     {host}, port {port} (MQTT over TLS 1.2+, with a client certificate)
  Client ID:  {mac}
  No username or password: the certificate is the identity.

Topics (a gateway may use only its own)
  publish    {telemetry}
             readings, QoS 1
  publish    {status}
             \"online\" / \"offline\", retained; set the last will to \"offline\" here
  subscribe  {cert_update}
             the new certificate on renewal (retained until the gateway confirms)
  publish    {cert_csr}
             a CSR, when the platform asks with {{\"csr_required\":true}}

Flashing the ESP32 (NVS)
  The firmware reads, from partition \"{NVS_PARTITION}\" (type data, subtype nvs in the partition
  table), namespace \"{NVS_NAMESPACE}\", the keys:
    ca_crt      <- ca.crt
    client_crt  <- client.crt
    client_key  <- client.key
  1. Unzip this bundle and open a terminal in its folder, with the ESP-IDF environment active.
  2. Build the NVS image (the last number is the size of the certs partition, e.g. 0x6000):
       {gen_old}
     or, with recent ESP-IDF versions:
       {gen_new}
  3. Write the image to the certs partition (change the serial port if needed):
       {flash}
     or, with the offset of the certs partition in your table:
       {esptool}
  4. Restart the gateway. It should connect to {host}:{port} and publish \"online\" on
     {status}.
  5. Delete certs.bin and this bundle.
"
    )
}

/// Builds the ZIP (deflate) for `issued`, trusting `ca_pem`, connecting to `broker`.
pub fn bundle_zip(issued: &IssuedCertificate, ca_pem: &str, broker: &BrokerInfo) -> Result<Vec<u8>> {
    let key_pem = issued.key_pem.as_deref().ok_or(PkiError::MissingPrivateKey(issued.mac))?;
    let zip_err = |e: &dyn std::fmt::Display| PkiError::Zip(e.to_string());
    let now = Utc::now();
    let mut options = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
    if let Ok(at) = zip::DateTime::from_date_and_time(
        u16::try_from(now.year()).unwrap_or(1980),
        now.month() as u8,
        now.day() as u8,
        now.hour() as u8,
        now.minute() as u8,
        now.second() as u8,
    ) {
        options = options.last_modified_time(at);
    }
    let files: [(&str, &str, u32); 5] = [
        ("README.txt", &readme(issued, broker), 0o644),
        ("ca.crt", ca_pem, 0o644),
        ("client.crt", &issued.cert_pem, 0o644),
        ("client.key", key_pem, 0o600),
        ("nvs.csv", &nvs_csv(), 0o644),
    ];
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    for (name, contents, mode) in files {
        zip.start_file(name, options.unix_permissions(mode)).map_err(|e| zip_err(&e))?;
        zip.write_all(contents.as_bytes()).map_err(|e| zip_err(&e))?;
    }
    Ok(zip.finish().map_err(|e| zip_err(&e))?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_file_names_have_no_colons() {
        let mac = Mac::parse("AA:BB:CC:DD:EE:FF").unwrap();
        assert_eq!(bundle_file_name(mac), "aa-bb-cc-dd-ee-ff.zip");
    }

    #[test]
    fn nvs_csv_declares_the_namespace_then_the_three_files() {
        let csv = nvs_csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "key,type,encoding,value");
        assert_eq!(lines[1], "ns_certs,namespace,,");
        assert_eq!(
            &lines[2..],
            [
                "ca_crt,file,string,ca.crt",
                "client_crt,file,string,client.crt",
                "client_key,file,string,client.key"
            ]
        );
    }
}
