"""Verify one Agora decision with nothing but its record, web3 and the DecisionLog address.

    python verify_decision.py RECORD.json --rpc-url http://127.0.0.1:8545 --address 0xLOG

RECORD.json is the decision record as `agora audit show SEQ --json` prints it (its "record"
field) or as stored in the `decisions` table. The script re-implements the canonical encoding
from docs/audit.md without importing Agora, hashes the record and compares the hash with the
DecisionLog's entry at the record's seq. Exit 0: it matches; 1: it does not; 2: bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from eth_abi import encode
from eth_utils import keccak
from web3 import Web3

TYPES = [
    "uint8",  # version
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
    "uint8",  # trade.side: none 0, buy 1, sell 2
    "uint256",  # trade.amount_in
    "uint256",  # trade.amount_out
    "uint256",  # trade.fee
    "uint64",  # trade.gas_used
    "bytes32",  # trade.tx_hash
    "bytes32",  # prev_hash
]
SIDES = {"none": 0, "buy": 1, "sell": 2}
DECISION_LOG_ABI = [
    {
        "type": "function",
        "name": name,
        "stateMutability": "view",
        "inputs": inputs,
        "outputs": [{"name": "", "type": output}],
    }
    for name, inputs, output in [
        ("count", [], "uint256"),
        ("head", [], "bytes32"),
        ("hashAt", [{"name": "seq", "type": "uint256"}], "bytes32"),
    ]
]


def b32(text: str) -> bytes:
    """Decode a 0x-prefixed 32-byte hex string."""
    raw = bytes.fromhex(text.removeprefix("0x"))
    if len(raw) != 32:
        raise ValueError(f"{text!r} is not 32 bytes")
    return raw


def decision_hash(record: dict[str, Any]) -> bytes:
    """Return keccak256 of the record's canonical encoding (docs/audit.md)."""
    if record["version"] != 1:
        raise ValueError(f"unknown record version {record['version']}")
    trade = record["trade"]
    values = [
        record["version"],
        record["seq"],
        record["bar_time_ms"],
        record["market"],
        b32(record["model_id"]),
        b32(record["config_hash"]),
        b32(record["observation_digest"]),
        record["strategy_names"],
        record["signals_e9"],
        record["masks"],
        record["target_exposure_e9"],
        SIDES[trade["side"]],
        int(trade["amount_in"]),
        int(trade["amount_out"]),
        int(trade["fee"]),
        trade["gas_used"],
        b32(trade["tx_hash"]),
        b32(record["prev_hash"]),
    ]
    return keccak(encode(TYPES, values))


def logged_hash(w3: Web3, address: str, seq: int) -> bytes | None:
    """Return the DecisionLog's entry at `seq`, or None if the log is shorter."""
    log = w3.eth.contract(address=Web3.to_checksum_address(address), abi=DECISION_LOG_ABI)
    if seq >= log.functions.count().call():
        return None
    return bytes(log.functions.hashAt(seq).call())


def check(w3: Web3, address: str, record: dict[str, Any]) -> tuple[bool, str, str | None]:
    """Return (matches, the record's hash, the on-chain entry at its seq) as 0x-hex."""
    mine = decision_hash(record)
    theirs = logged_hash(w3, address, record["seq"])
    return mine == theirs, "0x" + mine.hex(), None if theirs is None else "0x" + theirs.hex()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("record", help="decision record JSON file ('-' for stdin)")
    parser.add_argument("--rpc-url", required=True, help="JSON-RPC URL of the chain")
    parser.add_argument("--address", required=True, help="DecisionLog contract address")
    args = parser.parse_args(argv)
    try:
        text = sys.stdin.read() if args.record == "-" else Path(args.record).read_text("utf-8")
        data = json.loads(text)
        record = data.get("record", data)  # accept `agora audit show --json` output as is
        ok, mine, theirs = check(Web3(Web3.HTTPProvider(args.rpc_url)), args.address, record)
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"decision {record['seq']}: record hash {mine}, on-chain entry {theirs}")
    print("OK: the record is the one logged" if ok else "MISMATCH: the record was not logged")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
