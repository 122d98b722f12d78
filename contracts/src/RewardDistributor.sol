// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {BitMaps} from "@openzeppelin/contracts/utils/structs/BitMaps.sol";
import {RewardToken} from "./RewardToken.sol";

/// @title RewardDistributor
/// @notice Pays strategy contributors per epoch through Merkle claims.
///
/// An operator publishes one Merkle root and the epoch's total per epoch (never again for that epoch).
/// Anyone may then submit a claim on an account's behalf; tokens always go to the leaf's `account`.
///
/// Merkle tree (the off-chain builder must match this exactly):
///   leaf   = keccak256(bytes.concat(keccak256(abi.encode(uint256 index, address account, uint256 amount))))
///            i.e. keccak256 of keccak256 of the 96-byte ABI encoding. The double hash means a 64-byte
///            internal node can never be passed off as a leaf (OpenZeppelin StandardMerkleTree's scheme).
///   parent = keccak256(min(a, b) ++ max(a, b))   (sorted-pair / commutative hashing, compared as
///            uint256; OpenZeppelin MerkleProof), so proofs carry no left/right flags.
///   A one-leaf tree's root is the leaf itself (empty proof). How unpaired nodes are handled is up to
///   the builder (promote them unchanged); any tree built with this pair hash verifies.
///
/// Funding: publishEpoch mints only the shortfall between the epoch total and the unallocated balance
/// (balance minus what earlier epochs still owe), so the distributor works both pre-funded and as a
/// minter. When it must mint, it needs MINTER_ROLE on the RewardToken.
contract RewardDistributor is AccessControl {
    using BitMaps for BitMaps.BitMap;

    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");

    struct Epoch {
        bytes32 root;
        uint256 total;
        uint256 claimed;
    }

    RewardToken public immutable rewardToken;
    /// @notice Sum over published epochs of (total - claimed): tokens reserved for pending claims.
    uint256 public outstanding;

    mapping(uint256 epoch => Epoch) private _epochs;
    mapping(uint256 epoch => BitMaps.BitMap) private _claimedBits;

    event EpochPublished(uint256 indexed epoch, bytes32 merkleRoot, uint256 total, uint256 minted);
    event Claimed(uint256 indexed epoch, uint256 index, address indexed account, uint256 amount, address caller);

    constructor(address admin, RewardToken rewardToken_) {
        require(admin != address(0), "Distributor: ZERO_ADMIN");
        require(address(rewardToken_) != address(0), "Distributor: ZERO_TOKEN");
        rewardToken = rewardToken_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(OPERATOR_ROLE, admin);
    }

    /// @notice Publish `epoch`'s Merkle root and total; mints whatever the unallocated balance lacks.
    function publishEpoch(uint256 epoch, bytes32 merkleRoot, uint256 total) external {
        require(hasRole(OPERATOR_ROLE, msg.sender), "Distributor: CALLER_NOT_OPERATOR");
        require(merkleRoot != bytes32(0), "Distributor: ZERO_ROOT");
        require(total > 0, "Distributor: ZERO_TOTAL");
        Epoch storage e = _epochs[epoch];
        require(e.root == bytes32(0), "Distributor: EPOCH_ALREADY_PUBLISHED");
        e.root = merkleRoot;
        e.total = total;

        uint256 balance = rewardToken.balanceOf(address(this));
        uint256 unallocated = balance > outstanding ? balance - outstanding : 0;
        uint256 minted = total > unallocated ? total - unallocated : 0;
        outstanding += total;
        if (minted > 0) rewardToken.mint(address(this), minted);
        emit EpochPublished(epoch, merkleRoot, total, minted);
    }

    /// @notice Pay leaf (index, account, amount) of `epoch` to `account`. Callable by anyone.
    function claim(uint256 epoch, uint256 index, address account, uint256 amount, bytes32[] calldata proof)
        external
    {
        Epoch storage e = _epochs[epoch];
        require(e.root != bytes32(0), "Distributor: UNKNOWN_EPOCH");
        require(!_claimedBits[epoch].get(index), "Distributor: ALREADY_CLAIMED");
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(index, account, amount))));
        require(MerkleProof.verifyCalldata(proof, e.root, leaf), "Distributor: INVALID_PROOF");
        require(e.claimed + amount <= e.total, "Distributor: EXCEEDS_EPOCH_TOTAL");

        _claimedBits[epoch].set(index);
        e.claimed += amount;
        outstanding -= amount;
        require(rewardToken.transfer(account, amount), "Distributor: TRANSFER_FAILED");
        emit Claimed(epoch, index, account, amount, msg.sender);
    }

    // ------------------------------------------------------------------ views

    function isClaimed(uint256 epoch, uint256 index) external view returns (bool) {
        return _claimedBits[epoch].get(index);
    }

    /// @notice bytes32(0) while `epoch` is unpublished.
    function epochRoot(uint256 epoch) external view returns (bytes32) {
        return _epochs[epoch].root;
    }

    function epochTotal(uint256 epoch) external view returns (uint256) {
        return _epochs[epoch].total;
    }

    function epochClaimed(uint256 epoch) external view returns (uint256) {
        return _epochs[epoch].claimed;
    }

    /// @notice The leaf hash the contract expects for (index, account, amount), for off-chain checks.
    function leafHash(uint256 index, address account, uint256 amount) external pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(index, account, amount))));
    }
}
