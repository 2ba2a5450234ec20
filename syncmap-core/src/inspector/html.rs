//! The inspector's HTML: small, self-contained pages (inline CSS, no script). Every text that
//! comes from a cache (names, keys, values, the filter) goes through [`escape`].

use std::fmt::Write as _;
use std::time::Duration;

use super::Summary;
use crate::memo::MemoSnapshot;

/// HTML-escapes text for element content and double- or single-quoted attributes.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes text for a path segment or a query value (everything but unreserved).
pub(super) fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

const STYLE: &str = "
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px 32px; color: #1d2330; background: #fafbfc; }
h1 { font-size: 20px; margin: 0 0 4px; } h1 a { color: inherit; text-decoration: none; }
.sub { color: #667; margin-bottom: 18px; }
table { border-collapse: collapse; background: #fff; box-shadow: 0 1px 3px #0001; }
th, td { padding: 6px 12px; border-bottom: 1px solid #e6e8ee; text-align: right; vertical-align: middle; }
th { background: #f0f2f6; font-weight: 600; font-size: 12px; text-transform: uppercase; color: #556; }
td.l, th.l { text-align: left; } td.r { white-space: nowrap; } td.n { white-space: nowrap; }
td.k, td.v { text-align: left; font-family: ui-monospace, monospace; font-size: 13px; white-space: pre-wrap; word-break: break-all; max-width: 640px; }
a { color: #2357c6; }
.bar { display: inline-block; width: 120px; height: 10px; background: #e3e6ee; border-radius: 5px; overflow: hidden; vertical-align: middle; margin-right: 8px; }
.bar > span { display: block; height: 100%; background: linear-gradient(90deg, #3aa56b, #53c27f); }
.muted { color: #889; }
form.inline { display: inline; margin: 0; }
button { font: inherit; font-size: 12px; padding: 2px 8px; border: 1px solid #c9ced9; border-radius: 4px; background: #fff; cursor: pointer; }
button.danger { color: #b3261e; border-color: #e4b5b1; }
.filter { margin: 12px 0; } .filter input[type=text] { width: 280px; padding: 4px 6px; }
.pager { margin: 12px 0; } .pager a { margin-right: 12px; }
figure.mrc { margin: 8px 0 16px; } figure.mrc figcaption { color: #667; font-size: 12px; }
";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>\n",
        escape(title)
    )
}

fn ttl_text(ttl: Option<Duration>) -> String {
    match ttl {
        None => "&ndash;".to_string(),
        Some(ttl) => escape(&format!("{ttl:?}")),
    }
}

fn ratio_cell(ratio: Option<f64>) -> String {
    match ratio {
        None => "<span class=\"muted\">no calls</span>".to_string(),
        Some(r) => format!(
            "<span class=\"bar\"><span style=\"width:{:.1}%\"></span></span>{:.1}%",
            r * 100.0,
            r * 100.0
        ),
    }
}

/// The list of every cache.
pub(super) fn index(base: &str, caches: &[Summary]) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>Memoized caches</h1><div class=\"sub\">{} caches in this process \
         &middot; <a href=\"{base}/\">refresh</a> &middot; <a href=\"{base}/?format=json\">JSON</a></div>",
        caches.len(),
        base = escape(base)
    );
    body.push_str(
        "<table><tr><th class=\"l\">cache</th><th>entries</th><th>hits</th><th>misses</th>\
         <th>waits</th><th>waiting</th><th class=\"l\">hit ratio</th><th>computations</th><th>evictions</th>\
         <th>rejections</th><th>expirations</th><th>capacity</th><th>ttl</th></tr>",
    );
    for cache in caches {
        let s = &cache.stats;
        let _ = write!(
            body,
            "<tr><td class=\"l n\"><a href=\"{base}/cache/{link}\">{name}</a>{hidden}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"l r\">{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            s.entries,
            s.hits,
            s.misses,
            s.waits,
            s.waiting,
            ratio_cell(cache.hit_ratio),
            s.computations,
            s.evictions,
            s.rejections,
            s.expirations,
            cache
                .config
                .capacity
                .map_or("&ndash;".to_string(), |c| c.to_string()),
            ttl_text(cache.config.ttl),
            base = escape(base),
            link = escape(&url_encode(cache.name)),
            name = escape(cache.name),
            hidden = if cache.values_hidden {
                " <span class=\"muted\">(values hidden)</span>"
            } else {
                ""
            },
        );
    }
    body.push_str("</table>");
    page("syncmemo inspector", &body)
}

/// One cache's entries.
pub(super) fn cache_page(
    base: &str,
    snapshot: &MemoSnapshot,
    filter: Option<&str>,
    page_size: usize,
    write_actions: bool,
    values_hidden: bool,
) -> String {
    let s = &snapshot.stats;
    let here = format!(
        "{}/cache/{}",
        escape(base),
        escape(&url_encode(&snapshot.name))
    );
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1><a href=\"{base}/\">caches</a> / {name}</h1><div class=\"sub\">{} entries &middot; \
         {} hits &middot; {} misses &middot; {} waits ({} waiting now) &middot; hit ratio {} &middot; {} evictions \
         &middot; {} rejections &middot; capacity {} &middot; ttl {}{}</div>",
        s.entries,
        s.hits,
        s.misses,
        s.waits,
        s.waiting,
        snapshot
            .stats
            .hit_ratio()
            .map_or("&ndash;".to_string(), |r| format!("{:.1}%", r * 100.0)),
        s.evictions,
        s.rejections,
        snapshot
            .config
            .capacity
            .map_or("&ndash;".to_string(), |c| c.to_string()),
        ttl_text(snapshot.config.ttl),
        if values_hidden {
            " &middot; values hidden"
        } else {
            ""
        },
        base = escape(base),
        name = escape(&snapshot.name),
    );
    if let Some(curve) = &snapshot.miss_ratio_curve {
        body.push_str(&super::mrc_plot::svg(curve, snapshot.config.capacity));
    }
    let _ = write!(
        body,
        "<form class=\"filter\" method=\"get\" action=\"{here}\">\
         <input type=\"text\" name=\"filter\" placeholder=\"key contains…\" value=\"{}\"> \
         <button type=\"submit\">filter</button></form>",
        escape(filter.unwrap_or(""))
    );
    if write_actions {
        let _ = write!(
            body,
            "<form class=\"inline\" method=\"post\" action=\"{here}/clear\">\
             <button class=\"danger\" type=\"submit\">clear the whole cache</button></form>"
        );
    }
    body.push_str("<table><tr><th class=\"l\">key</th><th class=\"l\">value</th>");
    if write_actions {
        body.push_str("<th></th>");
    }
    body.push_str("</tr>");
    for entry in &snapshot.entries {
        let _ = write!(
            body,
            "<tr><td class=\"k\">{}</td><td class=\"v\">{}</td>",
            escape(&entry.key),
            escape(&entry.value)
        );
        if write_actions {
            let _ = write!(
                body,
                "<td><form class=\"inline\" method=\"post\" action=\"{here}/invalidate\">\
                 <input type=\"hidden\" name=\"key\" value=\"{}\">\
                 <button type=\"submit\">invalidate</button></form></td>",
                escape(&entry.key)
            );
        }
        body.push_str("</tr>");
    }
    if snapshot.entries.is_empty() {
        let cols = if write_actions { 3 } else { 2 };
        let _ = write!(
            body,
            "<tr><td class=\"l muted\" colspan=\"{cols}\">no entries</td></tr>"
        );
    }
    body.push_str("</table><div class=\"pager\">");
    let filter_query = filter
        .map(|f| format!("&amp;filter={}", escape(&url_encode(f))))
        .unwrap_or_default();
    if snapshot.offset > 0 {
        let _ = write!(
            body,
            "<a href=\"{here}?offset={}{filter_query}\">&larr; previous</a>",
            snapshot.offset.saturating_sub(page_size)
        );
    }
    let _ = write!(
        body,
        "<span class=\"muted\">entries {}&ndash;{}</span> ",
        if snapshot.entries.is_empty() {
            snapshot.offset
        } else {
            snapshot.offset + 1
        },
        snapshot.offset + snapshot.entries.len()
    );
    if let Some(next) = snapshot.next_offset {
        let _ = write!(
            body,
            "<a href=\"{here}?offset={next}{filter_query}\">next &rarr;</a>"
        );
    }
    let _ = write!(
        body,
        "<a href=\"{here}?format=json{}{filter_query}\">JSON</a></div>",
        if snapshot.offset > 0 {
            format!("&amp;offset={}", snapshot.offset)
        } else {
            String::new()
        }
    );
    page(&snapshot.name, &body)
}

/// A short error page (unknown cache).
pub(super) fn error_page(message: &str) -> String {
    page(
        "syncmemo inspector",
        &format!("<h1>Not found</h1><p>{}</p>", escape(message)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape("<script>alert(\"x\" & 'y')</script>"),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
    }

    #[test]
    fn url_encodes_everything_but_unreserved() {
        assert_eq!(url_encode("a::b c/é"), "a%3A%3Ab%20c%2F%C3%A9");
    }
}
