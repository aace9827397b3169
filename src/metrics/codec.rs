//! Lossless text form of a latency histogram: base64 of the HdrHistogram V2 deflate
//! encoding, as HdrHistogram's own tools and interval logs use, so reports can carry
//! histograms and merges stay exact.

use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("histogram is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("histogram does not decode: {0}")]
    Decode(String),
    #[error("histogram does not encode: {0}")]
    Encode(String),
}

pub fn encode(histogram: &Histogram<u64>) -> Result<String, CodecError> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(histogram, &mut bytes)
        .map_err(|err| CodecError::Encode(format!("{err:?}")))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

pub fn decode(text: &str) -> Result<Histogram<u64>, CodecError> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(text.trim())?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|err| CodecError::Decode(format!("{err:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_exact() {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for value in [1u64, 17, 999, 1_000, 123_456, 3_000_000] {
            histogram.record_n(value, value % 7 + 1).unwrap();
        }
        let decoded = decode(&encode(&histogram).unwrap()).unwrap();
        assert_eq!(decoded, histogram);
        assert!(decode("not base64 !!").is_err());
        assert!(decode("AAAA").is_err());
    }
}
