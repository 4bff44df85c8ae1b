"""Everything a search checks before its study is touched: targets and how to reach them, the
estimator, the training device, the data set and whether the proxy options fit it, and, with
``evaluator = "supernet"``, that the supernet exists, was trained on this data and covers the space.

Each check fails with one line (a :class:`~search_space.errors.ShufflenasError`), so a bad config
never leaves a database, lock file or output folder behind.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

from evaluator.ray_connect import check_ray_address, ray_running
from experiments.config import DEFAULT_TARGETS, ConfigError, SearchConfig
from experiments.study_handling import SearchError
from search_space.errors import ArchitectureError
from search_space import Architecture, SearchSpace
from search_space.errors import ShufflenasError
from search_space.sizes import available_memory, format_bytes

if TYPE_CHECKING:
    from latency_models.measurement.targets import Target

#: Images per data set before ``limit`` (for the memory check made before loading).
DATASET_IMAGES = {"digits": 1797, "cifar10": 60000, "cifar100": 60000, "fashionmnist": 70000, "mnist": 70000,
                  "kmnist": 70000}


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # pragma: no cover
        return False


def resolve_targets(config: SearchConfig, notes: list[str]) -> dict[str, Target]:
    """The targets to record, with the deploy input applied; explicit names must be usable."""
    from latency_models.measurement.targets import get_target, load_targets

    known = load_targets(config.targets_file)
    explicit = config.targets is not None
    names = list(config.targets) if explicit else list(DEFAULT_TARGETS) + (["local-cuda"] if _cuda_available() else [])
    targets: dict[str, Target] = {}
    for name in names:
        target = get_target(name, config.targets_file) if name not in known else known[name]
        reason = target.unavailable_reason()
        if reason is None and target.is_estimate:
            reason = _estimator_missing(target, config.latency.estimate_model)
        if reason is not None:
            if explicit:
                raise SearchError(f"target {name!r} cannot be used here: {reason}")
            notes.append(f"skipped target {name}: {reason}")
            continue
        targets[name] = dataclasses.replace(target, input_size=config.deploy_input)
    if not targets:
        raise SearchError("no usable latency target")
    return targets


def _estimator_missing(target: Target, model: str) -> str | None:
    from latency_models.estimation.estimators import get_estimator

    try:
        get_estimator(target, model)
    except ShufflenasError as exc:
        return str(exc)
    return None


def check_estimate_model(config: SearchConfig) -> None:
    from latency_models.estimation.estimators import ESTIMATORS

    model = config.latency.estimate_model
    if model != "auto" and model not in ESTIMATORS:
        raise ConfigError(f"unknown latency.estimate_model {model!r} (known: auto, {', '.join(ESTIMATORS)})")


def wants_ray(config: SearchConfig, targets: dict[str, Target]) -> bool:
    return config.evaluator == "ray" or (config.evaluator in ("auto", "supernet") and config.workers > 1) or any(
        t.is_remote for t in targets.values())


def check_ray(config: SearchConfig, targets: dict[str, Target]) -> None:
    """Remote targets need a cluster to reach; a given address must answer (a probe of seconds)."""
    address = config.ray_address or os.environ.get("RAY_ADDRESS") or None
    remote = {n: t for n, t in targets.items() if t.is_remote}
    if remote and not address and not ray_running():
        name, target = next(iter(remote.items()))
        label = ", ".join(f"{k}: {v:g}" for k, v in target.resources.items())
        raise SearchError(f"target {name!r} is measured on a Ray cluster node that advertises {{{label}}}: "
                          "start the search with --ray-address HEAD:6379 (or set RAY_ADDRESS) so it can "
                          "reach the board, or leave the target out")
    if address and wants_ray(config, targets) and not ray_running():
        check_ray_address(address)


def check_device(config: SearchConfig, proxy_config: Any) -> None:
    """A CUDA training device must exist here (a cluster's GPUs cannot be checked from here)."""
    device = str(proxy_config.device)
    if not device.startswith("cuda") or config.ray_address:
        return
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(device.split(":", 1)[1]) if ":" in device and device.split(":", 1)[1].isdigit() else 0
    if count == 0:
        raise SearchError(f"proxy.device = {device!r}, but this machine has no usable CUDA device "
                          f"(torch {torch.__version__}); use device = \"cpu\"")
    if index >= count:
        raise SearchError(f"proxy.device = {device!r}, but this machine has {count} CUDA device(s) "
                          f"(cuda:0..cuda:{count - 1})")


def largest_candidate(space: SearchSpace, block: str | None = None) -> Architecture:
    """The space's biggest architecture (widest, deepest) built of ``block`` units (default: the first
    choice): what a memory check must fit."""
    from search_space.blocks import family_of

    token = block or space.block_choices[0]
    widths = tuple(space._widths(i)[-1] for i in range(len(space.width_ranges)))
    depths = tuple(high for _, high in space.depth_ranges)
    ratio = min(space.split_ratios, key=lambda r: abs(r - 0.5)) if family_of(token).uses_ratio else 0.5
    options = dict(widths=widths, depths=depths, split_ratios=(ratio,) * len(widths), stem=max(space.stem_choices),
                   conv5=max(space.conv5_choices), kernels=(max(space.kernel_choices),) * len(widths),
                   blocks=(token,) * len(widths))
    try:
        return Architecture(**options, se=any(space.se_choices), extra_dw=any(space.extra_dw_choices))
    except ArchitectureError:  # a unit type without the SE / extra-depthwise options
        return Architecture(**options)


def largest_candidates(space: SearchSpace) -> list[Architecture]:
    """One largest candidate per unit type the space can draw (a mixed space's memory peak may be any)."""
    found = []
    for token in space.block_choices:
        try:
            found.append(largest_candidate(space, token))
        except ArchitectureError:  # widths this unit type cannot take at their maximum: sized by the others
            continue
    return found or [largest_candidate(space)]


def check_fits_before_loading(config: SearchConfig) -> None:
    """The resized data set must fit into memory (load_dataset would otherwise exhaust it)."""
    p = config.proxy
    key = p.dataset.lower().replace("-", "").replace("_", "")
    images = p.limit or DATASET_IMAGES.get(key)
    available = available_memory()
    if images is None or available is None:
        return
    need = images * 3 * p.input_size ** 2 * 4 * 2  # float32 tensors, plus the resize copy
    if need > available:
        raise SearchError(f"proxy.input_size = {p.input_size} needs about {format_bytes(need)} of memory for the "
                          f"{p.dataset} images ({images} at {p.input_size}x{p.input_size}), more than the "
                          f"{format_bytes(available)} available; lower proxy.input_size or set proxy.limit")


def check_training_fits(space: SearchSpace, data: Any, proxy_config: Any) -> None:
    """One training step of the space's largest candidate must fit into memory."""
    from latency_models.costs.memory import require_fits

    for arch in largest_candidates(space):
        require_fits(arch, input_size=data.input_size, num_classes=data.num_classes, batch=proxy_config.batch_size,
                     training=True, what="train the space's largest candidate (proxy options)")


def load_data(config: SearchConfig, space: SearchSpace, proxy_config: Any, evaluator: Any = None,
              scorer: Any = None) -> Any:
    """The proxy data set, loaded now (it is quick) so a bad one fails before the study is touched;
    a caller's evaluator brings its own. ``scorer``: the supernet's identity (:func:`read_scorer`)."""
    c = config
    if evaluator is not None:
        data = getattr(evaluator, "data", None)
        if data is not None:
            proxy_config.check(data)
        return data
    if c.evaluator == "supernet" and c.supernet.data == "supernet":
        return supernet_split(c, scorer if scorer is not None else read_scorer(c))
    data = proxy_split(c)
    proxy_config.check(data)
    check_training_fits(space, data, proxy_config)
    return data


def proxy_split(config: SearchConfig) -> Any:
    """The search's own split: ``[proxy]`` data set, root, input size and limit, the search's seed."""
    from evaluator.datasets import load_dataset

    c = config
    check_fits_before_loading(c)
    try:
        return load_dataset(c.proxy.dataset, c.proxy.data_root, c.proxy.input_size,
                            c.seed if c.seed is not None else 0, limit=c.proxy.limit)
    except MemoryError:
        raise SearchError(f"the {c.proxy.dataset} data set at {c.proxy.input_size}x{c.proxy.input_size} "
                          "does not fit into memory; lower proxy.input_size or set proxy.limit") from None


def read_scorer(config: SearchConfig) -> Any:
    """The identity of the ``[supernet] checkpoint`` (a SupernetInfo, or an ensemble's), read once
    per search (each read loads and hashes the file); None for the other evaluators."""
    if config.evaluator != "supernet":
        return None
    from evaluator.supernet.ensemble import read_scorer_info

    return read_scorer_info(config.supernet.checkpoint)


def supernet_split(config: SearchConfig, info: Any) -> Any:
    """The split the supernet was trained on (``[supernet] data = "supernet"``, the default): scores
    read the validation images it held out, as ``shufflenas supernet score`` and the fidelity
    benchmark do, whatever the search's seed and ``[proxy] limit``. ``[proxy] data_root`` still says
    where the files are."""
    from evaluator.supernet.ensemble import own_split
    from evaluator.training.recipe import dataset_key

    c = config
    if (dataset_key(info.dataset_name) != dataset_key(c.proxy.dataset)
            or info.dataset.get("input_size") != c.proxy.input_size):
        info.check_data(proxy_split(c))  # refuses in one line: "trained on X at N px; this run uses Y at M px"
    try:
        data = own_split(info, data_root=c.proxy.data_root)
    except MemoryError:
        raise SearchError(f"the split supernet {info.path} was trained on does not fit into memory; score on "
                          'the search\'s data instead ([supernet] data = "proxy", with a proxy.limit)') from None
    return data  # (no proxy_config check: nothing trains on it)


def build_proxy_config(config: SearchConfig) -> Any:
    """``evaluator.proxy.ProxyConfig`` built from the ``[proxy]`` table; unknown keys named."""
    from evaluator.proxy import ProxyConfig

    fields = {f.name for f in dataclasses.fields(ProxyConfig)}
    values: dict[str, Any] = dict(config.proxy.extra)
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join('proxy.' + k for k in unknown)} "
                          f"(known: dataset, data_root, input_size, limit, {', '.join(sorted(fields))})")
    for key, value in (("epochs", config.proxy.epochs), ("input_size", config.proxy.input_size),
                       ("seed", config.seed if config.seed is not None else 0)):
        if key in fields:
            values.setdefault(key, value)
    try:
        return ProxyConfig(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad [proxy] options: {exc}") from None


def check_supernet(config: SearchConfig, space: SearchSpace, data: Any, info: Any = None) -> Any:
    """With ``evaluator = "supernet"``: the supernet's identity (a SupernetInfo), after checking that
    it is readable, was trained on this data set at this input size and class count, and that the
    search space's largest candidates lie inside its space. A list of checkpoints: their ensemble
    (each member checked). None for the other evaluators."""
    if config.evaluator != "supernet":
        return None
    from evaluator.supernet.ensemble import members_of

    info = info if info is not None else read_scorer(config)
    if data is not None:
        info.check_data(data)
    for member in members_of(info):
        for arch in largest_candidates(space):
            problems = member.spec.space.violations(arch)
            if problems:
                raise SearchError(f"the search space reaches outside supernet {member.path}'s space "
                                  f"({arch.to_string()}: {problems[0]}); search its space or train one for this "
                                  "[space]")
    return info
