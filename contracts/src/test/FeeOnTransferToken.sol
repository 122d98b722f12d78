// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

// TEST FIXTURE ONLY. Never deploy outside the test suite.

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title FeeOnTransferToken (test fixture)
/// @notice An ERC-20 that burns `transferFeeBps` of every transfer between two non-zero addresses, so the
///         recipient gets less than `value`. Used to prove the pool prices swaps and deposits on what
///         actually arrived. Anyone may mint.
contract FeeOnTransferToken is ERC20 {
    uint256 public immutable transferFeeBps;

    constructor(uint256 transferFeeBps_) ERC20("Fee On Transfer Test Token", "FOT") {
        require(transferFeeBps_ <= 10000, "FeeOnTransferToken: FEE_TOO_HIGH");
        transferFeeBps = transferFeeBps_;
    }

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function _update(address from, address to, uint256 value) internal override {
        if (from != address(0) && to != address(0)) {
            uint256 fee = value * transferFeeBps / 10000;
            super._update(from, address(0), fee);
            value -= fee;
        }
        super._update(from, to, value);
    }
}
