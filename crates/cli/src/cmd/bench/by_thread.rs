//! The consumer's own runtime in `bench live`, and the cache and store that give its threads
//! connections of their own: the consumer runs beside `serve` in one process, but as a separate
//! process would, so that `serve`'s work does not sit between a read and its answer.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use prescient_core::{
    Cache, CacheError, EntityKey, Entry, PutOutcome, SmolStr, Store, StoreError, Version,
};

thread_local! {
    /// Whether this thread belongs to the consumer's runtime.
    static ON_CONSUMER: Cell<bool> = const { Cell::new(false) };
}

/// The consumer's own tokio runtime: one worker thread, apart from `serve`'s runtime, as a
/// consumer process of its own would be. Its threads are marked so that [`ByThread`] gives them
/// their own connections.
pub(super) fn consumer_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-consumer")
        .on_thread_start(|| ON_CONSUMER.with(|c| c.set(true)))
        .enable_all()
        .build()
}

/// A cache or store with two sets of connections: one for the threads of the consumer's runtime,
/// one for the others (`serve`). The consumer reads through `serve`'s
/// [`Prefetcher`](prescient_prefetch::Prefetcher), as an in-process consumer does, but over
/// connections that its own runtime drives, so that `serve`'s CPU work does not sit between a
/// read and its answer.
#[derive(Debug)]
pub(super) struct ByThread<T: ?Sized> {
    pub(super) serve: Arc<T>,
    pub(super) consumer: Arc<T>,
}

impl<T: ?Sized> ByThread<T> {
    fn pick(&self) -> &T {
        if ON_CONSUMER.with(Cell::get) {
            &self.consumer
        } else {
            &self.serve
        }
    }
}

/// A boxed future, as `#[async_trait]` methods return them.
type Fut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

// Written out as `#[async_trait]` expands them: each call is passed on as it is.
impl Cache for ByThread<dyn Cache> {
    fn get<'s, 'k, 'f>(&'s self, key: &'k EntityKey) -> Fut<'f, Result<Option<Entry>, CacheError>>
    where
        's: 'f,
        'k: 'f,
        Self: 'f,
    {
        self.pick().get(key)
    }
    fn get_many<'s, 'k, 'f>(
        &'s self,
        keys: &'k [EntityKey],
    ) -> Fut<'f, Result<Vec<Option<Entry>>, CacheError>>
    where
        's: 'f,
        'k: 'f,
        Self: 'f,
    {
        self.pick().get_many(keys)
    }
    fn put<'s, 'k, 'f>(
        &'s self,
        key: &'k EntityKey,
        entry: Entry,
        ttl: Duration,
    ) -> Fut<'f, Result<PutOutcome, CacheError>>
    where
        's: 'f,
        'k: 'f,
        Self: 'f,
    {
        self.pick().put(key, entry, ttl)
    }
    fn invalidate<'s, 'k, 'f>(
        &'s self,
        key: &'k EntityKey,
        min_version: Version,
    ) -> Fut<'f, Result<(), CacheError>>
    where
        's: 'f,
        'k: 'f,
        Self: 'f,
    {
        self.pick().invalidate(key, min_version)
    }
}

impl Store for ByThread<dyn Store> {
    fn load_batch<'s, 'k, 'i, 'f>(
        &'s self,
        kind: &'k str,
        ids: &'i [SmolStr],
    ) -> Fut<'f, Result<Vec<Option<Entry>>, StoreError>>
    where
        's: 'f,
        'k: 'f,
        'i: 'f,
        Self: 'f,
    {
        self.pick().load_batch(kind, ids)
    }
    fn load<'s, 'k, 'f>(&'s self, key: &'k EntityKey) -> Fut<'f, Result<Option<Entry>, StoreError>>
    where
        's: 'f,
        'k: 'f,
        Self: 'f,
    {
        self.pick().load(key)
    }
}

/// Runs `fut` on the consumer's runtime and waits for it.
pub(super) async fn on_consumer<T: Send + 'static>(
    consumer: &tokio::runtime::Handle,
    fut: impl Future<Output = T> + Send + 'static,
) -> anyhow::Result<T> {
    consumer
        .spawn(fut)
        .await
        .map_err(|e| anyhow::anyhow!("consumer task failed: {e}"))
}
