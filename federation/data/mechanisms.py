"""The variable parts of a world variant: flag semantics, bank-only anomalies, status
interactions and status decoys (see `federation.data.variants` and docs/data.md).

The default world's code (world.py, payments.py) is left untouched, so that its data and
`generator_digest()` stay as they are; this module reuses its steps and adds the variant's
own draws only where a parameter differs from the default, so that a variant with default
parameters reproduces the default generator byte for byte (tests/test_data_variants.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from federation.data.payments import (
    DAY,
    MECH,
    Arrays,
    Rng,
    StageSpec,
    Traits,
    _beneficiary,
    _cut,
    _legs,
    _parties,
    _pick_in_bank,
    _settlement,
    currencies,
    draw_mechanisms,
)
from federation.data.world import BLOCK_FLAGS, WATCH_FLAGS, World

if TYPE_CHECKING:
    from federation.data.variants import Variant

# Mechanisms that only the beneficiary's bank can explain (its status says why).
BANK_MECHANISMS = ("missing_account", "details_mismatch", "flagged_account")
# Normal payments whose beneficiary status is not ok: codes of the status decoy kinds.
STATUS_DECOY_KINDS = ("missing", "mismatch", "flagged")


def region_of(rng: Rng, world: World, variant: Variant) -> dict[str, Any]:
    """Where the bank status explains anomalies: every payment (no interaction), an amount
    band in log USD, or the payments into a subset of banks (the status corridors)."""
    n = len(world.bank_code)
    banks = np.ones(n, dtype=bool)
    if variant.interaction == "corridor":
        chosen = rng.choice(n, size=min(n - 1, max(1, round(variant.corridor_share * n))),
                            replace=False)
        banks = np.zeros(n, dtype=bool)
        banks[chosen] = True
    return {"interaction": variant.interaction, "status_banks": banks,
            "amount_band": variant.amount_band}


def apply_flags(rng: Rng, world: World, variant: Variant) -> None:
    """Redraw the accounts' flags for the variant's flag semantics (the default world
    keeps the flags `build_world` drew)."""
    from federation.data.variants import DEFAULT_FLAGS

    if variant.flag_semantics() == DEFAULT_FLAGS:
        return
    mules = world.mules
    flags = world.flags
    flags[mules] = np.where(rng.random(len(mules)) < variant.mule_block_share,
                            rng.choice(BLOCK_FLAGS, len(mules)),
                            rng.choice(WATCH_FLAGS, len(mules)))
    # Missing flags: mules whose bank never flagged them (their anomalies look ok).
    flags[mules[rng.random(len(mules)) < variant.mule_unflagged_share]] = "00"
    # Flags on ordinary accounts (receiving normal payments), some of them blocking.
    ordinary = np.flatnonzero((flags != "00") & ~np.isin(np.arange(len(flags)), mules))
    block = ordinary[rng.random(len(ordinary)) < variant.normal_block_share]
    flags[block] = rng.choice(BLOCK_FLAGS, len(block))


def _status_decoys(rng: Rng, normal: np.ndarray, variant: Variant) -> np.ndarray:
    """Per payment: 0, or 1 + an index into STATUS_DECOY_KINDS for a normal payment whose
    status is not ok (no draws at all when the variant has none)."""
    kind = np.zeros(len(normal), dtype=np.int8)
    if variant.status_decoy_rate > 0:
        chosen = normal & (rng.random(len(normal)) < variant.status_decoy_rate)
        kind[chosen] = 1 + rng.integers(0, len(STATUS_DECOY_KINDS), int(chosen.sum()))
    return kind


def _is_decoy(kind: np.ndarray, name: str) -> np.ndarray:
    return kind == 1 + STATUS_DECOY_KINDS.index(name)


def _mule_in(rng: Rng, world: World, bank: np.ndarray) -> np.ndarray:
    """A reserved (mule) account of each given bank."""
    count = world.mule_start[bank + 1] - world.mule_start[bank]
    return world.mules[world.mule_start[bank] + (rng.random(len(bank)) * count).astype(int)]


def _bank_in(rng: Rng, world: World, obank: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """A beneficiary bank in `allowed` for each ordering bank: one of its correspondents
    if any is allowed (so the corridor looks usual), else any allowed bank."""
    partners = world.partners[obank]
    ok = allowed[partners] & (partners != obank[:, None])
    pick = np.argmax(np.where(ok, rng.random(ok.shape), -1.0), axis=1)
    out = partners[np.arange(len(obank)), pick]
    none = ~ok.any(axis=1)
    pool = np.flatnonzero(allowed)
    out[none] = pool[rng.integers(0, len(pool), int(none.sum()))]
    return out


def _confine(rng: Rng, world: World, who: Arrays, rows: np.ndarray, allowed: np.ndarray,
             flagged: np.ndarray) -> None:
    """Move the payments `rows` into banks where `allowed`, with a new beneficiary there
    (a mule where `flagged`)."""
    move = rows & ~allowed[who["bbank"]]
    if not move.any():
        return
    who["bbank"][move] = _bank_in(rng, world, who["obank"][move], allowed)
    who["ben"][move] = _pick_in_bank(rng, world, who["bbank"][move])
    mule = move & flagged
    who["ben"][mule] = _mule_in(rng, world, who["bbank"][mule])


def _parties_v(rng: Rng, world: World, mech: np.ndarray, decoy: Traits, kind: np.ndarray,
               region: dict[str, Any]) -> Arrays:
    who = _parties(rng, world, mech, decoy)
    bank_side = np.isin(mech, [MECH[m] for m in BANK_MECHANISMS])
    flagged_mech = mech == MECH["flagged_account"]
    flagged_decoy = _is_decoy(kind, "flagged")
    if region["interaction"] == "corridor":
        banks = region["status_banks"]
        _confine(rng, world, who, bank_side, banks, flagged_mech)
        _confine(rng, world, who, kind > 0, ~banks, flagged_decoy)
    if flagged_decoy.any():  # normal payments to a flagged (mule) account
        who["ben"][flagged_decoy] = _mule_in(rng, world, who["bbank"][flagged_decoy])
    return who


def _amounts_v(rng: Rng, world: World, mech: np.ndarray, decoy: Traits, who: Arrays,
               kind: np.ndarray, variant: Variant, region: dict[str, Any]) -> Arrays:
    """As payments._amounts, with the variant's traces and the amount interaction."""
    o = who["orderer"]
    z = rng.standard_normal(len(mech))
    bank_side = np.isin(mech, [MECH[m] for m in BANK_MECHANISMS])
    traced = bank_side | (mech == MECH["rare_corridor"])
    z[traced] = rng.uniform(*variant.bank_trace, int(traced.sum()))
    if variant.bank_traceless_share > 0:  # bank-only anomalies: an ordinary amount
        plain = bank_side & (rng.random(len(mech)) < variant.bank_traceless_share)
        z[plain] = rng.standard_normal(int(plain.sum()))
    outlier = mech == MECH["amount_outlier"]
    z[outlier] = rng.uniform(*variant.outlier_z, int(outlier.sum()))
    z[decoy["big_amount"]] = rng.uniform(3.5, 5.5, int(decoy["big_amount"].sum()))
    usd = np.exp(world.amount_mu[o] + world.amount_sigma[o] * z)
    if region["interaction"] == "amount":
        usd = _amount_band(rng, usd, bank_side, kind > 0, region["amount_band"])
    return currencies(rng, world, who, mech, decoy, usd)


def _amount_band(rng: Rng, usd: np.ndarray, inside: np.ndarray, outside: np.ndarray,
                 band: tuple[float, float]) -> np.ndarray:
    """Status-explained anomalies inside the log-USD band, status decoys outside it."""
    lo, hi = band
    log = np.log(usd)
    move_in = inside & ((log < lo) | (log > hi))
    log[move_in] = rng.uniform(lo, hi, int(move_in.sum()))
    move_out = outside & (log >= lo) & (log <= hi)
    step = rng.uniform(0.1, 1.5, int(move_out.sum()))
    below = rng.random(int(move_out.sum())) < 0.5
    log[move_out] = np.where(below, lo - step, hi + step)
    return np.exp(log)


def simulate_variant_stage(rng: Rng, world: World, spec: StageSpec, variant: Variant,
                           region: dict[str, Any]) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """payments.simulate_stage for a variant: the table, each row's mechanism (-1 normal)
    and each row's status decoy kind (0 none, else 1 + index into STATUS_DECOY_KINDS)."""
    decoys = variant.decoys()
    mech, decoy = draw_mechanisms(rng, spec, variant.mix, decoys)
    kind = _status_decoys(rng, mech < 0, variant)
    legs = _cut(rng, mech, decoy, spec.rows)
    p = len(legs)
    mech, kind = mech[:p], kind[:p]
    decoy = {k: v[:p] for k, v in decoy.items()} | {"fx_instructed": decoys.fx_instructed}
    who = _parties_v(rng, world, mech, decoy, kind, region)
    hop = rng.integers(60, 1800, p)  # seconds between consecutive legs
    room = spec.days * DAY - (legs - 1) * hop
    start = spec.first_day * DAY + (rng.random(p) * room).astype(np.int64)
    columns = _amounts_v(rng, world, mech, decoy, who, kind, variant, region)
    columns["SettlementDate"] = _settlement(rng, mech, decoy, (start + (legs - 1) * hop) // DAY)
    # Status decoys reuse the stale-account and name-typo traits: unknown or mismatched.
    shown = decoy | {"stale_account": decoy["stale_account"] | _is_decoy(kind, "missing"),
                     "details_typo": decoy["details_typo"] | _is_decoy(kind, "mismatch")}
    columns |= _beneficiary(rng, world, mech, shown, who["ben"])
    table, row_mech = _legs(rng, world, spec, mech, legs, who, start, hop, columns)
    return table, row_mech, _row_kind(kind, legs, start, hop)


def _row_kind(kind: np.ndarray, legs: np.ndarray, start: np.ndarray, hop: np.ndarray
              ) -> np.ndarray:
    """Per row, the status decoy kind of its payment, in the rows' time order (the same
    stable sort as payments._legs)."""
    pay = np.repeat(np.arange(len(legs)), legs)
    leg = np.arange(int(legs.sum())) - np.repeat(np.cumsum(legs) - legs, legs)
    order = np.argsort(start[pay] + leg * hop[pay], kind="stable")
    return kind[pay[order]]
