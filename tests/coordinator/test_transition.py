"""The work-unit state machine as a pure function: every rule, then random walks against a model.

No database: `transition(unit, results, now, max_attempts)` is called directly with explicit times.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from mlc.coordinator import Change, ResultView, UnitView, Verdict, WUState, transition

NOW = datetime(2026, 1, 1, 12, 0, 0)
LATER = NOW + timedelta(hours=1)
EARLIER = NOW - timedelta(seconds=1)
MAX = 3

VALID = ResultView(Verdict.VALID)
PENDING = ResultView(Verdict.PENDING)


def invalid(reason: str = "loss_mismatch: claimed 0.1, re-evaluated 0.7") -> ResultView:
    return ResultView(Verdict.INVALID, reason)


def unit(state: WUState, attempts: int = 1, expires: datetime | None = LATER) -> UnitView:
    return UnitView(state, attempts, expires)


# ---- every rule, one at a time ------------------------------------------------------------------


@pytest.mark.parametrize("state", [WUState.DONE, WUState.FAILED])
@pytest.mark.parametrize(
    "results", [[], [VALID], [PENDING], [invalid()], [invalid(), PENDING, VALID]], ids=repr
)
@pytest.mark.parametrize("expires", [None, EARLIER, LATER])
def test_done_and_failed_never_change(state: WUState, results: list[ResultView], expires: datetime) -> None:
    assert transition(unit(state, attempts=MAX + 5, expires=expires), results, NOW, MAX) is None


@pytest.mark.parametrize("state", [WUState.READY, WUState.LEASED, WUState.REPORTED])
@pytest.mark.parametrize(
    "results", [[VALID], [invalid(), VALID], [VALID, PENDING], [PENDING, invalid(), VALID]]
)
def test_a_valid_result_makes_the_unit_valid(state: WUState, results: list[ResultView]) -> None:
    # even with an expired lease and no attempts left: the answer is in, nothing is retried
    assert transition(unit(state, attempts=MAX, expires=EARLIER), results, NOW, MAX) == Change(WUState.VALID)


def test_a_valid_unit_with_its_valid_result_stays() -> None:
    assert transition(unit(WUState.VALID), [invalid(), VALID, PENDING], NOW, MAX) is None


@pytest.mark.parametrize("state", [WUState.READY, WUState.LEASED])
@pytest.mark.parametrize("results", [[PENDING], [invalid(), PENDING], [PENDING, invalid()]])
def test_a_pending_result_makes_the_unit_reported(state: WUState, results: list[ResultView]) -> None:
    # an expired lease does not matter once a result is waiting to be judged
    assert transition(unit(state, attempts=MAX, expires=EARLIER), results, NOW, MAX) == Change(
        WUState.REPORTED
    )


def test_a_reported_unit_with_a_pending_result_stays() -> None:
    assert transition(unit(WUState.REPORTED), [invalid(), PENDING], NOW, MAX) is None


@pytest.mark.parametrize("results", [[], [invalid()]])
@pytest.mark.parametrize("expires", [LATER, NOW + timedelta(microseconds=1), None])
def test_a_live_lease_stays(results: list[ResultView], expires: datetime | None) -> None:
    # None: a lease without a deadline never expires by itself
    assert transition(unit(WUState.LEASED, attempts=MAX, expires=expires), results, NOW, MAX) is None


@pytest.mark.parametrize("expires", [EARLIER, NOW])  # the deadline itself counts as expired
@pytest.mark.parametrize("attempts", [1, MAX - 1])
def test_an_expired_lease_goes_back_to_ready(expires: datetime, attempts: int) -> None:
    change = transition(unit(WUState.LEASED, attempts, expires), [invalid()], NOW, MAX)
    assert change == Change(WUState.READY, f"lease expired after attempt {attempts}")


@pytest.mark.parametrize("attempts", [MAX, MAX + 1])
def test_an_expired_lease_at_max_attempts_fails(attempts: int) -> None:
    change = transition(unit(WUState.LEASED, attempts, EARLIER), [], NOW, MAX)
    assert change is not None and change.state == WUState.FAILED
    assert change.error == f"lease expired after attempt {attempts}; gave up after {attempts} attempts"


# In REPORTED, lease_expires_at is the lease still running beside the results: None when there is none
# (the unit was READY when the result came), the report time when its holder sent it (that ends it).
NO_LEASE = [None, EARLIER, NOW]


@pytest.mark.parametrize("state", [WUState.REPORTED, WUState.VALID])
@pytest.mark.parametrize("expires", NO_LEASE)
def test_all_results_rejected_goes_back_to_ready_with_the_last_reason(
    state: WUState, expires: datetime | None
) -> None:
    results = [invalid("first: no"), invalid("stop_rule: second")]
    change = transition(unit(state, attempts=1, expires=expires), results, NOW, MAX)
    assert change == Change(WUState.READY, "result rejected: stop_rule: second")


@pytest.mark.parametrize("expires", NO_LEASE)
def test_all_results_rejected_at_max_attempts_fails(expires: datetime | None) -> None:
    change = transition(
        unit(WUState.REPORTED, attempts=MAX, expires=expires), [invalid("tensor_shape: bad")], NOW, MAX
    )
    assert change == Change(
        WUState.FAILED, f"result rejected: tensor_shape: bad; gave up after {MAX} attempts"
    )


@pytest.mark.parametrize("state", [WUState.REPORTED, WUState.VALID])
@pytest.mark.parametrize("attempts", [1, MAX])
@pytest.mark.parametrize("expires", [LATER, NOW + timedelta(microseconds=1)])
def test_a_rejection_beside_a_live_lease_records_the_reason_and_waits_for_the_holder(
    state: WUState, attempts: int, expires: datetime
) -> None:
    # a stale upload from an earlier lease was rejected: whoever holds the live lease may still deliver,
    # even on the last attempt, so the unit is neither requeued nor failed
    change = transition(unit(state, attempts, expires), [invalid("malformed: x")], NOW, MAX)
    assert change == Change(WUState.LEASED, "result rejected: malformed: x")


def test_a_rejection_with_a_pending_result_beside_it_waits_for_that_result() -> None:
    results = [invalid(), PENDING]
    assert transition(unit(WUState.REPORTED, attempts=MAX, expires=EARLIER), results, NOW, MAX) is None


def test_a_reported_unit_without_results_is_retried() -> None:
    change = transition(unit(WUState.REPORTED, attempts=1, expires=None), [], NOW, MAX)
    assert change == Change(WUState.READY, "result rejected: no result")


@pytest.mark.parametrize("results", [[], [invalid()], [invalid(), invalid()]])
def test_a_ready_unit_without_pending_or_valid_results_stays(results: list[ResultView]) -> None:
    assert transition(unit(WUState.READY, attempts=MAX, expires=None), results, NOW, MAX) is None


# ---- random walks against a model of the scheduler ----------------------------------------------

_TERMINAL = (WUState.DONE, WUState.FAILED)


class UnitMachine(RuleBasedStateMachine):
    """One work unit driven the way the coordinator drives it, with `transition` deciding.

    `lease` follows the scheduler's rule: a READY unit is leased as a new attempt, and the holder of a
    live lease may renew it (it restarted) as the same attempt. A report comes from the lease's holder
    (which ends its lease) or from someone else, such as an earlier holder whose lease expired.
    """

    relet_expired = False  # True: lease requests also meet LEASED units whose lease expired

    def __init__(self) -> None:
        super().__init__()
        self.now = NOW
        self.state = WUState.READY
        self.attempts = 0
        self.expires: datetime | None = None  # the unit's lease_expires_at column
        self.holder_until: datetime | None = None  # the truth: until when someone works under a lease
        self.results: list[tuple[Verdict, bool]] = []  # (verdict, what the validator will say)
        self.terminal: WUState | None = None
        self.ever_valid = False

    # -- what the daemons do --

    def _view(self) -> list[ResultView]:
        return [ResultView(v, None if v != Verdict.INVALID else "rejected") for v, _ in self.results]

    def _apply(self) -> None:
        change = transition(UnitView(self.state, self.attempts, self.expires), self._view(), self.now, MAX)
        if change is not None:
            assert change.state != self.state, "transition returned a no-op change"
            self.state = change.state
            if change.state in (WUState.READY, WUState.FAILED):
                self.expires = None  # transition_unit clears the lease with these two
        self._check_step()

    def _check_step(self) -> None:
        if self.terminal is not None:
            assert self.state == self.terminal, f"{self.terminal} is absorbing, became {self.state}"
        elif self.state in _TERMINAL:
            self.terminal = self.state

    def _expired(self) -> bool:
        return self.state == WUState.LEASED and self.expires is not None and self.expires <= self.now

    @precondition(lambda self: self.state == WUState.READY or (self.relet_expired and self._expired()))
    @rule(lease_seconds=st.integers(min_value=-5, max_value=120))
    def lease(self, lease_seconds: int) -> None:
        if self._expired():
            self._apply()  # lease_work settles expired leases first, as the transitioner would
            if self.state != WUState.READY:
                return
        self.state = WUState.LEASED
        self.attempts += 1
        self.expires = self.holder_until = self.now + timedelta(seconds=lease_seconds)
        self._check_step()

    @precondition(
        lambda self: self.state == WUState.LEASED and self.expires is not None and self.expires > self.now
    )
    @rule(lease_seconds=st.integers(min_value=1, max_value=120))
    def renew(self, lease_seconds: int) -> None:
        self.expires = self.holder_until = self.now + timedelta(seconds=lease_seconds)
        self._check_step()

    @rule(good=st.booleans(), by_holder=st.booleans())
    def report(self, good: bool, by_holder: bool) -> None:
        if self.state in (WUState.DONE, WUState.FAILED, WUState.VALID):
            return  # TOO_LATE: nothing is stored
        self.results.append((Verdict.PENDING, good))
        holds = self.state in (WUState.LEASED, WUState.REPORTED) and self.expires is not None
        if by_holder and holds:  # report_result: the holder's report ends its lease
            self.expires = self.holder_until = self.now
        self._apply()

    @precondition(lambda self: any(v == Verdict.PENDING for v, _ in self.results))
    @rule()
    def validate(self) -> None:
        i = next(i for i, (v, _) in enumerate(self.results) if v == Verdict.PENDING)
        good = self.results[i][1]
        self.results[i] = (Verdict.VALID if good else Verdict.INVALID, good)
        self.ever_valid |= good
        self._apply()

    @rule(seconds=st.integers(min_value=0, max_value=200))
    def time_passes(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)
        self._apply()  # the transitioner's pass

    @precondition(lambda self: self.state == WUState.VALID)
    @rule()
    def assimilate(self) -> None:
        self.state = WUState.DONE
        self.expires = None
        self._check_step()

    # -- what must always hold --

    @invariant()
    def attempts_are_capped(self) -> None:
        assert self.attempts <= MAX
        if self.state == WUState.READY:
            assert self.attempts < MAX, "a unit with no attempts left was put back in the queue"

    @invariant()
    def a_live_lease_is_never_taken_away(self) -> None:
        if self.holder_until is not None and self.holder_until > self.now:
            assert self.state not in (WUState.READY, WUState.FAILED), "requeued under a live lease"

    @invariant()
    def a_valid_result_is_never_lost(self) -> None:
        if self.ever_valid:
            assert self.state in (WUState.VALID, WUState.DONE)
        if self.state in (WUState.VALID, WUState.DONE):
            assert self.ever_valid

    @invariant()
    def failure_needs_exhausted_attempts(self) -> None:
        if self.state == WUState.FAILED:
            assert self.attempts >= MAX and not self.ever_valid

    @invariant()
    def reported_means_a_result_awaits_judgement(self) -> None:
        pending = any(v == Verdict.PENDING for v, _ in self.results)
        if self.state in (WUState.READY, WUState.LEASED, WUState.FAILED):
            assert not pending
        if self.state == WUState.REPORTED:
            assert pending

    @invariant()
    def a_lease_has_a_deadline(self) -> None:
        if self.state == WUState.LEASED:
            assert self.expires is not None
        if self.state in (WUState.READY, WUState.FAILED, WUState.DONE):
            assert self.expires is None


class ReletExpiredMachine(UnitMachine):
    """The same walk where a lease request may meet an expired LEASED unit before the transitioner
    does: lease_work settles it first, so the attempt cap holds here too."""

    relet_expired = True


_SETTINGS = settings(max_examples=150, stateful_step_count=40, deadline=None)


def test_unit_state_machine() -> None:
    run_state_machine_as_test(UnitMachine, settings=_SETTINGS)


def test_unit_state_machine_with_expired_leases_relet() -> None:
    run_state_machine_as_test(ReletExpiredMachine, settings=_SETTINGS)


# ---- replication: a unit with a quorum of 2 -----------------------------------------------------


def agreed(host: str, digest: str = "same") -> ResultView:
    return ResultView(Verdict.VALID, None, digest, host)


def replicated(state: WUState, attempts: int = 1, expires: datetime | None = None) -> UnitView:
    return UnitView(state, attempts, expires, quorum=2)


def test_a_replicated_unit_goes_back_to_the_queue_with_one_valid_result() -> None:
    change = transition(replicated(WUState.REPORTED), [agreed("host:1")], NOW, MAX)
    assert change is not None and change.state == WUState.READY and "waiting for a replica" in change.error
    assert transition(replicated(WUState.READY), [agreed("host:1")], NOW, MAX) is None


def test_a_replicated_unit_waits_for_its_replica_s_live_lease() -> None:
    assert transition(replicated(WUState.LEASED, 2, LATER), [agreed("host:1")], NOW, MAX) is None
    change = transition(replicated(WUState.LEASED, 2, EARLIER), [agreed("host:1")], NOW, MAX)
    assert change is not None and change.state == WUState.READY


def test_two_hosts_that_agree_make_a_replicated_unit_valid() -> None:
    results = [agreed("host:1"), agreed("host:2")]
    assert transition(replicated(WUState.REPORTED, 2), results, NOW, MAX) == Change(WUState.VALID)


@pytest.mark.parametrize(
    "results",
    [[agreed("host:1"), agreed("host:2", "other")], [agreed("host:1"), agreed("host:1")]],
    ids=["disagree", "one host twice"],
)
def test_a_disagreement_or_one_host_twice_is_no_quorum(results: list[ResultView]) -> None:
    change = transition(replicated(WUState.REPORTED, 2), results, NOW, MAX)
    assert change is not None and change.state == WUState.READY


def test_valid_results_do_not_use_up_attempts_and_a_lone_one_is_taken_when_no_replica_comes() -> None:
    alone = transition(replicated(WUState.LEASED, MAX, EARLIER), [agreed("host:1")], NOW, MAX)
    assert alone is not None and alone.state == WUState.READY  # 1 of its 3 leases went to the valid one
    taken = transition(replicated(WUState.LEASED, MAX + 1, EARLIER), [agreed("host:1")], NOW, MAX)
    assert taken is not None and taken.state == WUState.VALID and "accepted alone" in taken.error
    split = [agreed("host:1"), agreed("host:2", "other")]
    failed = transition(replicated(WUState.LEASED, MAX + 2, EARLIER), split, NOW, MAX)
    assert failed is not None and failed.state == WUState.FAILED


@pytest.mark.parametrize("results", [[], [VALID], [PENDING]], ids=repr)
def test_a_withdrawn_unit_never_changes(results: list[ResultView]) -> None:
    assert transition(unit(WUState.WITHDRAWN, expires=EARLIER), results, NOW, MAX) is None
