"""Shared fixtures: small but real model packages built from the project's own families."""

import numpy as np
import pytest
import torch

from napari_nanoscopy.models import build_generator, build_task_network
from napari_nanoscopy.packages import ModelCard, save_model


WIDGET_TIMEOUT_MS = 120_000  # a widget's job on these shared CPUs


def wait_idle(qtbot, widget, timeout=WIDGET_TIMEOUT_MS):
    """Wait until the widget's job has finished."""
    qtbot.waitUntil(lambda: widget.job is None, timeout=timeout)


def stop_after_first_step(qtbot, widget, job, timeout=WIDGET_TIMEOUT_MS):
    """Stop a widget's training job once it has reported a step, then wait until the widget is idle."""
    steps = []
    job._bridge.progressed.connect(lambda done, total, _: steps.append(done))
    qtbot.waitUntil(lambda: len(steps) > 0, timeout=timeout)
    widget.stop()
    wait_idle(qtbot, widget, timeout)


def make_card(family="tagan", generator=None, task_network=None, task=None, **fields):
    generator = generator or {}
    in_channels = generator.get("in_channels", 3 if family == "tagan-live" else 1)
    out_channels = generator.get("out_channels", 1)
    defaults = dict(
        name=f"test-{family}",
        family=family,
        generator=generator,
        task_network=task_network,
        task=task,
        input_channels=[f"in{i}" for i in range(in_channels)],
        output_channels=[f"out{i}" for i in range(out_channels)],
        pixel_size_nm=20.0,
        normalization={
            "input": {"mode": "percentile", "low": 1.0, "high": 99.8, "range": [-1.0, 1.0]},
            "output": {"mode": "range", "range": [-1.0, 1.0]},
        },
        description="test model",
        default_samples=1,
    )
    defaults.update(fields)
    return ModelCard(**defaults)


def randomise_batchnorm(module, seed=0):
    """Give BatchNorm layers non-trivial running statistics, as a trained network has."""
    generator = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
    return module


def make_package(tmp_path, name, card):
    torch.manual_seed(0)
    generator = randomise_batchnorm(build_generator(card.family, **card.generator))
    task_network = None
    if card.task_network is not None:
        task_network = randomise_batchnorm(
            build_task_network(card.task_network["kind"], **card.task_network.get("kwargs", {}))
        )
    path = tmp_path / name
    save_model(path, card, generator, task_network)
    return path


SMALL_TAGAN = dict(ngf=4, n_blocks=2, dropout=0.5)
SMALL_TASK = {"kind": "resnet6", "kwargs": dict(ngf=4, n_blocks=1, out_channels=2)}
TASK = {"kind": "segmentation", "outputs": ["rings", "fibres"], "thresholds": [-0.5294, -0.5294]}


@pytest.fixture(scope="session")
def packages_dir(tmp_path_factory):
    """Model packages shared by the tests (read-only)."""
    root = tmp_path_factory.mktemp("packages")
    make_package(root, "tagan", make_card("tagan", SMALL_TAGAN, default_samples=4))
    make_package(root, "tagan-task", make_card("tagan", SMALL_TAGAN, SMALL_TASK, TASK, default_samples=4))
    percentile = {"mode": "percentile", "low": 1.0, "high": 99.8, "range": [-1.0, 1.0]}
    live_normalization = {  # the live pipeline prepares the STED patch and mask channels itself
        "input": [percentile, {"mode": "none"}, {"mode": "none"}],
        "output": {"mode": "range", "range": [-1.0, 1.0]},
    }
    make_package(
        root, "tagan-live", make_card("tagan-live", dict(SMALL_TAGAN, in_channels=3), normalization=live_normalization)
    )
    make_package(
        root,
        "l2l",
        make_card(
            "l2l",
            dict(base_filters=4),
            normalization={
                "input": {"mode": "percentile", "low": 1.0, "high": 99.8, "range": [0.0, 1.0]},
                "output": {"mode": "input"},
            },
        ),
    )
    return root


@pytest.fixture
def smooth_image():
    """A smooth 2D image with structure at every scale the tests use."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:160, 0:176]
    image = (
        100
        + 40 * np.sin(x / 9.0) * np.cos(y / 13.0)
        + 30 * np.exp(-((x - 60) ** 2 + (y - 80) ** 2) / 400.0)
        + rng.normal(0, 1, (160, 176))
    )
    return image.astype(np.float32)
