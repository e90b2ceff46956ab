//! A vector that lives on the stack until it outgrows `N` entries.
//!
//! `route` needs a few short lists per message (the routing key's word ids,
//! the exchanges visited, the message's parsed headers). Keeping them inline
//! means a routing decision allocates nothing unless one of them is unusually
//! long, and then it still works (it spills to a `Vec`). Entries are `Copy +
//! Default` so the inline array needs no unsafe code.

pub(crate) struct SmallVec<T: Copy + Default, const N: usize> {
    len: usize,
    inline: [T; N],
    /// Holds every entry once `len` would pass `N`; empty (unallocated) before.
    spill: Vec<T>,
}

impl<T: Copy + Default, const N: usize> SmallVec<T, N> {
    pub(crate) fn new() -> Self {
        Self { len: 0, inline: [T::default(); N], spill: Vec::new() }
    }

    pub(crate) fn push(&mut self, v: T) {
        if self.len < N {
            self.inline[self.len] = v;
        } else {
            if self.len == N {
                self.spill.reserve(2 * N);
                self.spill.extend_from_slice(&self.inline);
            }
            self.spill.push(v);
        }
        self.len += 1;
    }

    pub(crate) fn as_slice(&self) -> &[T] {
        if self.len <= N {
            &self.inline[..self.len]
        } else {
            &self.spill
        }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [T] {
        if self.len <= N {
            &mut self.inline[..self.len]
        } else {
            &mut self.spill
        }
    }

    pub(crate) fn get(&self, i: usize) -> Option<T> {
        self.as_slice().get(i).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spills_past_the_inline_capacity() {
        let mut v: SmallVec<u32, 2> = SmallVec::new();
        for i in 0..5 {
            v.push(i);
        }
        assert_eq!(v.as_slice(), &[0, 1, 2, 3, 4]);
        assert_eq!(v.as_slice().len(), 5);
        v.as_mut_slice()[0] = 9;
        assert_eq!(v.get(0), Some(9));
        assert_eq!(v.get(5), None);
    }
}
