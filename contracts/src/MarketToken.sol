// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title MarketToken
/// @notice The ERC-20 assets the simulated market trades: a USD stablecoin (6 decimals) and a
///         base asset (18 decimals). Only the owner (the deployer) can mint.
contract MarketToken is ERC20, Ownable {
    uint8 private immutable _decimals;

    constructor(string memory name_, string memory symbol_, uint8 decimals_)
        ERC20(name_, symbol_)
        Ownable(msg.sender)
    {
        _decimals = decimals_;
    }

    function decimals() public view override returns (uint8) {
        return _decimals;
    }

    /// @notice Mint `amount` base units to `to`. Reverts "MarketToken: CALLER_NOT_OWNER" for anyone but the owner.
    function mint(address to, uint256 amount) external {
        require(msg.sender == owner(), "MarketToken: CALLER_NOT_OWNER");
        _mint(to, amount);
    }
}
