"""The statistics against closed forms and Monte Carlo, in Python and in PostgreSQL,
and the decision rule's error rates on a small simulation (the full-size one is
`shieldx shadow simulate`)."""

from __future__ import annotations

import math
import random

import pytest

from shieldx.cli.shadow import STATS_SQL, load_stats, simulate, stats_sql

S = load_stats()


def miller_reference(a1, b1, a2, b2):
    """Evan Miller's closed form, term by term with lgamma: P(X2 > X1)."""

    def lbeta(a, b):
        return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)

    base = lbeta(a1, b1)
    return math.fsum(math.exp(lbeta(a1 + i, b1 + b2) - math.log(b2 + i) - lbeta(1 + i, b2) - base) for i in range(a2))


def beta_cdf_exact(x, a, b):
    """I_x(a, b) for integers: P(Binomial(a + b - 1, x) >= a)."""
    n = a + b - 1
    return math.fsum(math.comb(n, k) * x**k * (1 - x) ** (n - k) for k in range(a, n + 1))


def test_stats_sql_is_generated_from_stats_py():
    assert STATS_SQL.read_text() == stats_sql(), "run `shieldx shadow gen-sql` after editing stats.py"


MODERATE = [
    (1, 1, 1, 1),
    (2, 1, 1, 2),
    (11, 91, 13, 89),
    (101, 901, 121, 881),
    (31, 71, 41, 61),
    (1001, 9001, 1101, 8901),
    (250, 50, 260, 45),
    (3, 900, 7, 1200),
    (1200, 2400, 1150, 2500),
]


@pytest.mark.parametrize("params", MODERATE)
def test_p_win_matches_the_closed_form_at_moderate_counts(db, params):
    ref = miller_reference(*params)
    assert abs(S.prob_greater(*params) - ref) < 1e-9
    got = db.execute("SELECT shadow.prob_challenger_better(%s, %s, %s, %s) AS p", params).fetchone()["p"]
    assert abs(got - ref) < 1e-9


@pytest.mark.parametrize(
    "params",
    [
        (100001, 900001, 100501, 899501),  # a million per arm, 10%
        (500001, 500001, 499001, 501001),  # a million per arm, 50%
        (10001, 990001, 10201, 989801),  # a million per arm, 1%
        (100001, 900001, 10051, 89951),  # unequal arms: 10^6 vs 10^5
        (3501, 31501, 3551, 31451),  # just past the exact-sum limit
    ],
)
def test_p_win_is_accurate_at_a_million_per_arm(db, params):
    ref = miller_reference(*params)  # the exact sum over the smallest parameter, slow but exact
    got = db.execute("SELECT shadow.prob_challenger_better(%s, %s, %s, %s) AS p", params).fetchone()["p"]
    assert abs(got - ref) < 1e-7
    assert min(params) > S.EXACT_MAX_TERMS  # so this really is the quadrature path


def test_p_win_and_expected_loss_agree_with_monte_carlo():
    rng = random.Random(7)
    a1, b1, a2, b2 = 21, 181, 29, 171
    draws = [(rng.betavariate(a1, b1), rng.betavariate(a2, b2)) for _ in range(200_000)]
    p = sum(y > x for x, y in draws) / len(draws)
    loss = sum(max(x - y, 0.0) for x, y in draws) / len(draws)
    assert abs(S.prob_greater(a1, b1, a2, b2) - p) < 4 * math.sqrt(p * (1 - p) / len(draws))
    assert abs(S.expected_loss(a1, b1, a2, b2) - loss) < 0.03 * loss


def test_the_summary_in_postgres(db):
    got = db.execute("SELECT shadow._posterior_summary(200, 20, 150, 30) AS s").fetchone()["s"]
    a = got["champion"]
    assert (a["alpha"], a["beta"]) == (21, 181)
    for arm in ("champion", "challenger"):
        g = got[arm]
        assert abs(beta_cdf_exact(g["ci_low"], g["alpha"], g["beta"]) - 0.025) < 1e-9
        assert abs(beta_cdf_exact(g["ci_high"], g["alpha"], g["beta"]) - 0.975) < 1e-9
    assert abs(got["p_challenger_better"] - miller_reference(21, 181, 31, 121)) < 1e-9
    assert abs(got["lift"] - ((31 / 152) / (21 / 202) - 1)) < 1e-12
    # Expected losses: E[max(A - B, 0)] - E[max(B - A, 0)] = E[A] - E[B].
    assert abs(got["expected_loss_challenger"] - got["expected_loss_champion"] - (21 / 202 - 31 / 152)) < 1e-9


def test_the_decision_statistic_by_hand(db):
    n_a, s_a, n_b, s_b = 5000, 500, 5000, 600
    p = 1100 / 10000
    v = p * (1 - p) * (2 / 5000)
    theta = S.THETA * math.sqrt(p * (1 - p))
    d = 0.12 - 0.10
    lp = theta * d / v - theta**2 / (2 * v)
    got = S.sequential_decision(n_a, s_a, n_b, s_b)
    assert abs(got["log_lr_better"] - lp) < 1e-9
    assert got["decision"] == ("challenger_better" if lp >= math.log(1 / S.ALPHA_BETTER) else "continue")
    assert pytest.approx(0.01) == S.ALPHA_BETTER + S.ALPHA_WORSE
    assert S.sequential_decision(99, 0, 5000, 5000)["decision"] == "continue"  # below MIN_N
    assert S.sequential_decision(500, 0, 500, 0)["decision"] == "continue"  # no variation


def test_postgres_runs_the_same_decision_function(db):
    rng = random.Random(3)
    for _ in range(200):
        n_a, n_b = rng.randint(0, 20000), rng.randint(0, 20000)
        args = (n_a, rng.randint(0, n_a), n_b, rng.randint(0, n_b))
        got = db.execute("SELECT shadow.decide(%s, %s, %s, %s) AS d", args).fetchone()["d"]
        want = S.sequential_decision(*args)
        assert got["decision"] == want["decision"]
        assert got["log_lr_better"] == pytest.approx(want["log_lr_better"], rel=1e-12, abs=1e-12)


def test_the_decision_rule_controls_false_positives_and_has_power_small_simulation():
    m = simulate(aa_experiments=1000, looks=100, look_every=100, power_experiments=300, seed=11)
    assert m["shadow.aa_false_positive_rate"] <= 0.02  # ~0.7% expected; 1000 runs
    assert m["shadow.aa_false_positive_rate_canary"] <= 0.02
    assert m["shadow.power_10pct_to_12pct_at_10k"] >= 0.85  # ~94% expected; 300 runs
    assert 2000 < m["shadow.median_samples_to_decision"] < 8000


def test_naive_stopping_on_p_win_would_not_control_false_positives():
    """The rule this replaces: stop the first time P(B > A) > 0.95. Same looks, same data model."""
    import numpy as np

    rng = np.random.default_rng(5)
    experiments, looks, step = 100, 50, 100
    a = rng.binomial(step, 0.1, size=(experiments, looks)).cumsum(axis=1)
    b = rng.binomial(step, 0.1, size=(experiments, looks)).cumsum(axis=1)
    false = 0
    for i in range(experiments):
        for k in range(looks):
            n = step * (k + 1)
            if S.prob_greater(1 + int(a[i, k]), 1 + n - int(a[i, k]), 1 + int(b[i, k]), 1 + n - int(b[i, k])) > 0.95:
                false += 1
                break
    assert false / experiments > 0.12  # about 25% after 50 looks (about 30% after 100)
