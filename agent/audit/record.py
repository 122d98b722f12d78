"""The decision record: what the agent saw and did at one bar, and its canonical hash.

A `DecisionRecord` is immutable and holds exactly what is hashed: fractions (signals, exposure)
are already fixed-point integers, so the record, its JSON form and its hash never disagree.
`encode` is the Ethereum ABI encoding of one fixed list of types (`RECORD_ABI_TYPES`), the same
bytes as Solidity's `abi.encode(...)` of those values; `decision_hash` is keccak256 of it, and
`decision_hashes` the same for many records at once. Every keccak256 here goes through
`keccak256`, the fastest binding measured (benchmarks/keccak.py), equal to `eth_utils.keccak`.
docs/audit.md spells the encoding out field by field for verifiers in other languages.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from eth_abi import encode as abi_encode
from tiny_keccak import keccak256 as _keccak256

from agent.errors import AuditError

if TYPE_CHECKING:
    from agent.config import Settings

ENCODING_VERSION = 1
"""The first value of every encoding; bumped if the field list ever changes."""

FIXED_POINT_SCALE = 10**9
"""Fractions are stored as round_half_even(value * 10**9) integers."""

ZERO_HASH = "0x" + "00" * 32
"""bytes32(0): `prev_hash` of the first record; `tx_hash` of a trade not executed on-chain."""

TradeSide = Literal["none", "buy", "sell"]
SIDE_CODES: dict[str, int] = {"none": 0, "buy": 1, "sell": 2}
"""`side` as encoded: 0 no trade, 1 buy (quote in, base out), 2 sell (base in, quote out)."""

RECORD_ABI_TYPES: tuple[str, ...] = (
    "uint8",  # version (ENCODING_VERSION)
    "uint64",  # seq
    "int64",  # bar_time_ms
    "string",  # market
    "bytes32",  # model_id
    "bytes32",  # config_hash
    "bytes32",  # observation_digest
    "string[]",  # strategy_names
    "int64[]",  # signals_e9
    "bool[]",  # masks
    "uint64",  # target_exposure_e9
    "uint8",  # trade.side
    "uint256",  # trade.amount_in
    "uint256",  # trade.amount_out
    "uint256",  # trade.fee
    "uint64",  # trade.gas_used
    "bytes32",  # trade.tx_hash
    "bytes32",  # prev_hash
)
"""The canonical encoding is `eth_abi.encode(RECORD_ABI_TYPES, values)` in this order."""

_UINT64_MAX = 2**64 - 1
_UINT256_MAX = 2**256 - 1
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def keccak256(data: bytes) -> bytes:
    """Return Ethereum's keccak256 of `data` (not NIST SHA3-256), as 32 bytes.

    The same digest as `eth_utils.keccak(data)`, several times faster: tiny-keccak calls its
    Rust implementation directly, where eth_utils goes through eth-hash's backend dispatch to
    pycryptodome (benchmarks/keccak.py compares them).
    """
    return _keccak256(data if type(data) is bytes else bytes(data))


def _raw(hex32: str) -> bytes:
    return bytes.fromhex(hex32[2:])


def _int(value: Any, name: str, low: int, high: int) -> int:
    """Return `value` as a plain int, refusing bools, floats and values outside [low, high]."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise AuditError(f"{name} {value!r}: expected an integer")
    number = int(value)
    if not low <= number <= high:
        raise AuditError(f"{name} = {number}: expected an integer in [{low}, {high}]")
    return number


def _set_int(obj: object, attribute: str, name: str, low: int, high: int) -> None:
    object.__setattr__(obj, attribute, _int(getattr(obj, attribute), name, low, high))


def to_fixed_e9(value: float) -> int:
    """Return `value * 10**9` rounded half to even, computed exactly from the binary64 value.

    The float is taken as the exact rational number it represents (no decimal round trip), so
    every implementation that multiplies exactly and rounds ties to even gets the same integer.

    Raises:
        AuditError: `value` is NaN or infinite.
    """
    if not math.isfinite(value):
        raise AuditError(f"cannot encode the non-finite value {value!r} as a fixed-point number")
    return round(Fraction(value) * FIXED_POINT_SCALE)


def as_bytes32(value: str | bytes, what: str = "value") -> str:
    """Return a 32-byte value as canonical hex: `0x` + 64 lowercase hex digits.

    Raises:
        AuditError: `value` is not 32 bytes (or 64 hex digits, with or without `0x`).
    """
    if isinstance(value, bytes | bytearray):
        if len(value) != 32:
            raise AuditError(f"{what}: expected 32 bytes, got {len(value)}")
        return "0x" + bytes(value).hex()
    digits = value[2:] if value[:2] in ("0x", "0X") else value
    try:
        raw = bytes.fromhex(digits)
    except ValueError as e:
        raise AuditError(f"{what} {value!r}: expected 64 hex digits") from e
    if len(raw) != 32:
        raise AuditError(f"{what} {value!r}: expected 64 hex digits, got {len(digits)}")
    return "0x" + raw.hex()


def text_id(text: str) -> str:
    """Return keccak256 of a UTF-8 text, as bytes32 hex: a model id for a name-like identifier."""
    return "0x" + keccak256(text.encode("utf-8")).hex()


def config_digest(settings: Settings) -> str:
    """Return the full sha256 of the effective configuration, as bytes32 hex.

    `Settings.config_hash()` keeps only the first 16 hex digits of the same sha256, so it is a
    prefix of this digest without the `0x`, and a record's `config_hash` can be matched to a
    run's.
    """
    return "0x" + settings.config_sha256()


def observation_digest(observation: Any) -> str:
    """Return keccak256 of an observation cast to float32, flattened in C order, little-endian."""
    data = np.ascontiguousarray(np.asarray(observation, dtype="<f4")).tobytes()
    return "0x" + keccak256(data).hex()


@dataclass(frozen=True, slots=True)
class ExecutedTrade:
    """The trade a decision led to, in integer token units.

    Attributes:
        side: 'none' (no trade), 'buy' (quote in, base out) or 'sell' (base in, quote out).
        amount_in: paid into the pool, in units of the token sold.
        amount_out: received from the pool, in units of the token bought.
        fee: the pool fee, in units of the token sold (part of `amount_in`).
        gas_used: gas units of the swap transaction (or the simulated gas off-chain).
        tx_hash: the swap's transaction hash when executed on-chain, else `ZERO_HASH`.
    """

    side: TradeSide = "none"
    amount_in: int = 0
    amount_out: int = 0
    fee: int = 0
    gas_used: int = 0
    tx_hash: str = ZERO_HASH

    def __post_init__(self) -> None:
        if self.side not in SIDE_CODES:
            raise AuditError(f"trade side {self.side!r}: expected one of {list(SIDE_CODES)}")
        for name in ("amount_in", "amount_out", "fee"):
            _set_int(self, name, f"trade.{name}", 0, _UINT256_MAX)
        _set_int(self, "gas_used", "trade.gas_used", 0, _UINT64_MAX)
        object.__setattr__(self, "tx_hash", as_bytes32(self.tx_hash, "trade.tx_hash"))
        if self.side == "none" and (self.amount_in or self.amount_out or self.fee):
            raise AuditError("a trade with side 'none' must have zero amounts and fee")

    def to_json_data(self) -> dict[str, Any]:
        """Return the trade as JSON data; token amounts are decimal strings (they exceed 2**53)."""
        return {
            "side": self.side,
            "amount_in": str(self.amount_in),
            "amount_out": str(self.amount_out),
            "fee": str(self.fee),
            "gas_used": self.gas_used,
            "tx_hash": self.tx_hash,
        }

    @classmethod
    def from_json_data(cls, data: Mapping[str, Any]) -> ExecutedTrade:
        """Rebuild a trade from `to_json_data` output."""
        return cls(
            side=data["side"],
            amount_in=int(data["amount_in"]),
            amount_out=int(data["amount_out"]),
            fee=int(data["fee"]),
            gas_used=int(data["gas_used"]),
            tx_hash=data["tx_hash"],
        )


NO_TRADE = ExecutedTrade()


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One decision, exactly as hashed and logged on-chain.

    Attributes:
        seq: 0-based position in the trail; equals the DecisionLog sequence number.
        bar_time_ms: open time of the decision's bar, Unix milliseconds (UTC).
        market: `source:symbol:timeframe`, e.g. `synthetic:SYN/USD:1h`.
        model_id: the policy's id, bytes32 hex.
        config_hash: the configuration's digest (`config_digest`), bytes32 hex.
        observation_digest: `observation_digest` of the policy's input.
        strategy_names: the strategies, in the order the policy sees their signals.
        signals_e9: each signal in [-1, 1] as `to_fixed_e9`; 0 where the mask is off.
        masks: whether each signal was available.
        target_exposure_e9: the chosen exposure in [0, 1] as `to_fixed_e9`.
        trade: what was executed.
        prev_hash: `decision_hash` of record `seq - 1`; `ZERO_HASH` for seq 0.
    """

    seq: int
    bar_time_ms: int
    market: str
    model_id: str
    config_hash: str
    observation_digest: str
    strategy_names: tuple[str, ...]
    signals_e9: tuple[int, ...]
    masks: tuple[bool, ...]
    target_exposure_e9: int
    trade: ExecutedTrade = field(default=NO_TRADE)
    prev_hash: str = ZERO_HASH

    def __post_init__(self) -> None:
        _set_int(self, "seq", "seq", 0, _UINT64_MAX)
        _set_int(self, "bar_time_ms", "bar_time_ms", _INT64_MIN, _INT64_MAX)
        if not isinstance(self.market, str) or not self.market:
            raise AuditError(f"market {self.market!r}: expected a non-empty string")
        for name in ("model_id", "config_hash", "observation_digest", "prev_hash"):
            object.__setattr__(self, name, as_bytes32(getattr(self, name), name))
        names = tuple(self.strategy_names)
        signals = tuple(
            _int(s, f"signals_e9[{i}]", -FIXED_POINT_SCALE, FIXED_POINT_SCALE)
            for i, s in enumerate(self.signals_e9)
        )
        masks = tuple(bool(m) if isinstance(m, np.bool_) else m for m in self.masks)
        if not len(names) == len(signals) == len(masks):
            raise AuditError(
                f"strategy_names, signals_e9 and masks differ in length "
                f"({len(names)}, {len(signals)}, {len(masks)})"
            )
        for i, (name, signal, mask) in enumerate(zip(names, signals, masks, strict=True)):
            if not isinstance(name, str):
                raise AuditError(f"strategy_names[{i}] {name!r}: expected a string")
            if not isinstance(mask, bool):
                raise AuditError(f"masks[{i}] {mask!r}: expected a bool")
            if not mask and signal != 0:
                raise AuditError(f"signals_e9[{i}] = {signal} but its mask is off: expected 0")
        object.__setattr__(self, "strategy_names", names)
        object.__setattr__(self, "signals_e9", signals)
        object.__setattr__(self, "masks", masks)
        _set_int(self, "target_exposure_e9", "target_exposure_e9", 0, FIXED_POINT_SCALE)
        if not isinstance(self.trade, ExecutedTrade):
            raise AuditError(f"trade {self.trade!r}: expected an ExecutedTrade")

    @property
    def signals(self) -> tuple[float, ...]:
        """The signals as floats (to the 1e-9 resolution they are recorded at)."""
        return tuple(s / FIXED_POINT_SCALE for s in self.signals_e9)

    @property
    def target_exposure(self) -> float:
        """The chosen exposure as a float."""
        return self.target_exposure_e9 / FIXED_POINT_SCALE

    def to_json_data(self) -> dict[str, Any]:
        """Return the record as JSON data (every value exact; see `canonical_json`)."""
        return {
            "version": ENCODING_VERSION,
            "seq": self.seq,
            "bar_time_ms": self.bar_time_ms,
            "market": self.market,
            "model_id": self.model_id,
            "config_hash": self.config_hash,
            "observation_digest": self.observation_digest,
            "strategy_names": list(self.strategy_names),
            "signals_e9": list(self.signals_e9),
            "masks": list(self.masks),
            "target_exposure_e9": self.target_exposure_e9,
            "trade": self.trade.to_json_data(),
            "prev_hash": self.prev_hash,
        }

    @classmethod
    def from_json_data(cls, data: Mapping[str, Any]) -> DecisionRecord:
        """Rebuild a record from `to_json_data` output.

        Raises:
            AuditError: a missing or malformed field, or an unknown encoding version.
        """
        try:
            if data["version"] != ENCODING_VERSION:
                raise AuditError(
                    f"decision record version {data['version']!r}: this Agora reads version "
                    f"{ENCODING_VERSION}"
                )
            return cls(
                seq=data["seq"],
                bar_time_ms=data["bar_time_ms"],
                market=data["market"],
                model_id=data["model_id"],
                config_hash=data["config_hash"],
                observation_digest=data["observation_digest"],
                strategy_names=tuple(data["strategy_names"]),
                signals_e9=tuple(data["signals_e9"]),
                masks=tuple(data["masks"]),
                target_exposure_e9=data["target_exposure_e9"],
                trade=ExecutedTrade.from_json_data(data["trade"]),
                prev_hash=data["prev_hash"],
            )
        except (KeyError, TypeError, ValueError) as e:
            raise AuditError(f"malformed decision record: {type(e).__name__}: {e}") from e

    def abi_values(self) -> tuple[Any, ...]:
        """Return the values encoded with `RECORD_ABI_TYPES`, in order."""
        trade = self.trade
        return (
            ENCODING_VERSION,
            self.seq,
            self.bar_time_ms,
            self.market,
            _raw(self.model_id),
            _raw(self.config_hash),
            _raw(self.observation_digest),
            list(self.strategy_names),
            list(self.signals_e9),
            list(self.masks),
            self.target_exposure_e9,
            SIDE_CODES[trade.side],
            trade.amount_in,
            trade.amount_out,
            trade.fee,
            trade.gas_used,
            _raw(trade.tx_hash),
            _raw(self.prev_hash),
        )


@dataclass(frozen=True, slots=True)
class DecisionFields:
    """A decision before it joins the trail (no `seq`, no `prev_hash`), with float values.

    `AuditTrail.append` turns it into a `DecisionRecord`: signals and exposure are quantised
    with `to_fixed_e9`, masked-off signals become 0 (whatever value, even NaN, was given).
    """

    bar_time_ms: int
    market: str
    model_id: str
    config_hash: str
    observation_digest: str
    strategy_names: Sequence[str]
    signals: Sequence[float]
    masks: Sequence[bool]
    target_exposure: float
    trade: ExecutedTrade = NO_TRADE

    def to_record(self, seq: int, prev_hash: str) -> DecisionRecord:
        """Return the record at `seq`, chained to `prev_hash`."""
        masks = tuple(bool(m) for m in self.masks)
        signals = list(self.signals)
        if len(signals) != len(masks):
            raise AuditError(f"{len(signals)} signals but {len(masks)} masks")
        return DecisionRecord(
            seq=seq,
            bar_time_ms=int(self.bar_time_ms),
            market=self.market,
            model_id=self.model_id,
            config_hash=self.config_hash,
            observation_digest=self.observation_digest,
            strategy_names=tuple(self.strategy_names),
            signals_e9=tuple(
                to_fixed_e9(float(s)) if m else 0 for s, m in zip(signals, masks, strict=True)
            ),
            masks=masks,
            target_exposure_e9=to_fixed_e9(float(self.target_exposure)),
            trade=self.trade,
            prev_hash=prev_hash,
        )


def encode(record: DecisionRecord) -> bytes:
    """Return the canonical encoding: `abi.encode` of `RECORD_ABI_TYPES` (see docs/audit.md)."""
    return abi_encode(list(RECORD_ABI_TYPES), list(record.abi_values()))


def decision_hash(record: DecisionRecord) -> str:
    """Return keccak256(encode(record)) as bytes32 hex: the value logged on-chain."""
    return "0x" + keccak256(encode(record)).hex()


def decision_hashes(records: Iterable[DecisionRecord]) -> list[str]:
    """Return `decision_hash` of each record, in order.

    Use it wherever many records are hashed (verifying a trail, checking stored records), and
    only for records that are recorded or sent. Of each hash, the ABI encoding is most of the
    cost (about 58 of 61 µs for a 1.2 kB record; benchmarks/keccak.py), keccak256 the rest.
    """
    return [decision_hash(record) for record in records]


def chain_records(
    decisions: Iterable[DecisionFields], prev_hash: str = ZERO_HASH, first_seq: int = 0
) -> tuple[list[DecisionRecord], list[str]]:
    """Return the records of decisions appended in order to a trail, and their hashes.

    Each record's `prev_hash` is the hash of the one before it, so every record is hashed
    exactly once, here, after the decisions are made rather than while they are.

    Args:
        decisions: the decisions, in sequence order.
        prev_hash: the hash of the record before the first (`ZERO_HASH` for an empty trail).
        first_seq: the sequence number of the first.
    """
    records: list[DecisionRecord] = []
    hashes: list[str] = []
    prev = prev_hash
    for seq, fields in enumerate(decisions, start=first_seq):
        record = fields.to_record(seq, prev)
        prev = decision_hash(record)
        records.append(record)
        hashes.append(prev)
    return records, hashes


def chain_head(hashes: Iterable[str | bytes], head: str | bytes = ZERO_HASH) -> str:
    """Return DecisionLog's running head after `hashes`: head = keccak256(head ‖ hash).

    Args:
        hashes: decision hashes in sequence order.
        head: the head before the first of them (bytes32(0) for an empty log).
    """
    current = bytes.fromhex(as_bytes32(head, "head")[2:])
    for h in hashes:
        current = keccak256(current + bytes.fromhex(as_bytes32(h, "decision hash")[2:]))
    return "0x" + current.hex()


def canonical_json(record: DecisionRecord) -> str:
    """Return the record as canonical JSON: sorted keys, no whitespace, UTF-8 kept as is."""
    return json.dumps(
        record.to_json_data(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def record_from_json(text: str) -> DecisionRecord:
    """Parse a record from JSON (canonical or not).

    Raises:
        AuditError: the text is not JSON or not a valid record.
    """
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, TypeError) as e:
        raise AuditError(f"decision record is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise AuditError(f"decision record: expected a JSON object, got {type(data).__name__}")
    return DecisionRecord.from_json_data(data)
