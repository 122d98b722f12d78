// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title RewardToken
/// @notice "Agora Reward" (AGR, 18 decimals), minted only by holders of MINTER_ROLE: in practice the
///         RewardDistributor. The admin does not get MINTER_ROLE automatically; it grants it to the
///         distributor after deploying it.
contract RewardToken is ERC20, AccessControl {
    bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");

    constructor(address admin) ERC20("Agora Reward", "AGR") {
        require(admin != address(0), "RewardToken: ZERO_ADMIN");
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @notice Mint `amount` wei of AGR to `to`. Reverts "RewardToken: CALLER_NOT_MINTER" without MINTER_ROLE.
    function mint(address to, uint256 amount) external {
        require(hasRole(MINTER_ROLE, msg.sender), "RewardToken: CALLER_NOT_MINTER");
        _mint(to, amount);
    }
}
