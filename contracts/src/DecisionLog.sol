// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title DecisionLog
/// @notice Append-only, tamper-evident log of the agent's decision hashes.
///
/// Every hash gets its own 0-based sequence number. The hashes themselves live only in events
/// (`DecisionsRecorded`, one per transaction), which is what makes a logged decision cheap; storage
/// keeps what a verifier anchors on: the number of hashes, a running head that commits to the whole
/// ordered sequence,
///
///     head_0 = bytes32(0);   head_{n+1} = keccak256(abi.encodePacked(head_n, hash_n))
///
/// (so omission, insertion and reordering all change it), and a checkpoint of the head every
/// CHECKPOINT_INTERVAL hashes, from which a verifier can start part-way. Writers hold WRITER_ROLE;
/// the admin (DEFAULT_ADMIN_ROLE) grants and revokes it. The constructor gives `admin` both roles
/// so a single service account works without a second transaction.
contract DecisionLog is AccessControl {
    bytes32 public constant WRITER_ROLE = keccak256("WRITER_ROLE");
    /// @notice Decisions between two checkpoints of the head.
    uint256 public constant CHECKPOINT_INTERVAL = 1000;

    /// @notice Number of hashes recorded; the next hash gets this sequence number.
    uint256 public count;
    /// @notice Running hash over all recorded hashes, in order.
    bytes32 public head;
    /// @notice checkpoints[k]: the head after the first k * CHECKPOINT_INTERVAL hashes, written
    ///         when the k * CHECKPOINT_INTERVAL-th hash is recorded (bytes32(0) before that, and
    ///         for k = 0, which is head_0).
    mapping(uint256 k => bytes32 headAfter) public checkpoints;

    /// @notice One per `record` / `recordBatch` transaction: the hashes logged at sequence numbers
    ///         `firstSeq`, `firstSeq + 1`, ... in order, with the head before and after them, so
    ///         that head == fold(prevHead, decisionHashes) can be checked on the event alone.
    event DecisionsRecorded(uint256 indexed firstSeq, bytes32 prevHead, bytes32 head, bytes32[] decisionHashes);

    constructor(address admin) {
        require(admin != address(0), "DecisionLog: ZERO_ADMIN");
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(WRITER_ROLE, admin);
    }

    modifier onlyWriter() {
        require(hasRole(WRITER_ROLE, msg.sender), "DecisionLog: CALLER_NOT_WRITER");
        _;
    }

    /// @notice Append one hash; returns its sequence number.
    function record(bytes32 decisionHash) external onlyWriter returns (uint256 seq) {
        seq = count;
        bytes32 prevHead = head;
        bytes32 newHead = _chain(prevHead, decisionHash);
        uint256 newCount = seq + 1;
        if (newCount % CHECKPOINT_INTERVAL == 0) {
            checkpoints[newCount / CHECKPOINT_INTERVAL] = newHead;
        }
        head = newHead;
        count = newCount;
        bytes32[] memory one = new bytes32[](1);
        one[0] = decisionHash;
        emit DecisionsRecorded(seq, prevHead, newHead, one);
    }

    /// @notice Append hashes in order; returns the sequence number of the first. Storage is written
    ///         once per batch (plus a checkpoint when the batch crosses a multiple of
    ///         CHECKPOINT_INTERVAL); the hashes go out in one event.
    function recordBatch(bytes32[] calldata decisionHashes) external onlyWriter returns (uint256 firstSeq) {
        uint256 n = decisionHashes.length;
        require(n > 0, "DecisionLog: EMPTY_BATCH");
        firstSeq = count;
        uint256 end = firstSeq + n;
        bytes32 prevHead = head;
        bytes32 h = prevHead;
        uint256 done = 0;
        uint256 boundary = (firstSeq / CHECKPOINT_INTERVAL + 1) * CHECKPOINT_INTERVAL;
        while (boundary <= end) {
            h = _fold(h, decisionHashes[done:boundary - firstSeq]);
            done = boundary - firstSeq;
            checkpoints[boundary / CHECKPOINT_INTERVAL] = h;
            boundary += CHECKPOINT_INTERVAL;
        }
        h = _fold(h, decisionHashes[done:]);
        head = h;
        count = end;
        emit DecisionsRecorded(firstSeq, prevHead, h, decisionHashes);
    }

    /// @dev keccak256(abi.encodePacked(a, b)) without a memory allocation.
    function _chain(bytes32 a, bytes32 b) private pure returns (bytes32 result) {
        assembly ("memory-safe") {
            mstore(0x00, a)
            mstore(0x20, b)
            result := keccak256(0x00, 0x40)
        }
    }

    /// @dev `_chain` over every hash of `hashes` in order, starting from `h`.
    function _fold(bytes32 h, bytes32[] calldata hashes) private pure returns (bytes32 result) {
        assembly ("memory-safe") {
            result := h
            let end := add(hashes.offset, shl(5, hashes.length))
            for { let p := hashes.offset } lt(p, end) { p := add(p, 0x20) } {
                mstore(0x00, result)
                mstore(0x20, calldataload(p))
                result := keccak256(0x00, 0x40)
            }
        }
    }
}
