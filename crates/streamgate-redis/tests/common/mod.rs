//! A real `redis-server` for the tests: started on a free loopback port,
//! killed on drop.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

/// How long a server may take to start; a bound, not a measurement.
const START: Duration = Duration::from_secs(10);

pub struct RedisServer {
    port: u16,
    password: Option<String>,
    /// The folder of `ca.crt`, `server.crt` and `server.key`: TLS only.
    tls: Option<PathBuf>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server, or `None` (after saying why) when `redis-server`
    /// is not installed.
    pub async fn start() -> Option<Self> {
        Self::start_with_password(None).await
    }

    pub async fn start_with_password(password: Option<&str>) -> Option<Self> {
        Self::start_with(password, None).await
    }

    /// Starts a server that speaks TLS only, with the certificates in
    /// `dir` (see [`certificates`]).
    pub async fn start_tls(password: Option<&str>, dir: &Path) -> Option<Self> {
        Self::start_with(password, Some(dir.to_owned())).await
    }

    async fn start_with(password: Option<&str>, tls: Option<PathBuf>) -> Option<Self> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            eprintln!("SKIPPED: redis-server is not installed (apt-get install redis-server)");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Self {
            port,
            password: password.map(str::to_owned),
            tls,
            child: None,
        };
        server.restart().await;
        Some(server)
    }

    /// The URL to connect to, with the password if there is one.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        match &self.password {
            Some(password) => format!("{scheme}://:{password}@127.0.0.1:{}/", self.port),
            None => format!("{scheme}://127.0.0.1:{}/", self.port),
        }
    }

    /// Kills the server (its data is gone: nothing is persisted).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and waits until it accepts
    /// connections.
    pub async fn restart(&mut self) {
        self.kill();
        let mut command = Command::new("redis-server");
        match &self.tls {
            None => command.args(["--port", &self.port.to_string()]),
            Some(dir) => command
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .arg("--tls-cert-file")
                .arg(dir.join("server.crt"))
                .arg("--tls-key-file")
                .arg(dir.join("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(dir.join("ca.crt"))
                .args(["--tls-auth-clients", "no"]),
        };
        command
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        if major_version() >= 7 {
            // DEBUG SLEEP stands in for a slow server (off by default since 7).
            command.args(["--enable-debug-command", "local"]);
        }
        self.child = Some(command.spawn().expect("redis-server starts"));
        let deadline = tokio::time::Instant::now() + START;
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Runs one command with `redis-cli`-like simplicity over the crate's
    /// own client.
    pub async fn command(&self, args: &[&str]) -> redis::RedisResult<redis::Value> {
        let client = redis::Client::open(self.url())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query_async(&mut conn).await
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits (bounded) until `condition` holds; panics with `what` if it never
/// does. A bound, not a timing threshold.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + START;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The installed server's major version (0 if unknown).
fn major_version() -> u32 {
    let output = Command::new("redis-server").arg("--version").output();
    let text = output.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    text.ok()
        .and_then(|text| {
            let version = text.split("v=").nth(1)?;
            version.split('.').next()?.parse().ok()
        })
        .unwrap_or(0)
}

/// Writes a certificate authority (`ca.crt`) and a server certificate for
/// 127.0.0.1 signed by it (`server.crt`, `server.key`) into `dir`, with the
/// `openssl` tool; `false` (after saying why) when it is not installed.
pub fn certificates(dir: &Path) -> bool {
    if Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("SKIPPED: openssl is not installed");
        return false;
    }
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "1",
            "-subj",
            "/CN=streamgate test ca",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "1",
            "-extfile",
            "ext",
        ],
    ];
    for args in steps {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "openssl {args:?}");
    }
    true
}
