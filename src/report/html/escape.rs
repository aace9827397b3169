//! HTML escaping, a leaf: every string the page and its SVG charts take from a report
//! goes through [`Esc`].

use std::fmt;

use crate::report::xml_chars::{REPLACEMENT, allowed};

/// Text escaped for HTML element content and double- or single-quoted attribute values,
/// with the characters XML 1.0 forbids replaced (the inline SVG is XML, and a page
/// that holds them is one a strict reader refuses).
pub struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some((pos, c)) = rest
            .char_indices()
            .find(|&(_, c)| matches!(c, '&' | '<' | '>' | '"' | '\'') || !allowed(c))
        {
            f.write_str(&rest[..pos])?;
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&#39;")?,
                _ => fmt::Write::write_char(f, REPLACEMENT)?,
            }
            rest = &rest[pos + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_all_five() {
        assert_eq!(
            Esc(r#"<a href="x" title='y'>&</a>"#).to_string(),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
        assert_eq!(Esc("plain é").to_string(), "plain é");
        assert_eq!(
            Esc("a\u{fffe}b\u{ffff}c\u{1}<").to_string(),
            "a\u{fffd}b\u{fffd}c\u{fffd}&lt;"
        );
    }
}
