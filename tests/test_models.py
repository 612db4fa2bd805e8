"""Model definitions: shapes, paper-size parameter counts, checkpoint layouts, and the
attributes the Restorer relies on (size_multiple, receptive_radius, dropout modules)."""

import functools

import pytest
import torch
from torch import nn

from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.models import (
    FAMILIES,
    build_discriminator,
    build_generator,
    build_task_network,
    paper_defaults,
)
from napari_nanoscopy.models.tcan import FourierChannelAttention

# Small widths and depths: fast, yet every kind of layer is present.
SMALL_GENERATORS = {
    "tagan": dict(ngf=4, n_blocks=2),
    "tagan-live": dict(ngf=4, n_blocks=2),
    "tcan": dict(base_filters=4, depth=2, dfcan_filters=8, n_groups=2, n_fcab=1),
    "wang": dict(base_filters=4, depth=2),
    "l2l": dict(base_filters=8, depth=2),
}
SMALL_TASK_NETWORKS = {
    "resnet6": dict(ngf=4, n_blocks=2),
    "unet128": dict(ngf=4, n_down=4),
}
SMALL_DISCRIMINATORS = {
    "tagan": dict(ndf=8),
    "tagan-live": dict(ndf=8),
    "tcan": dict(ndf=4),
    "wang": dict(ndf=4),
}


def small_networks(dropout=None):
    """(name, module) for every generator and task network at small size."""
    torch.manual_seed(0)  # tiny ReLU nets can have dead paths for some initialisations
    extra = {} if dropout is None else {"dropout": dropout}
    nets = [(f, build_generator(f, **SMALL_GENERATORS[f], **extra)) for f in FAMILIES]
    for kind, kwargs in SMALL_TASK_NETWORKS.items():
        if kind == "unet128" and dropout:
            kwargs = dict(kwargs, n_down=6)  # pix2pix only has dropout from 6 levels on
        nets.append((kind, build_task_network(kind, **kwargs, **extra)))
    return nets


def network_id(value):
    return value if isinstance(value, str) else ""


@functools.cache
def paper_generator(family):
    torch.manual_seed(0)
    return build_generator(family).eval()


@functools.cache
def paper_task_network(kind):
    torch.manual_seed(0)
    return build_task_network(kind).eval()


def n_params(module):
    return sum(p.numel() for p in module.parameters())


# --- parameter counts from the documented layer lists ------------------------------------


def conv(k, c_in, c_out, bias=True):
    """Parameters of a k x k conv (or transposed conv) layer."""
    return k * k * c_in * c_out + (c_out if bias else 0)


def bn(c):
    return 2 * c


def linear(n_in, n_out):
    return n_in * n_out + n_out


def resnet_generator_count(c_in, c_out, n_blocks, ngf=64):
    """REFERENCE.md: conv7 + BN, two stride-2 convs + BN, blocks of two conv3 + BN, two
    transposed convs + BN, conv7 with bias; no conv bias where BN follows."""
    return (
        conv(7, c_in, ngf, False) + bn(ngf)
        + conv(3, ngf, 2 * ngf, False) + bn(2 * ngf)
        + conv(3, 2 * ngf, 4 * ngf, False) + bn(4 * ngf)
        + n_blocks * 2 * (conv(3, 4 * ngf, 4 * ngf, False) + bn(4 * ngf))
        + conv(3, 4 * ngf, 2 * ngf, False) + bn(2 * ngf)
        + conv(3, 2 * ngf, ngf, False) + bn(ngf)
        + conv(7, ngf, c_out)
    )


def unet128_count(c_in=1, c_out=2):
    """pix2pix unet_128: outermost (in->64, 128->out with bias), middle levels
    (outer, inner) each down conv + BN(inner) + up conv + BN(outer), innermost 512 <-> 512."""
    middle = [(64, 128), (128, 256), (256, 512), (512, 512), (512, 512)]
    total = conv(4, c_in, 64, False) + conv(4, 128, c_out)
    for outer, inner in middle:
        total += conv(4, outer, inner, False) + bn(inner) + conv(4, 2 * inner, outer, False) + bn(outer)
    return total + conv(4, 512, 512, False) + conv(4, 512, 512, False) + bn(512)


def residual_unet_count(c_in, c_out=1):
    """Wang et al.: down blocks 32, 64, 128, 256 of three 3x3 convs, bottom conv to 512,
    up blocks of three convs (the first on skip + upsampled channels), last conv 32 -> out."""
    total = 0
    for prev, width in [(c_in, 32), (32, 64), (64, 128), (128, 256)]:
        total += conv(3, prev, width) + 2 * conv(3, width, width)
    total += conv(3, 256, 512)
    for width in [256, 128, 64, 32]:
        total += conv(3, 3 * width, width) + 2 * conv(3, width, width)
    return total + conv(3, 32, c_out)


def tcan_count():
    """Conv block 1 -> 32; U-Net on 32 channels; DFCAN: conv 32 -> 64, 5 groups of 2 FCABs
    (two conv3, attention conv3 + 1x1 64 -> 4 + 1x1 4 -> 64), conv 64 -> 1; conv block 1 -> 1."""
    fcab = 2 * conv(3, 64, 64) + conv(3, 64, 64) + conv(1, 64, 4) + conv(1, 4, 64)
    dfcan = conv(3, 32, 64) + 5 * 2 * fcab + conv(3, 64, 1)
    return conv(3, 1, 32) + residual_unet_count(32) + dfcan + conv(3, 1, 1)


def classifier_count(fc_widths):
    """Conv 1 -> 32, five blocks of two conv3 doubling to 1024, then the FC layers."""
    total = conv(3, 1, 32)
    for width in [32, 64, 128, 256, 512]:
        total += conv(3, width, 2 * width) + conv(3, 2 * width, 2 * width)
    return total + sum(linear(a, b) for a, b in zip(fc_widths, fc_widths[1:]))


def patchgan_count(c_in):
    return (
        conv(4, c_in, 64)
        + conv(4, 64, 128, False) + bn(128)
        + conv(4, 128, 256, False) + bn(256)
        + conv(4, 256, 512, False) + bn(512)
        + conv(4, 512, 1)
    )


def care_count():
    """CSBDeep defaults: 5x5 convs 1-32-32 | 64-64 | middle 128, 64 | up 64, 32 | 32, 32; 1x1 out."""
    layers = [(1, 32), (32, 32), (32, 64), (64, 64)]  # down levels 0 and 1
    layers += [(64, 128), (128, 64)]  # middle
    layers += [(128, 64), (64, 32), (64, 32), (32, 32)]  # up levels 1 and 0, after the concatenation
    return sum(conv(5, a, b) for a, b in layers) + conv(1, 32, 1)


EXPECTED_GENERATOR_PARAMS = {
    "tagan": resnet_generator_count(1, 1, 9),
    "tagan-live": resnet_generator_count(3, 1, 9),
    "tcan": tcan_count(),
    "wang": residual_unet_count(1),
    "l2l": care_count(),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_generator_parameter_count_at_paper_defaults(family):
    assert n_params(paper_generator(family)) == EXPECTED_GENERATOR_PARAMS[family]


def test_task_network_parameter_counts_at_paper_defaults():
    assert n_params(paper_task_network("resnet6")) == resnet_generator_count(1, 2, 6)
    assert n_params(paper_task_network("unet128")) == unet128_count()


def test_discriminator_parameter_counts_at_paper_defaults():
    assert n_params(build_discriminator("tagan")) == patchgan_count(2)
    assert n_params(build_discriminator("tagan-live")) == patchgan_count(4)
    assert n_params(build_discriminator("wang")) == classifier_count([1024, 512, 1])
    assert n_params(build_discriminator("tcan")) == classifier_count([1024, 512, 256, 1])


def test_paper_defaults_are_the_papers_values():
    assert paper_defaults("tagan") == dict(in_channels=1, out_channels=1, ngf=64, n_blocks=9, dropout=0.5)
    assert paper_defaults("tagan-live")["in_channels"] == 3
    assert paper_defaults("tcan")["n_groups"] == 5 and paper_defaults("tcan")["n_fcab"] == 2
    assert paper_defaults("l2l")["kernel_size"] == 5 and paper_defaults("l2l")["base_filters"] == 32
    for family in ("tcan", "wang", "l2l"):
        assert paper_defaults(family)["dropout"] == 0.0
    defaults = paper_defaults("wang")
    defaults["depth"] = 1  # a copy: changing it must not change the table
    assert paper_defaults("wang")["depth"] == 4


# --- shapes ------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_paper_size_generator_runs_on_a_small_image(family):
    model = paper_generator(family)
    x = torch.rand(1, model.in_channels, 64, 64) * 2 - 1
    with torch.no_grad():
        y = model(x)
    assert y.shape == (1, model.out_channels, 64, 64)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("kind, size", [("resnet6", 64), ("unet128", 128)])
def test_paper_size_task_network_runs(kind, size):
    model = paper_task_network(kind)
    with torch.no_grad():
        y = model(torch.rand(1, 1, size, size) * 2 - 1)
    assert y.shape == (1, 2, size, size)
    assert y.abs().max() <= 1


@pytest.mark.parametrize("name, model", small_networks(), ids=network_id)
def test_small_network_shapes_and_attributes(name, model):
    for attribute in ("in_channels", "out_channels", "size_multiple", "receptive_radius"):
        assert type(getattr(model, attribute)) is int
    assert model.output_activation in ("tanh", "linear")
    assert type(model.dropout) is float and type(model.global_context) is bool
    m = model.size_multiple
    x = torch.rand(2, model.in_channels, 3 * m, 5 * m) * 2 - 1
    with torch.no_grad():
        y = model.eval()(x)
    assert y.shape == (2, model.out_channels, 3 * m, 5 * m)
    if model.output_activation == "tanh":
        assert y.abs().max() <= 1


@pytest.mark.parametrize("name, model", small_networks(), ids=network_id)
def test_size_multiple_is_what_the_network_needs(name, model):
    """An odd multiple works (above); half a multiple more fails or changes the size."""
    odd = model.size_multiple * 3 + model.size_multiple // 2
    x = torch.rand(1, model.in_channels, odd, odd)
    with torch.no_grad():
        try:
            shape = model.eval()(x).shape
        except RuntimeError:
            return
    assert shape[-2:] != (odd, odd)


def test_module_attributes_of_paper_models():
    tagan = paper_generator("tagan")
    assert (tagan.size_multiple, tagan.receptive_radius, tagan.output_activation) == (4, 84, "tanh")
    assert tagan.dropout == 0.5
    unet = paper_task_network("unet128")
    assert (unet.size_multiple, unet.out_channels, unet.output_activation) == (128, 2, "tanh")
    assert paper_generator("tcan").global_context is True
    assert paper_generator("l2l").residual is True
    assert build_generator("l2l", out_channels=2).residual is False


@pytest.mark.parametrize("family", ["tagan", "tagan-live", "tcan", "wang"])
def test_discriminator_outputs(family):
    d = build_discriminator(family, **SMALL_DISCRIMINATORS[family]).eval()
    with torch.no_grad():
        y = d(torch.rand(2, d.in_channels, 64, 64))
    # 70x70 PatchGAN: three stride-2 and two stride-1 4x4 convs -> 6x6 patches at 64 px.
    assert y.shape == ((2, 1, 6, 6) if family.startswith("tagan") else (2, 1))


# --- TA-GAN checkpoint layouts ---------------------------------------------------------------


def tagan_generator_checkpoint(in_channels=1, out_channels=1, ngf=64, n_blocks=9):
    """A state dict with the public TA-GAN generator's keys and shapes (REFERENCE.md)."""
    state = {}

    def conv(key, shape, bias=False):
        state[f"{key}.weight"] = torch.randn(shape)
        if bias:
            state[f"{key}.bias"] = torch.randn(shape[0])

    def batchnorm(key, channels):
        state[f"{key}.weight"] = torch.rand(channels) + 0.5
        state[f"{key}.bias"] = torch.randn(channels)
        state[f"{key}.running_mean"] = torch.randn(channels)
        state[f"{key}.running_var"] = torch.rand(channels) + 0.5
        state[f"{key}.num_batches_tracked"] = torch.tensor(1234)

    conv("model.1", (ngf, in_channels, 7, 7))
    batchnorm("model.2", ngf)
    conv("model.4", (2 * ngf, ngf, 3, 3))
    batchnorm("model.5", 2 * ngf)
    conv("model.7", (4 * ngf, 2 * ngf, 3, 3))
    batchnorm("model.8", 4 * ngf)
    for index in range(10, 10 + n_blocks):
        for conv_index in (1, 6):
            conv(f"model.{index}.conv_block.{conv_index}", (4 * ngf, 4 * ngf, 3, 3))
            batchnorm(f"model.{index}.conv_block.{conv_index + 1}", 4 * ngf)
    up = 10 + n_blocks  # 19 with nine blocks
    # Transposed conv weights are (in, out, k, k).
    conv(f"model.{up}", (4 * ngf, 2 * ngf, 3, 3))
    batchnorm(f"model.{up + 1}", 2 * ngf)
    conv(f"model.{up + 3}", (2 * ngf, ngf, 3, 3))
    batchnorm(f"model.{up + 4}", ngf)
    conv(f"model.{up + 7}", (out_channels, ngf, 7, 7), bias=True)
    return state


def test_tagan_generator_loads_the_public_checkpoint_layout():
    checkpoint = tagan_generator_checkpoint()
    generator = build_generator("tagan")
    generator.load_state_dict(checkpoint, strict=True)
    assert torch.equal(generator.model[26].bias, checkpoint["model.26.bias"])
    assert isinstance(generator.model[10].conv_block[4], nn.Dropout)

    live = build_generator("tagan-live")
    live.load_state_dict(tagan_generator_checkpoint(in_channels=3), strict=True)


def test_tagan_key_layout_does_not_depend_on_dropout():
    with_dropout = build_generator("tagan", ngf=4)
    without = build_generator("tagan", ngf=4, dropout=0.0)
    assert without.state_dict().keys() == with_dropout.state_dict().keys()
    without.load_state_dict(tagan_generator_checkpoint(ngf=4), strict=True)


def test_resnet6_task_network_layout():
    checkpoint = tagan_generator_checkpoint(out_channels=2, n_blocks=6)
    assert "model.23.weight" in checkpoint  # the last conv moves up by three blocks
    build_task_network("resnet6").load_state_dict(checkpoint, strict=True)


def pix2pix_unet_shapes(in_channels, out_channels, ngf, n_down):
    """Key -> shape of pix2pix's UnetGenerator (nested UnetSkipConnectionBlock.model)."""
    shapes = {}

    def batchnorm(key, channels):
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{key}.{name}"] = (channels,)
        shapes[f"{key}.num_batches_tracked"] = ()

    def block(prefix, outer, inner, level, input_channels=None):
        if level == 0:  # outermost: [down, sub, relu, up, tanh]
            shapes[f"{prefix}.0.weight"] = (inner, input_channels, 4, 4)
            shapes[f"{prefix}.3.weight"] = (2 * inner, outer, 4, 4)
            shapes[f"{prefix}.3.bias"] = (outer,)
            return f"{prefix}.1.model"
        if level == n_down - 1:  # innermost: [lrelu, down, relu, up, bn]
            shapes[f"{prefix}.1.weight"] = (inner, outer, 4, 4)
            shapes[f"{prefix}.3.weight"] = (inner, outer, 4, 4)
            batchnorm(f"{prefix}.4", outer)
            return None
        # [lrelu, down, bn, sub, relu, up, bn(, dropout)]
        shapes[f"{prefix}.1.weight"] = (inner, outer, 4, 4)
        batchnorm(f"{prefix}.2", inner)
        shapes[f"{prefix}.5.weight"] = (2 * inner, outer, 4, 4)
        batchnorm(f"{prefix}.6", outer)
        return f"{prefix}.3.model"

    widths = [ngf, 2 * ngf, 4 * ngf] + [8 * ngf] * (n_down - 3)
    prefix = block("model.model", out_channels, widths[0], 0, in_channels)
    for level in range(1, n_down):
        prefix = block(prefix, widths[level - 1], widths[level], level)
    return shapes


def test_unet128_has_the_pix2pix_key_layout():
    unet = paper_task_network("unet128")
    shapes = {key: tuple(value.shape) for key, value in unet.state_dict().items()}
    assert shapes == pix2pix_unet_shapes(1, 2, 64, 7)


def test_patchgan_has_the_pix2pix_key_layout():
    shapes = {key: tuple(value.shape) for key, value in build_discriminator("tagan").state_dict().items()}
    expected = {
        "model.0.weight": (64, 2, 4, 4),
        "model.0.bias": (64,),
        "model.11.weight": (1, 512, 4, 4),
        "model.11.bias": (1,),
    }
    for index, (c_in, c_out) in zip((2, 5, 8), [(64, 128), (128, 256), (256, 512)]):
        expected[f"model.{index}.weight"] = (c_out, c_in, 4, 4)
        for name in ("weight", "bias", "running_mean", "running_var"):
            expected[f"model.{index + 1}.{name}"] = (c_out,)
        expected[f"model.{index + 1}.num_batches_tracked"] = ()
    assert shapes == expected


# --- receptive radius ------------------------------------------------------------------------


def freeze_attention(model):
    """Hold every Fourier channel attention at the weights of its next forward pass."""
    cache = {}

    def hook(module, inputs, output):
        return cache.setdefault(module, output)

    for module in model.modules():
        if isinstance(module, FourierChannelAttention):
            module.gate.register_forward_hook(hook)


@pytest.mark.parametrize("name, model", small_networks(), ids=network_id)
def test_receptive_radius_bounds_what_an_output_pixel_sees(name, model):
    """Perturb one input pixel: outputs farther than receptive_radius stay exactly the same,
    and some output almost that far changes (the bound is not needlessly loose)."""
    torch.manual_seed(1)
    model.eval()
    radius, m = model.receptive_radius, model.size_multiple
    size = -(-(2 * radius + 24) // m) * m
    x = torch.rand(1, model.in_channels, size, size) * 2 - 1
    freeze_attention(model)  # TCAN's global attention weights are held fixed (global_context)
    rows = torch.arange(size).view(-1, 1)
    cols = torch.arange(size).view(1, -1)
    farthest = 0
    with torch.no_grad():
        reference = model(x)
        for cy, cx in [(size // 2, size // 2 + 1), (size // 2 - 3, size // 2 - 2)]:
            perturbed = x.clone()
            perturbed[..., cy, cx] += 5.0
            changed = (model(perturbed) != reference).any(dim=1)[0]
            distance = torch.maximum((rows - cy).abs(), (cols - cx).abs())
            assert changed.any(), "the perturbation must reach the output"
            assert not changed[distance > radius].any(), f"{name} sees beyond {radius} px"
            farthest = max(farthest, int(distance[changed].max()))
    assert farthest > radius - m


def test_tcan_attention_is_global_as_declared():
    torch.manual_seed(1)
    model = build_generator("tcan", **SMALL_GENERATORS["tcan"]).eval()
    size = 96
    x = torch.rand(1, 1, size, size)
    perturbed = x.clone()
    perturbed[..., 2, 2] += 5.0
    with torch.no_grad():
        far = (model(perturbed) != model(x))[..., -20:, -20:]
    assert model.global_context and far.any()


# --- dropout ----------------------------------------------------------------------------


def enable_dropout_only(model):
    model.eval()
    for module in model.modules():
        if isinstance(module, (nn.Dropout, nn.Dropout2d)):
            module.train()


@pytest.mark.parametrize("name, model", small_networks(dropout=0.3), ids=network_id)
def test_dropout_lives_in_dropout_modules(name, model):
    assert model.dropout == 0.3
    x = torch.rand(1, model.in_channels, 64, 64) * 2 - 1
    with torch.no_grad():
        model.eval()
        assert torch.equal(model(x), model(x)), "dropout active in eval mode: functional dropout?"
        enable_dropout_only(model)
        assert not torch.equal(model(x), model(x))


@pytest.mark.parametrize("name, model", small_networks(dropout=0.0), ids=network_id)
def test_zero_dropout_is_deterministic_with_dropout_modules_on(name, model):
    x = torch.rand(1, model.in_channels, 64, 64) * 2 - 1
    enable_dropout_only(model)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, name, valid",
    [
        (build_generator, "pix2pix", "tagan-live"),
        (build_discriminator, "cyclegan", "wang"),
        (paper_defaults, "care", "l2l"),
        (build_task_network, "unet256", "unet128"),
    ],
)
def test_unknown_names_list_the_choices(build, name, valid):
    with pytest.raises(NanoscopyError, match=valid):
        build(name)


def test_l2l_has_no_discriminator():
    with pytest.raises(NanoscopyError, match="without a discriminator"):
        build_discriminator("l2l")


@pytest.mark.parametrize(
    "build, name, kwargs, message",
    [
        (build_generator, "tagan", dict(n_block=3), "n_blocks"),
        (build_generator, "wang", dict(ngf=8), "base_filters"),
        (build_discriminator, "tcan", dict(n_layers=3), "n_fc"),
        (build_task_network, "resnet6", dict(depth=2), "n_blocks"),
        (build_generator, "tagan", dict(ngf=0), "ngf"),
        (build_generator, "tcan", dict(n_groups=2.5), "n_groups"),
        (build_generator, "l2l", dict(depth="2"), "depth"),
        (build_generator, "wang", dict(in_channels=True), "in_channels"),
        (build_generator, "tagan", dict(dropout=1.0), "dropout"),
        (build_generator, "tcan", dict(dropout=-0.1), "dropout"),
        (build_generator, "l2l", dict(kernel_size=4), "odd"),
        (build_generator, "l2l", dict(in_channels=2, residual=True), "residual"),
        (build_generator, "wang", dict(in_channels=8, base_filters=4), "base_filters"),
        (build_task_network, "unet128", dict(n_down=5, dropout=0.5), "n_down"),
        (build_discriminator, "wang", dict(ndf=1, n_blocks=1, n_fc=3), "n_fc"),
    ],
)
def test_bad_arguments_raise_nanoscopy_error(build, name, kwargs, message):
    with pytest.raises(NanoscopyError, match=message):
        build(name, **kwargs)
