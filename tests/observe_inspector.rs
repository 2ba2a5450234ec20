//! Feature `inspector`: the HTTP pages, through a real server on an ephemeral loopback port
//! (a few lines of HTTP/1.1 over `TcpStream`; no client crate).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use syncmemo::inspector::{Inspector, InspectorServer};
use syncmemo::memoize;

#[memoize(capacity = 100)]
fn shout(text: &str) -> String {
    text.to_uppercase()
}

/// Written to by the write-action test only (tests run in parallel).
#[memoize]
fn scratch(text: &str) -> usize {
    text.len()
}

/// Target of the refused write actions.
#[memoize]
fn untouchable(text: &str) -> usize {
    text.len()
}

#[memoize]
fn secret(user: &str) -> String {
    format!("password-of-{user}")
}

struct Reply {
    status: u16,
    headers: String,
    body: String,
}

fn request(addr: SocketAddr, method: &str, path: &str, extra: &str, body: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a full response");
    let status = head[9..12].parse().unwrap();
    // Chunked bodies (axum streams some): drop the chunk-size lines.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            rest = &tail[n + 2..];
        }
        out
    } else {
        body.to_string()
    };
    Reply {
        status,
        headers: head.to_string(),
        body,
    }
}

fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, "", "")
}

fn json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let reply = get(addr, path);
    assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    assert!(
        reply.headers.contains("application/json"),
        "{}",
        reply.headers
    );
    serde_json::from_str(&reply.body).unwrap()
}

fn setup(write_actions: bool) -> InspectorServer {
    for word in ["alpha", "beta", "<script>alert(1)</script>"] {
        shout(word);
    }
    shout("alpha");
    secret("ada");
    Inspector::new()
        .write_actions(write_actions)
        .hide_values(secret_cache().name())
        .page_size(2)
        .serve("127.0.0.1:0")
        .unwrap()
}

fn encoded(name: &str) -> String {
    name.replace(':', "%3A")
}

#[test]
fn index_lists_caches_in_html_and_json() {
    let server = setup(false);
    let addr = server.local_addr();
    let page = get(addr, "/");
    assert_eq!(page.status, 200);
    assert!(page.headers.contains("text/html"));
    assert!(page.body.contains(shout_cache().name()));
    assert!(page.body.contains("(values hidden)"));

    let doc = json(addr, "/?format=json");
    assert_eq!(doc["write_actions"], false);
    let caches = doc["caches"].as_array().unwrap();
    let shout_row = caches
        .iter()
        .find(|c| c["name"] == shout_cache().name())
        .unwrap();
    assert!(shout_row["stats"]["hits"].as_u64().unwrap() >= 1);
    assert!(shout_row["stats"]["entries"].as_u64().unwrap() >= 3);
    assert_eq!(shout_row["config"]["capacity"], 100);
    assert!(shout_row["hit_ratio"].as_f64().unwrap() > 0.0);
    let secret_row = caches
        .iter()
        .find(|c| c["name"] == secret_cache().name())
        .unwrap();
    assert_eq!(secret_row["values_hidden"], true);

    // The Accept header selects JSON too.
    let reply = request(addr, "GET", "/", "Accept: application/json\r\n", "");
    assert!(serde_json::from_str::<serde_json::Value>(&reply.body).is_ok());
}

#[test]
fn cache_page_escapes_filters_pages_and_hides() {
    let server = setup(false);
    let addr = server.local_addr();
    let path = format!("/cache/{}", encoded(shout_cache().name()));

    let page = get(addr, &format!("{path}?filter=script"));
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains("<script>"),
        "unescaped key in {}",
        page.body
    );
    assert!(
        !page.body.contains("invalidate"),
        "write buttons shown while disabled"
    );

    // Paging: page_size(2), entries over pages, each once.
    let mut keys = Vec::new();
    let mut offset = 0;
    loop {
        let doc = json(addr, &format!("{path}?format=json&offset={offset}"));
        let entries = doc["entries"].as_array().unwrap();
        assert!(entries.len() <= 2);
        keys.extend(
            entries
                .iter()
                .map(|e| e["key"].as_str().unwrap().to_string()),
        );
        match doc["next_offset"].as_u64() {
            Some(next) => offset = next as usize,
            None => break,
        }
    }
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), shout_cache().len());

    let doc = json(
        addr,
        &format!("/cache/{}?format=json", encoded(secret_cache().name())),
    );
    assert_eq!(doc["entries"][0]["key"], "\"ada\"");
    assert_eq!(doc["entries"][0]["value"], "(hidden)");
    let page = get(addr, &format!("/cache/{}", encoded(secret_cache().name())));
    assert!(!page.body.contains("password-of"), "hidden value rendered");
}

#[test]
fn unknown_cache_is_404() {
    let server = setup(false);
    let addr = server.local_addr();
    assert_eq!(get(addr, "/cache/no%3A%3Asuch").status, 404);
    let reply = get(addr, "/cache/%3Cscript%3E?format=json");
    assert_eq!(reply.status, 404);
    assert!(reply.body.contains("error"));
    let page = get(addr, "/cache/%3Cscript%3E");
    assert!(page.body.contains("&lt;script&gt;") && !page.body.contains("<script>"));
}

#[test]
fn write_actions_are_refused_when_disabled() {
    let server = setup(false);
    let addr = server.local_addr();
    let path = format!("/cache/{}", encoded(shout_cache().name()));
    untouchable("kept");
    let before = shout_cache().len();
    let form = "Content-Type: application/x-www-form-urlencoded\r\n";
    assert_eq!(
        request(addr, "POST", &format!("{path}/clear"), "", "").status,
        403
    );
    assert_eq!(
        request(
            addr,
            "POST",
            &format!("{path}/invalidate"),
            form,
            "key=%22alpha%22"
        )
        .status,
        403
    );
    let other = format!("/cache/{}", encoded(untouchable_cache().name()));
    assert_eq!(
        request(addr, "POST", &format!("{other}/clear"), "", "").status,
        403
    );
    assert_eq!(shout_cache().len(), before);
    assert_eq!(untouchable_cache().get("kept"), Some(4));
    // GET on an action route is not an action.
    assert_eq!(get(addr, &format!("{path}/clear")).status, 405);
}

#[test]
fn write_actions_when_enabled() {
    let server = setup(true);
    let addr = server.local_addr();
    scratch("gamma");
    scratch("delta");
    let path = format!("/cache/{}", encoded(scratch_cache().name()));
    let page = get(addr, &path);
    assert!(page.body.contains("invalidate") && page.body.contains("clear"));

    let form = "Content-Type: application/x-www-form-urlencoded\r\n";
    // A cross-site form post is refused even when writes are enabled.
    let cross = format!("{form}Origin: http://evil.example\r\n");
    let reply = request(
        addr,
        "POST",
        &format!("{path}/invalidate"),
        &cross,
        "key=%22gamma%22",
    );
    assert_eq!(reply.status, 403);
    assert!(scratch_cache().get("gamma").is_some());

    let reply = request(
        addr,
        "POST",
        &format!("{path}/invalidate?format=json"),
        form,
        "key=%22gamma%22",
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&reply.body).unwrap()["removed"],
        1
    );
    assert!(scratch_cache().get("gamma").is_none());

    let reply = request(addr, "POST", &format!("{path}/clear"), "", "");
    assert_eq!(reply.status, 303);
    assert!(reply
        .headers
        .to_ascii_lowercase()
        .contains(&format!("location: {path}").to_ascii_lowercase()));
    assert!(scratch_cache().is_empty());
}

#[test]
fn remote_addresses_are_refused_unless_allowed() {
    let err = Inspector::new().serve("0.0.0.0:0").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

/// Its miss-ratio curve is turned on by the test below only.
#[memoize(capacity = 50)]
fn curved(k: u32) -> u32 {
    k + 1
}

/// Never has a miss-ratio curve.
#[memoize]
fn flat(k: u32) -> u32 {
    k + 1
}

#[test]
fn miss_ratio_curve_is_plotted_and_in_json_only_when_on() {
    assert!(curved_cache().enable_miss_ratio_curve(1.0));
    for _ in 0..3 {
        for k in 0..100 {
            curved(k);
            flat(k);
        }
    }
    let server = setup(false);
    let addr = server.local_addr();

    let on = format!("/cache/{}", encoded(curved_cache().name()));
    let page = get(addr, &on);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<svg"), "{}", page.body);
    assert!(page.body.contains("<polyline"), "{}", page.body);
    assert!(page.body.contains("300 sampled calls"), "{}", page.body);
    let doc = json(addr, &format!("{on}?format=json"));
    let curve = &doc["miss_ratio_curve"];
    assert_eq!(curve["sampling_rate"], 1.0);
    assert_eq!(curve["sampled_references"], 300);
    let points = curve["points"].as_array().unwrap();
    // A loop over 100 keys: 2 calls in 3 hit with 100 entries, none with 50.
    let at = |capacity: u64| {
        points
            .iter()
            .find(|p| p["capacity"] == capacity)
            .unwrap_or_else(|| panic!("no point at {capacity}: {points:?}"))["hit_ratio"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(at(50), 0.0);
    assert!((at(100) - 2.0 / 3.0).abs() < 1e-9, "{points:?}");

    let off = format!("/cache/{}", encoded(flat_cache().name()));
    let page = get(addr, &off);
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("<svg"), "{}", page.body);
    let doc = json(addr, &format!("{off}?format=json"));
    assert!(doc.get("miss_ratio_curve").is_none(), "{doc}");
    assert!(doc.get("stats").is_some(), "{doc}");
}
