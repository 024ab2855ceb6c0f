//! RFC 6962 / RFC 9162 Merkle trees over BLAKE3: interior nodes are `BLAKE3(0x01 ‖ left ‖ right)`,
//! leaves are hashed with a `0x00` prefix (see [`crate::encoding::leaf_hash`]), the empty tree's
//! root is `BLAKE3("")`.
//!
//! [`Frontier`] is the compact range of a tree: the roots of its maximal perfect subtrees, enough to
//! append leaves and compute the root in O(log n). Proofs are built in two steps — the subtree
//! ranges a proof needs ([`inclusion_ranges`], [`consistency_ranges`]), then their hashes from
//! storage — and checked by [`verify_inclusion`] / [`verify_consistency`] (RFC 9162 §2.1.3.2, §2.1.4.2).

use crate::encoding::Hash;

pub fn node(left: &Hash, right: &Hash) -> Hash {
    let mut input = [0x01u8; 65];
    input[1..33].copy_from_slice(left);
    input[33..].copy_from_slice(right);
    *blake3::hash(&input).as_bytes()
}

pub fn empty_root() -> Hash {
    *blake3::hash(b"").as_bytes()
}

/// The largest power of two strictly smaller than `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// A perfect, aligned subtree: `2^level` leaves starting at `index × 2^level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub level: u8,
    pub index: u64,
}

impl NodeId {
    pub fn start(&self) -> u64 {
        self.index << self.level
    }
    pub fn end(&self) -> u64 {
        (self.index + 1) << self.level
    }
}

/// The compact range `[0, size)`: roots of the maximal perfect subtrees, largest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    pub size: u64,
    pub hashes: Vec<Hash>,
}

impl Frontier {
    /// The perfect subtrees the frontier's hashes are the roots of, in the same order.
    pub fn node_ids(&self) -> Vec<NodeId> {
        let mut out = Vec::new();
        let mut start = 0u64;
        for level in (0..64u8).rev() {
            if self.size & (1u64 << level) != 0 {
                out.push(NodeId { level, index: start >> level });
                start += 1u64 << level;
            }
        }
        out
    }

    /// Appends one leaf; returns every interior node this completed (for storage of strata).
    pub fn append(&mut self, leaf: Hash) -> Vec<(NodeId, Hash)> {
        let mut completed = Vec::new();
        self.append_with(leaf, |id, hash| completed.push((id, hash)));
        completed
    }

    /// Appends one leaf, showing `completed` every interior node this completes (no allocation:
    /// this runs once per entry when sequencing and verifying).
    pub fn append_with(&mut self, leaf: Hash, mut completed: impl FnMut(NodeId, Hash)) {
        let mut hash = leaf;
        let mut level = 0u8;
        let mut size = self.size;
        // Each trailing one bit of the old size is a subtree of the same height to merge with.
        while size & 1 == 1 {
            let left = self.hashes.pop().expect("frontier matches its size");
            hash = node(&left, &hash);
            level += 1;
            size >>= 1;
            completed(NodeId { level, index: (self.size + 1) / (1u64 << level) - 1 }, hash);
        }
        self.hashes.push(hash);
        self.size += 1;
    }

    pub fn root(&self) -> Hash {
        let mut iter = self.hashes.iter().rev();
        let Some(last) = iter.next() else { return empty_root() };
        iter.fold(*last, |acc, left| node(left, &acc))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.hashes.concat()
    }

    pub fn from_bytes(size: u64, bytes: &[u8]) -> Option<Frontier> {
        if bytes.len() != size.count_ones() as usize * 32 {
            return None;
        }
        let hashes = bytes.chunks_exact(32).map(|c| c.try_into().expect("32 bytes")).collect();
        Some(Frontier { size, hashes })
    }
}

/// The subtree ranges `[start, end)` whose hashes form the inclusion proof of leaf `index` in a
/// tree of `size` leaves (RFC 6962 §2.1.1 PATH), in proof order.
pub fn inclusion_ranges(index: u64, size: u64) -> Vec<(u64, u64)> {
    fn path(m: u64, lo: u64, hi: u64, out: &mut Vec<(u64, u64)>) {
        if hi - lo <= 1 {
            return;
        }
        let k = split(hi - lo);
        if m < lo + k {
            path(m, lo, lo + k, out);
            out.push((lo + k, hi));
        } else {
            path(m, lo + k, hi, out);
            out.push((lo, lo + k));
        }
    }
    let mut out = Vec::new();
    if index < size {
        path(index, 0, size, &mut out);
    }
    out
}

/// The subtree ranges of the consistency proof from `first` to `second` leaves (RFC 6962 §2.1.2).
pub fn consistency_ranges(first: u64, second: u64) -> Vec<(u64, u64)> {
    fn subproof(m: u64, lo: u64, hi: u64, complete: bool, out: &mut Vec<(u64, u64)>) {
        let n = hi - lo;
        if m == n {
            if !complete {
                out.push((lo, hi));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            subproof(m, lo, lo + k, complete, out);
            out.push((lo + k, hi));
        } else {
            subproof(m - k, lo + k, hi, false, out);
            out.push((lo, lo + k));
        }
    }
    let mut out = Vec::new();
    if 0 < first && first < second {
        subproof(first, 0, second, true, &mut out);
    }
    out
}

/// The perfect aligned subtrees whose hashes, folded RFC 6962-style, give the hash of `[start, end)`.
pub fn decompose(start: u64, end: u64) -> Vec<NodeId> {
    let mut out = Vec::new();
    let n = end - start;
    if n.is_power_of_two() && start.is_multiple_of(n) {
        out.push(NodeId { level: n.trailing_zeros() as u8, index: start / n });
    } else if n > 1 {
        let k = split(n);
        out.extend(decompose(start, start + k));
        out.extend(decompose(start + k, end));
    }
    out
}

/// The hash of `[start, end)` from the hashes of its [`decompose`] nodes (given in that order).
pub fn fold_range(start: u64, end: u64, nodes: &mut impl Iterator<Item = Hash>) -> Option<Hash> {
    let n = end - start;
    if n.is_power_of_two() && start.is_multiple_of(n) {
        return nodes.next();
    }
    if n <= 1 {
        return None;
    }
    let k = split(n);
    let left = fold_range(start, start + k, nodes)?;
    let right = fold_range(start + k, end, nodes)?;
    Some(node(&left, &right))
}

/// The root of `2^level` consecutive hashes one level down... folded pairwise to one.
pub fn fold_perfect(mut hashes: Vec<Hash>) -> Option<Hash> {
    if hashes.is_empty() || !hashes.len().is_power_of_two() {
        return None;
    }
    while hashes.len() > 1 {
        hashes = hashes.chunks_exact(2).map(|p| node(&p[0], &p[1])).collect();
    }
    hashes.pop()
}

/// RFC 9162 §2.1.3.2.
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode, mut r) = (index, size - 1, *leaf);
    for p in proof {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r == *root
}

/// RFC 9162 §2.1.4.2.
pub fn verify_consistency(first: u64, second: u64, first_root: &Hash, second_root: &Hash, proof: &[Hash]) -> bool {
    if first > second {
        return false;
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    if first == 0 {
        return proof.is_empty();
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let Some((head, rest)) = path.split_first() else { return false };
    let (mut fnode, mut snode) = (first - 1, second - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*head, *head);
    for c in rest {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node(c, &fr);
            sr = node(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && fr == *first_root && sr == *second_root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(i: u64) -> Hash {
        *blake3::hash(&i.to_be_bytes()).as_bytes()
    }

    /// RFC 6962 MTH, straight from the definition.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn frontier_root_matches_the_definition_and_reports_completed_nodes() {
        let leaves: Vec<Hash> = (0..70).map(leaf).collect();
        let mut f = Frontier::default();
        assert_eq!(f.root(), empty_root());
        for (i, l) in leaves.iter().enumerate() {
            for (id, hash) in f.append(*l) {
                assert_eq!(hash, mth(&leaves[id.start() as usize..id.end() as usize]), "{id:?}");
            }
            assert_eq!(f.root(), mth(&leaves[..=i]), "size {}", i + 1);
            let again = Frontier::from_bytes(f.size, &f.to_bytes()).unwrap();
            assert_eq!(again, f);
            for (id, h) in f.node_ids().iter().zip(&f.hashes) {
                assert_eq!(*h, mth(&leaves[id.start() as usize..id.end() as usize]));
            }
        }
    }

    #[test]
    fn proofs_built_from_ranges_verify_and_reject_tampering() {
        let leaves: Vec<Hash> = (0..40).map(leaf).collect();
        let hash_of = |(a, b): (u64, u64)| mth(&leaves[a as usize..b as usize]);
        for size in 1..=40u64 {
            let root = mth(&leaves[..size as usize]);
            for index in 0..size {
                let proof: Vec<Hash> = inclusion_ranges(index, size).into_iter().map(hash_of).collect();
                assert!(verify_inclusion(index, size, &leaves[index as usize], &proof, &root), "{index}/{size}");
                assert!(!verify_inclusion(index, size, &leaf(999), &proof, &root));
                if size > 1 {
                    assert!(!verify_inclusion((index + 1) % size, size, &leaves[index as usize], &proof, &root));
                }
            }
            for first in 1..size {
                let first_root = mth(&leaves[..first as usize]);
                let proof: Vec<Hash> = consistency_ranges(first, size).into_iter().map(hash_of).collect();
                assert!(verify_consistency(first, size, &first_root, &root, &proof), "{first}->{size}");
                assert!(!verify_consistency(first, size, &leaf(1), &root, &proof));
            }
        }
    }

    #[test]
    fn ranges_decompose_into_perfect_nodes() {
        let leaves: Vec<Hash> = (0..64).map(leaf).collect();
        for (a, b) in [(0u64, 64u64), (32, 40), (48, 61), (0, 37), (16, 17)] {
            let nodes = decompose(a, b);
            let hashes: Vec<Hash> = nodes.iter().map(|n| mth(&leaves[n.start() as usize..n.end() as usize])).collect();
            assert_eq!(
                fold_range(a, b, &mut hashes.into_iter()),
                Some(mth(&leaves[a as usize..b as usize])),
                "{a}..{b}"
            );
        }
        assert_eq!(fold_perfect(leaves[..8].to_vec()), Some(mth(&leaves[..8])));
    }
}
