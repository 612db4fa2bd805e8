"""Guards for models that come from elsewhere: no code inside them runs, nothing is read from
outside their folder, and archives are extracted within limits.

- :func:`inside`: a file named by a package, refused when it leads outside the package's folder
  (an absolute path, ``..`` or a symbolic link).
- :func:`extract_zip`: extracts a .zip member by member, refusing unsafe names and links,
  and counting the bytes actually written against limits on the number of members, the size
  of each and the total (a zip bomb stops at the limit instead of filling the disk);
  :func:`extracted_zip` does so into a scratch folder that is removed afterwards.
- :func:`load_torchscript`: TorchScript weights, loaded only when no code in them runs at load
  time (``__setstate__`` methods and native custom classes, found by scanning the archive
  before loading) and run only when every graph (every method of every submodule and every
  hook, with calls inlined and nested blocks included) uses nothing but operations on an
  explicit allow-list of pure tensor and control-flow operations. A file, process or network
  operation (``aten::from_file``, ``aten::save``, ``prim::Print``, RPC, custom ops) is refused
  with its name, before the first forward pass.
"""

from __future__ import annotations

import os
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath, PureWindowsPath

import torch

from .errors import NanoscopyError

# Limits for extracting a model .zip (module attributes, so tests can lower them).
MAX_ZIP_MEMBERS = 1000
MAX_ZIP_MEMBER_BYTES = 1 << 30  # 1 GiB: far above any weights file a 2D restoration model needs
MAX_ZIP_TOTAL_BYTES = 2 << 30
_CHUNK = 1 << 20


def inside(folder: str | os.PathLike, name: str | os.PathLike, what: str, source: str | None = None) -> Path:
    """``folder / name`` resolved, refused when it leads outside ``folder`` (``source`` names it to the user)."""
    root = Path(folder).resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise NanoscopyError(
            f"The {what} '{name}' of {source or folder} leads outside its folder (an absolute path, '..' or a link); "
            "a model is read only from inside its own folder, so copy the file into the folder and name it "
            "relative to it."
        )
    return path


def _size(n: int) -> str:
    value, unit = float(n), "bytes"
    for larger in ("KiB", "MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, larger
    return f"{n} bytes" if unit == "bytes" else f"{value:.1f} {unit}"


def _unsafe_name(info: zipfile.ZipInfo) -> str | None:
    """Why a member may not be extracted, or None."""
    name = info.filename
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link"
    if name.startswith("/") or PureWindowsPath(name).drive or "\\" in name:
        return "an absolute path"
    if ".." in PurePosixPath(name).parts:
        return "a path with '..'"
    return None


def extract_zip(archive: zipfile.ZipFile, dest: Path, source: str) -> None:
    """Extract ``archive`` into the empty folder ``dest`` within the module's limits.

    Every name is checked before anything is written; sizes are checked against the declared
    sizes first and then against the bytes actually written while streaming.
    """
    infos = archive.infolist()
    redo = "unzip it yourself if you trust it and give the folder, or zip only the model package folder"
    if len(infos) > MAX_ZIP_MEMBERS:
        raise NanoscopyError(
            f"{source} holds {len(infos)} files, more than the {MAX_ZIP_MEMBERS} a model package may have; "
            f"it was not extracted: {redo}."
        )
    root = dest.resolve()
    declared = 0
    for info in infos:
        problem = _unsafe_name(info)
        if problem is None and not (root / info.filename).resolve().is_relative_to(root):
            problem = "a path outside the package"
        if problem:
            raise NanoscopyError(
                f"{source} contains an unsafe path ({info.filename}: {problem}); refusing to extract it, "
                "re-create the .zip from the package folder."
            )
        _check_member_size(source, info.filename, info.file_size, redo)
        declared += info.file_size
    _check_total_size(source, declared, redo, "declares")

    written = 0
    for info in infos:
        target = root / info.filename
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        member_written = 0
        try:
            with archive.open(info) as stream, open(target, "wb") as out:
                while block := stream.read(_CHUNK):
                    member_written += len(block)
                    written += len(block)
                    _check_member_size(source, info.filename, member_written, redo)
                    _check_total_size(source, written, redo, "expands to at least")
                    out.write(block)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, OSError) as error:
            raise NanoscopyError(
                f"{source} cannot be extracted: its member {info.filename} failed ({error}); the .zip is damaged "
                "or the disk is full, so download or zip the package again, or free disk space."
            ) from None


@contextmanager
def extracted_zip(path: Path) -> Iterator[Path]:
    """The model .zip at ``path`` extracted safely (:func:`extract_zip`) into a scratch folder,
    which is removed when the block ends."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise NanoscopyError(f"{path} is not a valid .zip file; give a model package folder or its .zip.") from None
    with archive, tempfile.TemporaryDirectory(prefix="nanoscopy-model-") as scratch:
        root = Path(scratch).resolve()
        extract_zip(archive, root, str(path))
        yield root


def _check_member_size(source: str, name: str, size: int, redo: str) -> None:
    if size > MAX_ZIP_MEMBER_BYTES:
        raise NanoscopyError(
            f"The member {name} of {source} expands to {_size(size)}, more than the {_size(MAX_ZIP_MEMBER_BYTES)} "
            f"allowed per file; it was not extracted: {redo}."
        )


def _check_total_size(source: str, size: int, redo: str, verb: str) -> None:
    if size > MAX_ZIP_TOTAL_BYTES:
        raise NanoscopyError(
            f"{source} {verb} {_size(size)}, more than the {_size(MAX_ZIP_TOTAL_BYTES)} a model package may hold; "
            f"it was not extracted: {redo}."
        )


# --- TorchScript -------------------------------------------------------------------------------

# What makes TorchScript run code while loading, as it appears in the archive's code and pickles.
_LOAD_TIME_CODE = {
    b"__setstate__": "define __setstate__, code that TorchScript runs while loading",
    b"torch.classes": "use native custom classes (torch.classes), whose code runs while loading",
}

# prim:: nodes that only structure the computation: constants, containers, attributes,
# control flow, type refinement, raising an error. Calls (prim::CallMethod, CallFunction) are
# inlined before checking; any that remain (interfaces) are refused like any other unlisted node.
_PRIM_OPS = """
Constant ListConstruct ListUnpack TupleConstruct TupleUnpack TupleIndex TupleSlice DictConstruct
GetAttr SetAttr If Loop RaiseException Uninitialized unchecked_cast isinstance NumToTensor
device dtype layout requires_grad is_cuda shape data min max abs EnumName EnumValue StringIndex
ConstantChunk tolist unchecked_unwrap_optional
"""

# aten:: operations that compute on tensors, numbers, strings, lists and dicts and nothing else.
_ATEN_OPS = """
add add_ sub sub_ rsub mul mul_ div div_ true_divide floor_divide floordiv remainder fmod neg
abs pow pow_ sqrt rsqrt square exp exp2 expm1 log log2 log10 log1p sin cos tan asin acos atan
atan2 sinh cosh tanh tanh_ sign sgn floor ceil round trunc frac reciprocal clamp clamp_ clamp_min
clamp_max clip lerp addcmul addcdiv erf erfc minimum maximum fmin fmax hypot where nan_to_num
eq ne lt le gt ge isnan isinf isfinite logical_and logical_or logical_not logical_xor bitwise_and
bitwise_or bitwise_not bitwise_xor __and__ __or__ __xor__ __not__ __is__ __isnot__ __contains__
__getitem__ __range_length __derive_index masked_fill masked_fill_ fill_ zero_ copy_ index_put index_put_
is_floating_point is_complex
sum mean std var std_mean var_mean max min amax amin argmax argmin prod norm linalg_vector_norm
median logsumexp cumsum cumprod all any count_nonzero topk sort argsort masked_select nonzero triu tril
size dim numel view view_as reshape reshape_as flatten unflatten squeeze unsqueeze permute
transpose t contiguous expand expand_as repeat repeat_interleave tile cat concat concatenate stack
split split_with_sizes chunk unbind narrow slice select index index_select gather flip roll movedim
pad constant_pad_nd reflection_pad1d reflection_pad2d reflection_pad3d replication_pad1d
replication_pad2d replication_pad3d clone detach detach_ to type_as conj resolve_conj
zeros ones empty full zeros_like ones_like empty_like full_like arange linspace tensor scalar_tensor
new_zeros new_ones new_full new_empty rand randn rand_like randn_like bernoulli bernoulli_
Int Float Bool ScalarImplicit IntImplicit FloatImplicit item str format list len append extend
insert pop clear dict keys values items _set_item warn
conv1d conv2d conv3d convolution _convolution conv_transpose1d conv_transpose2d conv_transpose3d
batch_norm instance_norm group_norm layer_norm linear addmm matmul mm bmm baddbmm mv dot outer einsum
relu relu_ relu6 leaky_relu leaky_relu_ elu elu_ selu selu_ celu celu_ gelu silu silu_ mish mish_
prelu softplus hardtanh hardtanh_ hardsigmoid hardsigmoid_ hardswish hardswish_ sigmoid sigmoid_
log_sigmoid softmax log_softmax _softmax _log_softmax threshold threshold_ glu hardshrink softshrink
dropout dropout_ feature_dropout feature_dropout_ alpha_dropout alpha_dropout_ feature_alpha_dropout
max_pool1d max_pool2d max_pool3d max_pool2d_with_indices avg_pool1d avg_pool2d avg_pool3d
adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d adaptive_max_pool1d adaptive_max_pool2d
adaptive_max_pool3d upsample_nearest1d upsample_nearest2d upsample_nearest3d upsample_linear1d
upsample_bilinear2d upsample_bicubic2d upsample_trilinear3d _upsample_nearest_exact1d
_upsample_nearest_exact2d _upsample_nearest_exact3d _upsample_bilinear2d_aa _upsample_bicubic2d_aa
_upsample_lanczos2d_aa
__interpolate __upsample __upsample_bilinear scaled_dot_product_attention one_hot
pixel_shuffle pixel_unshuffle channel_shuffle grid_sampler affine_grid_generator im2col col2im unfold
fft_fft fft_ifft fft_fft2 fft_ifft2 fft_fftn fft_ifftn fft_rfft fft_irfft fft_rfft2 fft_irfft2
fft_rfftn fft_irfftn fft_fftshift fft_ifftshift real imag view_as_real view_as_complex complex angle
"""

ALLOWED_TORCHSCRIPT_OPS = frozenset(
    [f"prim::{name}" for name in _PRIM_OPS.split()] + [f"aten::{name}" for name in _ATEN_OPS.split()]
)


def load_torchscript(path: Path, source: str) -> torch.jit.ScriptModule:
    """Load TorchScript weights on the CPU, refusing any that would run code other than tensor maths."""
    _refuse_load_time_code(path, source)
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as error:
        raise NanoscopyError(f"The TorchScript weights of {source} cannot be loaded ({str(error)[:200]}).") from None
    check_torchscript(module, source)
    return module


def _refuse_load_time_code(path: Path, source: str) -> None:
    """Scan the archive, raw and member by member decompressed, before torch.jit.load runs any of it."""
    try:
        with open(path, "rb") as raw:
            found = _find_markers(raw)
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if found:
                    break
                with archive.open(info) as member:
                    found = _find_markers(member)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, OSError) as error:
        raise NanoscopyError(
            f"The TorchScript weights of {source} are not a readable TorchScript archive ({str(error)[:200]}); "
            "the package is damaged or not TorchScript."
        ) from None
    if found:
        raise NanoscopyError(
            f"The TorchScript weights of {source} {_LOAD_TIME_CODE[found]}, so they were not loaded; ask the "
            "package's authors for TorchScript weights of a plain network (no custom __setstate__, not quantized)."
        )


def _find_markers(stream) -> bytes | None:
    """The first load-time-code marker in a binary stream, read in chunks that overlap."""
    overlap = max(len(marker) for marker in _LOAD_TIME_CODE) - 1
    tail = b""
    while block := stream.read(_CHUNK):
        window = tail + block
        for marker in _LOAD_TIME_CODE:
            if marker in window:
                return marker
        tail = window[-overlap:]
    return None


def check_torchscript(module: torch.jit.ScriptModule, source: str) -> None:
    """Refuse ``module`` unless every graph it can run uses only allowed operations."""
    for where, graph in _graphs(module):
        kind = _first_refused(graph.block())
        if kind is not None:
            raise NanoscopyError(
                f"The TorchScript weights of {source} use '{kind}' (in {where}), which is not on the allow-list of "
                "pure tensor operations (an operation outside it could read or write files, start processes or "
                "reach the network), so they are not run; ask the package's authors for TorchScript weights "
                "made of standard tensor operations only."
            )


def _graphs(module: torch.jit.ScriptModule):
    """(where, graph with calls inlined) for every method and hook of every submodule."""
    for name, sub in module.named_modules():
        scripted = sub._c
        functions = [(method, scripted._get_method(method)) for method in scripted._method_names()]
        functions += [(f"forward hook {hook.name}", hook) for hook in scripted._get_forward_hooks()]
        functions += [(f"forward pre-hook {hook.name}", hook) for hook in scripted._get_forward_pre_hooks()]
        for label, function in functions:
            graph = function.graph.copy()
            torch._C._jit_pass_inline(graph)
            yield (f"{name}.{label}" if name else label), graph


def _first_refused(block) -> str | None:
    for node in block.nodes():
        if node.kind() not in ALLOWED_TORCHSCRIPT_OPS:
            return node.kind()
        for inner in node.blocks():
            kind = _first_refused(inner)
            if kind is not None:
                return kind
    return None
