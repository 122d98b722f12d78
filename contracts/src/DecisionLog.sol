// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title DecisionLog
/// @notice Append-only, tamper-evident log of the agent's decision hashes.
///
/// Every hash gets its own 0-based sequence number and is stored, so a verifier can compare the log
/// entry by entry with its own records. A running head commits to the whole ordered sequence:
///
///     head_0 = bytes32(0);   head_{n+1} = keccak256(abi.encodePacked(head_n, hash_n))
///
/// so omission, insertion and reordering all change the head. Writers hold WRITER_ROLE; the admin
/// (DEFAULT_ADMIN_ROLE) grants and revokes it. The constructor gives `admin` both roles so a single
/// service account works without a second transaction.
contract DecisionLog is AccessControl {
    bytes32 public constant WRITER_ROLE = keccak256("WRITER_ROLE");

    /// @notice Number of hashes recorded; the next hash gets this sequence number.
    uint256 public count;
    /// @notice Running hash over all recorded hashes, in order.
    bytes32 public head;
    /// @notice The hash recorded at `seq` (bytes32(0) for seq >= count).
    mapping(uint256 seq => bytes32 decisionHash) public hashes;

    /// @param head the running head after including `decisionHash`
    event DecisionRecorded(uint256 indexed seq, bytes32 indexed decisionHash, bytes32 head);

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
        bytes32 newHead = _chain(head, decisionHash);
        hashes[seq] = decisionHash;
        head = newHead;
        count = seq + 1;
        emit DecisionRecorded(seq, decisionHash, newHead);
    }

    /// @notice Append hashes in order; returns the sequence number of the first. `count` and `head`
    ///         are written once per batch, so the marginal cost per entry is one storage slot + one log.
    function recordBatch(bytes32[] calldata decisionHashes) external onlyWriter returns (uint256 firstSeq) {
        uint256 n = decisionHashes.length;
        require(n > 0, "DecisionLog: EMPTY_BATCH");
        firstSeq = count;
        bytes32 h = head;
        for (uint256 i = 0; i < n; ++i) {
            bytes32 decisionHash = decisionHashes[i];
            h = _chain(h, decisionHash);
            hashes[firstSeq + i] = decisionHash;
            emit DecisionRecorded(firstSeq + i, decisionHash, h);
        }
        head = h;
        count = firstSeq + n;
    }

    /// @notice The hash at `seq`; reverts "DecisionLog: SEQ_OUT_OF_RANGE" for seq >= count.
    function hashAt(uint256 seq) external view returns (bytes32) {
        require(seq < count, "DecisionLog: SEQ_OUT_OF_RANGE");
        return hashes[seq];
    }

    /// @notice Up to `maxCount` hashes starting at `start` (fewer at the end of the log), for verifiers.
    function hashRange(uint256 start, uint256 maxCount) external view returns (bytes32[] memory out) {
        uint256 total = count;
        require(start <= total, "DecisionLog: SEQ_OUT_OF_RANGE");
        uint256 n = total - start < maxCount ? total - start : maxCount;
        out = new bytes32[](n);
        for (uint256 i = 0; i < n; ++i) {
            out[i] = hashes[start + i];
        }
    }

    /// @dev keccak256(abi.encodePacked(a, b)) without a memory allocation.
    function _chain(bytes32 a, bytes32 b) private pure returns (bytes32 result) {
        assembly ("memory-safe") {
            mstore(0x00, a)
            mstore(0x20, b)
            result := keccak256(0x00, 0x40)
        }
    }
}
