//! The request and answer that show a check's outcome, as reports keep them: keys
//! redacted, long bodies cut.

use crate::client::Exchange;
use crate::redact::Redactor;
use crate::results::Evidence;

/// Evidence bodies are cut here in reports; a failure needs the start, not 256 KiB.
const EVIDENCE_CHARS: usize = 4_000;

pub fn evidence(exchange: &Exchange, redactor: &Redactor) -> Evidence {
    let request = &exchange.request;
    let auth = if request.bearer.is_some() {
        " Authorization: Bearer [REDACTED]"
    } else {
        ""
    };
    let request_text = format!(
        "{} {}{auth} {}",
        request.method,
        request.path,
        clip(&request.body)
    );
    let response_text = match &exchange.result {
        Ok(answer) => {
            let retry = answer
                .retry_after
                .as_deref()
                .map(|r| format!(" Retry-After: {r}"))
                .unwrap_or_default();
            let cut = if answer.truncated {
                " [body truncated]"
            } else {
                ""
            };
            format!("{}{retry} {}{cut}", answer.status, clip(&answer.text))
        }
        Err(err) => err.to_string(),
    };
    Evidence {
        request: redactor.redact(&request_text).into_owned(),
        response: redactor.redact(&response_text).into_owned(),
    }
}

fn clip(text: &str) -> String {
    if text.chars().count() <= EVIDENCE_CHARS {
        return text.to_owned();
    }
    let cut: String = text.chars().take(EVIDENCE_CHARS).collect();
    format!("{cut}… [{} more bytes]", text.len() - cut.len())
}
