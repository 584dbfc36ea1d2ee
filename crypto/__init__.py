"""Cryptographic building blocks: CKKS (TenSEAL), SMPC (secure aggregation, CrypTen), DP."""
