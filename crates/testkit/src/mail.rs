//! A real SMTP server for tests (mailin-embedded on 127.0.0.1:0) that keeps every message it
//! receives, shared by the web, jobs and end-to-end tests (invitations, resets, alert emails).

use mailin_embedded::{Handler, Response, Server};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// The SMTP sink; clones share the received messages.
#[derive(Debug, Clone)]
pub struct MailSink {
    pub addr: SocketAddr,
    messages: Arc<Mutex<Vec<String>>>,
}

#[derive(Clone)]
struct SinkHandler {
    current: Vec<u8>,
    messages: Arc<Mutex<Vec<String>>>,
}

impl Handler for SinkHandler {
    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.current.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let message = String::from_utf8_lossy(&std::mem::take(&mut self.current)).into_owned();
        self.messages.lock().unwrap().push(message);
        mailin_embedded::response::OK
    }
}

impl MailSink {
    pub fn start() -> Self {
        Self::start_at(0)
    }

    /// On a chosen port of 127.0.0.1 (0: any free one), e.g. one a server under test was told
    /// to use while nothing listened there yet.
    pub fn start_at(port: u16) -> Self {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let addr = listener.local_addr().unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let mut server = Server::new(SinkHandler { current: Vec::new(), messages: messages.clone() });
        server.with_name("sink.test").with_tcp_listener(listener);
        std::thread::spawn(move || {
            let _ = server.serve();
        });
        Self { addr, messages }
    }

    /// `smtp://127.0.0.1:PORT`, for `Mailer::smtp` or `smtp_url`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Waits (up to 10 s) for a message to `to` and returns it, decoded enough to read links.
    pub async fn wait_for(&self, to: &str) -> String {
        for _ in 0..200 {
            if let Some(m) = self.messages.lock().unwrap().iter().rev().find(|m| m.contains(to)) {
                return unfold(m);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("no email to {to} arrived");
    }

    pub fn count_to(&self, to: &str) -> usize {
        self.messages.lock().unwrap().iter().filter(|m| m.contains(to)).count()
    }

    /// Every message received so far, in order, decoded as by [`MailSink::wait_for`].
    /// Every message as received (MIME encodings kept: attachments stay decodable).
    pub fn raw_messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }

    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().iter().map(|m| unfold(m)).collect()
    }
}

/// Undoes quoted-printable soft line breaks and `=3D`, enough to read links and words.
fn unfold(message: &str) -> String {
    message.replace("=\r\n", "").replace("=3D", "=")
}
