//! Parsers for values several commands take, so a mistake is an argument error (exit 2)
//! with the fix in its words, before anything runs or any report is overwritten.

use std::time::Duration;

/// A duration such as `30s`, `1m30s` or `250ms`. Negative ones get their own message
/// (clap would otherwise read `-1s` as a flag and suggest `-- -1s`).
pub fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.starts_with('-') {
        return Err(format!(
            "a duration cannot be negative (got `{text}`); write e.g. 30s, 1m30s or 250ms"
        ));
    }
    humantime::parse_duration(text).map_err(|err| {
        format!("`{text}` is not a duration ({err}); write e.g. 30s, 1m30s or 250ms")
    })
}

/// A [`duration`] above zero: a run, a timeout or a period of nothing measures nothing.
pub fn positive_duration(text: &str) -> Result<Duration, String> {
    let parsed = duration(text)?;
    if parsed.is_zero() {
        return Err(format!(
            "`{}` is zero; it must be above zero, e.g. 30s",
            text.trim()
        ));
    }
    Ok(parsed)
}

/// A target's base URL: `http://` or `https://` and a host. Without a scheme
/// (`127.0.0.1:8080`, `localhost:8080`) the message suggests the URL meant.
pub fn target_url(text: &str) -> Result<String, String> {
    let text = text.trim();
    let suggest = || {
        format!(
            "`{text}` has no http:// or https:// scheme; did you mean `http://{}`?",
            text.trim_start_matches("//")
        )
    };
    let Ok(url) = reqwest::Url::parse(text) else {
        return Err(if text.contains("://") {
            format!("`{text}` is not a URL; write e.g. https://api.example.com")
        } else {
            suggest()
        });
    };
    match url.scheme() {
        "http" | "https" if url.host_str().is_some_and(|h| !h.is_empty()) => Ok(text.to_owned()),
        "http" | "https" => Err(format!(
            "`{text}` names no host; write e.g. https://api.example.com"
        )),
        // `localhost:8080` parses as scheme `localhost`.
        _ if !text.contains("://") => Err(suggest()),
        scheme => Err(format!(
            "`{text}`: the scheme must be http:// or https://, not {scheme}://"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_say_what_is_wrong() {
        assert_eq!(duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("0s"), Ok(Duration::ZERO));
        assert!(duration("-1s").unwrap_err().contains("cannot be negative"));
        assert!(duration("soon").unwrap_err().contains("e.g. 30s"));
        assert!(positive_duration("0s").unwrap_err().contains("above zero"));
        assert_eq!(positive_duration("2s"), Ok(Duration::from_secs(2)));
    }

    #[test]
    fn a_target_needs_a_scheme_and_a_host() {
        assert_eq!(
            target_url("http://127.0.0.1:8080").as_deref(),
            Ok("http://127.0.0.1:8080")
        );
        assert!(target_url("https://api.example.com/v1").is_ok());
        for (bad, hint) in [
            ("127.0.0.1:8080", "did you mean `http://127.0.0.1:8080`"),
            ("localhost:8080", "did you mean `http://localhost:8080`"),
            ("api.example.com", "did you mean `http://api.example.com`"),
            ("ftp://example.com", "not ftp://"),
            ("http://", "not a URL"),
        ] {
            let err = target_url(bad).unwrap_err();
            assert!(err.contains(hint), "{bad}: {err}");
        }
    }
}
