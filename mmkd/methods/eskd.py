"""ESKD, early-stopped KD (Cho & Hariharan, On the Efficacy of KD, ICCV 2019).

A fully trained teacher can be too sharp a target for a small student; a teacher stopped
early is often the better one to learn from. The loss is AVER's (``aver_mode`` chooses
between KD towards the mean logits and the mean of per-teacher KD terms):

    loss = lambda1 * CE(z_s, y) + lambda2 * KD(z_s, (1/K) sum_k z_k)

What differs is the teachers' weights: ``snapshot`` picks them as a share of the teachers'
epochs (0.25, 0.5, 0.75; 1.0 = the best-validation checkpoint). The caller computes the
`TeacherOutputs` from that snapshot, so this class adds no code of its own.
"""

from __future__ import annotations

from mmkd.methods.aver import AverageKD


class EarlyStoppedKD(AverageKD):
    """AVER's loss on the outputs of early teacher snapshots (chosen by ``snapshot``)."""


METHOD = EarlyStoppedKD
