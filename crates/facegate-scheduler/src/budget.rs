//! A budget of bytes that requests take a share of while they hold memory, and give back when
//! dropped. Counted in KiB, so a semaphore's u32 permits cover terabytes.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, Clone)]
pub struct ByteBudget {
    kib: Arc<Semaphore>,
    total_kib: u64,
}

/// A share of a [`ByteBudget`], given back when dropped.
pub type ByteShare = OwnedSemaphorePermit;

impl ByteBudget {
    pub fn new(bytes: u64) -> Self {
        let total_kib = (bytes / 1024).min(u32::MAX as u64);
        Self {
            kib: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
        }
    }

    /// Whole KiB for `bytes`; a request larger than the whole budget takes all of it, so it
    /// goes through alone.
    fn share(&self, bytes: u64) -> u32 {
        bytes.div_ceil(1024).min(self.total_kib) as u32
    }

    /// `bytes` now, or `None` when what is left is too little.
    pub fn try_take(&self, bytes: u64) -> Option<ByteShare> {
        self.kib.clone().try_acquire_many_owned(self.share(bytes)).ok()
    }

    /// `bytes` once enough is given back; `None` once the budget is closed.
    pub async fn take(&self, bytes: u64) -> Option<ByteShare> {
        self.kib.clone().acquire_many_owned(self.share(bytes)).await.ok()
    }

    /// Bytes taken now (KiB granularity; a waiting `take` counts what it has reserved).
    pub fn held(&self) -> u64 {
        (self.total_kib - self.kib.available_permits() as u64) * 1024
    }

    /// Refuse every `take` still waiting, and all later ones.
    pub fn close(&self) {
        self.kib.close();
    }
}
