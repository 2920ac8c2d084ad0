"""The single writer of orders: one sequencer per engine process owns the books of its
markets in memory, applies commands one at a time and persists them in batches
(docs/matching.md, "The sequencer")."""
