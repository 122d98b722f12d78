"""Verify one Agora decision with nothing but its record, web3 and the DecisionLog address.

    python verify_decision.py RECORD.json --rpc-url http://127.0.0.1:8545 --address 0xLOG

RECORD.json is the decision record as `agora audit show SEQ --json` prints it (its "record"
field) or as stored in the `decisions` table. The script re-implements the canonical encoding
from docs/audit.md without importing Agora, hashes the record and compares the hash with the
DecisionLog's entry at the record's seq, which it finds in the log's `DecisionsRecorded` events
(eth_getLogs, --page-blocks blocks per call from --from-block; the node must keep old logs).
Exit 0: it matches; 1: it does not; 2: bad input.
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
    *(
        {
            "type": "function",
            "name": name,
            "stateMutability": "view",
            "inputs": [],
            "outputs": [{"name": "", "type": output}],
        }
        for name, output in [("count", "uint256"), ("head", "bytes32")]
    ),
    {
        "type": "event",
        "name": "DecisionsRecorded",
        "anonymous": False,
        "inputs": [
            {"name": "firstSeq", "type": "uint256", "indexed": True},
            {"name": "prevHead", "type": "bytes32", "indexed": False},
            {"name": "head", "type": "bytes32", "indexed": False},
            {"name": "decisionHashes", "type": "bytes32[]", "indexed": False},
        ],
    },
]
PAGE_BLOCKS = 5_000


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


def logged_hash(
    w3: Web3, address: str, seq: int, from_block: int = 0, page_blocks: int = PAGE_BLOCKS
) -> bytes | None:
    """Return the DecisionLog's entry at `seq` from its events, or None if the log is shorter.

    Each DecisionsRecorded event carries the hashes at seq firstSeq, firstSeq + 1, ... and the
    head before and after them; the event is checked to chain from one to the other.
    """
    log = w3.eth.contract(address=Web3.to_checksum_address(address), abi=DECISION_LOG_ABI)
    latest = w3.eth.block_number
    if seq >= log.functions.count().call(block_identifier=latest):
        return None
    for start in range(from_block, latest + 1, page_blocks):
        end = min(start + page_blocks - 1, latest)
        for event in log.events.DecisionsRecorded.get_logs(from_block=start, to_block=end):
            args = event["args"]
            hashes = [bytes(h) for h in args["decisionHashes"]]
            if not args["firstSeq"] <= seq < args["firstSeq"] + len(hashes):
                continue
            head = bytes(args["prevHead"])
            for h in hashes:
                head = keccak(head + h)
            if head != bytes(args["head"]):
                raise ValueError(f"the event logging seq {seq} does not chain to its head")
            return hashes[seq - args["firstSeq"]]
    raise ValueError(f"no event carries seq {seq}: does the node keep old logs? (--from-block)")


def check(
    w3: Web3, address: str, record: dict[str, Any], from_block: int = 0
) -> tuple[bool, str, str | None]:
    """Return (matches, the record's hash, the on-chain entry at its seq) as 0x-hex."""
    mine = decision_hash(record)
    theirs = logged_hash(w3, address, record["seq"], from_block)
    return mine == theirs, "0x" + mine.hex(), None if theirs is None else "0x" + theirs.hex()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("record", help="decision record JSON file ('-' for stdin)")
    parser.add_argument("--rpc-url", required=True, help="JSON-RPC URL of the chain")
    parser.add_argument("--address", required=True, help="DecisionLog contract address")
    parser.add_argument(
        "--from-block", type=int, default=0, help="the DecisionLog's deployment block (default 0)"
    )
    args = parser.parse_args(argv)
    try:
        text = sys.stdin.read() if args.record == "-" else Path(args.record).read_text("utf-8")
        data = json.loads(text)
        record = data.get("record", data)  # accept `agora audit show --json` output as is
        w3 = Web3(Web3.HTTPProvider(args.rpc_url))
        ok, mine, theirs = check(w3, args.address, record, args.from_block)
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"decision {record['seq']}: record hash {mine}, on-chain entry {theirs}")
    print("OK: the record is the one logged" if ok else "MISMATCH: the record was not logged")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
