//! How the `sweep` CLI and `worker serve` reach the coordinator: the address
//! (`http://` or `https://`), the CA that signed the coordinator's certificate
//! (`--ca`), the token sent as `authorization: Bearer <token>` (`--token-file` or
//! `GRADSWEEP_TOKEN`), and one-line explanations of the transport failures a person
//! can fix (TLS on one side only, an untrusted certificate).

use std::path::Path;
use std::time::Duration;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};

/// The environment variable holding the token when `--token-file` is not given.
pub const TOKEN_ENV: &str = "GRADSWEEP_TOKEN";

/// The largest token file read, in bytes.
pub const MAX_TOKEN_FILE: u64 = 4096;

/// A channel that sends the token (if any) with every call.
pub type AuthChannel = InterceptedService<Channel, Bearer>;

/// Adds `authorization: Bearer <token>` to every call; without a token, nothing.
#[derive(Clone, Debug, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    /// The interceptor for `token` (`None`: send none). The token must be printable
    /// ASCII without spaces (checked by [`parse_token`]).
    pub fn new(token: Option<&str>) -> Result<Bearer, String> {
        token
            .map(|t| {
                format!("Bearer {t}")
                    .parse::<MetadataValue<Ascii>>()
                    .map_err(|_| "the token must be printable ASCII without spaces".to_owned())
            })
            .transpose()
            .map(Bearer)
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A token's text as read from a file or variable (`what` names it for errors):
/// trimmed, one line, not empty, printable ASCII without spaces.
pub fn parse_token(text: &str, what: &str) -> Result<String, String> {
    let token = text.trim();
    if token.is_empty() {
        return Err(format!(
            "{what} is empty: it must hold the token on one line"
        ));
    }
    if token.contains(['\n', '\r']) {
        return Err(format!(
            "{what} has more than one line: it must hold the token on one line"
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{what}: the token must be printable ASCII without spaces"
        ));
    }
    Ok(token.to_owned())
}

/// Reads a token file (`flag` names the flag, e.g. `--token-file`): one line, trimmed;
/// an empty, unreadable or oversized file is an error naming the flag and the file.
pub fn read_token_file(flag: &str, path: &Path) -> Result<String, String> {
    let what = format!("{flag} {}", path.display());
    let meta = std::fs::metadata(path).map_err(|e| format!("{what}: cannot read it: {e}"))?;
    if meta.len() > MAX_TOKEN_FILE {
        return Err(format!(
            "{what}: {} bytes, more than a token file holds (at most {MAX_TOKEN_FILE})",
            meta.len()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{what}: cannot read it: {e}"))?;
    parse_token(&text, &what)
}

/// The token a client sends: from `--token-file` if given, else from
/// `GRADSWEEP_TOKEN` if set (and not empty), else none.
pub fn client_token(token_file: Option<&Path>) -> Result<Option<String>, String> {
    if let Some(path) = token_file {
        return read_token_file("--token-file", path).map(Some);
    }
    match std::env::var(TOKEN_ENV) {
        Ok(v) if !v.trim().is_empty() => parse_token(&v, TOKEN_ENV).map(Some),
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!(
            "{TOKEN_ENV}: the token must be printable ASCII without spaces"
        )),
    }
}

/// `addr` with `http://` added when it has no scheme.
pub fn with_scheme(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    }
}

/// The endpoint for `url` (`http://` or `https://`); with `https://`, TLS that trusts
/// the CA certificate in `ca` (PEM), else the system's roots. `--ca` with `http://`
/// is refused: it would silently go unused.
pub fn endpoint(url: &str, ca: Option<&Path>) -> Result<Endpoint, String> {
    let https = url.starts_with("https://");
    if !https && !url.starts_with("http://") {
        return Err(format!(
            "\"{url}\" is not an address: expected http://HOST:PORT or https://HOST:PORT"
        ));
    }
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| format!("\"{url}\" is not an address ({})", root_cause(&e)))?
        .connect_timeout(Duration::from_secs(10));
    if !https {
        if let Some(ca) = ca {
            return Err(format!(
                "--ca {} is given but the address {url} is http:// (plaintext): use \
                 https://… to connect with TLS",
                ca.display()
            ));
        }
        return Ok(endpoint);
    }
    let tls = match ca {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| format!("--ca {}: cannot read it: {e}", path.display()))?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                return Err(format!(
                    "--ca {}: not a PEM certificate (no -----BEGIN CERTIFICATE----- line)",
                    path.display()
                ));
            }
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
        }
        None => ClientTlsConfig::new().with_native_roots(),
    };
    endpoint
        .tls_config(tls)
        .map_err(|e| format!("{url}: cannot set up TLS ({})", root_cause(&e)))
}

/// The innermost cause of an error, which names the real problem ("Connection refused").
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Every cause of an error, outermost first, joined (for recognising TLS failures).
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e;
    while let Some(next) = cur.source() {
        out.push_str(": ");
        out.push_str(&next.to_string());
        cur = next;
    }
    out
}

/// A transport failure a person can fix, as one line naming the fix: TLS on one side
/// only, or a certificate this client does not trust. `None` for anything else (the
/// coordinator is down or unreachable: worth retrying).
pub fn transport_problem(url: &str, error: &(dyn std::error::Error + 'static)) -> Option<String> {
    explain_or_sniff(url, &causes(error))
}

/// What the server at an address speaks, found by sending it an HTTP/2 preface: a TLS
/// server answers with a TLS alert record, a plaintext gRPC server with an HTTP/2
/// SETTINGS or GOAWAY frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Speaks {
    Tls,
    PlainHttp2,
}

/// Asks the server of `url` what it speaks (a few seconds at most); `None` when it
/// cannot be told (nothing answers, or something else).
fn sniff(url: &str) -> Option<Speaks> {
    use std::io::{Read as _, Write as _};
    use std::net::ToSocketAddrs as _;
    let uri: tonic::codegen::http::Uri = url.parse().ok()?;
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    let port = uri
        .port_u16()
        .unwrap_or(if url.starts_with("https://") { 443 } else { 80 });
    let addr = (host, port).to_socket_addrs().ok()?.next()?;
    let wait = Duration::from_secs(3);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, wait).ok()?;
    stream.set_read_timeout(Some(wait)).ok()?;
    stream.set_write_timeout(Some(wait)).ok()?;
    // The client preface, then an empty SETTINGS frame.
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .ok()?;
    let mut head = [0u8; 9];
    let mut got = 0;
    while got < head.len() {
        match stream.read(&mut head[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    match head {
        // A TLS record: alert (21) or handshake (22), version 3.x.
        [21 | 22, 3, ..] if got >= 2 => Some(Speaks::Tls),
        // An HTTP/2 frame header: type SETTINGS (4) or GOAWAY (7) on stream 0.
        [_, _, _, 4 | 7, _, 0, 0, 0, 0] if got == 9 => Some(Speaks::PlainHttp2),
        _ => None,
    }
}

/// [`explain`], else, for a failure after a connection was made, what the server
/// speaks, asked directly ([`sniff`]).
fn explain_or_sniff(url: &str, text: &str) -> Option<String> {
    if let Some(line) = explain(url, text) {
        return Some(line);
    }
    // Nothing listening, or no such host: not a TLS mismatch.
    if [
        "Connection refused",
        "tcp connect error",
        "dns error",
        "failed to lookup",
    ]
    .iter()
    .any(|n| text.contains(n))
    {
        return None;
    }
    let https = url.starts_with("https://");
    match (https, sniff(url)?) {
        (false, Speaks::Tls) => explain(url, "h2 protocol error: the server answered with TLS"),
        (true, Speaks::PlainHttp2) => explain(
            url,
            "peer is incompatible: the server answered plaintext HTTP/2",
        ),
        _ => None,
    }
}

/// [`transport_problem`] for a failed call's status.
pub fn status_problem(url: &str, status: &Status) -> Option<String> {
    if !matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled
    ) {
        return None;
    }
    let mut text = status.message().to_owned();
    if let Some(source) = std::error::Error::source(status) {
        text.push_str(": ");
        text.push_str(&causes(source));
    }
    explain_or_sniff(url, &text)
}

fn explain(url: &str, text: &str) -> Option<String> {
    let https = url.starts_with("https://");
    let plain = url.replacen("https://", "http://", 1);
    let secure = url.replacen("http://", "https://", 1);
    let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    if https
        && has(&[
            "UnknownIssuer",
            "unknown issuer",
            "BadSignature",
            "invalid peer certificate",
        ])
        && !has(&["NotValidForName", "not valid for name"])
    {
        return Some(format!(
            "the coordinator's certificate at {url} is not signed by a CA this client \
             trusts ({}): pass the CA certificate that signed it with --ca FILE",
            short(text)
        ));
    }
    if https && has(&["NotValidForName", "not valid for name"]) {
        return Some(format!(
            "the coordinator's certificate at {url} does not name that host ({}): connect \
             by a name or address the certificate holds",
            short(text)
        ));
    }
    if https
        && has(&[
            "InvalidContentType",
            "corrupt message",
            "peer is incompatible",
            "HandshakeFailure",
            "invalid content type",
        ])
    {
        return Some(format!(
            "the server at {url} does not speak TLS ({}): if the coordinator runs without \
             --tls-cert, use {plain}",
            short(text)
        ));
    }
    if !https
        && has(&[
            "frame with invalid size",
            "FRAME_SIZE_ERROR",
            "invalid HTTP",
            "protocol error",
            "h2 protocol",
        ])
    {
        return Some(format!(
            "the server at {url} did not answer plaintext gRPC ({}): if the coordinator \
             serves TLS (--tls-cert), use {secure} and --ca FILE",
            short(text)
        ));
    }
    None
}

/// The last, most specific part of a joined cause chain.
fn short(text: &str) -> &str {
    text.rsplit(": ").next().unwrap_or(text).trim()
}

/// Connects to `url` (with TLS for `https://`), sending `token` with every call. An
/// error is one line: a bad address or CA file, a TLS mismatch ([`transport_problem`]),
/// or nothing answering there (`unreachable` is what the caller says then).
pub async fn connect(
    url: &str,
    ca: Option<&Path>,
    token: Option<&str>,
) -> Result<(AuthChannel, Bearer), ConnectError> {
    let endpoint = endpoint(url, ca).map_err(ConnectError::Setup)?;
    let bearer = Bearer::new(token).map_err(ConnectError::Setup)?;
    match endpoint.connect().await {
        Ok(channel) => Ok((InterceptedService::new(channel, bearer.clone()), bearer)),
        Err(e) => Err(match transport_problem(url, &e) {
            Some(line) => ConnectError::Setup(line),
            None => ConnectError::Unreachable(root_cause(&e)),
        }),
    }
}

/// A channel to `url` that connects on first use (for a worker that starts before the
/// coordinator); TLS, CA and token as for [`connect`].
pub fn connect_lazy(
    url: &str,
    ca: Option<&Path>,
    token: Option<&str>,
) -> Result<AuthChannel, String> {
    let endpoint = endpoint(url, ca)?;
    let bearer = Bearer::new(token)?;
    Ok(InterceptedService::new(endpoint.connect_lazy(), bearer))
}

/// Why [`connect`] failed.
#[derive(Debug)]
pub enum ConnectError {
    /// Something the person must change: the address, the CA, TLS on one side only.
    Setup(String),
    /// Nothing answered (the innermost cause, e.g. "Connection refused").
    Unreachable(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_one_trimmed_line() {
        assert_eq!(parse_token("  s3cret\n", "f").unwrap(), "s3cret");
        assert!(parse_token(" \n", "f").unwrap_err().contains("empty"));
        assert!(parse_token("a\nb", "f").unwrap_err().contains("one line"));
        assert!(parse_token("a b", "f").unwrap_err().contains("printable"));
    }

    #[test]
    fn tls_mismatches_name_the_fix() {
        let plain = explain(
            "http://127.0.0.1:1",
            "transport error: h2 protocol error: frame with invalid size",
        )
        .unwrap();
        assert!(
            plain.contains("use https://127.0.0.1:1 and --ca FILE"),
            "{plain}"
        );
        let ca = explain(
            "https://localhost:1",
            "transport error: invalid peer certificate: UnknownIssuer",
        )
        .unwrap();
        assert!(ca.contains("--ca FILE"), "{ca}");
        assert_eq!(
            explain("http://h:1", "tcp connect error: Connection refused"),
            None
        );
    }
}
