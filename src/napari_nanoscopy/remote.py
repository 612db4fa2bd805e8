"""One image at a time on a remote dask.distributed worker (the live pipeline's GPU computer)."""

from __future__ import annotations

import numpy as np

from . import restorer_cache
from .chunked import BlockExecutor
from .errors import Cancelled, NanoscopyError


def _remote_restore(package, image: np.ndarray, device: str, mc_mode: str, options: dict, precision: str = "fp32"):
    ready = restorer_cache.restorers.get(package, device, mc_mode, precision)
    with ready.lock:
        return ready.restorer.restore(image, **options)


class RemoteRestorer:
    """A stand-in for :class:`~napari_nanoscopy.inference.Restorer` whose restorations run on a
    dask.distributed worker, for example a GPU computer next to the microscope.

    ``restore(image, **options)`` takes the Restorer's options and returns the same
    :class:`~napari_nanoscopy.inference.RestorationResult`, computed by the same code on the
    worker (the model is sent there once). ``scheduler`` is an address (``tcp://gpu-box:8786``),
    a ``Client``, or ``"local"`` / a worker count for an embedded LocalCluster; ``worker``
    pins the work to one worker's address; ``precision`` ("fp32" or "bf16") is the worker's
    Restorer's (the worker must support bf16 natively). ``progress`` is called once the result is back and
    ``should_cancel`` is polled before sending. The live pipeline can use it wherever it holds
    a Restorer (its ``generator`` and ``segmenter``).
    """

    def __init__(self, model, scheduler, *, device: str = "auto", mc_mode: str = "dropout", worker: str | None = None,
                 precision: str = "fp32"):
        from .formats import load_model
        from .inference import MC_MODES, PRECISIONS, Restorer
        from .packages import ModelPackage

        if mc_mode not in MC_MODES:
            raise NanoscopyError(f"mc_mode must be one of {', '.join(MC_MODES)}, not '{mc_mode}'.")
        if precision not in PRECISIONS:
            raise NanoscopyError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}.")
        package = model.package if isinstance(model, Restorer) else model if isinstance(model, ModelPackage) else load_model(model)
        self.package, self.card = package, package.card
        self.device, self.mc_mode, self.worker, self.precision = device, mc_mode, worker, precision
        generator = package.generator
        self.in_channels, self.out_channels = generator.in_channels, generator.out_channels
        self.task_names = list(self.card.task.outputs) if self.card.task is not None else []
        self._executor = BlockExecutor(scheduler, package)

    def restore(self, image, *, progress=None, should_cancel=None, **options):
        if should_cancel is not None and should_cancel():
            raise Cancelled("Restoration cancelled.")
        client = self._executor.client
        future = client.submit(_remote_restore, self._executor.remote_package, np.asarray(image), self.device,
                               self.mc_mode, options, self.precision, pure=False,
                               workers=[self.worker] if self.worker else None)
        try:
            result = future.result()
        except NanoscopyError:
            raise
        except OSError as error:
            raise NanoscopyError(f"The remote worker could not be reached ({str(error)[:200]}); check the cluster.") from None
        result.provenance["remote_worker"] = True
        if progress is not None:
            progress(1, 1)
        return result

    def close(self) -> None:
        self._executor.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RemoteInference:
    """The handle :func:`use_remote_workers` returns; ``close()`` disconnects (and stops an embedded cluster)."""

    def __init__(self, executor: BlockExecutor, restorers: list[RemoteRestorer]):
        self._executor, self.restorers = executor, restorers

    def close(self) -> None:
        self._executor.close()


def use_remote_workers(pipeline, scheduler, *, device: str = "auto", worker: str | None = None) -> RemoteInference:
    """Run a live pipeline's model inference on a dask.distributed worker.

    ``pipeline`` is a :class:`napari_nanoscopy.live.runner.LiveRunner` (what ``LivePipeline`` opens);
    it is given :class:`RemoteRestorer` s of its generator and segmenter on ``scheduler`` (pinned to
    ``worker`` if given) as its predictors, so every frame's Monte-Carlo samples and segmentations are
    computed there (a GPU computer next to the microscope) while acquisition, decisions and recording
    stay here, in the pipeline's precision. Results are the same as local inference with the same seeds.
    """
    executor = BlockExecutor(scheduler, None)
    remote = {name: RemoteRestorer(local, executor.client, device=device, mc_mode=local.mc_mode, worker=worker,
                                   precision=local.precision)  # shares the client, which the handle closes
              for name, local in (("generator", pipeline.generator), ("segmenter", pipeline.segmenter))}
    pipeline.use_predictors(**remote)
    return RemoteInference(executor, list(remote.values()))
