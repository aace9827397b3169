//! One client connection to the real connection handler (`Server::serve_connection`)
//! over an in-memory pipe: no sockets and no other threads, so under tokio's paused
//! clock (`#[tokio::test(start_paused = true)]`) every deadline fires at its exact
//! time however loaded the machine is, and a test can say "between one and two
//! periods" instead of "within a generous bound".

use std::time::Duration;

use keyclaim_harness::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::time::Instant;

use super::http_check::{self, Answer};

/// Longer than any deadline these tests set: a wait past it is a hang. Under a paused
/// clock it costs nothing.
const HANG: Duration = Duration::from_secs(3_600);

/// The client's end. The halves are public so a test can write while it waits for the
/// server to let go (`served`).
pub struct Connection {
    pub from_server: ReadHalf<DuplexStream>,
    pub to_server: WriteHalf<DuplexStream>,
    /// Bytes read but not yet returned as an answer.
    unread: Vec<u8>,
    /// The server's side: ends the moment the server closes the connection.
    pub served: tokio::task::JoinHandle<()>,
}

/// Opens a connection to `server`; the server starts serving it at once (its
/// deadlines count from now).
pub fn connect(server: &Server) -> Connection {
    let (client, server_side) = tokio::io::duplex(64 * 1024);
    let server = server.clone();
    let served = tokio::spawn(async move { server.serve_connection(server_side).await });
    let (from_server, to_server) = tokio::io::split(client);
    Connection {
        from_server,
        to_server,
        unread: Vec::new(),
        served,
    }
}

impl Connection {
    /// Sends `bytes`; false when the server has closed the connection.
    pub async fn send(&mut self, bytes: &[u8]) -> bool {
        self.to_server.write_all(bytes).await.is_ok()
    }

    /// Reads one complete answer; fails the test if the connection closes first.
    pub async fn answer(&mut self) -> Answer {
        tokio::time::timeout(HANG, async {
            loop {
                if let Ok(mut answers) = http_check::parse_answers(&self.unread, false)
                    && answers.len() == 1
                {
                    self.unread.clear();
                    return answers.remove(0);
                }
                let mut chunk = [0; 4096];
                let read = self.from_server.read(&mut chunk).await.expect("read");
                assert!(read > 0, "closed mid-answer after {:?}", self.unread);
                self.unread.extend_from_slice(&chunk[..read]);
            }
        })
        .await
        .expect("an answer before the hang bound")
    }

    /// Reads until the server closes the connection; returns what it wrote on the way
    /// and when it closed.
    pub async fn closed(&mut self) -> (Vec<u8>, Instant) {
        let mut out = std::mem::take(&mut self.unread);
        tokio::time::timeout(HANG, self.from_server.read_to_end(&mut out))
            .await
            .expect("the server closes the connection before the hang bound")
            .ok();
        (out, Instant::now())
    }
}
