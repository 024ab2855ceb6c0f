//! Subtree hashes from storage, and the inclusion and consistency proofs built from them.
//!
//! A perfect subtree's hash is read directly when it lies on a stored stratum (every 8th level) or
//! is a leaf; otherwise it is folded from at most 128 hashes of the stratum below. Below the
//! retention boundary, the compact range kept at pruning supplies what the pruned leaves no longer
//! can — which is exactly what proofs about the remaining entries need.

use std::future::Future;
use std::pin::Pin;

use custos_db::Tx;
use custos_db::schema::audit_tree_nodes;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use crate::encoding::Hash;
use crate::merkle::{self, Frontier, NodeId, fold_perfect, node};
use crate::rows::{leaf_range, to_hash};
use crate::sequencer::{ChainError, STRATUM};

#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error("tree size {requested} is beyond the log ({size} entries)")]
    BeyondTree { requested: u64, size: u64 },
    #[error("entry {0} was pruned by the retention policy; it can no longer be proven")]
    Pruned(u64),
    #[error("stored subtree {0:?} is missing")]
    Missing(NodeId),
    #[error(transparent)]
    Chain(#[from] ChainError),
}

impl From<diesel::result::Error> for ProofError {
    fn from(e: diesel::result::Error) -> Self {
        ProofError::Chain(e.into())
    }
}

/// Reads subtree hashes of one organisation's tree.
pub struct NodeReader<'a> {
    pub tx: &'a mut Tx,
    pub org: Uuid,
    /// Entries below this were pruned.
    pub pruned_before: u64,
    /// The compact range `[0, pruned_before)`.
    pub boundary: Frontier,
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl NodeReader<'_> {
    async fn leaves(&mut self, start: u64, count: u64) -> Result<Vec<Hash>, ProofError> {
        let leaves = leaf_range(self.tx, self.org, start as i64, count as i64).await?;
        if leaves.len() as u64 != count {
            return Err(ProofError::Missing(NodeId { level: 0, index: start }));
        }
        Ok(leaves)
    }

    async fn stratum(&mut self, level: u8, start: u64, count: u64) -> Result<Vec<Hash>, ProofError> {
        let rows: Vec<Vec<u8>> = audit_tree_nodes::table
            .filter(audit_tree_nodes::organization_id.eq(self.org))
            .filter(audit_tree_nodes::level.eq(i16::from(level)))
            .filter(audit_tree_nodes::idx.ge(start as i64))
            .filter(audit_tree_nodes::idx.lt((start + count) as i64))
            .order(audit_tree_nodes::idx.asc())
            .select(audit_tree_nodes::hash)
            .load(self.tx.conn())
            .await?;
        if rows.len() as u64 != count {
            return Err(ProofError::Missing(NodeId { level, index: start }));
        }
        rows.iter().map(|r| to_hash(r).ok_or(ProofError::Missing(NodeId { level, index: start }))).collect()
    }

    /// The hash of one perfect, aligned subtree.
    pub fn perfect(&mut self, id: NodeId) -> BoxFut<'_, Result<Hash, ProofError>> {
        Box::pin(async move {
            if let Some(pos) = self.boundary.node_ids().iter().position(|n| *n == id) {
                return Ok(self.boundary.hashes[pos]);
            }
            let crosses_boundary = id.start() < self.pruned_before;
            if crosses_boundary && id.level == 0 {
                return Err(ProofError::Pruned(id.start()));
            }
            if crosses_boundary && !id.level.is_multiple_of(STRATUM) {
                let left = self.perfect(NodeId { level: id.level - 1, index: id.index * 2 }).await?;
                let right = self.perfect(NodeId { level: id.level - 1, index: id.index * 2 + 1 }).await?;
                return Ok(node(&left, &right));
            }
            if id.level == 0 {
                return Ok(self.leaves(id.index, 1).await?[0]);
            }
            if id.level.is_multiple_of(STRATUM) {
                return Ok(self.stratum(id.level, id.index, 1).await?[0]);
            }
            let below = id.level - id.level % STRATUM;
            let count = 1u64 << (id.level - below);
            let first = id.index << (id.level - below);
            let hashes =
                if below == 0 { self.leaves(first, count).await? } else { self.stratum(below, first, count).await? };
            fold_perfect(hashes).ok_or(ProofError::Missing(id))
        })
    }

    /// The RFC 6962 hash of the leaves `[start, end)`.
    pub async fn range(&mut self, start: u64, end: u64) -> Result<Hash, ProofError> {
        if start == end {
            return Ok(merkle::empty_root());
        }
        let mut hashes = Vec::new();
        for id in merkle::decompose(start, end) {
            hashes.push(self.perfect(id).await?);
        }
        merkle::fold_range(start, end, &mut hashes.into_iter())
            .ok_or(ProofError::Missing(NodeId { level: 0, index: start }))
    }

    pub async fn ranges(&mut self, ranges: Vec<(u64, u64)>) -> Result<Vec<Hash>, ProofError> {
        let mut out = Vec::with_capacity(ranges.len());
        for (a, b) in ranges {
            out.push(self.range(a, b).await?);
        }
        Ok(out)
    }

    /// The compact range `[0, size)`, read from storage.
    pub async fn frontier(&mut self, size: u64) -> Result<Frontier, ProofError> {
        let ids = Frontier { size, hashes: vec![] }.node_ids();
        let mut hashes = Vec::with_capacity(ids.len());
        for id in ids {
            hashes.push(self.perfect(id).await?);
        }
        Ok(Frontier { size, hashes })
    }
}
