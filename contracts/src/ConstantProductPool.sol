// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

/// @title ConstantProductPool
/// @notice A Uniswap-V2-style pair for (token0, token1) that is also its own ERC-20 LP token.
///
/// Integer math is exactly V2's, with the fee expressed in basis points:
///
///     amountInWithFee = amountIn * (10000 - feeBps)
///     amountOut       = amountInWithFee * reserveOut / (reserveIn * 10000 + amountInWithFee)
///
///     amountIn        = reserveIn * amountOut * 10000 / ((reserveOut - amountOut) * (10000 - feeBps)) + 1
///
/// With feeBps = 30 this equals V2's 997/1000 formula to the wei: V2 computes
/// floor(997*a*rOut / (1000*rIn + 997*a)); here numerator and denominator are both exactly 10 times
/// V2's (9970*a*rOut and 10000*rIn + 9970*a), and floor(10n / 10d) = floor(n / d). The same factor 10
/// cancels in getAmountIn (numerator 10000*rIn*out vs 1000*rIn*out, denominator 9970*(rOut-out) vs
/// 997*(rOut-out)). The K check is V2's scaled by 10 per side:
/// (b0*10000 - in0*feeBps) * (b1*10000 - in1*feeBps) >= r0*r1*10000^2.
///
/// Differences from the V2 pair, all deliberate:
///   - token0/token1 keep the constructor order (no address sorting; there is no factory).
///   - No flash-swap callback, no price accumulators, no protocol fee (kLast).
///   - addLiquidity/removeLiquidity pull/burn from msg.sender directly (router-like convenience);
///     addLiquidity uses the V2 router's optimal-ratio rule so a caller never overpays either side.
///   - MINIMUM_LIQUIDITY is minted to 0x...dEaD, because OpenZeppelin's ERC20 refuses address(0).
///   - swapExactIn pulls the input itself and prices the actual balance increase, so fee-on-transfer
///     tokens are priced on what arrived; the K invariant is enforced on every swap.
///
/// Errors: every check in this contract reverts with a string "Pool: REASON". When a token transfer
/// fails, OpenZeppelin's allowance/balance custom errors are reported as "Pool: INSUFFICIENT_ALLOWANCE" /
/// "Pool: INSUFFICIENT_BALANCE"; any other revert data from the token is bubbled up unchanged.
contract ConstantProductPool is ERC20 {
    uint256 public constant MINIMUM_LIQUIDITY = 1000;
    uint256 public constant BPS = 10000;
    uint256 public constant MAX_FEE_BPS = 1000;
    address public constant DEAD = 0x000000000000000000000000000000000000dEaD;

    address public immutable token0;
    address public immutable token1;
    uint256 public immutable feeBps;

    uint112 private _reserve0;
    uint112 private _reserve1;
    uint32 private _blockTimestampLast;

    bool private transient _locked;

    event Mint(address indexed sender, uint256 amount0, uint256 amount1);
    event Burn(address indexed sender, uint256 amount0, uint256 amount1, address indexed to);
    event Swap(
        address indexed sender,
        uint256 amount0In,
        uint256 amount1In,
        uint256 amount0Out,
        uint256 amount1Out,
        address indexed to
    );
    event Sync(uint112 reserve0, uint112 reserve1);

    modifier lock() {
        require(!_locked, "Pool: LOCKED");
        _locked = true;
        _;
        _locked = false;
    }

    constructor(address token0_, address token1_, uint256 feeBps_) ERC20("Agora Pool LP", "AGORA-LP") {
        require(token0_ != address(0) && token1_ != address(0), "Pool: ZERO_ADDRESS");
        require(token0_ != token1_, "Pool: IDENTICAL_ADDRESSES");
        require(token0_.code.length > 0 && token1_.code.length > 0, "Pool: NOT_A_CONTRACT");
        require(feeBps_ <= MAX_FEE_BPS, "Pool: FEE_TOO_HIGH");
        token0 = token0_;
        token1 = token1_;
        feeBps = feeBps_;
    }

    // ------------------------------------------------------------------ views

    function getReserves() public view returns (uint112 reserve0, uint112 reserve1, uint32 blockTimestampLast) {
        reserve0 = _reserve0;
        reserve1 = _reserve1;
        blockTimestampLast = _blockTimestampLast;
    }

    /// @notice V2's getAmountOut with the fee in basis points.
    function getAmountOut(uint256 amountIn, uint256 reserveIn, uint256 reserveOut)
        public
        view
        returns (uint256 amountOut)
    {
        require(amountIn > 0, "Pool: INSUFFICIENT_INPUT_AMOUNT");
        require(reserveIn > 0 && reserveOut > 0, "Pool: INSUFFICIENT_LIQUIDITY");
        uint256 amountInWithFee = amountIn * (BPS - feeBps);
        uint256 numerator = amountInWithFee * reserveOut;
        uint256 denominator = reserveIn * BPS + amountInWithFee;
        amountOut = numerator / denominator;
    }

    /// @notice V2's getAmountIn with the fee in basis points (the +1 rounds the input up).
    function getAmountIn(uint256 amountOut, uint256 reserveIn, uint256 reserveOut)
        public
        view
        returns (uint256 amountIn)
    {
        require(amountOut > 0, "Pool: INSUFFICIENT_OUTPUT_AMOUNT");
        require(reserveIn > 0 && reserveOut > amountOut, "Pool: INSUFFICIENT_LIQUIDITY");
        uint256 numerator = reserveIn * amountOut * BPS;
        uint256 denominator = (reserveOut - amountOut) * (BPS - feeBps);
        amountIn = numerator / denominator + 1;
    }

    /// @notice Output of swapExactIn(tokenIn, amountIn, ...) at the current reserves
    ///         (exact for tokens without transfer fees).
    function quoteExactIn(address tokenIn, uint256 amountIn) external view returns (uint256 amountOut) {
        (uint256 reserveIn, uint256 reserveOut) = _reservesFor(tokenIn);
        amountOut = getAmountOut(amountIn, reserveIn, reserveOut);
    }

    /// @notice Input of `the other token` needed to receive exactly `amountOut` of `tokenOut`.
    function quoteExactOut(address tokenOut, uint256 amountOut) external view returns (uint256 amountIn) {
        (uint256 reserveOut, uint256 reserveIn) = _reservesFor(tokenOut);
        amountIn = getAmountIn(amountOut, reserveIn, reserveOut);
    }

    // ------------------------------------------------------------------ liquidity

    /// @notice Deposit up to (amount0Desired, amount1Desired) and mint LP shares to `to`.
    /// @dev On an empty pool both desired amounts are used as given; otherwise the V2 router rule picks
    ///      the largest pair at the current ratio that fits (amountB = amountA * reserveB / reserveA).
    ///      Shares follow the V2 pair: first mint sqrt(a0*a1) - MINIMUM_LIQUIDITY (with MINIMUM_LIQUIDITY
    ///      locked at DEAD forever), later min(a0*supply/r0, a1*supply/r1), where a0/a1 are the actual
    ///      balance increases since the last reserve update.
    /// @return amount0 token0 credited to the deposit (balance0 - reserve0)
    /// @return amount1 token1 credited to the deposit (balance1 - reserve1)
    /// @return liquidity LP shares minted to `to`
    function addLiquidity(uint256 amount0Desired, uint256 amount1Desired, address to)
        external
        lock
        returns (uint256 amount0, uint256 amount1, uint256 liquidity)
    {
        (uint112 reserve0, uint112 reserve1,) = getReserves();
        (uint256 pull0, uint256 pull1) = (amount0Desired, amount1Desired);
        if (reserve0 != 0 && reserve1 != 0) {
            uint256 amount1Optimal = amount0Desired * reserve1 / reserve0;
            if (amount1Optimal <= amount1Desired) {
                pull1 = amount1Optimal;
            } else {
                pull0 = amount1Desired * reserve0 / reserve1;
            }
        }
        require(pull0 > 0 && pull1 > 0, "Pool: INSUFFICIENT_AMOUNT");
        _safeTransferFrom(token0, msg.sender, address(this), pull0);
        _safeTransferFrom(token1, msg.sender, address(this), pull1);

        uint256 balance0 = IERC20(token0).balanceOf(address(this));
        uint256 balance1 = IERC20(token1).balanceOf(address(this));
        amount0 = balance0 - reserve0;
        amount1 = balance1 - reserve1;

        uint256 supply = totalSupply();
        if (supply == 0) {
            liquidity = Math.sqrt(amount0 * amount1);
            require(liquidity > MINIMUM_LIQUIDITY, "Pool: INSUFFICIENT_LIQUIDITY_MINTED");
            liquidity -= MINIMUM_LIQUIDITY;
            _mint(DEAD, MINIMUM_LIQUIDITY);
        } else {
            liquidity = Math.min(amount0 * supply / reserve0, amount1 * supply / reserve1);
        }
        require(liquidity > 0, "Pool: INSUFFICIENT_LIQUIDITY_MINTED");
        _mint(to, liquidity);

        _update(balance0, balance1);
        emit Mint(msg.sender, amount0, amount1);
    }

    /// @notice Burn `liquidity` of the caller's LP shares and send the pro-rata tokens to `to`.
    function removeLiquidity(uint256 liquidity, address to)
        external
        lock
        returns (uint256 amount0, uint256 amount1)
    {
        require(balanceOf(msg.sender) >= liquidity, "Pool: INSUFFICIENT_LP_BALANCE");
        require(to != token0 && to != token1, "Pool: INVALID_TO");
        uint256 balance0 = IERC20(token0).balanceOf(address(this));
        uint256 balance1 = IERC20(token1).balanceOf(address(this));
        uint256 supply = totalSupply();
        amount0 = liquidity * balance0 / supply;
        amount1 = liquidity * balance1 / supply;
        require(amount0 > 0 && amount1 > 0, "Pool: INSUFFICIENT_LIQUIDITY_BURNED");
        _burn(msg.sender, liquidity);
        _safeTransfer(token0, to, amount0);
        _safeTransfer(token1, to, amount1);

        _update(IERC20(token0).balanceOf(address(this)), IERC20(token1).balanceOf(address(this)));
        emit Burn(msg.sender, amount0, amount1, to);
    }

    // ------------------------------------------------------------------ swaps

    /// @notice Swap exactly `amountIn` of `tokenIn` (pulled from the caller with transferFrom) for the
    ///         other token, sent to `to`.
    /// @dev The price is computed on the actual balance increase of `tokenIn`, so a token that delivers
    ///      less than `amountIn` is priced on what arrived. A zero output reverts like V2.
    function swapExactIn(address tokenIn, uint256 amountIn, uint256 minAmountOut, uint256 deadline, address to)
        external
        lock
        returns (uint256 amountOut)
    {
        require(block.timestamp <= deadline, "Pool: EXPIRED");
        require(amountIn > 0, "Pool: INSUFFICIENT_INPUT_AMOUNT");
        require(to != token0 && to != token1, "Pool: INVALID_TO");
        (uint256 reserveIn, uint256 reserveOut) = _reservesFor(tokenIn);
        bool zeroForOne = tokenIn == token0;
        address tokenOut = zeroForOne ? token1 : token0;

        uint256 balanceBefore = IERC20(tokenIn).balanceOf(address(this));
        _safeTransferFrom(tokenIn, msg.sender, address(this), amountIn);
        uint256 received = IERC20(tokenIn).balanceOf(address(this)) - balanceBefore;

        amountOut = getAmountOut(received, reserveIn, reserveOut);
        require(amountOut > 0 && amountOut >= minAmountOut, "Pool: INSUFFICIENT_OUTPUT_AMOUNT");

        _safeTransfer(tokenOut, to, amountOut);
        (uint256 amount0Out, uint256 amount1Out) = zeroForOne ? (uint256(0), amountOut) : (amountOut, uint256(0));
        _settleSwap(amount0Out, amount1Out, to);
    }

    /// @notice V2's low-level swap without the flash callback: the caller must have transferred the
    ///         input to the pool beforehand (in the same transaction, or it can be taken by anyone).
    function swap(uint256 amount0Out, uint256 amount1Out, address to) external lock {
        require(amount0Out > 0 || amount1Out > 0, "Pool: INSUFFICIENT_OUTPUT_AMOUNT");
        (uint112 reserve0, uint112 reserve1,) = getReserves();
        require(amount0Out < reserve0 && amount1Out < reserve1, "Pool: INSUFFICIENT_LIQUIDITY");
        require(to != token0 && to != token1, "Pool: INVALID_TO");
        if (amount0Out > 0) _safeTransfer(token0, to, amount0Out);
        if (amount1Out > 0) _safeTransfer(token1, to, amount1Out);
        _settleSwap(amount0Out, amount1Out, to);
    }

    // ------------------------------------------------------------------ reserve maintenance

    /// @notice Send token balances above the reserves to `to`.
    function skim(address to) external lock {
        _safeTransfer(token0, to, IERC20(token0).balanceOf(address(this)) - _reserve0);
        _safeTransfer(token1, to, IERC20(token1).balanceOf(address(this)) - _reserve1);
    }

    /// @notice Set the reserves to the current token balances.
    function sync() external lock {
        _update(IERC20(token0).balanceOf(address(this)), IERC20(token1).balanceOf(address(this)));
    }

    // ------------------------------------------------------------------ internals

    /// @dev (reserve of `token`, reserve of the other token); reverts unless `token` is token0 or token1.
    function _reservesFor(address token) private view returns (uint256 reserveOf, uint256 reserveOther) {
        if (token == token0) return (_reserve0, _reserve1);
        if (token == token1) return (_reserve1, _reserve0);
        revert("Pool: INVALID_TOKEN");
    }

    /// @dev V2's post-transfer half of swap: infer inputs from balances, enforce K, update, emit.
    function _settleSwap(uint256 amount0Out, uint256 amount1Out, address to) private {
        (uint112 reserve0, uint112 reserve1,) = getReserves();
        uint256 balance0 = IERC20(token0).balanceOf(address(this));
        uint256 balance1 = IERC20(token1).balanceOf(address(this));
        uint256 amount0In = balance0 > reserve0 - amount0Out ? balance0 - (reserve0 - amount0Out) : 0;
        uint256 amount1In = balance1 > reserve1 - amount1Out ? balance1 - (reserve1 - amount1Out) : 0;
        require(amount0In > 0 || amount1In > 0, "Pool: INSUFFICIENT_INPUT_AMOUNT");
        require(balance0 <= type(uint112).max && balance1 <= type(uint112).max, "Pool: OVERFLOW");
        uint256 balance0Adjusted = balance0 * BPS - amount0In * feeBps;
        uint256 balance1Adjusted = balance1 * BPS - amount1In * feeBps;
        require(
            balance0Adjusted * balance1Adjusted >= uint256(reserve0) * uint256(reserve1) * (BPS * BPS), "Pool: K"
        );
        _update(balance0, balance1);
        emit Swap(msg.sender, amount0In, amount1In, amount0Out, amount1Out, to);
    }

    function _update(uint256 balance0, uint256 balance1) private {
        require(balance0 <= type(uint112).max && balance1 <= type(uint112).max, "Pool: OVERFLOW");
        _reserve0 = uint112(balance0);
        _reserve1 = uint112(balance1);
        _blockTimestampLast = uint32(block.timestamp % 2 ** 32);
        emit Sync(uint112(balance0), uint112(balance1));
    }

    /// @dev transfer that accepts tokens returning nothing; bubbles the token's revert data, else
    ///      reverts "Pool: TRANSFER_FAILED".
    function _safeTransfer(address token, address to, uint256 value) private {
        _callToken(token, abi.encodeCall(IERC20.transfer, (to, value)), "Pool: TRANSFER_FAILED");
    }

    /// @dev Like _safeTransfer; reverts "Pool: TRANSFER_FROM_FAILED" when the token gives no reason.
    function _safeTransferFrom(address token, address from, address to, uint256 value) private {
        _callToken(token, abi.encodeCall(IERC20.transferFrom, (from, to, value)), "Pool: TRANSFER_FROM_FAILED");
    }

    /// @dev On failure: OpenZeppelin's ERC20InsufficientAllowance / ERC20InsufficientBalance become
    ///      "Pool: INSUFFICIENT_ALLOWANCE" / "Pool: INSUFFICIENT_BALANCE" (a readable reason for the caller,
    ///      at no cost on the success path); any other revert data is bubbled unchanged (so a re-entry
    ///      attempt surfaces as "Pool: LOCKED"); a silent failure or a `false` return reverts `failure`.
    function _callToken(address token, bytes memory data, string memory failure) private {
        (bool success, bytes memory returned) = token.call(data);
        if (!success && returned.length >= 4) {
            bytes4 selector = bytes4(returned);
            if (selector == ERC20InsufficientAllowance.selector) revert("Pool: INSUFFICIENT_ALLOWANCE");
            if (selector == ERC20InsufficientBalance.selector) revert("Pool: INSUFFICIENT_BALANCE");
            assembly ("memory-safe") {
                revert(add(returned, 0x20), mload(returned))
            }
        }
        require(success && (returned.length == 0 || abi.decode(returned, (bool))), failure);
    }
}
