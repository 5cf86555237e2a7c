//! Helpers shared by the fuzz targets in `fuzz_targets/`: an allocator that
//! measures how much memory a piece of code holds at its peak, and a reader
//! that turns the fuzzer's bytes into the choices a target needs.
//!
//! The socketbox crate forbids `unsafe`; this harness crate needs it in one
//! place, because a [`GlobalAlloc`] can only be implemented unsafely. The
//! implementation forwards every call to [`System`] unchanged and only keeps
//! two counters, so it adds no unsafety of its own.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Bytes currently allocated through the global allocator.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// The most `LIVE` has been since the last [`peak_heap_growth`] began.
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting live bytes and their peak.
pub struct CountingAllocator;

impl CountingAllocator {
    fn grew(by: usize) {
        let live = LIVE.fetch_add(by, Relaxed) + by;
        PEAK.fetch_max(live, Relaxed);
    }

    fn shrank(by: usize) {
        LIVE.fetch_sub(by, Relaxed);
    }
}

// SAFETY: every method forwards its arguments to `System` unchanged and
// returns what `System` returned; the counters never influence allocation.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc(layout);
        if !ptr.is_null() {
            Self::grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc_zeroed(layout);
        if !ptr.is_null() {
            Self::grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        Self::shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_ptr = System.realloc(ptr, layout, new_size);
        if !new_ptr.is_null() {
            if new_size >= layout.size() {
                Self::grew(new_size - layout.size());
            } else {
                Self::shrank(layout.size() - new_size);
            }
        }
        new_ptr
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Runs `f` and returns its result with the most heap memory, in bytes, that
/// was held at any moment during `f` on top of what was held before it.
///
/// libFuzzer runs one input at a time on one thread, so nothing else
/// allocates meanwhile.
pub fn peak_heap_growth<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = LIVE.load(Relaxed);
    PEAK.store(before, Relaxed);
    let result = f();
    let growth = PEAK.load(Relaxed).saturating_sub(before);
    (result, growth)
}

/// Reads choices off the front of the fuzzer's input; past its end every
/// read gives zeros, so any input, even an empty one, is usable.
pub struct Choices<'a> {
    bytes: &'a [u8],
}

impl<'a> Choices<'a> {
    /// A reader over `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Choices { bytes }
    }

    /// The next byte, or 0.
    pub fn byte(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((first, rest)) => {
                self.bytes = rest;
                *first
            }
            None => 0,
        }
    }

    /// The next two bytes, little-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// The next `N` bytes, zero-padded.
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for byte in &mut out {
            *byte = self.byte();
        }
        out
    }

    /// Everything not read yet.
    pub fn rest(self) -> &'a [u8] {
        self.bytes
    }

    /// Reads a count `n = byte % (max + 1)` and then `n` little-endian u16
    /// positions, and returns them as sorted cut points into a stream of
    /// `len` bytes (each in `0..=len`; repeats give empty pieces). Call
    /// before [`Self::rest`], and pass the length of what `rest` returns.
    pub fn cut_points(&mut self, max: u8) -> Vec<u16> {
        let count = self.byte() % (max + 1);
        (0..count).map(|_| self.u16()).collect()
    }
}

/// Turns raw positions from [`Choices::cut_points`] into the sorted end
/// offsets of the pieces of a `len`-byte stream; the last is always `len`.
pub fn piece_ends(raw: &[u16], len: usize) -> Vec<usize> {
    let mut ends: Vec<usize> = raw.iter().map(|&p| usize::from(p) % (len + 1)).collect();
    ends.sort_unstable();
    ends.push(len);
    ends
}
