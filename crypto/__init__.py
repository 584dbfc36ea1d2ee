"""Cryptographic building blocks: CKKS (TenSEAL), SMPC (secure aggregation, CrypTen), DP.

- `crypto.ckks`: a bank's CKKS keys, packed one-hot encryption, the PNS's masked grouped
  sums and row scores, the bank's masked decryption.
- `crypto.channel`: end-to-end sealed payloads relayed by the coordinator.
- `crypto.secagg`: pairwise-masked secure aggregation (abort on drop-out).
- `crypto.mpc`: CrypTen two-party comparison (import CrypTen only via `crypten_compat`).
- `crypto.dp`, `crypto.accountant`: CSPRNG noise and the RDP privacy ledger.

Security parameters and what each party sees: docs/security.md.
"""
