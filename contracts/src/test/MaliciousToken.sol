// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

// TEST FIXTURE ONLY. Never deploy outside the test suite.

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

interface IPoolSwapExactIn {
    function swapExactIn(address tokenIn, uint256 amountIn, uint256 minAmountOut, uint256 deadline, address to)
        external
        returns (uint256);
}

/// @title MaliciousToken (test fixture)
/// @notice An ERC-20 that, once armed, re-enters `pool.swapExactIn` from inside its own transferFrom
///         (mode 1) or transfer (mode 2). Used to prove the pool's reentrancy lock: the inner call
///         reverts "Pool: LOCKED" and, because this token does not catch it, so does the outer call.
///         Anyone may mint.
contract MaliciousToken is ERC20 {
    uint8 public constant MODE_OFF = 0;
    uint8 public constant MODE_ON_TRANSFER_FROM = 1;
    uint8 public constant MODE_ON_TRANSFER = 2;

    address public pool;
    uint8 public mode;

    constructor() ERC20("Malicious Test Token", "EVIL") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice Arm (mode 1 or 2) or disarm (mode 0) the re-entry into `pool_`.
    function setAttack(address pool_, uint8 mode_) external {
        pool = pool_;
        mode = mode_;
    }

    function transferFrom(address from, address to, uint256 value) public override returns (bool) {
        if (mode == MODE_ON_TRANSFER_FROM && pool != address(0)) _reenter();
        return super.transferFrom(from, to, value);
    }

    function transfer(address to, uint256 value) public override returns (bool) {
        if (mode == MODE_ON_TRANSFER && pool != address(0)) _reenter();
        return super.transfer(to, value);
    }

    function _reenter() private {
        IPoolSwapExactIn(pool).swapExactIn(address(this), 1, 0, type(uint256).max, address(this));
    }
}
