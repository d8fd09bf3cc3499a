//! The pieces every self-contained HTML report shares: escaping, one style sheet, one page head,
//! and pages composed of sections. Pages carry inline SVG (`report::svg`), no script and no
//! network, so a report reads on its own.

/// Escapes text for HTML content and attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

pub const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ccc}table{border-collapse:collapse;margin:.8em 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right;font-size:.92em}th{background:#f4f4f4}td.l,th.l{text-align:left}
.verdict{font-size:1.3em;padding:.6em 1em;border-radius:6px;display:inline-block}.ok{background:#dff3df}.bad{background:#fde2e0}.unk{background:#eee}
.note{color:#555;font-size:.95em}figure{margin:1em 0}figcaption{color:#555;font-size:.9em;max-width:900px}svg text{font-family:sans-serif}
.maps{display:flex;flex-wrap:wrap;gap:1.5em}";

/// The start of a self-contained page: doctype, title and the reports' shared style, up to and
/// including `<body>`.
pub fn page_head(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{}</title><style>{CSS}</style></head><body>",
        esc(title)
    )
}

/// A page composed of sections: the head, each section in order, the end.
pub struct Page {
    html: String,
}

impl Page {
    pub fn new(title: &str) -> Page {
        Page {
            html: page_head(title),
        }
    }

    /// Appends a section (HTML built from escaped text).
    pub fn push(&mut self, section: &str) -> &mut Page {
        self.html.push_str(section);
        self
    }

    /// The finished page.
    pub fn finish(mut self) -> String {
        self.html.push_str("</body></html>\n");
        self.html
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_composed_and_escaped() {
        let mut p = Page::new("a <b> & 'c'");
        p.push("<p>one</p>").push("<p>two</p>");
        let html = p.finish();
        assert!(html.starts_with("<!DOCTYPE html>\n"));
        assert!(html.contains("<title>a &lt;b&gt; &amp; &#39;c&#39;</title>"));
        assert!(html.ends_with("<p>one</p><p>two</p></body></html>\n"));
    }
}
