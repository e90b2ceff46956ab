//! Buffers aligned for O_DIRECT (`BLOCK` bytes): std's `Vec` cannot
//! promise more than its element's alignment. A log write copies its chunk
//! into one and hands it to a blocking thread, which writes it and gives
//! it back to a small shared pool: allocating a fresh one per flush cost a
//! page fault and a page of zeroing per 4 KiB written (`WriteBuf`).

use super::record::BLOCK;
use std::io;
use std::ptr::NonNull;
use std::sync::Mutex;

pub struct Aligned {
    ptr: NonNull<u8>,
    layout: std::alloc::Layout,
    /// Initialised bytes (from the start).
    len: usize,
}

// SAFETY: it owns its allocation, like a Vec<u8>.
unsafe impl Send for Aligned {}

impl Aligned {
    /// Room for `cap` bytes (at least one block), none initialised.
    fn with_capacity(cap: usize) -> io::Result<Self> {
        let layout = std::alloc::Layout::from_size_align(cap.max(BLOCK), BLOCK).map_err(io::Error::other)?;
        // SAFETY: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { std::alloc::alloc(layout) })
            .ok_or_else(|| io::Error::new(io::ErrorKind::OutOfMemory, "no memory for an I/O buffer"))?;
        Ok(Self { ptr, layout, len: 0 })
    }

    fn capacity(&self) -> usize {
        self.layout.size()
    }

    /// Replaces the contents with `data` (which must fit).
    fn fill(&mut self, data: &[u8]) {
        assert!(data.len() <= self.capacity(), "an aligned buffer overfilled");
        // SAFETY: the allocation holds at least `data.len()` bytes (checked)
        // and does not overlap `data`.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr(), data.len()) };
        self.len = data.len();
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the first `len` bytes are initialised (`fill`).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout in `with_capacity`.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// Write buffers kept for reuse (every shard's), and the largest kept.
static KEPT: Mutex<Vec<Aligned>> = Mutex::new(Vec::new());
const KEPT_MAX: usize = 8;
const KEPT_BYTES_MAX: usize = 4 << 20;

/// A copy of one write's data in an aligned buffer, which goes back to the
/// pool when dropped (on the thread that wrote it).
pub struct WriteBuf(Option<Aligned>);

impl WriteBuf {
    pub fn copy_of(data: &[u8]) -> io::Result<Self> {
        let kept = {
            let mut k = KEPT.lock().unwrap_or_else(|p| p.into_inner());
            k.iter().position(|b| b.capacity() >= data.len()).map(|i| k.swap_remove(i))
        };
        let mut buf = match kept {
            Some(b) => b,
            None => Aligned::with_capacity(data.len().next_power_of_two().max(64 << 10))?,
        };
        buf.fill(data);
        Ok(Self(Some(buf)))
    }

    pub fn as_slice(&self) -> &[u8] {
        self.0.as_ref().map_or(&[], |b| b.as_slice())
    }
}

impl Drop for WriteBuf {
    fn drop(&mut self) {
        let Some(b) = self.0.take() else { return };
        let mut k = KEPT.lock().unwrap_or_else(|p| p.into_inner());
        if k.len() < KEPT_MAX && b.capacity() <= KEPT_BYTES_MAX {
            k.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_copies_and_reuse() {
        let a = WriteBuf::copy_of(&[7u8; 5000]).unwrap();
        assert_eq!(a.as_slice().as_ptr() as usize % BLOCK, 0);
        assert_eq!(a.as_slice(), &[7u8; 5000][..]);
        drop(a);
        // Another test may take the kept one meanwhile: only the contents
        // and the alignment are certain.
        let b = WriteBuf::copy_of(&[9u8; 100]).unwrap();
        assert_eq!(b.as_slice(), &[9u8; 100][..]);
        assert_eq!(b.as_slice().as_ptr() as usize % BLOCK, 0);
        let big = WriteBuf::copy_of(&vec![1u8; 5 << 20]).unwrap();
        assert_eq!(big.as_slice().len(), 5 << 20);
        drop(big);
        assert!(KEPT.lock().unwrap().iter().all(|b| b.capacity() <= KEPT_BYTES_MAX), "an oversized buffer is not kept");
    }
}
