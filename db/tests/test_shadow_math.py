"""The statistics against closed forms and Monte Carlo, in Python and in PostgreSQL,
and the decision rule's error rates on a small simulation (the full-size one is
`shieldx shadow simulate`)."""

from __future__ import annotations

import math
import random

import pytest

from shieldx.cli.shadow import clopper_pearson_upper, load_stats, simulate

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


def binomial_log_lr(n_a, s_a, n_b, s_b, p_a, p_b):
    """log L(p_a, p_b) - log L(q, q), q the allocation-weighted rate, written out term by term."""
    q = (n_a * p_a + n_b * p_b) / (n_a + n_b)

    def ll(n, s, p):
        return s * math.log(p) + (n - s) * math.log(1 - p)

    return ll(n_a, s_a, p_a) + ll(n_b, s_b, p_b) - ll(n_a + n_b, s_a + s_b, q)


def test_the_e_value_by_hand():
    n_a, s_a, n_b, s_b = 5000, 500, 5000, 600
    terms = [math.log(w) + binomial_log_lr(n_a, s_a, n_b, s_b, pa, pb) for w, pa, pb in S.PRIOR_BETTER]
    want = math.log(math.fsum(math.exp(t) for t in terms))
    got = S.sequential_decision(n_a, s_a, n_b, s_b)
    assert got["log_lr_better"] == pytest.approx(want, rel=1e-12)
    worse = [math.log(w) + binomial_log_lr(n_a, s_a, n_b, s_b, pa, pb) for w, pa, pb in S.PRIOR_WORSE]
    assert got["log_lr_worse"] == pytest.approx(math.log(math.fsum(math.exp(t) for t in worse)), rel=1e-12)
    assert got["decision"] == "continue"  # log E = 4.31 < log(125)
    assert S.sequential_decision(10000, 1000, 10000, 1200)["decision"] == "challenger_better"
    assert S.sequential_decision(10000, 1000, 10000, 800)["decision"] == "challenger_worse"
    assert pytest.approx(0.01) == S.ALPHA_BETTER + S.ALPHA_WORSE
    assert sum(w for w, _, _ in S.PRIOR_BETTER) == pytest.approx(1.0)
    assert S.sequential_decision(0, 0, 5000, 5000)["decision"] == "continue"  # an empty arm
    # The normal approximation called this "better" (z beyond its bound); the exact tail of
    # 23 or more successes in 1,000 at 1% is 2.7e-4, and the e-value stays far below 125.
    assert S.sequential_decision(99000, 990, 1000, 23)["decision"] == "continue"


def test_worse_is_better_with_the_arms_exchanged():
    rng = random.Random(4)
    for _ in range(100):
        n_a, n_b = rng.randint(1, 10**6), rng.randint(1, 10**6)
        s_a, s_b = rng.randint(0, n_a), rng.randint(0, n_b)
        got = S.sequential_decision(n_a, s_a, n_b, s_b)["log_lr_worse"]
        assert got == pytest.approx(S.sequential_decision(n_b, s_b, n_a, s_a)["log_lr_better"], rel=1e-12, abs=1e-9)


def test_the_e_value_grows_with_the_challengers_successes():
    for n_a, n_b in [(1000, 1000), (99000, 1000), (500, 20000)]:
        for s_a in (0, n_a // 100, n_a // 10, n_a // 2):
            prev_b, prev_w = -math.inf, math.inf
            for s_b in range(0, n_b + 1, max(1, n_b // 200)):
                d = S.sequential_decision(n_a, s_a, n_b, s_b)
                assert d["log_lr_better"] >= prev_b and d["log_lr_worse"] <= prev_w
                prev_b, prev_w = d["log_lr_better"], d["log_lr_worse"]


def test_the_vectorised_decision_is_the_scalar_one():
    import numpy as np

    rng = np.random.default_rng(8)
    n_a = rng.integers(1, 10**6, 2000)
    n_b = rng.integers(1, 10**6, 2000)
    s_a = (n_a * rng.beta(0.5, 0.5, 2000)).astype(np.int64)
    s_b = np.minimum(n_b, (n_b * (s_a / n_a) * rng.uniform(0.8, 1.25, 2000)).astype(np.int64))
    s_b[:10] = 0
    s_a[10:20] = n_a[10:20]
    codes = S.sequential_decision_vec(n_a, s_a, n_b, s_b)
    names = {1: "challenger_better", -1: "challenger_worse", 0: "continue"}
    lp = S.log_e_value(n_a, s_a, n_b, s_b, S.PRIOR_BETTER, np.log, np.exp, np.maximum)
    for i in range(2000):
        one = S.sequential_decision(int(n_a[i]), int(s_a[i]), int(n_b[i]), int(s_b[i]))
        assert names[int(codes[i])] == one["decision"]
        assert lp[i] == pytest.approx(one["log_lr_better"], rel=1e-9, abs=1e-9)
    assert {int(c) for c in codes} == {-1, 0, 1}  # every branch was compared


def crossing_probability(p, blocks, log_bound, prior):
    """Exact P(the e-value ever reaches exp(log_bound)) when both arms convert at p, looking after
    each block (new champion, new challenger observations), by dynamic programming over the counts.
    p is one rate, or a list of one rate per block (a rate that drifts). Mass beyond the tracked
    success range counts as crossed (an upper bound)."""
    import numpy as np

    rates = list(p) if isinstance(p, list) else [p] * len(blocks)
    top = max(rates)
    total_a, total_b = sum(b[0] for b in blocks), sum(b[1] for b in blocks)
    cap_a = min(total_a, int(total_a * top + 12 * math.sqrt(total_a * top * (1 - top)) + 12))
    cap_b = min(total_b, int(total_b * top + 12 * math.sqrt(total_b * top * (1 - top)) + 12))
    mass = np.zeros((cap_a + 1, cap_b + 1))
    mass[0, 0] = 1.0
    crossed = 0.0
    n_a = n_b = 0
    for (da, db), p in zip(blocks, rates, strict=True):
        for axis, d in ((0, da), (1, db)):  # add Binomial(d, p) successes along the axis
            grown = np.zeros(tuple(n + d if i == axis else n for i, n in enumerate(mass.shape)))
            for k in range(d + 1):
                part = grown[k : k + mass.shape[0]] if axis == 0 else grown[:, k : k + mass.shape[1]]
                part += math.comb(d, k) * p**k * (1 - p) ** (d - k) * mass
            mass = grown
        crossed += mass[cap_a + 1 :, :].sum() + mass[: cap_a + 1, cap_b + 1 :].sum()
        mass = mass[: cap_a + 1, : cap_b + 1]
        n_a, n_b = n_a + da, n_b + db
        s_a, s_b = np.meshgrid(np.arange(cap_a + 1), np.arange(cap_b + 1), indexing="ij")
        hit = S.log_e_value(n_a, s_a, n_b, s_b, prior, np.log, np.exp, np.maximum) >= log_bound
        crossed += mass[hit].sum()
        mass[hit] = 0.0
    return crossed


@pytest.mark.parametrize(
    "p, blocks",
    [
        (0.5, [(1, 1)] * 150),  # equal arms, a look after every pair
        (0.1, [(5, 5)] * 60),
        (0.02, [(19, 1)] * 150),  # a 5% challenger at a 2% rate: the case the normal approximation failed
        (0.3, [(3, 1)] * 100),
        ([0.05 + 0.45 * k / 80 for k in range(80)], [(2, 2)] * 80),  # both arms' rate drifts, 5% to 50%
        ([0.3 if k % 2 else 0.05 for k in range(100)], [(3, 1)] * 100),  # and jumps between looks
    ],
)
def test_exact_a_a_crossing_probability_stays_below_alpha(p, blocks):
    """Ville's bound checked by exact enumeration: P(sup E >= c) <= 1/c for several c,
    and the bound is not vacuous (the crossing probability is a real fraction of it)."""
    sharp = ((1.0, 0.05, 0.10),)  # one alternative far enough to be crossed at small counts
    for prior in (S.PRIOR_BETTER, S.PRIOR_WORSE, sharp):
        for c in (4.0, 20.0, 1 / S.ALPHA_BETTER):
            got = crossing_probability(p, blocks, math.log(c), prior)
            assert got <= 1 / c, (prior, c, got)
    assert crossing_probability(p, blocks, math.log(4.0), sharp) > 0.01


def test_postgres_runs_the_same_decision_function(db):
    rng = random.Random(3)
    for _ in range(200):
        n_a, n_b = rng.randint(0, 20000), rng.randint(0, 20000)
        s_a = rng.randint(0, n_a)
        s_b = min(n_b, max(0, round(n_b * (s_a / max(n_a, 1)) * rng.uniform(0.7, 1.4))))
        args = (n_a, s_a, n_b, s_b)
        got = db.execute("SELECT shadow.decide(%s, %s, %s, %s) AS d", args).fetchone()["d"]
        want = S.sequential_decision(*args)
        assert got["decision"] == want["decision"]
        for k in ("log_lr_better", "log_lr_worse", "log_bound_better", "log_bound_worse"):
            assert got[k] == pytest.approx(want[k], rel=1e-12, abs=1e-12)


def test_the_decision_rule_controls_false_positives_and_has_power_small_simulation():
    m = simulate(
        aa_experiments=1000,
        power_experiments=300,
        seed=11,
        baselines=(0.01, 0.1),
        shares=("5%", "canary"),
        look_every=(100,),
        power_look_every=(100,),
    )
    assert m["shadow.aa_fpr_max"] <= 0.02  # <= 1% by construction; 1000 runs per cell
    assert len([k for k in m if k.startswith("shadow.aa_fpr.")]) == 4
    assert m["shadow.power_10pct_to_12pct_at_10k"] >= 0.8  # ~90% expected; 300 runs
    assert m["shadow.rollback_10pct_to_8pct_at_10k"] >= 0.8
    assert m["shadow.power_1pct_to_1p2pct_at_200k"] >= 0.8
    assert 2000 < m["shadow.median_n_10pct_to_12pct_at_10k"] < 8000
    assert m["shadow.wrong_10pct_to_12pct_at_10k"] == 0.0


def test_clopper_pearson_upper_bound():
    assert clopper_pearson_upper(0, 10000) == pytest.approx(1 - 0.025 ** (1 / 10000), rel=1e-6)
    # P(Binomial(10000, u) <= 50) = 0.025 at the upper end u.
    u = clopper_pearson_upper(50, 10000)
    cdf = math.fsum(math.comb(10000, i) * u**i * (1 - u) ** (10000 - i) for i in range(51))
    assert cdf == pytest.approx(0.025, rel=1e-6)


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
