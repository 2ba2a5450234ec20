//! Feature `tracing`: one `memo.compute` span per computation, with the function's name and
//! its outcome; none on hits.

use std::sync::{Arc, Mutex};

use syncmemo::memoize;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::with_default;
use tracing::{field, Event, Metadata, Subscriber};

/// Records each span's fields (`name = value` text) as they are set.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<Fields>>>);

/// One span's fields, in the order they were recorded.
type Fields = Vec<(String, String)>;

struct Visitor<'a>(&'a mut Vec<(String, String)>);

impl field::Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .push((field.name().to_string(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &field::Field, value: &str) {
        self.0.push((field.name().to_string(), value.to_string()));
    }
}

impl Subscriber for Spans {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut spans = self.0.lock().unwrap();
        let mut fields = vec![("span".to_string(), attrs.metadata().name().to_string())];
        attrs.record(&mut Visitor(&mut fields));
        spans.push(fields);
        Id::from_u64(spans.len() as u64)
    }
    fn record(&self, id: &Id, values: &Record<'_>) {
        let mut spans = self.0.lock().unwrap();
        values.record(&mut Visitor(&mut spans[id.into_u64() as usize - 1]));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

impl Spans {
    /// The `memo.compute` spans, each as `field -> value` (last value wins).
    fn computations(&self) -> Vec<std::collections::HashMap<String, String>> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|f| f[0].1 == "memo.compute")
            .map(|f| f.iter().cloned().collect())
            .collect()
    }
}

#[memoize]
fn checked(x: i64) -> Result<i64, String> {
    if x < 0 {
        Err("negative".into())
    } else if x == 13 {
        panic!("unlucky")
    } else {
        Ok(x * 2)
    }
}

#[test]
fn one_span_per_computation_with_its_outcome() {
    let spans = Spans::default();
    with_default(spans.clone(), || {
        assert_eq!(checked(1), Ok(2)); // computed, cached
        assert_eq!(checked(1), Ok(2)); // hits: no span
        assert_eq!(checked(1), Ok(2));
        let _ = checked(-1); // Err: not kept
        let _ = std::panic::catch_unwind(|| checked(13)); // panicked
    });
    let got = spans.computations();
    assert_eq!(got.len(), 3, "{got:?}");
    for span in &got {
        assert!(span["function"].ends_with("::checked"), "{span:?}");
        assert!(span["duration_us"].parse::<u64>().is_ok(), "{span:?}");
    }
    let outcomes: Vec<&str> = got.iter().map(|s| s["outcome"].as_str()).collect();
    assert_eq!(outcomes, ["cached", "not kept", "panicked"]);
}
