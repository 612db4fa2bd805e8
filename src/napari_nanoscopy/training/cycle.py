"""TA-CycleGAN training (family ``tagan-cycle``): unpaired translation between two image folders.

Two TA-GAN ResNet generators (A -> B, the package's generator, and B -> A, its reverse
generator), two unconditional PatchGAN discriminators that each see a pool of 50 past fakes
(CycleGAN's image pool), the vanilla GAN loss, the L1 of each cycle's reconstruction (x10) and
the MSE between a frozen task network's segmentations of real A and of its reconstruction (x1),
as in the TA-GAN paper's TA-CycleGAN (``REFERENCE.md``). Domain B needs no annotation: only
domain A passes through the task network. The run is a :class:`~.trainers.TrainingRun` with
its own networks, data and package: checkpoints, exact resume, progress and cancelling are the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..card import CycleSection, card_problem
from ..errors import NanoscopyError
from ..fingerprint import training_fingerprint
from ..models import build_discriminator, build_generator, paper_defaults
from ..packages import ModelCard, save_model
from .config import CycleLoss, TrainingConfig
from .datasets import PIXEL_SIZE_TOLERANCE, PatchSampler, domain_images_folder, load_image_folder, normalization_spec
from .losses import gan_loss
from .steps import FamilyTrainer, init_pix2pix
from .tasks import frozen_segmenter_setup
from .trainers import TANH_RANGE, TrainingRun

POOL_SIZE = 50  # CycleGAN's pool of past fakes shown to each discriminator
DOMAIN_B_STREAM = 1  # domain B's patches are drawn with seed + 1, so they never repeat domain A's crops


class ImagePool(nn.Module):
    """CycleGAN's history of generated images: until it is full every fake is kept and shown;
    then each fake is, with probability 1/2, swapped for a random stored one (which is shown).

    The images are buffers, so the pool is checkpointed with the networks; its random draws use
    torch's CPU generator, which the checkpoint also saves, so a resumed run draws the same.
    """

    def __init__(self, size: int, channels: int, patch: int):
        super().__init__()
        self.size = size
        self.register_buffer("images", torch.zeros(size, channels, patch, patch))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def query(self, fakes: torch.Tensor) -> torch.Tensor:
        shown = []
        for fake in fakes.detach():
            if self.count < self.size:
                self.images[self.count] = fake
                self.count += 1
                shown.append(fake)
            elif torch.rand(()) < 0.5:
                index = int(torch.randint(self.size, ()))
                shown.append(self.images[index].clone())
                self.images[index] = fake
            else:
                shown.append(fake)
        return torch.stack(shown)


class CycleTrainer(FamilyTrainer):
    """One TA-CycleGAN step, in CycleGAN's order: both generators (one Adam) against the fixed
    discriminators, then both discriminators (one Adam) on real images and pooled fakes, each
    loss halved as in pix2pix."""

    def __init__(self, generators: dict[str, nn.Module], discriminators: dict[str, nn.Module], task: nn.Module,
                 loss: CycleLoss, patch: int, lrs: dict[str, float], betas):
        super().__init__()
        self.a2b, self.b2a = generators["a2b"], generators["b2a"]
        self.d_a, self.d_b = discriminators["a"], discriminators["b"]
        self.task, self.loss = task, loss
        self.pool_a = ImagePool(POOL_SIZE, self.a2b.in_channels, patch)
        self.pool_b = ImagePool(POOL_SIZE, self.a2b.out_channels, patch)
        self.networks.update(generator=self.a2b, reverse_generator=self.b2a, discriminator_a=self.d_a,
                             discriminator_b=self.d_b, pool_a=self.pool_a, pool_b=self.pool_b, task=task)
        self.add_optimizer("generator", nn.ModuleList([self.a2b, self.b2a]), lrs["generator"], betas)
        self.add_optimizer("discriminator", nn.ModuleList([self.d_a, self.d_b]), lrs["discriminator"], betas)
        task.eval()
        for module in (task, self.d_a, self.d_b):
            module.requires_grad_(False)

    def step(self, batch):
        real_a, real_b = batch["a"], batch["b"]
        fake_b = self.a2b(real_a)
        rec_a = self.b2a(fake_b)
        fake_a = self.b2a(real_b)
        rec_b = self.a2b(fake_a)

        self.optimizers["generator"].zero_grad(set_to_none=True)
        g_a2b = gan_loss(self.d_b(fake_b), real=True)
        g_b2a = gan_loss(self.d_a(fake_a), real=True)
        cycle_a, cycle_b = F.l1_loss(rec_a, real_a), F.l1_loss(rec_b, real_b)
        with torch.no_grad():
            reference = self.task(real_a)
        task = F.mse_loss(self.task(rec_a), reference)
        (g_a2b + g_b2a + self.loss.cycle_weight * (cycle_a + cycle_b) + self.loss.task_weight * task).backward()
        self.optimizers["generator"].step()

        for discriminator in (self.d_a, self.d_b):
            discriminator.requires_grad_(True)
        self.optimizers["discriminator"].zero_grad(set_to_none=True)
        d_a = self._discriminator_loss(self.d_a, real_a, self.pool_a.query(fake_a))
        d_b = self._discriminator_loss(self.d_b, real_b, self.pool_b.query(fake_b))
        (d_a + d_b).backward()
        self.optimizers["discriminator"].step()
        for discriminator in (self.d_a, self.d_b):
            discriminator.requires_grad_(False)
        return {"g_a2b": g_a2b.item(), "g_b2a": g_b2a.item(), "cycle_a": cycle_a.item(), "cycle_b": cycle_b.item(),
                "task": task.item(), "d_a": d_a.item(), "d_b": d_b.item()}

    @staticmethod
    def _discriminator_loss(discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return 0.5 * (gan_loss(discriminator(real), real=True) + gan_loss(discriminator(fake), real=False))


class UnpairedSampler:
    """The batches of a step: patches of domain A and of domain B, each drawn as ``PatchSampler`` draws."""

    def __init__(self, a: PatchSampler, b: PatchSampler):
        self.a, self.b = a, b

    def batch_at(self, step: int, device: torch.device) -> dict[str, torch.Tensor]:
        return {"a": self.a.batch_at(step, device)["target"], "b": self.b.batch_at(step, device)["target"]}


class CycleRun(TrainingRun):
    """A tagan-cycle run: ``config.data_dir`` is domain A, ``config.domain_b`` domain B."""

    def __init__(self, config: TrainingConfig, device: torch.device):
        self.config, self.family, self.settings = config, config.family, config.settings
        self.patch, self.batch, self.seed, self.device, self.loss = config.patch, config.batch, config.seed, device, config.loss
        if config.init_from is not None:
            raise NanoscopyError(f"{config.family} starts from fresh networks; drop init_from (--init-from).")
        self.source, self.initialised_from = None, None
        self.generator_kwargs = {**paper_defaults("tagan"), **(config.generator_kwargs or {})}
        self.generator = build_generator("tagan", **self.generator_kwargs)
        reverse_kwargs = {**self.generator_kwargs, "in_channels": self.generator.out_channels,
                          "out_channels": self.generator.in_channels}
        self.reverse_generator = build_generator("tagan", **reverse_kwargs)
        self.value_range = self.target_clip = TANH_RANGE
        self.spec = normalization_spec(config.normalization, TANH_RANGE)
        self.data = load_image_folder(config.data_dir, normalization=self.spec, channels=self.generator.in_channels,
                                      what="domain A")
        self.data_b = load_image_folder(config.domain_b, normalization=self.spec, channels=self.generator.out_channels,
                                        what="domain B")
        self._check_pixel_sizes()
        self.task = frozen_segmenter_setup(config.task_network, device)
        if self.task.network.in_channels != self.generator.in_channels:
            raise NanoscopyError(
                f"The task network {config.task_network} segments {self.task.network.in_channels}-channel images but "
                f"domain A has {self.generator.in_channels}; give a task network for the domain A images."
            )
        self._check_patch()
        self.lrs = {"generator": config.lr,
                    "discriminator": float(f"{config.lr * self.settings.lr_discriminator / self.settings.lr:.12g}")}
        discriminators = {"a": self._discriminator(self.generator.in_channels),
                          "b": self._discriminator(self.generator.out_channels)}
        self.discriminator_kwargs = {"in_channels": self.generator.out_channels, **self._given_discriminator()}
        for network in (self.generator, self.reverse_generator, *discriminators.values()):
            init_pix2pix(network)
        self.trainer = CycleTrainer({"a2b": self.generator, "b2a": self.reverse_generator}, discriminators,
                                    self.task.network, self.loss, self.patch, self.lrs, self.settings.betas)
        for network in self.trainer.networks.values():
            network.to(device)
        self.sampler = UnpairedSampler(
            PatchSampler(self.data, self.patch, self.batch, self.seed, target_clip=TANH_RANGE),
            PatchSampler(self.data_b, self.patch, self.batch, self.seed + DOMAIN_B_STREAM, target_clip=TANH_RANGE),
        )

    def _check_pixel_sizes(self) -> None:
        size_a, size_b = self.data.pixel_size_nm, self.data_b.pixel_size_nm
        if size_a is not None and size_b is not None and abs(size_a - size_b) > PIXEL_SIZE_TOLERANCE * size_a:
            raise NanoscopyError(
                f"Domain A has {size_a:g} nm pixels but domain B {size_b:g} nm; a translation keeps the pixel grid, "
                "so resample one domain to the other's pixel size first."
            )

    def _check_patch(self) -> None:
        multiple = self.generator.size_multiple
        if self.patch % multiple:
            raise NanoscopyError(f"The patch size must be a multiple of {multiple} for these networks, not {self.patch}; "
                                 f"try {max(multiple, self.patch // multiple * multiple)}.")
        smallest = min(self.data.smallest_size, self.data_b.smallest_size)
        if self.patch > smallest:
            raise NanoscopyError(f"The patch size {self.patch} is larger than the smallest image of the two domains "
                                 f"({smallest} pixels a side); choose a smaller patch or larger images.")

    def _given_discriminator(self) -> dict:
        given = dict(self.config.discriminator_kwargs or {})
        if "in_channels" in given:
            raise NanoscopyError(f"The {self.family} discriminators read the channels of their domain; "
                                 "leave in_channels out of discriminator_kwargs.")
        return given

    def _discriminator(self, channels: int) -> nn.Module:
        discriminator = build_discriminator("tagan", in_channels=channels, **self._given_discriminator())
        self._check_discriminator_fits(discriminator, channels)
        return discriminator

    def checkpoint_settings(self) -> dict:
        return {**super().checkpoint_settings(), "domain_b": str(self.data_b.folder.resolve()),
                "images_b": self.data_b.names}

    def save(self, card: ModelCard) -> ModelCard:
        """The package: the A -> B generator, and the B -> A one described by the card's cycle section."""
        a, b = self.data, self.data_b
        card.input_channels = _names(a.target_names, self.generator.in_channels, self.settings.input_name)
        card.output_channels = _names(b.target_names, self.generator.out_channels, self.settings.output_name)
        cycle = {"domains": {"a": a.folder.resolve().name, "b": b.folder.resolve().name},
                 "reverse_generator": {**self.generator_kwargs, "in_channels": self.generator.out_channels,
                                       "out_channels": self.generator.in_channels}}
        card.cycle = CycleSection.from_dict(card.family, cycle, card_problem(str(self.config.out_path)))
        card.domain = training_fingerprint(card, a.folder, images=domain_images_folder(a.folder))  # A is the input
        card.training.update(domain_b={"data_dir": str(b.folder.resolve()), "n_images": len(b.names)},
                             n_images_a=len(a.names))
        if not self.config.description:
            card.description = (f"TA-CycleGAN translation from {a.folder.name} ({len(a.names)} images, domain A) to "
                                f"{b.folder.name} ({len(b.names)} images, domain B); the reverse generator translates back.")
        return save_model(self.config.out_path, card, self.generator.cpu(), reverse_generator=self.reverse_generator.cpu())


def _names(names: list[str] | None, count: int, default: str) -> list[str]:
    if names and len(names) == count:
        return list(names)
    return [default] if count == 1 else [f"{default} {i + 1}" for i in range(count)]
