//! `wacrm health`: asks a running `wacrm serve` whether it is ready, for a container's
//! HEALTHCHECK (the image carries no curl). Exit 0 when `/readyz` answers 2xx, 1 otherwise.

use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The address to probe for a service listening on `listen`: an unspecified address
/// (`0.0.0.0`, `[::]`) is reached on loopback.
pub fn probe_address(listen: &str) -> String {
    if let Some(port) = listen.strip_prefix("0.0.0.0:") {
        format!("127.0.0.1:{port}")
    } else if let Some(port) = listen.strip_prefix("[::]:") {
        format!("[::1]:{port}")
    } else {
        listen.to_owned()
    }
}

/// Sends `GET /readyz` to `address` and returns the status code.
pub async fn readiness(address: &str, timeout: Duration) -> anyhow::Result<u16> {
    let exchange = async {
        let mut stream = TcpStream::connect(address)
            .await
            .with_context(|| format!("nothing answers at {address}"))?;
        let request =
            format!("GET /readyz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        // The status line is all that is needed; a health answer is small.
        let mut head = vec![0u8; 256];
        let mut read = 0;
        while read < head.len() {
            let n = stream.read(&mut head[read..]).await?;
            if n == 0 || head[..read + n].contains(&b'\n') {
                read += n;
                break;
            }
            read += n;
        }
        let line = String::from_utf8_lossy(&head[..read]);
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok())
            .with_context(|| format!("{address} answered something that is not HTTP"))?;
        anyhow::Ok(status)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .with_context(|| format!("{address} did not answer within {timeout:?}"))?
}

/// Runs the command: Ok when the service is ready.
pub async fn run(listen: &str) -> anyhow::Result<()> {
    let address = probe_address(listen);
    let status = readiness(&address, Duration::from_secs(3)).await?;
    if !(200..300).contains(&status) {
        bail!("not ready: /readyz answered {status}");
    }
    println!("ready");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_listen_address_is_probed_on_loopback() {
        assert_eq!(probe_address("0.0.0.0:8080"), "127.0.0.1:8080");
        assert_eq!(probe_address("[::]:8080"), "[::1]:8080");
        assert_eq!(probe_address("10.0.0.5:8080"), "10.0.0.5:8080");
    }
}
