// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title StrategyRegistry
/// @notice Strategy id (bytes32, e.g. keccak256 of the plugin name) -> contributor payout address, code
///         hash and version history.
///
/// Rules:
///   - register(id, payout, codeHash) creates version 1 of a new id, or appends version n+1 to an
///     Active id. A code hash identical to the id's current one is refused (SAME_CODE_HASH); a code hash
///     already registered by a *different* strategy is refused (CODE_HASH_TAKEN: exact copies can
///     never be registered twice); re-registering an older code hash of the same id (a rollback)
///     is allowed and gets a new version number.
///   - Retired ids can never be registered again.
///   - The payout address can be changed by a registrar or by the current payout address itself.
/// Registrars hold REGISTRAR_ROLE; the constructor gives `admin` DEFAULT_ADMIN_ROLE and REGISTRAR_ROLE.
contract StrategyRegistry is AccessControl {
    bytes32 public constant REGISTRAR_ROLE = keccak256("REGISTRAR_ROLE");

    enum Status {
        Unregistered,
        Active,
        Retired
    }

    struct Version {
        bytes32 codeHash;
        uint32 version;
        uint64 registeredAt;
    }

    struct Strategy {
        address payout;
        Status status;
        Version[] versions;
    }

    mapping(bytes32 id => Strategy) private _strategies;
    bytes32[] private _ids;
    /// @notice The strategy that first registered `codeHash` (bytes32(0) if none).
    mapping(bytes32 codeHash => bytes32 id) public strategyOfCodeHash;

    event StrategyRegistered(bytes32 indexed id, address indexed payout);
    event StrategyVersionAdded(bytes32 indexed id, uint32 version, bytes32 codeHash);
    event StrategyRetired(bytes32 indexed id);
    event PayoutChanged(bytes32 indexed id, address indexed previousPayout, address indexed newPayout);

    constructor(address admin) {
        require(admin != address(0), "Registry: ZERO_ADMIN");
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(REGISTRAR_ROLE, admin);
    }

    modifier onlyRegistrar() {
        require(hasRole(REGISTRAR_ROLE, msg.sender), "Registry: CALLER_NOT_REGISTRAR");
        _;
    }

    /// @notice Register a new strategy or a new version of an active one; returns the version number.
    /// @dev Emits StrategyRegistered for a new id, StrategyVersionAdded for every version (including 1),
    ///      and PayoutChanged when an existing id is registered with a different payout.
    function register(bytes32 id, address payout, bytes32 codeHash) external onlyRegistrar returns (uint32 version) {
        require(id != bytes32(0), "Registry: ZERO_ID");
        require(payout != address(0), "Registry: ZERO_PAYOUT");
        require(codeHash != bytes32(0), "Registry: ZERO_CODE_HASH");
        Strategy storage s = _strategies[id];
        require(s.status != Status.Retired, "Registry: STRATEGY_RETIRED");

        bytes32 holder = strategyOfCodeHash[codeHash];
        require(holder == bytes32(0) || holder == id, "Registry: CODE_HASH_TAKEN");

        if (s.status == Status.Unregistered) {
            s.status = Status.Active;
            s.payout = payout;
            _ids.push(id);
            emit StrategyRegistered(id, payout);
        } else {
            require(s.versions[s.versions.length - 1].codeHash != codeHash, "Registry: SAME_CODE_HASH");
            if (s.payout != payout) {
                emit PayoutChanged(id, s.payout, payout);
                s.payout = payout;
            }
        }
        if (holder == bytes32(0)) strategyOfCodeHash[codeHash] = id;
        version = uint32(s.versions.length + 1);
        s.versions.push(Version({codeHash: codeHash, version: version, registeredAt: uint64(block.timestamp)}));
        emit StrategyVersionAdded(id, version, codeHash);
    }

    /// @notice Retire an active strategy for good.
    function retire(bytes32 id) external onlyRegistrar {
        require(_strategies[id].status == Status.Active, "Registry: NOT_ACTIVE");
        _strategies[id].status = Status.Retired;
        emit StrategyRetired(id);
    }

    /// @notice Change the payout address (registrar or the current payout address; retired ids too).
    function setPayout(bytes32 id, address payout) external {
        Strategy storage s = _strategies[id];
        require(s.status != Status.Unregistered, "Registry: UNKNOWN_STRATEGY");
        require(payout != address(0), "Registry: ZERO_PAYOUT");
        require(msg.sender == s.payout || hasRole(REGISTRAR_ROLE, msg.sender), "Registry: NOT_AUTHORIZED");
        emit PayoutChanged(id, s.payout, payout);
        s.payout = payout;
    }

    // ------------------------------------------------------------------ views

    /// @notice Current state of `id`; reverts "Registry: UNKNOWN_STRATEGY" for an unregistered id.
    /// @return payout contributor payout address
    /// @return codeHash code hash of the latest version
    /// @return version latest version number (1-based)
    /// @return status 1 = Active, 2 = Retired
    function get(bytes32 id)
        external
        view
        returns (address payout, bytes32 codeHash, uint32 version, Status status)
    {
        Strategy storage s = _strategies[id];
        require(s.status != Status.Unregistered, "Registry: UNKNOWN_STRATEGY");
        Version storage latest = s.versions[s.versions.length - 1];
        return (s.payout, latest.codeHash, latest.version, s.status);
    }

    /// @notice 0 = Unregistered, 1 = Active, 2 = Retired (never reverts).
    function statusOf(bytes32 id) external view returns (Status) {
        return _strategies[id].status;
    }

    /// @notice Number of versions of `id` (0 if unregistered).
    function versionCount(bytes32 id) external view returns (uint256) {
        return _strategies[id].versions.length;
    }

    /// @notice Version `i` (0-based; its `version` field is i + 1) of `id`.
    function versionAt(bytes32 id, uint256 i)
        external
        view
        returns (bytes32 codeHash, uint32 version, uint64 registeredAt)
    {
        Version[] storage versions = _strategies[id].versions;
        require(i < versions.length, "Registry: VERSION_OUT_OF_RANGE");
        Version storage v = versions[i];
        return (v.codeHash, v.version, v.registeredAt);
    }

    /// @notice Number of registered ids (active and retired), in registration order.
    function strategyCount() external view returns (uint256) {
        return _ids.length;
    }

    function strategyIdAt(uint256 i) external view returns (bytes32) {
        require(i < _ids.length, "Registry: INDEX_OUT_OF_RANGE");
        return _ids[i];
    }
}
