//! A minimal HTTP/1.1 client for the verifier's own API and a node's job input (plain
//! `http://` only; put TLS in front with a proxy). Bounded: 30 s per request unless the
//! caller says otherwise, 4 MiB per answer.

use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(30);
const MAX_RESPONSE: u64 = 4 << 20;

/// `POST {base}{path}` with a JSON body; returns the status and the parsed JSON answer.
pub async fn post_json(
    base: &str,
    path: &str,
    body: &serde_json::Value,
) -> anyhow::Result<(u16, serde_json::Value)> {
    post_json_within(base, path, body, TIMEOUT).await
}

/// [`post_json`] with another time limit (for answers that take long to compute).
pub async fn post_json_within(
    base: &str,
    path: &str,
    body: &serde_json::Value,
    timeout: Duration,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let payload = serde_json::to_vec(body)?;
    let (status, body) = exchange(
        "POST",
        base,
        path,
        "Content-Type: application/json\r\n",
        &payload,
        timeout,
    )
    .await?;
    let json = serde_json::from_slice(&body)
        .with_context(|| format!("HTTP {status}: the answer is not JSON"))?;
    Ok((status, json))
}

/// `GET {base}{path}`; the status and the parsed JSON answer.
pub async fn get_json(base: &str, path: &str) -> anyhow::Result<(u16, serde_json::Value)> {
    let (status, body) = exchange("GET", base, path, "", &[], TIMEOUT).await?;
    let json = serde_json::from_slice(&body)
        .with_context(|| format!("HTTP {status}: the answer is not JSON"))?;
    Ok((status, json))
}

/// `GET {base}{path}`, with `Authorization: Bearer {api_key}` if given; the status and the
/// raw body.
pub async fn get_bytes(
    base: &str,
    path: &str,
    api_key: Option<&str>,
) -> anyhow::Result<(u16, Vec<u8>)> {
    let (status, body, _) = get_bytes_and_header(base, path, api_key, "").await?;
    Ok((status, body))
}

/// [`get_bytes`], and the value of the answer's header `name` (case-insensitive), if any.
pub async fn get_bytes_and_header(
    base: &str,
    path: &str,
    api_key: Option<&str>,
    name: &str,
) -> anyhow::Result<(u16, Vec<u8>, Option<String>)> {
    let auth = api_key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    let (status, body, head) = exchange_full("GET", base, path, &auth, &[], TIMEOUT).await?;
    let prefix = format!("{}:", name.to_ascii_lowercase());
    let value = head
        .lines()
        .find(|l| !name.is_empty() && l.to_ascii_lowercase().starts_with(&prefix))
        .map(|l| l[prefix.len()..].trim().to_owned());
    Ok((status, body, value))
}

async fn exchange(
    method: &str,
    base: &str,
    path: &str,
    headers: &str,
    payload: &[u8],
    timeout: Duration,
) -> anyhow::Result<(u16, Vec<u8>)> {
    let (status, body, _) = exchange_full(method, base, path, headers, payload, timeout).await?;
    Ok((status, body))
}

/// One request: the status, the body and the answer's header lines.
async fn exchange_full(
    method: &str,
    base: &str,
    path: &str,
    headers: &str,
    payload: &[u8],
    timeout: Duration,
) -> anyhow::Result<(u16, Vec<u8>, String)> {
    let rest = base
        .strip_prefix("http://")
        .with_context(|| format!("--url {base:?}: only http://host:port is supported"))?;
    let (authority, prefix) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if authority.is_empty() {
        bail!("--url {base:?} has no host");
    }
    let addr = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let head = format!(
        "{method} {prefix}{path} HTTP/1.1\r\nHost: {authority}\r\n{headers}\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    );
    let exchange = async {
        let mut stream = TcpStream::connect(&addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(payload).await?;
        let mut raw = Vec::new();
        stream.take(MAX_RESPONSE).read_to_end(&mut raw).await?;
        anyhow::Ok(raw)
    };
    let raw = tokio::time::timeout(timeout, exchange)
        .await
        .with_context(|| format!("{base} did not answer within {} s", timeout.as_secs()))??;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("malformed HTTP answer")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("malformed HTTP status line")?;
    let mut body = &raw[split + 4..];
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    let mut unchunked = Vec::new();
    if chunked {
        loop {
            let line_end = body
                .windows(2)
                .position(|w| w == b"\r\n")
                .context("malformed chunked body")?;
            let size_text = String::from_utf8_lossy(&body[..line_end]);
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .context("malformed chunk size")?;
            body = &body[line_end + 2..];
            if size == 0 {
                break;
            }
            let chunk = body.get(..size).context("truncated chunk")?;
            unchunked.extend_from_slice(chunk);
            body = body.get(size + 2..).context("truncated chunk")?;
        }
        body = &unchunked;
    }
    Ok((status, body.to_vec(), head))
}
