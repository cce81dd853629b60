//! [`FileSource`]: a log read once as an [`EventSource`], for `serve` without a broker.

use prescient_core::{Ack, Delivery, Event, EventSource, SourceError};

/// A log replayed once as an event source, in the order given. Acks do nothing: a file has no
/// broker to redeliver from.
#[derive(Debug)]
pub struct FileSource {
    events: std::vec::IntoIter<Event>,
}

impl FileSource {
    /// A source over events already read (see [`crate::read_log`]).
    pub fn new(events: Vec<Event>) -> Self {
        FileSource {
            events: events.into_iter(),
        }
    }
}

#[async_trait::async_trait]
impl EventSource for FileSource {
    async fn next(&mut self) -> Result<Option<Delivery>, SourceError> {
        Ok(self.events.next().map(|e| Delivery {
            payload: Ok(e),
            attempt: 1,
            ack: Ack::noop(),
        }))
    }
}
