//! The device endpoint's TLS stream: rustls's unbuffered API over a TCP socket, with buffers of
//! our own that are let go as soon as they are empty.
//!
//! Why not `tokio-rustls`: rustls's buffered connection keeps a 4 KiB receive buffer for the
//! whole life of a connection once it has read a record (it shrinks it to 4 KiB, never below),
//! and a gateway spends nearly all its life idle. At 10,000 connected gateways that buffer was
//! the largest single part of the server's memory. Here the TLS bytes received, the plaintext
//! not yet read and the TLS bytes not yet sent each live in a `Vec` that exists only while it
//! holds something; an idle gateway's stream is the socket and rustls's connection state.
//!
//! Reads and writes may come from two tasks (the session reads, its sender task writes, through
//! `tokio::io::split`). The socket keeps one waker per direction, so only the write side ever
//! waits for the socket to be writable: TLS bytes that reading makes rustls send (the alert of a
//! record it refused) are written without waiting and otherwise go out with the next write or
//! the shutdown.

use rustls::server::{ServerConfig, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, InsufficientSizeError};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// The most TLS bytes a peer may have us hold unprocessed: a handshake message may span several
/// records up to 64 KiB (rustls's own limit), a record is at most 16 KiB and change.
const MAX_INCOMING: usize = 64 * 1024 + 18 * 1024;

/// How much one read from the socket takes at most (on the stack, then into `incoming`).
const READ_CHUNK: usize = 16 * 1024;

/// A server-side TLS connection whose handshake is complete.
pub struct TlsStream {
    tcp: TcpStream,
    conn: UnbufferedServerConnection,
    /// TLS bytes received and not yet processed (a partial record).
    incoming: Vec<u8>,
    /// Plaintext received and not yet read, from `plain_at` on.
    plain: Vec<u8>,
    plain_at: usize,
    /// TLS bytes to send, from `out_at` on.
    outgoing: Vec<u8>,
    out_at: usize,
    /// The peer closed its side (`close_notify` or end of stream): reads return end of stream.
    peer_closed: bool,
    /// Where our `close_notify` is.
    close: OurClose,
    /// rustls refused what the peer sent: the connection is over (its alert is in `outgoing`).
    failed: bool,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream").field("peer", &self.tcp.peer_addr().ok()).finish_non_exhaustive()
    }
}

/// Our side's `close_notify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OurClose {
    Open,
    /// To be encrypted the next time application data may be sent.
    Asked,
    Queued,
}

/// What [`TlsStream::process`] reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reached {
    /// The handshake needs more bytes from the peer.
    Blocked,
    /// Application data may be sent (and `write`, if any, was encrypted into `outgoing`).
    Traffic,
    /// Both sides have closed.
    Closed,
}

fn tls_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// Runs `encode` into the end of `out`, growing it to the size it asks for.
fn append<E>(
    out: &mut Vec<u8>,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, E>,
    needs: impl Fn(&E) -> Option<usize>,
) -> Result<(), E> {
    let start = out.len();
    loop {
        match encode(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(e) => match needs(&e) {
                Some(required) if required > out.len() - start => out.resize(start + required, 0),
                _ => {
                    out.truncate(start);
                    return Err(e);
                }
            },
        }
    }
}

const fn encode_needs(e: &EncodeError) -> Option<usize> {
    match e {
        EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => Some(*required_size),
        EncodeError::AlreadyEncoded => None,
    }
}

const fn encrypt_needs(e: &EncryptError) -> Option<usize> {
    match e {
        EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => Some(*required_size),
        EncryptError::EncryptExhausted => None,
    }
}

/// Runs the TLS handshake on `tcp` as a server. The caller bounds it in time. A refused peer
/// (no certificate, an unknown CA, a revoked one) is sent rustls's alert before the error
/// returns.
pub async fn accept(tcp: TcpStream, config: Arc<ServerConfig>) -> io::Result<TlsStream> {
    let conn = UnbufferedServerConnection::new(config).map_err(tls_error)?;
    let mut tls = TlsStream {
        tcp,
        conn,
        incoming: Vec::new(),
        plain: Vec::new(),
        plain_at: 0,
        outgoing: Vec::new(),
        out_at: 0,
        peer_closed: false,
        close: OurClose::Open,
        failed: false,
    };
    loop {
        let reached = tls.process(None);
        tls.send_all().await?;
        match reached {
            Ok(Reached::Traffic) => return Ok(tls),
            Ok(Reached::Closed) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(Reached::Blocked) => {}
            Err(e) => {
                // rustls's alert, if the socket takes it at once.
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), tls.send_all()).await;
                return Err(e);
            }
        }
        if tls.incoming.len() >= MAX_INCOMING {
            return Err(tls_error("handshake message too large"));
        }
        tls.incoming.reserve(4096);
        if tls.tcp.read_buf(&mut tls.incoming).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

impl TlsStream {
    /// The certificates the client presented, its own first.
    pub fn peer_certificates(&self) -> Option<&[rustls::pki_types::CertificateDer<'static>]> {
        self.conn.peer_certificates()
    }

    /// The client resumed an earlier session (a ticket), so the certificate verifier was not
    /// called for this connection.
    pub fn resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
    }

    /// Lets rustls process the TLS bytes received: application data goes to `plain`, records
    /// rustls must send to `outgoing`; when application data may be sent, `write` (if any) is
    /// encrypted into `outgoing` and, once asked for, our `close_notify` after it. An error is
    /// final: the alert rustls queued for it goes to `outgoing` and rustls is not called again
    /// (it would read the refused bytes a second time).
    fn process(&mut self, mut write: Option<&[u8]>) -> io::Result<Reached> {
        let Self { conn, incoming, plain, outgoing, peer_closed, close, failed, .. } = self;
        if *failed {
            return Err(tls_error("the TLS connection failed"));
        }
        loop {
            let status = conn.process_tls_records(incoming);
            let mut discard = status.discard;
            let mut reached = None;
            let state = match status.state {
                Ok(state) => state,
                Err(e) => {
                    *failed = true;
                    incoming.drain(..discard.min(incoming.len()));
                    // The alert comes out of the next call, before rustls reads anything again.
                    if let Ok(ConnectionState::EncodeTlsData(mut alert)) =
                        conn.process_tls_records(incoming).state
                    {
                        let _ = append(outgoing, |out| alert.encode(out), encode_needs);
                    }
                    *incoming = Vec::new();
                    return Err(tls_error(e));
                }
            };
            match state {
                ConnectionState::ReadTraffic(mut read) => {
                    while let Some(record) = read.next_record() {
                        let record = record.map_err(tls_error).inspect_err(|_| *failed = true)?;
                        discard += record.discard;
                        plain.extend_from_slice(record.payload);
                    }
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    append(outgoing, |out| encode.encode(out), encode_needs)
                        .map_err(tls_error)
                        .inspect_err(|_| *failed = true)?;
                }
                // Sent by whoever writes next, before anything encrypted after it.
                ConnectionState::TransmitTlsData(transmit) => transmit.done(),
                ConnectionState::BlockedHandshake => reached = Some(Reached::Blocked),
                ConnectionState::PeerClosed => *peer_closed = true,
                ConnectionState::Closed => {
                    *peer_closed = true;
                    reached = Some(Reached::Closed);
                }
                ConnectionState::WriteTraffic(mut traffic) => {
                    if let Some(data) = write.take() {
                        append(outgoing, |out| traffic.encrypt(data, out), encrypt_needs)
                            .map_err(tls_error)
                            .inspect_err(|_| *failed = true)?;
                    }
                    if *close == OurClose::Asked {
                        *close = OurClose::Queued;
                        append(outgoing, |out| traffic.queue_close_notify(out), encrypt_needs)
                            .map_err(tls_error)
                            .inspect_err(|_| *failed = true)?;
                    }
                    reached = Some(Reached::Traffic);
                }
                // No early data is accepted (the server config allows none).
                other => {
                    *failed = true;
                    return Err(tls_error(format!("unexpected TLS state {other:?}")));
                }
            }
            if discard > 0 {
                incoming.drain(..discard);
            }
            if let Some(reached) = reached {
                if incoming.is_empty() {
                    *incoming = Vec::new();
                }
                return Ok(reached);
            }
        }
    }

    async fn send_all(&mut self) -> io::Result<()> {
        if self.out_at < self.outgoing.len() {
            self.tcp.write_all(&self.outgoing[self.out_at..]).await?;
        }
        self.outgoing = Vec::new();
        self.out_at = 0;
        Ok(())
    }

    /// Writes what is queued in `outgoing`, waiting for the socket (the write side only).
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_at < self.outgoing.len() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.outgoing[self.out_at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_at += n;
        }
        self.outgoing = Vec::new();
        self.out_at = 0;
        Poll::Ready(Ok(()))
    }

    /// Writes what is queued in `outgoing` as far as the socket takes it now (the read side,
    /// which must not wait for the socket to be writable: the write side's waker would be lost).
    fn try_send(&mut self) -> io::Result<()> {
        while self.out_at < self.outgoing.len() {
            match self.tcp.try_write(&self.outgoing[self.out_at..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out_at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        self.outgoing = Vec::new();
        self.out_at = 0;
        Ok(())
    }

    /// Hands out plaintext already decrypted; `false` when there is none.
    fn read_plain(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        let available = &self.plain[self.plain_at..];
        if available.is_empty() {
            return false;
        }
        let n = available.len().min(buf.remaining());
        buf.put_slice(&available[..n]);
        self.plain_at += n;
        if self.plain_at == self.plain.len() {
            self.plain = Vec::new();
            self.plain_at = 0;
        }
        true
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.read_plain(buf) || this.peer_closed || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if this.failed {
                return Poll::Ready(Err(tls_error("the TLS connection failed")));
            }
            // Whole records received are decrypted before reading more.
            if !this.incoming.is_empty() {
                let before = this.plain.len();
                let processed = this.process(None);
                // Whatever rustls queued (the alert of a refused record) goes before the error.
                let sent = this.try_send();
                processed?;
                sent?;
                if this.plain.len() > before || this.peer_closed {
                    continue;
                }
            }
            if this.incoming.len() >= MAX_INCOMING {
                return Poll::Ready(Err(tls_error("TLS record too large")));
            }
            // Not zeroed first: every poll of the socket would clear 16 KiB for nothing.
            let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut into = ReadBuf::uninit(&mut chunk);
            ready!(Pin::new(&mut this.tcp).poll_read(cx, &mut into))?;
            if into.filled().is_empty() {
                // End of stream without close_notify: the gateway went away; nothing it sent
                // after its last whole record is used.
                this.peer_closed = true;
                continue;
            }
            this.incoming.extend_from_slice(into.filled());
        }
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // What was queued before goes first; one write's worth is held at most.
        ready!(this.poll_send(cx))?;
        match this.process(Some(data))? {
            Reached::Traffic => {}
            Reached::Blocked | Reached::Closed => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
        // Accepted: what the socket does not take now goes with the next write or flush.
        match this.poll_send(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) | Poll::Pending => Poll::Ready(Ok(data.len())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        if this.close == OurClose::Open {
            this.close = OurClose::Asked;
            // Queues our close_notify (unless the connection is closed already).
            let _ = this.process(None);
            this.close = OurClose::Queued;
            ready!(this.poll_send(cx))?;
        }
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use tokio::net::TcpListener;

    type Client = tokio_rustls::client::TlsStream<TcpStream>;

    struct Keys {
        cert: CertificateDer<'static>,
        key: PrivateKeyDer<'static>,
    }

    fn keys() -> Keys {
        tds_testkit::tls_provider();
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        Keys {
            cert: CertificateDer::from(generated.cert.der().to_vec()),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(generated.signing_key.serialize_der())),
        }
    }

    fn roots(keys: &Keys) -> Arc<rustls::RootCertStore> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(keys.cert.clone()).unwrap();
        Arc::new(roots)
    }

    /// A server stream and a rustls client (tokio-rustls, not this module) connected to it.
    async fn connect(server: ServerConfig, keys: &Keys) -> (io::Result<TlsStream>, io::Result<Client>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Arc::new(server);
        let accepting = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            accept(tcp, server).await
        });
        let client =
            rustls::ClientConfig::builder().with_root_certificates(roots(keys)).with_no_client_auth();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let client = tokio_rustls::TlsConnector::from(Arc::new(client)).connect(name, tcp).await;
        (accepting.await.unwrap(), client)
    }

    async fn pair() -> (TlsStream, Client) {
        let keys = keys();
        let server = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![keys.cert.clone()], keys.key.clone_key());
        let (server, client) = connect(server.unwrap(), &keys).await;
        (server.unwrap(), client.unwrap())
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| u8::try_from(i * 7 % 251).unwrap()).collect()
    }

    #[tokio::test]
    async fn bytes_cross_both_ways_whole_and_in_order_whatever_the_read_sizes() {
        let (mut server, mut client) = pair().await;
        let sent = pattern(300_000);
        let client_side = async {
            client.write_all(&sent).await.unwrap();
            client.flush().await.unwrap();
            let mut back = vec![0u8; sent.len()];
            client.read_exact(&mut back).await.unwrap();
            back
        };
        let server_side = async {
            // Small reads, as an idle session makes: most of each record waits in `plain`.
            let mut got = Vec::new();
            let mut buf = [0u8; 512];
            while got.len() < sent.len() {
                let n = server.read(&mut buf).await.unwrap();
                assert!(n > 0, "end of stream after {} bytes", got.len());
                got.extend_from_slice(&buf[..n]);
            }
            for chunk in got.chunks(7_000) {
                server.write_all(chunk).await.unwrap();
            }
            server.flush().await.unwrap();
            got
        };
        let (back, got) = tokio::join!(client_side, server_side);
        assert!(got == sent, "the server read what the client wrote");
        assert!(back == sent, "the client read it back");
    }

    #[tokio::test]
    async fn an_idle_stream_holds_no_buffer() {
        let (mut server, mut client) = pair().await;
        client.write_all(b"CONNECT").await.unwrap();
        client.flush().await.unwrap();
        let mut buf = [0u8; 7];
        server.read_exact(&mut buf).await.unwrap();
        server.write_all(b"CONNACK").await.unwrap();
        server.flush().await.unwrap();
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"CONNACK");
        let held = server.incoming.capacity() + server.plain.capacity() + server.outgoing.capacity();
        assert_eq!(held, 0, "bytes of buffer kept by a stream with nothing in flight");
    }

    #[tokio::test]
    async fn a_key_update_asked_by_the_client_is_answered_and_traffic_goes_on() {
        let (mut server, mut client) = pair().await;
        client.write_all(b"before").await.unwrap();
        client.flush().await.unwrap();
        let mut buf = [0u8; 6];
        server.read_exact(&mut buf).await.unwrap();
        // The client sends KeyUpdate(update_requested): the server must answer with its own
        // before anything it encrypts with its new keys, or the client cannot read it.
        client.get_mut().1.refresh_traffic_keys().unwrap();
        client.write_all(b"after!").await.unwrap();
        client.flush().await.unwrap();
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"after!");
        server.write_all(b"answer").await.unwrap();
        server.flush().await.unwrap();
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"answer");
    }

    #[tokio::test]
    async fn close_notify_ends_the_stream_cleanly_both_ways() {
        let (mut server, mut client) = pair().await;
        client.shutdown().await.unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(server.read(&mut buf).await.unwrap(), 0, "the client's close_notify is the end");
        server.shutdown().await.unwrap();
        // tokio-rustls reports an end without close_notify as an error: this one is clean.
        assert_eq!(client.read(&mut buf).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn bytes_that_are_not_tls_are_refused_with_an_alert() {
        let keys = keys();
        let server = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![keys.cert.clone()], keys.key.clone_key())
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepting = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            accept(tcp, Arc::new(server)).await.map(|_| ())
        });
        let mut probe = TcpStream::connect(addr).await.unwrap();
        probe.write_all(b"GET / HTTP/1.1\r\nHost: tds\r\n\r\n").await.unwrap();
        assert!(accepting.await.unwrap().is_err());
        let mut answer = Vec::new();
        let _ = probe.read_to_end(&mut answer).await;
        // A TLS record of type 21 (alert), level 2 (fatal).
        assert_eq!(answer.first(), Some(&21), "the server answered {answer:?}");
        assert_eq!(answer.get(5), Some(&2), "the server answered {answer:?}");
    }

    #[tokio::test]
    async fn a_tampered_record_ends_the_stream_and_the_peer_hears_why() {
        let (mut server, mut client) = pair().await;
        // An application-data record that was not encrypted with the session's keys.
        let mut forged = vec![23, 3, 3, 0, 32];
        forged.extend_from_slice(&[7u8; 32]);
        client.get_mut().0.write_all(&forged).await.unwrap();
        let mut buf = [0u8; 8];
        assert!(server.read(&mut buf).await.is_err());
        assert!(server.read(&mut buf).await.is_err(), "a failed stream stays failed");
        let _ = server.shutdown().await;
        let heard = client.read(&mut buf).await.map_or_else(|e| e.to_string(), |n| format!("read {n} bytes"));
        assert!(heard.contains("BadRecordMac"), "the client heard: {heard}");
    }

    #[tokio::test]
    async fn a_client_refused_in_the_handshake_hears_why() {
        let keys = keys();
        let verifier = rustls::server::WebPkiClientVerifier::builder(roots(&keys)).build().unwrap();
        let server = ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![keys.cert.clone()], keys.key.clone_key())
            .unwrap();
        let (server, client) = connect(server, &keys).await;
        assert!(server.is_err(), "no client certificate: refused");
        // TLS 1.3: the client may finish before the server has judged its (missing)
        // certificate; the server's alert then ends its first read.
        let refused = match client {
            Err(e) => e.to_string(),
            Ok(mut client) => {
                let mut buf = [0u8; 8];
                client.read(&mut buf).await.map_or_else(|e| e.to_string(), |n| format!("read {n} bytes"))
            }
        };
        assert!(refused.contains("CertificateRequired"), "the client heard: {refused}");
    }
}
