//! Structured JSON logs for every function, scrubbed of personal data before they are written.
//!
//! Business context travels as span fields (`trace_id`, `channel`, `account`, `order_id`, `sku`,
//! `rule`, `attempt`, `error_class`): open a span with [`business_span!`] at the start of an operation
//! and every line inside carries them.

use std::io::{self, Write};

use tracing_subscriber::{EnvFilter, fmt::MakeWriter};

use crate::redact::scrub_line;

/// Installs the global JSON subscriber (idempotent: later calls are ignored). Filter from `RUST_LOG`,
/// default `info`.
pub fn init(service: &'static str) {
    let _ = tracing::subscriber::set_global_default(subscriber(io::stdout));
    tracing::debug!(service, "telemetry initialised");
}

/// The JSON subscriber every function uses, writing scrubbed lines to `writer`. Each line carries the
/// fields of every enclosing span (`spans`), so the trace id and business keys set on an outer span
/// show on lines logged deep inside it; the innermost span is the list's last entry, not repeated
/// on its own (CloudWatch Logs bills every byte). Filter from `RUST_LOG`, default `info`.
pub fn subscriber<W>(writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(true)
        .with_target(false)
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(Scrubbed::new(writer))
        .finish()
}

/// A writer factory that scrubs each log line before handing it to the inner writer.
#[derive(Debug, Clone)]
pub struct Scrubbed<M> {
    inner: M,
}

impl<M> Scrubbed<M> {
    pub fn new(inner: M) -> Self {
        Self { inner }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Scrubbed<M> {
    type Writer = ScrubbedWriter<M::Writer>;
    fn make_writer(&'a self) -> Self::Writer {
        ScrubbedWriter { inner: self.inner.make_writer(), buf: Vec::new() }
    }
}

/// Buffers one formatted event and writes it scrubbed when dropped (the formatter writes a line per
/// event through a fresh writer).
#[derive(Debug)]
pub struct ScrubbedWriter<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> Write for ScrubbedWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for ScrubbedWriter<W> {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.buf);
        let mut out = String::with_capacity(text.len());
        for line in text.lines() {
            out.push_str(&scrub_line(line));
            out.push('\n');
        }
        let _ = self.inner.write_all(out.as_bytes());
        let _ = self.inner.flush();
    }
}

/// Opens an `info` span carrying a transaction's business context. Unset fields can be filled later
/// with `span.record("order_id", ...)`.
#[macro_export]
macro_rules! business_span {
    ($name:expr $(, $($field:tt)*)?) => {
        tracing::info_span!(
            $name,
            trace_id = tracing::field::Empty,
            channel = tracing::field::Empty,
            account = tracing::field::Empty,
            order_id = tracing::field::Empty,
            sku = tracing::field::Empty,
            bundle = tracing::field::Empty,
            rule = tracing::field::Empty,
            attempt = tracing::field::Empty,
            error_class = tracing::field::Empty,
            $($($field)*)?
        )
    };
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, d: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(d);
            Ok(d.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A real published Shopify order, logged whole, leaves no personal data in the output.
    #[test]
    fn a_real_order_logged_whole_leaks_no_personal_data() {
        let fixture = include_str!("../fixtures/shopify-order-450789469.json");
        let buf = Buf::default();
        let sink = buf.clone();
        let subscriber = super::subscriber(move || sink.clone());
        tracing::subscriber::with_default(subscriber, || {
            let span = crate::business_span!("ingest", channel = "shopify");
            let _g = span.enter();
            let order: serde_json::Value = serde_json::from_str(fixture).unwrap();
            tracing::info!(payload = %order, "received order");
            tracing::warn!(customer = "bob.norman@mail.example.com", "lookup failed for");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(out.contains("received order") && out.contains("shopify"), "{out}");
        assert!(out.contains(r#""spans":[{"channel":"shopify","name":"ingest"}]"#), "span names stay readable: {out}");
        for personal in [
            "bob.norman@mail.example.com",
            "Bob",
            "Norman",
            "Chestnut Street 92",
            "+1(502)-459-2181",
            "40202",
            "45.41634",
        ] {
            assert!(!out.contains(personal), "{personal} leaked into: {out}");
        }
        assert!(out.contains("IPOD2008GREEN"), "business fields stay readable");
    }
}
