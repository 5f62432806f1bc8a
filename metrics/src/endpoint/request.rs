//! Reading one request: bytes come in as the socket gives them, the head is
//! parsed with `httparse` each time, and a head past [`MAX_HEAD`] or with
//! too many headers is refused with 431, anything malformed with 400.
//!
//! Pure (no IO), so that a property test can feed it any bytes split any
//! way; the connection code ([`conn`](super::conn)) does the reading.

use std::borrow::Cow;

/// The most bytes a request head (request line and headers) may take: more
/// is refused with 431.
pub const MAX_HEAD: usize = 8 * 1024;

/// The most headers a request may have: more is refused with 431.
pub const MAX_HEADERS: usize = 64;

/// A request's head, as the routes need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, as sent (`GET`, `HEAD`...).
    pub method: String,
    /// The path, before any `?`, not decoded.
    pub path: String,
    /// The query string, after the `?`, not decoded.
    pub query: Option<String>,
    /// The `Accept` header, if any (several are joined with `,`).
    pub accept: Option<String>,
    /// The minor HTTP version: 0 or 1.
    pub version: u8,
}

impl Request {
    /// True for `HEAD`: the response carries headers only.
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }

    /// The query's `key=value` pairs, percent-decoded (`+` as a space),
    /// in order. A pair without `=` has an empty value.
    pub fn query_pairs(&self) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
        self.query
            .as_deref()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode(k), decode(v))
            })
    }
}

/// `%XX` and `+` decoded; a malformed escape is kept as it is. Bytes that
/// do not make UTF-8 are replaced (a value that needed them is refused by
/// the route that reads it anyway).
fn decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(percent_decode(s.as_bytes()))
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn percent_decode(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the bytes so far make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Not a whole head yet, and nothing wrong so far.
    Partial,
    /// A whole head.
    Complete(Request),
    /// Refused: the status (400 or 431) and why, for the response body.
    Bad(u16, Cow<'static, str>),
}

/// Parses `buf` as the start of a request.
pub fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len > MAX_HEAD => too_large(),
        Ok(httparse::Status::Complete(_)) => {
            // A complete parse fills these three (httparse's contract);
            // treat a gap as malformed rather than trust it.
            let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version)
            else {
                return Parsed::Bad(400, "malformed request line".into());
            };
            let mut accept: Option<String> = None;
            for h in req.headers.iter() {
                if h.name.eq_ignore_ascii_case("accept") {
                    let v = String::from_utf8_lossy(h.value);
                    match &mut accept {
                        Some(a) => {
                            a.push(',');
                            a.push_str(&v);
                        }
                        None => accept = Some(v.into_owned()),
                    }
                }
            }
            let (path, query) = match target.split_once('?') {
                Some((p, q)) => (p, Some(q.to_string())),
                None => (target, None),
            };
            Parsed::Complete(Request {
                method: method.to_string(),
                path: path.to_string(),
                query,
                accept,
                version,
            })
        }
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => too_large(),
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            Parsed::Bad(431, format!("more than {MAX_HEADERS} headers").into())
        }
        Err(e) => Parsed::Bad(400, format!("malformed request: {e}").into()),
    }
}

fn too_large() -> Parsed {
    Parsed::Bad(
        431,
        format!("request head larger than {MAX_HEAD} bytes").into(),
    )
}

/// Gathers a request's bytes as they come and parses them.
///
/// Holds at most [`MAX_HEAD`] + 1 bytes: past that the answer is 431
/// whatever follows, so the rest is not kept.
#[derive(Debug, Default)]
pub struct Reader {
    buf: Vec<u8>,
}

impl Reader {
    /// Adds `bytes` and parses all that came so far.
    pub fn push(&mut self, bytes: &[u8]) -> Parsed {
        let room = (MAX_HEAD + 1).saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
        parse(&self.buf)
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True if nothing came yet.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn complete(bytes: &[u8]) -> Request {
        match parse(bytes) {
            Parsed::Complete(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_get_with_a_query_and_accept_headers() {
        let r = complete(
            b"GET /tasks?limit=5&state=idle HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\naccept: application/openmetrics-text\r\n\r\n",
        );
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/tasks");
        assert_eq!(r.query.as_deref(), Some("limit=5&state=idle"));
        assert_eq!(
            r.accept.as_deref(),
            Some("text/plain,application/openmetrics-text")
        );
        assert_eq!(r.version, 1);
        let pairs: Vec<_> = r.query_pairs().collect();
        assert_eq!(
            pairs,
            [
                ("limit".into(), "5".into()),
                ("state".into(), "idle".into())
            ]
        );
    }

    #[test]
    fn query_values_are_percent_decoded() {
        let r = complete(b"GET /tasks?state=%69dle&x=a+b&bad=%zz&end=%4 HTTP/1.0\r\n\r\n");
        let pairs: Vec<(String, String)> = r
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("state".into(), "idle".into()),
                ("x".into(), "a b".into()),
                ("bad".into(), "%zz".into()),
                ("end".into(), "%4".into()),
            ]
        );
        assert_eq!(r.version, 0);
    }

    #[test]
    fn partial_then_complete() {
        assert_eq!(parse(b""), Parsed::Partial);
        assert_eq!(parse(b"GET / HT"), Parsed::Partial);
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n"), Parsed::Partial);
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\n\r\n"),
            Parsed::Complete(_)
        ));
    }

    #[test]
    fn garbage_http09_and_bad_versions_are_400() {
        for bad in [
            &b"\x00\x01\x02garbage\r\n\r\n"[..],
            b"GET /\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
            b"G\xffT / HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                matches!(parse(bad), Parsed::Bad(400, _)),
                "{:?}: {:?}",
                String::from_utf8_lossy(bad),
                parse(bad)
            );
        }
    }

    #[test]
    fn a_large_head_or_many_headers_is_431() {
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD));
        assert!(matches!(parse(&big), Parsed::Bad(431, _)));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend(format!("H{i}: v\r\n").bytes());
        }
        many.extend(b"\r\n");
        assert!(matches!(parse(&many), Parsed::Bad(431, _)));
        // The reader keeps no more than it needs to say so.
        let mut r = Reader::default();
        for _ in 0..100 {
            assert!(!matches!(r.push(&[b'a'; 1024]), Parsed::Complete(_)));
        }
        assert!(r.len() <= MAX_HEAD + 1);
    }

    fn valid_request() -> impl Strategy<Value = Vec<u8>> {
        let method = prop::sample::select(vec!["GET", "HEAD", "POST", "BREW"]);
        let path =
            prop::sample::select(vec!["/", "/metrics", "/tasks?limit=3&state=idle", "/x%20y"]);
        let headers = prop::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,15}", "[ -~]{0,40}"), 0..8);
        (method, path, headers, any::<bool>()).prop_map(|(m, p, hs, one)| {
            let mut req = format!("{m} {p} HTTP/1.{}\r\n", u8::from(one));
            for (k, v) in hs {
                req.push_str(&format!("{k}: {}\r\n", v.trim()));
            }
            req.push_str("\r\n");
            req.into_bytes()
        })
    }

    /// Feeds `bytes` to a reader in pieces cut at `cuts`; the first
    /// outcome that is not `Partial`.
    fn feed(bytes: &[u8], cuts: &[usize]) -> Parsed {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut r = Reader::default();
        let mut at = 0;
        for cut in cuts.into_iter().chain([bytes.len()]) {
            let p = r.push(&bytes[at..cut]);
            at = cut;
            if p != Parsed::Partial {
                return p;
            }
        }
        Parsed::Partial
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048),
                                    cuts in prop::collection::vec(any::<usize>(), 0..16)) {
            let _ = feed(&bytes, &cuts);
            let mut r = Reader::default();
            let _ = r.push(&bytes);
            prop_assert!(r.len() <= MAX_HEAD + 1);
        }

        #[test]
        fn a_valid_request_parses_the_same_however_split(req in valid_request(),
                                                         cuts in prop::collection::vec(any::<usize>(), 0..32)) {
            let whole = parse(&req);
            prop_assert!(matches!(whole, Parsed::Complete(_)), "{:?}", whole);
            prop_assert_eq!(feed(&req, &cuts), whole);
        }

        #[test]
        fn a_valid_head_with_noise_after_it_still_parses(req in valid_request(),
                                                         noise in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut bytes = req.clone();
            bytes.extend(noise);
            prop_assert_eq!(parse(&bytes), parse(&req));
        }
    }
}
