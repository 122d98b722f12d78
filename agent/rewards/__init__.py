"""Rewards: contribution attribution, the Merkle tree of payouts, and epochs."""
