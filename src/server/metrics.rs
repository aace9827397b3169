//! The reference server's own figures for `serve --metrics-listen`: creates issued,
//! validations by verdict, rate-limited answers (atomic counters bumped where the
//! answer is decided, no locks), and the challenge store's size and memory, read at
//! scrape time. [`Server::metrics`](super::Server::metrics) registers them for the
//! `live` endpoint.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::protocol::ErrorCode;

/// Every error code a verdict can carry, in the order of [`Counters::validations`]
/// after `valid` (index 0).
const CODES: [ErrorCode; 10] = [
    ErrorCode::InvalidKey,
    ErrorCode::ExpiredChallenge,
    ErrorCode::ReplayedChallenge,
    ErrorCode::InvalidSignature,
    ErrorCode::RateLimited,
    ErrorCode::BadRequest,
    ErrorCode::NotFound,
    ErrorCode::MethodNotAllowed,
    ErrorCode::PayloadTooLarge,
    ErrorCode::Internal,
];

#[derive(Debug, Default)]
pub(crate) struct Counters {
    creates: AtomicU64,
    /// `valid`, then one per entry of [`CODES`].
    validations: [AtomicU64; CODES.len() + 1],
    rate_limited: AtomicU64,
}

impl Counters {
    pub fn created(&self) {
        self.creates.fetch_add(1, Ordering::Relaxed);
    }

    /// A validate answered with a verdict: valid, or refused with `code`.
    pub fn validated(&self, refused: Option<ErrorCode>) {
        let index = match refused {
            None => 0,
            Some(code) => 1 + CODES.iter().position(|&c| c == code).unwrap_or(0),
        };
        self.validations[index].fetch_add(1, Ordering::Relaxed);
    }

    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }
}

/// Writes the server's figures: `counters`, and the store's `entries` and `memory`
/// (bytes) as they are now.
pub(crate) fn encode(
    counters: &Counters,
    entries: usize,
    memory: usize,
    mut encoder: DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    fn counter(
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        n: u64,
    ) -> Result<(), std::fmt::Error> {
        encoder
            .encode_descriptor(name, help, None, MetricType::Counter)?
            .encode_counter::<NoLabelSet, _, f64>(&n, None)
    }
    counter(
        &mut encoder,
        "creates",
        "Challenges issued (create answered 200)",
        counters.creates.load(Ordering::Relaxed),
    )?;
    {
        let mut m = encoder.encode_descriptor(
            "validations",
            "Validations answered with a verdict, by verdict: valid, or the refusal's error code",
            None,
            MetricType::Counter,
        )?;
        let verdicts = std::iter::once("valid").chain(CODES.iter().map(|c| c.as_str()));
        for (verdict, n) in verdicts.zip(&counters.validations) {
            let labels = [("verdict", verdict)];
            m.encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, f64>(&n.load(Ordering::Relaxed), None)?;
        }
    }
    counter(
        &mut encoder,
        "rate_limited",
        "Answers refused with rate_limited (per-key rate, outstanding cap or memory budget)",
        counters.rate_limited.load(Ordering::Relaxed),
    )?;
    encoder
        .encode_descriptor(
            "store_entries",
            "Names the challenge store holds now (an encrypted challenge has two)",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&(entries as i64))?;
    encoder
        .encode_descriptor(
            "store_memory_bytes",
            "Bytes the challenge store's structures hold now, as its --max-memory budget counts them",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&(memory as i64))?;
    Ok(())
}
