"""StrategyRegistry on both backends: registrars only, code hashes, retirement, versions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eth_utils import keccak
from web3.logs import DISCARD

if TYPE_CHECKING:
    from tests.integration.chain.conftest import ChainEnv

ACTIVE, RETIRED = 1, 2
MOMENTUM, MEAN_REVERSION = keccak(text="momentum"), keccak(text="mean-reversion")
CODE_V1, CODE_V2, CODE_V3 = (keccak(text=f"momentum code v{n}") for n in (1, 2, 3))


def test_register_by_a_non_registrar_reverts(chain: ChainEnv) -> None:
    call = chain.registry.functions.register(MOMENTUM, chain.alice, CODE_V1)
    with chain.reverts("Registry: CALLER_NOT_REGISTRAR"):
        chain.transact(call, chain.alice)
    with chain.reverts("Registry: CALLER_NOT_REGISTRAR"):
        chain.transact(chain.registry.functions.retire(MOMENTUM), chain.alice)


def test_register_emits_events_and_records_the_strategy(chain: ChainEnv) -> None:
    receipt = chain.transact(chain.registry.functions.register(MOMENTUM, chain.alice, CODE_V1))
    (registered,) = chain.registry.events.StrategyRegistered().process_receipt(
        receipt, errors=DISCARD
    )
    assert (registered["args"].id, registered["args"].payout) == (MOMENTUM, chain.alice)
    (added,) = chain.registry.events.StrategyVersionAdded().process_receipt(receipt, errors=DISCARD)
    assert (added["args"].version, added["args"].codeHash) == (1, CODE_V1)
    assert chain.registry.functions.get(MOMENTUM).call() == [chain.alice, CODE_V1, 1, ACTIVE]
    assert chain.registry.functions.strategyOfCodeHash(CODE_V1).call() == MOMENTUM
    assert chain.registry.functions.strategyCount().call() == 1
    assert chain.registry.functions.strategyIdAt(0).call() == MOMENTUM


def test_registering_the_current_code_hash_again_reverts(chain: ChainEnv) -> None:
    chain.transact(chain.registry.functions.register(MOMENTUM, chain.alice, CODE_V1))
    with chain.reverts("Registry: SAME_CODE_HASH"):
        chain.transact(chain.registry.functions.register(MOMENTUM, chain.alice, CODE_V1))


def test_a_code_hash_of_another_strategy_is_refused(chain: ChainEnv) -> None:
    chain.transact(chain.registry.functions.register(MOMENTUM, chain.alice, CODE_V1))
    with chain.reverts("Registry: CODE_HASH_TAKEN"):
        chain.transact(chain.registry.functions.register(MEAN_REVERSION, chain.bob, CODE_V1))


def test_a_retired_strategy_cannot_be_registered_again(chain: ChainEnv) -> None:
    chain.transact(chain.registry.functions.register(MOMENTUM, chain.alice, CODE_V1))
    chain.transact(chain.registry.functions.retire(MOMENTUM))
    assert chain.registry.functions.statusOf(MOMENTUM).call() == RETIRED
    with chain.reverts("Registry: STRATEGY_RETIRED"):
        chain.transact(chain.registry.functions.register(MOMENTUM, chain.alice, CODE_V2))
    with chain.reverts("Registry: NOT_ACTIVE"):
        chain.transact(chain.registry.functions.retire(MOMENTUM))


def test_version_history_is_kept_including_a_rollback(chain: ChainEnv) -> None:
    for code in (CODE_V1, CODE_V2, CODE_V3, CODE_V1):
        chain.transact(chain.registry.functions.register(MOMENTUM, chain.bob, code))
    assert chain.registry.functions.versionCount(MOMENTUM).call() == 4
    versions = [chain.registry.functions.versionAt(MOMENTUM, i).call() for i in range(4)]
    assert [(v[0], v[1]) for v in versions] == [
        (CODE_V1, 1),
        (CODE_V2, 2),
        (CODE_V3, 3),
        (CODE_V1, 4),
    ]
    assert all(v[2] > 0 for v in versions)
    assert chain.registry.functions.get(MOMENTUM).call() == [chain.bob, CODE_V1, 4, ACTIVE]


def test_payout_can_be_changed_by_its_holder_but_not_by_a_stranger(chain: ChainEnv) -> None:
    chain.transact(chain.registry.functions.register(MOMENTUM, chain.alice, CODE_V1))
    with chain.reverts("Registry: NOT_AUTHORIZED"):
        chain.transact(chain.registry.functions.setPayout(MOMENTUM, chain.carol), chain.carol)
    chain.transact(chain.registry.functions.setPayout(MOMENTUM, chain.bob), chain.alice)
    assert chain.registry.functions.get(MOMENTUM).call()[0] == chain.bob
