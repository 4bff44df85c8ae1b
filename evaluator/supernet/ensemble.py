"""Several supernets scoring as one: a candidate's score is the mean of their one-shot accuracies.

Why: one supernet's ranking carries the noise of its own training. Three sandwich supernets that
differ only in their seed rank the fidelity benchmark's 28 candidates at Kendall tau 0.55-0.61;
they err on different candidates, so the mean of two or three ranks better (docs/supernet.md) at
two or three times a score's seconds.

One member is exactly one supernet (its own ``SupernetInfo``, checksum and scores), so searches
scored with one supernet before stay what they were. An ensemble's checksum joins its members'
sorted checksums with ``+``: the order of the folders does not matter, a different member set
never reads as the same scorer.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

from evaluator.datasets import DataSplit
from evaluator.supernet.scoring import BN_BATCH, ScoringData, SupernetScore, check_fits, score
from evaluator.supernet.store import SupernetInfo, load_supernet, read_info
from evaluator.supernet.weights import Supernet, SupernetError
from search_space import Architecture

#: What a ``[supernet] checkpoint`` holds: one folder, or a list of them (an ensemble).
Checkpoints = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]
SEPARATOR = "+"


@dataclasses.dataclass(frozen=True)
class SupernetEnsemble:
    """Two or more stored supernets trained on the same data, read as one scorer. Offers the
    attributes a search reads of a :class:`SupernetInfo` (checksum, method, epochs, path, data)."""

    members: tuple[SupernetInfo, ...]

    def __post_init__(self) -> None:
        if len(self.members) < 2:
            raise SupernetError("an ensemble needs two or more supernets")
        seen: dict[str, Path] = {}
        for m in self.members:
            if m.checksum in seen:
                raise SupernetError(f"supernet {m.path} is listed twice (same checksum {m.checksum} as "
                                    f"{seen[m.checksum]}); list each supernet once")
            seen[m.checksum] = m.path
        first = self.members[0]
        for m in self.members[1:]:
            for key in ("name", "input_size", "num_classes"):
                if m.dataset.get(key) != first.dataset.get(key):
                    raise SupernetError(f"supernets {first.path} and {m.path} were trained on different data "
                                        f"({key} {first.dataset.get(key)!r} vs {m.dataset.get(key)!r}); an "
                                        "ensemble scores one data set")

    @property
    def checksum(self) -> str:
        return SEPARATOR.join(sorted(m.checksum for m in self.members))

    @property
    def method(self) -> str:
        return SEPARATOR.join(sorted({m.method for m in self.members}))

    @property
    def epochs(self) -> int:
        return max(m.epochs for m in self.members)

    @property
    def path(self) -> str:
        return " + ".join(str(m.path) for m in self.members)

    @property
    def dataset(self) -> Any:
        return self.members[0].dataset

    @property
    def dataset_name(self) -> str:
        return self.members[0].dataset_name

    def check_data(self, data: DataSplit) -> None:
        for m in self.members:
            m.check_data(data)

    def summary(self) -> dict[str, Any]:
        return {"checksum": self.checksum, "method": self.method, "members": [m.summary() for m in self.members]}


def checkpoint_list(value: Checkpoints) -> tuple[str, ...]:
    """The folders of a ``checkpoint`` value: one path, or a list of them."""
    if isinstance(value, (str, os.PathLike)):
        return (os.fspath(value),)
    return tuple(os.fspath(v) for v in value)


def as_scorer_info(infos: Sequence[SupernetInfo]) -> SupernetInfo | SupernetEnsemble:
    """One member: itself (unchanged identity); several: their ensemble (checked)."""
    if not infos:
        raise SupernetError("no supernet given")
    return infos[0] if len(infos) == 1 else SupernetEnsemble(tuple(infos))


def read_scorer_info(value: Checkpoints) -> SupernetInfo | SupernetEnsemble:
    """The identity of the supernet (or ensemble) at ``value``, without loading the weights."""
    return as_scorer_info([read_info(p) for p in checkpoint_list(value)])


def load_scorer(value: Checkpoints) -> tuple[list[Supernet], SupernetInfo | SupernetEnsemble]:
    """Every member's weights (in the order given) and the scorer's identity."""
    loaded = [load_supernet(p) for p in checkpoint_list(value)]
    return [s for s, _ in loaded], as_scorer_info([i for _, i in loaded])


def check_scorer(supernets: Sequence[Supernet], info: SupernetInfo | SupernetEnsemble, data: DataSplit) -> None:
    """Refuse, in one line, data that a member was not trained for (data set, input size, classes)."""
    info.check_data(data)
    for supernet in supernets:
        check_fits(supernet, data)


def own_split(info: SupernetInfo | SupernetEnsemble, *, dataset: str | None = None, data_root: str | None = None,
              limit: int | None = None) -> DataSplit:
    """The data split the supernet was trained on (same set, root, cap, seed and validation share), so
    a score is read off validation images it never trained on. ``dataset`` / ``data_root`` / ``limit``
    override the stored ones (another data set keeps none of them). An ensemble's members must share
    one split: each would otherwise have trained on some of the others' validation images."""
    from evaluator.datasets import load_dataset
    from evaluator.training.recipe import dataset_key

    members = members_of(info)
    splits = [_split_of(m) for m in members]
    for m, split in zip(members[1:], splits[1:]):
        if split != splits[0]:
            raise SupernetError(f"supernets {members[0].path} and {m.path} were trained on different splits of "
                                f"{members[0].dataset_name} ({_describe(splits[0])} vs {_describe(split)}), so "
                                "each one's validation images hold some of the other's training images; train "
                                "them on one split, or score on the search's data ([supernet] data = \"proxy\")")
    own_name, own_limit, seed, val_fraction = splits[0]
    name = dataset or own_name
    same = dataset_key(name) == dataset_key(own_name)
    own_root = (members[0].extra.get("data") or {}).get("root")
    root = data_root if data_root is not None else (own_root if same else None)
    limit = limit if limit is not None else (own_limit if same else None)
    return load_dataset(name, root=root, input_size=members[0].spec.input_size, seed=seed, val_fraction=val_fraction,
                        limit=limit)


def _split_of(info: SupernetInfo) -> tuple[Any, ...]:
    """What decides which images a supernet trained on (a supernet that stored no split: the defaults)."""
    stored = dict(info.extra.get("data") or {})
    return (str(stored.get("name") or info.dataset_name), stored.get("limit"), int(stored.get("seed", 0)),
            float(stored.get("val_fraction", 0.2)))


def _describe(split: tuple[Any, ...]) -> str:
    _, limit, seed, val_fraction = split
    return f"limit {limit or 'all'}, seed {seed}, validation share {val_fraction}"


def check_inside(supernets: Sequence[Supernet], arch: Architecture) -> None:
    """Refuse, in one line, a candidate outside any member's space."""
    for supernet in supernets:
        supernet.check(arch)


def members_of(info: SupernetInfo | SupernetEnsemble) -> tuple[SupernetInfo, ...]:
    return info.members if isinstance(info, SupernetEnsemble) else (info,)


def score_mean(supernets: Sequence[Supernet], arch: Architecture, scoring: ScoringData, *, bn_batch: int = BN_BATCH,
               threads: int | None = None) -> SupernetScore:
    """The mean of each supernet's score of ``arch`` on the same calibration and validation images;
    the seconds are their sum (what the ensemble costs)."""
    scores = [score(s, arch, scoring, bn_batch=bn_batch, threads=threads) for s in supernets]
    if len(scores) == 1:
        return scores[0]
    first = scores[0]
    return SupernetScore(first.arch, sum(s.accuracy for s in scores) / len(scores), sum(s.seconds for s in scores),
                         first.bn_images, first.val_images)


__all__ = ["Checkpoints", "SupernetEnsemble", "as_scorer_info", "check_inside", "check_scorer", "checkpoint_list",
           "load_scorer", "members_of", "own_split", "read_scorer_info", "score_mean"]
