//! Reachability of the test PostgreSQL: read host and port from its URL by hand and probe
//! them over TCP. No PostgreSQL protocol here; the tests themselves connect properly.

use std::net::{TcpStream, ToSocketAddrs};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The environment variable the server's PostgreSQL tests read.
pub const URL_VAR: &str = "TIDESYNC_TEST_PG";

/// Used (and exported to the tests) when `TIDESYNC_TEST_PG` is unset.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Starts the Debian/Ubuntu cluster of whichever version is installed; run via `sh -c`.
pub const START_COMMAND: &str =
    "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start";

/// How long to keep probing before giving up (the server may still be starting).
pub const WAIT: Duration = Duration::from_secs(10);

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Host and port of a `postgres://[user[:password]@]host[:port][/db][?params]` URL.
///
/// A missing host means `localhost` and a missing port 5432, as for libpq. With several
/// comma-separated hosts only the first is used.
///
/// # Errors
///
/// Returns an error if the text is not a URL with a scheme, or the port is not a number.
pub fn host_port(url: &str) -> Result<(String, u16)> {
    let Some((_scheme, rest)) = url.split_once("://") else {
        bail!("expected a URL like {DEFAULT_URL}");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_and_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_user, host)| host);
    let first = host_and_port.split(',').next().unwrap_or_default();
    let (host, port) = if let Some(bracketed) = first.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .context("unclosed `[` in the host")?;
        (host, after.strip_prefix(':'))
    } else {
        match first.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (first, None),
        }
    };
    let port = match port {
        None | Some("") => 5432,
        Some(port) => port
            .parse()
            .with_context(|| format!("port `{port}` is not a number"))?,
    };
    let host = if host.is_empty() { "localhost" } else { host };
    Ok((host.to_owned(), port))
}

/// Whether a TCP connection to `host:port` succeeds within a second.
pub fn reachable(host: &str, port: u16) -> bool {
    let Ok(addresses) = (host, port).to_socket_addrs() else {
        return false;
    };
    addresses
        .into_iter()
        .any(|address| TcpStream::connect_timeout(&address, CONNECT_TIMEOUT).is_ok())
}

/// Probes once a second until `host:port` answers or `within` has passed.
pub fn wait_reachable(host: &str, port: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if reachable(host, port) {
            return true;
        }
        if Instant::now() + RETRY_PAUSE >= deadline {
            return false;
        }
        thread::sleep(RETRY_PAUSE);
    }
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn host_port_reads_the_usual_url_shapes() {
        let cases = [
            (
                "postgres://postgres@127.0.0.1:5432/test",
                ("127.0.0.1", 5432),
            ),
            (
                "postgresql://u:p%40ss@db.example:6543/x?sslmode=disable",
                ("db.example", 6543),
            ),
            ("postgres://localhost/test", ("localhost", 5432)),
            ("postgres://u@[::1]:5433/test", ("::1", 5433)),
            ("postgres:///test", ("localhost", 5432)),
            ("postgres://a:1,b:2/test", ("a", 1)),
        ];
        for (url, (host, port)) in cases {
            let parsed = host_port(url).unwrap();
            assert_eq!(parsed, (host.to_owned(), port), "{url}");
        }
    }

    #[test]
    fn host_port_rejects_garbage() {
        assert!(host_port("127.0.0.1:5432").is_err());
        assert!(host_port("postgres://h:notaport/db").is_err());
        assert!(host_port("postgres://[::1/db").is_err());
    }
}
