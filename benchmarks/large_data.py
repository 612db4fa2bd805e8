"""Memory and time of out-of-core (chunked, OME-Zarr to OME-Zarr) versus in-memory restoration,
and of the interop steps (CSBDeep import, bioimage.io export and its bioimageio.core test).

Each restoration runs in a fresh process, so the peak resident memory (ru_maxrss) it reports
is its own. The model is the bundled l2l-twolabel (a CARE U-Net, 20 nm pixels); images are
synthetic uint16 fields. Prints Markdown tables.

    python benchmarks/large_data.py [--sizes 1024 2048 4096] [--block 1024]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch, zarr
torch.set_num_threads(2)
mode, side, block, folder = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
from napari_nanoscopy import Restorer, load_model
from napari_nanoscopy.chunked import restore_chunked
from napari_nanoscopy.ome_zarr import OmeZarrWriter, open_ome_zarr
package = load_model("l2l-twolabel")
source = open_ome_zarr(f"{folder}/in{side}.zarr").array
start = time.perf_counter()
if mode == "chunked":
    out = OmeZarrWriter(f"{folder}/out{side}-{mode}.zarr", source.shape, "YX", chunks=(block, block), overwrite=True)
    restore_chunked(package, source, out.array, block=block, device="cpu")
    out.commit()
else:
    image = np.asarray(source)
    mean = Restorer(package, device="cpu").restore(image).mean
    np.save(f"{folder}/out{side}-{mode}.npy", mean)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_input(folder: Path, side: int) -> None:
    from napari_nanoscopy.ome_zarr import OmeZarrWriter

    writer = OmeZarrWriter(folder / f"in{side}.zarr", (side, side), "YX", chunks=(512, 512), dtype="uint16",
                           pixel_size_nm=20.0, overwrite=True)
    rng = np.random.default_rng(0)
    for y in range(0, side, 512):
        yy, xx = np.mgrid[y:min(y + 512, side), 0:side]
        base = 300 + 200 * np.sin(xx / 9.0) ** 2 * np.cos(yy / 13.0) ** 2
        writer.array[y:y + 512] = rng.poisson(base).astype(np.uint16)
    writer.commit()


def run_child(mode: str, side: int, block: int, folder: Path) -> dict:
    output = subprocess.run([sys.executable, "-c", CHILD, mode, str(side), str(block), str(folder)],
                            check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def interop_timings(folder: Path) -> list[tuple[str, float]]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_csbdeep import make_care_folder  # the documented Keras HDF5 layout

    from napari_nanoscopy.interop import load_csbdeep
    from napari_nanoscopy.interop import export_bmz

    rows = []
    care, _, _ = make_care_folder(folder / "care", depth=2, n_first=32, kern=5)  # CSBDeep's default CARE
    start = time.perf_counter()
    load_csbdeep(care)
    rows.append(("CSBDeep import, default CARE U-Net (depth 2, 32 filters, 5x5)", time.perf_counter() - start))
    start = time.perf_counter()
    export_bmz("l2l-twolabel", folder / "l2l.zip", overwrite=True)
    rows.append(("export-bmz l2l-twolabel (128x128 test tensors)", time.perf_counter() - start))
    try:
        from bioimageio.core import test_model
    except ImportError:
        return rows
    start = time.perf_counter()
    status = test_model(str(folder / "l2l.zip")).status
    rows.append((f"bioimageio.core test_model of that package ({status})", time.perf_counter() - start))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--block", type=int, default=1024)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}\n")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        print("| image | mode | seconds | peak resident MB |\n|---|---|---|---|")
        for side in args.sizes:
            make_input(folder, side)
            for mode in ("chunked", "in-memory"):
                figures = run_child(mode, side, args.block, folder)
                print(f"| {side}x{side} | {mode} | {figures['seconds']:.1f} | {figures['peak_mb']:.0f} |", flush=True)
            chunked = np.asarray(__import__("zarr").open_group(str(folder / f"out{side}-chunked.zarr"))["0"])
            memory = np.load(folder / f"out{side}-in-memory.npy")
            print(f"|  | max abs difference chunked vs in-memory: {np.abs(chunked - memory).max():.2e} "
                  f"(of a range {memory.max() - memory.min():.0f}) | | |", flush=True)
        print("\n| step | seconds |\n|---|---|")
        for name, seconds in interop_timings(folder):
            print(f"| {name} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
