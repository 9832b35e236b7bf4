"""The transparency log: RFC 6962 Merkle tree, C2SP checkpoints, tiles and receipts, over a store."""

from redline.log.checkpoint import Checkpoint, open_checkpoint
from redline.log.leaf import MAX_ENTRY_BYTES, decode_leaf, encode_leaf
from redline.log.receipt import Receipt, verify_receipt

__all__ = ["MAX_ENTRY_BYTES", "Checkpoint", "Receipt", "decode_leaf", "encode_leaf", "open_checkpoint",
           "verify_receipt"]
